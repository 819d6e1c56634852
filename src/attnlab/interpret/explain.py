"""One sentence through a model, every picture of what it attends to (``attnlab explain``).

:func:`trace_attention` runs a model once under :func:`~attnlab.interpret.capture` and
keeps the self-attention maps of one sentence; :func:`write_explanation` turns such an
:class:`AttentionTrace` into files:

* ``heads.png``: the layer x head grid of heatmaps (:func:`plot_head_grid`);
* ``rollout.png`` / ``flow.png``: how much each input token reaches the target token
  (the first, ``[CLS]`` for BERT) through all layers: attention rollout and attention
  flow (Abnar & Zuidema 2020) as bars;
* ``attention.html``: hover a token to see what it attends to, per layer and head, with
  the rollout as one more view;
* ``explain.json``: tokens, the rollout and flow rows, and how long each took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from attnlab.interpret.capture import capture
from attnlab.interpret.heads import plot_head_grid, plot_token_attribution, select_heads
from attnlab.interpret.hover import write_attention_html
from attnlab.interpret.rollout import attention_flow, attention_rollout

__all__ = ["AttentionTrace", "trace_attention", "write_explanation"]


@dataclass(frozen=True)
class AttentionTrace:
    """The self-attention of one sentence through a stack.

    Attributes:
        tokens: the ``L`` tokens as the model saw them.
        attentions: one ``(H, L, L)`` map per layer, bottom first.
        description: what produced it (model, checkpoint), for titles.
    """

    tokens: list[str]
    attentions: tuple[Tensor, ...]
    description: str


def trace_attention(
    model: nn.Module,
    run: Callable[[], Any],
    tokens: Sequence[str],
    *,
    layers: Sequence[int | str] | str | None = None,
    description: str = "",
) -> AttentionTrace:
    """Call ``run()`` (one sentence through ``model``) and keep its attention maps.

    Args:
        model: the model whose attention modules are captured.
        run: runs the model on a batch of one sentence.
        tokens: that sentence's tokens (their number must match the maps).
        layers: which attention modules (see :func:`~attnlab.interpret.capture`);
            rollout and flow need every layer of one stack, so select a whole stack.
        description: for titles.

    Example:
        >>> import torch
        >>> from attnlab.nn.transformer import TransformerEncoder
        >>> enc = TransformerEncoder(2, 8, 2, 16).eval()
        >>> x = torch.randn(1, 3, 8)
        >>> t = trace_attention(enc, lambda: enc(x), ["a", "b", "c"])
        >>> len(t.attentions), t.attentions[0].shape
        (2, torch.Size([2, 3, 3]))
    """
    with capture(model, layers=layers) as seen:
        run()
    maps = tuple(w[0] for w in seen.attentions)
    if not maps:
        raise ValueError("the model ran no captured attention layer; check layers=")
    if any(m.shape[-1] != len(tokens) or m.shape[-2] != len(tokens) for m in maps):
        shapes = sorted({tuple(m.shape) for m in maps})
        raise ValueError(
            f"captured maps {shapes} are not square over the {len(tokens)} tokens; capture "
            "self-attention layers of one stack"
        )
    return AttentionTrace(list(tokens), maps, description)


def write_explanation(
    trace: AttentionTrace,
    out: str | Path,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    target: int = 0,
    max_tokens: int = 128,
    flow: bool = True,
) -> dict[str, Any]:
    """Write the pictures of a trace into ``out`` (created; existing files replaced).

    Args:
        trace: from :func:`trace_attention`.
        out: folder.
        layers: layers shown in the grid and the page (rollout and flow use all).
        heads: heads shown likewise.
        target: the output token whose rollout and flow rows are drawn.
        max_tokens: longer inputs are truncated in the pictures, with a note.
        flow: also compute attention flow (one max-flow per input token).

    Returns:
        The summary also written to ``explain.json``: file names, timings, rows.

    Raises:
        ValueError: A target, layer or head index out of range, too many panels, or
            ``max_tokens < 1``; raised before anything is computed or written.
    """
    tokens, maps = trace.tokens, trace.attentions
    if not 0 <= target < len(tokens):
        raise ValueError(f"target must index one of the {len(tokens)} tokens, got {target}")
    # Checked here, not only when drawing: flow can take a minute before the grid is drawn.
    n_layers, n_heads = len(maps), int(maps[0].shape[0])
    select_heads(n_layers, n_heads, len(tokens), layers=layers, heads=heads, max_tokens=max_tokens)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{trace.description}: " if trace.description else ""
    started = time.perf_counter()
    rollout = attention_rollout(maps)
    rollout_seconds = time.perf_counter() - started
    files = {"heads": plot_head_grid(maps, tokens, out / "heads.png", layers=layers, heads=heads)}
    files["rollout"] = plot_token_attribution(
        rollout[target],
        tokens,
        out / "rollout.png",
        title=f"{title}attention rollout into {tokens[target]!r}",
        max_tokens=max_tokens,
    )
    summary: dict[str, Any] = {
        "description": trace.description,
        "tokens": tokens,
        "layers": n_layers,
        "heads": n_heads,
        "target": target,
        "rollout": [round(float(v), 5) for v in rollout[target]],
        "rollout_seconds": rollout_seconds,
    }
    if flow:
        started = time.perf_counter()
        # One max-flow per input token: seconds at 128 tokens, a minute at 512; show it.
        flow_row = attention_flow(maps, outputs=[target], progress=len(tokens) > 128)[0]
        summary["flow_seconds"] = time.perf_counter() - started
        summary["flow"] = [round(float(v), 5) for v in flow_row]
        files["flow"] = plot_token_attribution(
            flow_row,
            tokens,
            out / "flow.png",
            title=f"{title}attention flow into {tokens[target]!r}",
            max_tokens=max_tokens,
        )
    files["html"] = write_attention_html(
        maps,
        tokens,
        out / "attention.html",
        layers=layers,
        heads=heads,
        max_tokens=max_tokens,
        title=trace.description or None,
        extra_matrices={"rollout": rollout},
    )
    summary["files"] = {k: Path(v).name for k, v in files.items()}
    (out / "explain.json").write_text(json.dumps(summary, indent=1))
    return summary
