"""``attnlab explain "a sentence"``: what a model attends to, as pictures and a page.

``attnlab explain --model RUN_DIR --image INDEX_OR_PNG`` does the same for one image
through the trained models of an ``image-classify`` run: their attention maps over the
image (the world experiments do not offer it yet).

``--model minilm`` (the default) is the pretrained all-MiniLM-L6-v2 encoder;
``--model RUN_DIR`` is a run of an experiment that can explain itself (its
:class:`~attnlab.experiments.ExperimentSpec` has ``explain``, and its Config an
``explained_stack()`` giving the layer and head count): a ``translate --model
transformer`` run (its encoder) or a ``minilm-sentiment`` run (seed 0's fine-tuned
encoder).

Every flag is checked before the model's weights load: ``--layers`` and ``--heads``
against the layer and head count read from the model's ``config.json`` or the run's
recorded Config.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnlab.bench.report import check_new_dir
from attnlab.experiments import _checks as checks
from attnlab.interpret.explain import AttentionTrace, trace_attention, write_explanation
from attnlab.interpret.heads import select_heads

__all__ = ["add_explain_parser", "explain_command", "minilm_trace", "read_run"]

MIN_TOKENS = 2  # a picture needs the target token and one more


def add_explain_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``explain`` and its flags."""
    explain = sub.add_parser(
        "explain",
        help="draw what a model attends to in one sentence",
        description="Heatmaps per layer and head, rollout and flow bars, and a hover page.",
    )
    explain.add_argument("text", nargs="?", default=None, help="the sentence to explain")
    explain.add_argument(
        "--image",
        default=None,
        metavar="INDEX_OR_PNG",
        help="explain an image instead: a test-set index or a PNG file (needs --model RUN)",
    )
    explain.add_argument(
        "--model",
        default="minilm",
        help="minilm (pretrained all-MiniLM-L6-v2) or a run folder of an experiment",
    )
    explain.add_argument(
        "--layers", type=_indices, default=None, help="e.g. 0,5 or -1 (default all)"
    )
    explain.add_argument("--heads", type=_indices, default=None, help="e.g. 0,1,2 (default all)")
    explain.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help=f"longer inputs are truncated in pictures (at least {MIN_TOKENS}; default 128)",
    )
    explain.add_argument("--no-flow", action="store_true", help="skip attention flow")
    explain.add_argument(
        "--out", type=Path, default=None, help="a new folder (default runs/explain/<time>)"
    )
    explain.add_argument("--data-dir", default=None, help="where checkpoints and data live")
    explain.set_defaults(handler=explain_command)


def _indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 0,2,5; got {text!r}"
        ) from None


@dataclass(frozen=True)
class _Model:
    """A model to explain, sized before its weights load."""

    name: str
    layers: int
    heads: int
    trace: Callable[[str], AttentionTrace]


@torch.no_grad()
def minilm_trace(text: str, *, data_dir: str | None = None) -> AttentionTrace:
    """The pretrained MiniLM's self-attention over ``text`` (WordPiece, 512 tokens at most)."""
    from attnlab.data.pretrained import load_tokenizer, locate_pretrained
    from attnlab.models.bert import BertEncoder

    folder = locate_pretrained("all-minilm-l6-v2", data_dir=data_dir)
    tokenizer = load_tokenizer(folder)
    model = BertEncoder.from_pretrained(folder).eval()
    ids, mask = tokenizer.encode([text], max_len=model.config.max_position_embeddings)
    if tokenizer.count(text) > ids.shape[1]:
        print(
            f"note: the sentence has {tokenizer.count(text)} word pieces; MiniLM reads the "
            f"first {ids.shape[1]} (its position limit)"
        )
    return trace_attention(
        model,
        lambda: model(ids, mask),
        tokenizer.tokens(ids[0]),
        description="all-MiniLM-L6-v2",
    )


def _minilm(data_dir: str | None) -> _Model:
    from attnlab.data.pretrained import load_bert_config, locate_pretrained

    config = load_bert_config(locate_pretrained("all-minilm-l6-v2", data_dir=data_dir))
    return _Model(
        "all-MiniLM-L6-v2",
        config.num_hidden_layers,
        config.num_attention_heads,
        lambda text: minilm_trace(text, data_dir=data_dir),
    )


def read_run(folder: Path, *, data_dir: str | None = None) -> tuple[Any, Any]:
    """The experiment and the Config of a run folder, from its ``run.json``, checked.

    Args:
        folder: An ``attnlab run`` output folder.
        data_dir: Replaces the recorded ``data_dir`` (the run may come from another machine).

    Returns:
        ``(spec, config)``.

    Raises:
        FileNotFoundError: ``folder`` has no ``run.json``.
        ValueError: ``run.json`` is not JSON, lacks ``experiment`` or ``config``, names an
            unknown experiment, or records a setting the Config refuses.
        TypeError: A recorded setting of the wrong type.
    """
    from attnlab.experiments import get_experiment
    from attnlab.experiments._rundir import read_manifest

    record = folder / "run.json"
    try:
        info = read_manifest(folder)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{folder} is not a run folder (no run.json); pass --model minilm or the --out "
            "folder of an `attnlab run`"
        ) from None
    try:
        spec = get_experiment(info["experiment"])
    except ValueError as err:
        raise ValueError(f"{record}: {err}") from None
    names = {f.name for f in dataclasses.fields(spec.config)}
    # Explaining runs on the CPU, also for a run trained on a GPU machine.
    overrides = {"device": "cpu", "data_dir": data_dir}
    values = info["config"] | {k: v for k, v in overrides.items() if k in names and v is not None}
    return spec, checks.config_from_dict(spec.config, values, source=str(record))


def _run(folder: Path, data_dir: str | None) -> _Model:
    spec, config = read_run(folder, data_dir=data_dir)
    if spec.explain is None:
        raise ValueError(
            f"runs of {spec.name!r} cannot be explained yet; try a translate --model "
            "transformer run, a minilm-sentiment run, or --model minilm"
        )
    if not callable(getattr(config, "explained_stack", None)):
        raise TypeError(
            f"{spec.name!r} can explain runs but {spec.config.__name__} has no "
            "explained_stack(); add one returning (layers, heads) of the stack it draws"
        )
    layers, heads = config.explained_stack()
    return _Model(
        f"{folder} ({spec.name})", layers, heads, lambda text: spec.explain(config, folder, text)
    )


def _check_picks(args: argparse.Namespace, model: _Model) -> None:
    """``--layers`` and ``--heads`` against the model's size, before its weights load."""
    axes = (("--layers", "layers", model.layers), ("--heads", "heads", model.heads))
    for flag, what, count in axes:
        picked = getattr(args, what)
        one_axis = {"layers": [0], "heads": [0], what: picked}  # so the message names its flag
        try:
            select_heads(model.layers, model.heads, 0, **one_axis)
        except ValueError:
            spelled = ",".join(str(i) for i in picked) or "(no index)"
            raise ValueError(
                f"{flag} {spelled}: {model.name} has {count} {what}; use 0..{count - 1} "
                f"(or -{count}..-1 from the end)"
            ) from None
    # Both together: the grid's panel limit.
    select_heads(model.layers, model.heads, 0, layers=args.layers, heads=args.heads)


def _image_experiments() -> str:
    """The experiments whose runs ``--image`` explains, for messages."""
    from attnlab.experiments import available

    return ", ".join(name for name, spec in available().items() if spec.explain_image is not None)


def _explain_image(args: argparse.Namespace, out: Path) -> int:
    """``attnlab explain --model RUN --image INDEX_OR_PNG``: the run's image attention."""
    if args.text is not None:
        raise ValueError("give a sentence or --image, not both")
    if args.model == "minilm":
        raise ValueError(
            f"--image needs --model RUN_DIR, the folder of a run of {_image_experiments()}"
        )
    spec, config = read_run(Path(args.model), data_dir=args.data_dir)
    if spec.explain_image is None:
        raise ValueError(
            f"runs of {spec.name!r} cannot be explained with --image; it explains runs of "
            f"{_image_experiments()}"
        )
    check_new_dir(out)
    for path in spec.explain_image(config, Path(args.model), args.image, out):
        print(f"wrote {path}")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    """Handle ``attnlab explain TEXT [--model ...] [--layers ...] [--out DIR]``."""
    checks.folder(args, "data_dir")
    out = args.out or Path("runs/explain") / time.strftime("%Y%m%d-%H%M%S")
    if args.image is not None:
        return _explain_image(args, out)
    if args.text is None:
        raise ValueError(
            'explain needs a sentence, e.g. "the film was great", or --image INDEX_OR_PNG'
        )
    text = " ".join(args.text.split())
    if not text:
        raise ValueError('explain needs a sentence; got an empty one, e.g. "the film was great"')
    checks.at_least(args, MIN_TOKENS, "max_tokens")
    check_new_dir(out)
    if args.model == "minilm":
        model = _minilm(args.data_dir)
    else:
        model = _run(Path(args.model), args.data_dir)
    _check_picks(args, model)
    trace = model.trace(text)
    summary = write_explanation(
        trace,
        out,
        layers=args.layers,
        heads=args.heads,
        max_tokens=args.max_tokens,
        flow=not args.no_flow,
    )
    timing = f"rollout {summary['rollout_seconds']:.3f} s"
    if "flow_seconds" in summary:
        timing += f", flow {summary['flow_seconds']:.2f} s"
    print(
        f"{trace.description}: {len(trace.tokens)} tokens, {summary['layers']} layers x "
        f"{summary['heads']} heads; {timing}"
    )
    for name in summary["files"].values():
        print(f"wrote {out / name}")
    return 0
