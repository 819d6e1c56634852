"""``attnlab explain "a sentence"``: what a model attends to, as pictures and a page.

``--model minilm`` (the default) is the pretrained all-MiniLM-L6-v2 encoder;
``--model RUN_DIR`` is a run of an experiment that can explain itself (its
:class:`~attnlab.experiments.ExperimentSpec` has ``explain``): a ``translate --model
transformer`` run (its encoder) or a ``minilm-sentiment`` run (seed 0's fine-tuned
encoder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attnlab.bench.report import check_new_dir
from attnlab.interpret.explain import AttentionTrace, trace_attention, write_explanation

__all__ = ["add_explain_parser", "explain_command", "minilm_trace"]


def add_explain_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``explain`` and its flags."""
    explain = sub.add_parser(
        "explain",
        help="draw what a model attends to in one sentence",
        description="Heatmaps per layer and head, rollout and flow bars, and a hover page.",
    )
    explain.add_argument("text", help="the sentence to explain")
    explain.add_argument(
        "--model",
        default="minilm",
        help="minilm (pretrained all-MiniLM-L6-v2) or a run folder of an experiment",
    )
    explain.add_argument("--layers", type=_indices, default=None, help="e.g. 0,5 (default all)")
    explain.add_argument("--heads", type=_indices, default=None, help="e.g. 0,1,2 (default all)")
    explain.add_argument(
        "--max-tokens", type=int, default=128, help="longer inputs are truncated in pictures"
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


def _run_trace(folder: Path, text: str) -> AttentionTrace:
    from attnlab.experiments import get_experiment

    record = folder / "run.json"
    if not record.is_file():
        raise FileNotFoundError(
            f"{folder} is not a run folder (no run.json); pass --model minilm or the --out "
            "folder of an `attnlab run`"
        )
    info = json.loads(record.read_text())
    spec = get_experiment(info["experiment"])
    if spec.explain is None:
        raise ValueError(
            f"runs of {spec.name!r} cannot be explained yet; try a translate --model "
            "transformer run, a minilm-sentiment run, or --model minilm"
        )
    return spec.explain(spec.config(**_config_values(spec.config, info["config"])), folder, text)


def _config_values(config: type, values: dict) -> dict:
    """run.json stores tuples as lists; the frozen config wants them back as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def explain_command(args: argparse.Namespace) -> int:
    """Handle ``attnlab explain TEXT [--model ...] [--layers ...] [--out DIR]``."""
    text = " ".join(args.text.split())
    if not text:
        raise ValueError('explain needs a sentence; got an empty one, e.g. "the film was great"')
    out = args.out or Path("runs/explain") / time.strftime("%Y%m%d-%H%M%S")
    check_new_dir(out)
    if args.model == "minilm":
        trace = minilm_trace(text, data_dir=args.data_dir)
    else:
        trace = _run_trace(Path(args.model), text)
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
