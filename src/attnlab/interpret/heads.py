"""Pictures of a whole model's attention: a layer x head grid and per-token attributions.

- :func:`plot_head_grid`: one small query x key heatmap per (layer, head), one row per
  layer and one column per head, as in the head-by-head views of Clark et al., "What
  Does BERT Look At? An Analysis of BERT's Attention" (BlackboxNLP 2019).
- :func:`plot_token_attribution`: a bar per token for one score vector, e.g. a row of
  :func:`~attnlab.interpret.rollout.attention_rollout` (Abnar & Zuidema, ACL 2020).

Long inputs are cut to their first ``max_tokens`` tokens and the figure says so. The
``*_figure`` functions return the figure unsaved and :func:`select_heads` computes the
selection alone, so both can be checked without reading pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attnlab.interpret._common import (
    as_weights,
    check_indices,
    check_tokens,
    single_item_layers,
    truncation_note,
)
from attnlab.interpret._layout import (
    cell_inches,
    check_max_tokens,
    escape_mathtext,
    font_pt,
    save_png,
    text_inches,
    tick_label,
    wrap_text,
)

__all__ = [
    "MAX_PANELS",
    "HeadGridSelection",
    "head_grid_figure",
    "plot_head_grid",
    "plot_token_attribution",
    "select_heads",
    "token_attribution_figure",
]

MAX_PANELS = 144
"""The most heatmaps in one grid (12 layers x 12 heads)."""

_LABELLED_TOKENS = 24  # panels get token tick labels up to this many tokens
_GRID_MAX_IN = 40.0  # the grid's longer side, in inches, before panels shrink
_POSITIVE, _NEGATIVE = "#ff7f0e", "#1f77b4"  # matplotlib's orange and blue


@dataclass(frozen=True)
class HeadGridSelection:
    """What :func:`plot_head_grid` draws: which layers and heads, and how many tokens.

    Attributes:
        layers: Layer indices, one grid row each (non-negative, in the order given).
        heads: Head indices, one grid column each.
        shown: Tokens drawn along each axis of a panel.
        total: Tokens in the input.
        note: E.g. ``"first 64 of 300 tokens shown"``, or ``""`` when nothing is cut.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    shown: int
    total: int
    note: str


def select_heads(
    n_layers: int,
    n_heads: int,
    n_tokens: int,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 64,
) -> HeadGridSelection:
    """Check a layer/head selection and decide how many tokens a head grid shows.

    Indices may be negative (``-1`` is the last layer). At most :data:`MAX_PANELS`
    panels are allowed; a larger grid is unreadable and slow, so it is an error.

    Args:
        n_layers: Layers in the model.
        n_heads: Heads per layer.
        n_tokens: Tokens in the input (L).
        layers: Layer indices to draw (rows); None for all.
        heads: Head indices to draw (columns); None for all.
        max_tokens: The most tokens drawn along each axis.

    Returns:
        The selection, with the truncation note.

    Raises:
        ValueError: On an index out of range, an empty selection, too many panels or
            ``max_tokens < 1``.
        TypeError: If ``layers`` or ``heads`` is not a sequence of integers.

    Example:
        >>> select_heads(12, 12, 300, layers=[0, -1], heads=[3])
        HeadGridSelection(layers=(0, 11), heads=(3,), shown=64, total=300, note='first 64 of 300 tokens shown')
    """  # noqa: E501
    check_max_tokens(max_tokens)
    rows = check_indices(layers, n_layers, "layers")
    cols = check_indices(heads, n_heads, "heads")
    if len(rows) * len(cols) > MAX_PANELS:
        raise ValueError(
            f"{len(rows)} layers x {len(cols)} heads = {len(rows) * len(cols)} panels exceed "
            f"the limit of {MAX_PANELS}; choose fewer with layers=/heads= (--layers/--heads)"
        )
    shown = min(n_tokens, max_tokens)
    return HeadGridSelection(rows, cols, shown, n_tokens, truncation_note(shown, n_tokens))


def head_grid_figure(
    attentions: Sequence[Any],
    tokens: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 64,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Build the grid of :func:`plot_head_grid` without saving it.

    See :func:`plot_head_grid` for the arguments. The truncation note, if any, is the
    last line of the figure's suptitle (``fig.get_suptitle()``).

    Returns:
        The figure; ``fig.axes`` are the panels in reading order (row = layer).

    Raises:
        ValueError: See :func:`plot_head_grid`.
    """
    arr = single_item_layers(attentions)
    n_layers, n_heads, length = arr.shape[0], arr.shape[1], arr.shape[-1]
    toks = check_tokens(tokens, length, name="tokens", axis="positions")
    sel = select_heads(n_layers, n_heads, length, layers=layers, heads=heads, max_tokens=max_tokens)
    n = sel.shown
    labelled = n <= _LABELLED_TOKENS
    side = 0.9 + 0.14 * n if labelled else min(2.4, 1.0 + 0.025 * n)
    side = min(side, _GRID_MAX_IN / max(len(sel.layers), len(sel.heads)))
    font = 6.0 if labelled else 8.0
    labels = [tick_label(t) for t in toks[:n]]
    margin = text_inches(max(len(s) for s in labels), font) + 0.4 if labelled else 0.5
    lines = [wrap_text(escape_mathtext(title), 8.0, 12)] if title else []
    lines.append("each panel scaled to its own largest weight; rows = queries, columns = keys")
    if sel.note:
        lines.append(f"({sel.note})")
    width = len(sel.heads) * side + margin + 0.3
    top = 0.45 + 0.2 * len(lines)  # suptitle lines, then the head titles
    height = len(sel.layers) * side + margin + top
    # No layout engine and no shared axes: both cost time quadratic in the number of
    # panels (a minute for 144); fixed margins in inches are enough for a regular grid.
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(
        left=margin / width,
        right=1 - 0.1 / width,
        bottom=margin / height,
        top=1 - top / height,
        wspace=0.08,
        hspace=0.08,
    )
    axes = fig.subplots(len(sel.layers), len(sel.heads), squeeze=False)
    for r, layer in enumerate(sel.layers):
        for c, head in enumerate(sel.heads):
            ax = axes[r, c]
            panel = arr[layer, head, :n, :n]
            vmax = max(float(panel.max()), 1e-12)
            ax.imshow(panel, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.tick_params(length=1.5, labelsize=font)
            show_x, show_y = labelled and r == len(sel.layers) - 1, labelled and c == 0
            ax.set_xticks(range(n) if show_x else [], labels=labels if show_x else [], rotation=90)
            ax.set_yticks(range(n) if show_y else [], labels=labels if show_y else [])
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
    fig.suptitle("\n".join(lines), fontsize=10, y=1 - 0.08 / height, va="top")
    return fig


def plot_head_grid(
    attentions: Sequence[Any],
    tokens: Sequence[str],
    path: str | Path,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 64,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save a layer x head grid of attention heatmaps (rows = queries) as a PNG.

    Panel (r, c) shows :math:`A_{l_r}^{(h_c)}[i, j]`, the weight query token ``i`` puts
    on key token ``j`` in head ``h_c`` of layer ``l_r``, coloured from 0 to the panel's
    largest weight. Tokens label the axes when at most 24 are shown. Inputs longer
    than ``max_tokens`` are cut to their first ``max_tokens`` tokens, and the title says
    so (e.g. "first 64 of 300 tokens shown"). At most :data:`MAX_PANELS` panels.

    Args:
        attentions: One (H, L, L) or (1, H, L, L) tensor or array per layer, bottom first.
        tokens: The L tokens.
        path: Where to write the PNG; parent folders are created.
        layers: Layer indices to draw, one row each (negative allowed); None for all.
        heads: Head indices to draw, one column each; None for all.
        max_tokens: The most tokens drawn along each axis.
        title: Title above the grid.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: On a token count mismatch, a layer or head index out of range, more
            than :data:`MAX_PANELS` panels, a batch of several inputs, or bad weights.
        TypeError: If ``tokens`` is one string or ``attentions`` not a sequence.

    Shapes:
        attentions[l]: (H, L, L) or (1, H, L, L); len(tokens) == L.

    Example:
        >>> import tempfile, pathlib, torch
        >>> att = [torch.softmax(torch.randn(2, 3, 3), -1) for _ in range(2)]
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "heads.png"
        >>> plot_head_grid(att, ["a", "cat", "sat"], out, dpi=30).name
        'heads.png'
    """
    fig = head_grid_figure(
        attentions, tokens, layers=layers, heads=heads, max_tokens=max_tokens, title=title, dpi=dpi
    )
    return save_png(fig, path, dpi)


def token_attribution_figure(
    scores: Any,
    tokens: Sequence[str],
    *,
    title: str | None = None,
    max_tokens: int = 128,
    dpi: int = 100,
) -> Figure:
    """Build the bar chart of :func:`plot_token_attribution` without saving it.

    See :func:`plot_token_attribution` for the arguments. The truncation note, if any,
    is the last line of the axes title (``fig.axes[0].get_title()``).

    Returns:
        The figure; its only axes holds one horizontal bar per shown token.

    Raises:
        ValueError: See :func:`plot_token_attribution`.
    """
    w = as_weights(scores, ndim=1, name="scores")
    if w.size == 0:
        raise ValueError("scores are empty; give one score per token")
    check_max_tokens(max_tokens)
    toks = check_tokens(tokens, w.size, name="tokens", axis="scores")
    n = min(w.size, max_tokens)
    shown = w[:n]
    labels = [tick_label(t) for t in toks[:n]]
    cell = cell_inches(n)
    font = font_pt(cell)
    lines = [wrap_text(escape_mathtext(title), 6.0, font + 2)] if title else []
    note = truncation_note(n, w.size)
    if note:
        lines.append(f"({note})")
    label_w = text_inches(max(len(s) for s in labels), font)
    height = max(2.0, n * cell * 0.8 + 0.9 + 0.25 * len(lines))
    fig = Figure(figsize=(label_w + 5.5, height), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    colours = [_POSITIVE if v >= 0 else _NEGATIVE for v in shown]
    ax.barh(np.arange(n), shown, height=0.8, color=colours)
    ax.set_yticks(range(n), labels=labels, fontsize=font)
    ax.set_ylim(n - 0.5, -0.5)  # first token at the top, reading order
    ax.axvline(0.0, color="0.3", lw=0.6)
    ax.set_xlabel("score", fontsize=font + 1)
    ax.tick_params(axis="y", length=1.5)
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    if lines:
        ax.set_title("\n".join(lines), fontsize=font + 2)
    return fig


def plot_token_attribution(
    scores: Any,
    tokens: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
    max_tokens: int = 128,
    dpi: int = 100,
) -> Path:
    r"""Save a horizontal bar chart of one score per token as a PNG.

    Made for attributions such as a rollout row :math:`\tilde A[i, :]` (how much
    output token ``i`` draws from each input token; Abnar & Zuidema, ACL 2020), but
    any scores work: positive bars are orange, negative ones blue. Tokens read from top
    to bottom; 128 tokens stay legible. Longer inputs are cut to their first
    ``max_tokens`` tokens and the title says so.

    Args:
        scores: One finite score per token: a tensor, array or list of shape (L,).
        tokens: The L tokens.
        path: Where to write the PNG; parent folders are created.
        title: Title above the chart.
        max_tokens: The most tokens drawn.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: On a token count mismatch, empty, non-1-D or non-finite scores, or
            ``max_tokens < 1``.
        TypeError: If ``tokens`` is a single string.

    Shapes:
        scores: (L,); len(tokens) == L.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "bars.png"
        >>> plot_token_attribution([0.6, 0.1, 0.3], ["[CLS]", "hi", "!"], out, dpi=30).name
        'bars.png'
    """
    fig = token_attribution_figure(scores, tokens, title=title, max_tokens=max_tokens, dpi=dpi)
    return save_png(fig, path, dpi)
