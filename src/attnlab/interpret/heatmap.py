"""Attention heatmaps over text, drawn with matplotlib's object API and saved as PNG.

Two pictures:

- :func:`plot_alignment`: a query x key alignment matrix, as in Bahdanau et al.
  (2015, fig. 3), rows = target words, columns = source words.
- :func:`plot_token_weights`: one strip per sentence for a classifier that puts a
  single attention distribution over its input words (e.g. Yang et al., 2016, HAN).

The ``*_figure`` functions return the :class:`matplotlib.figure.Figure` without
saving it, so a caller can inspect or compose it. Figures are built directly (never
through ``pyplot``), so nothing is registered globally, no display is needed and
nothing leaks when many pictures are made in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from attnlab.interpret._common import (
    TokenWeightsRow,
    as_weights,
    check_tokens,
    parse_token_rows,
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

__all__ = ["alignment_figure", "plot_alignment", "plot_token_weights", "token_weights_figure"]


def alignment_figure(
    weights: Any,
    *,
    x_tokens: Sequence[str],
    y_tokens: Sequence[str],
    title: str = "",
    max_tokens: int = 80,
    x_label: str = "keys",
    y_label: str = "queries",
    cmap: str = "viridis",
    dpi: int = 120,
) -> Figure:
    """Build an alignment heatmap (rows = queries, columns = keys) without saving it.

    See :func:`plot_alignment` for the arguments. The truncation note, if any, is
    part of the axes title (``fig.axes[0].get_title()``).

    Returns:
        The figure; its first axes is the heatmap, the second its colorbar.

    Raises:
        ValueError: If the weights are not 2-D, are empty or non-finite, if the token
            counts do not match the weights' shape, or if ``max_tokens < 1``.
    """
    w = as_weights(weights, ndim=2)
    n_q, n_k = w.shape
    if n_q == 0 or n_k == 0:
        raise ValueError(f"weights must be non-empty, got shape {(n_q, n_k)}")
    check_max_tokens(max_tokens)
    xs = check_tokens(x_tokens, n_k, name="x_tokens", axis="key columns")
    ys = check_tokens(y_tokens, n_q, name="y_tokens", axis="query rows")
    show_q, show_k = min(n_q, max_tokens), min(n_k, max_tokens)
    shown = w[:show_q, :show_k]

    cuts = ((x_label, truncation_note(show_k, n_k)), (y_label, truncation_note(show_q, n_q)))
    # One note per line, never wrapped, so "first 80 of 312 tokens shown" stays whole.
    notes = [f"({axis}: {note})" for axis, note in cuts if note]

    cell = cell_inches(max(show_q, show_k))
    font = font_pt(cell)
    x_labels = [tick_label(t) for t in xs[:show_k]]
    y_labels = [tick_label(t) for t in ys[:show_q]]
    label_h = text_inches(max(len(s) for s in x_labels), font)
    label_w = text_inches(max(len(s) for s in y_labels), font)
    width = max(3.5, label_w + show_k * cell + 1.6)
    title_lines = [escape_mathtext(line) for line in notes]
    if title:
        title_lines.insert(0, wrap_text(escape_mathtext(title), width, font + 2))
    full_title = "\n".join(title_lines)
    height = max(2.5, label_h + show_q * cell + 0.8 + 0.25 * full_title.count("\n"))

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    # Attention weights are probabilities: anchor the scale at 0 so "no attention" is
    # always the darkest colour, whatever the smallest shown weight happens to be.
    vmin = min(0.0, float(shown.min()))
    vmax = max(float(shown.max()), vmin + 1e-12)
    image = ax.imshow(
        shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.set_xticks(range(show_k), labels=x_labels, rotation=90, fontsize=font)
    ax.set_yticks(range(show_q), labels=y_labels, fontsize=font)
    ax.set_xlabel(escape_mathtext(x_label), fontsize=font + 1)
    ax.set_ylabel(escape_mathtext(y_label), fontsize=font + 1)
    ax.tick_params(length=2)
    if full_title:
        ax.set_title(full_title, fontsize=font + 2)
    # A colorbar as tall as an 80-row heatmap is hard to read: shorten it on tall figures.
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, shrink=min(1.0, 4.0 / height + 0.3))
    bar.set_label("attention weight", fontsize=font)
    bar.ax.tick_params(labelsize=font)
    return fig


def plot_alignment(
    weights: Any,
    *,
    x_tokens: Sequence[str],
    y_tokens: Sequence[str],
    path: str | Path,
    title: str = "",
    max_tokens: int = 80,
    x_label: str = "keys",
    y_label: str = "queries",
    cmap: str = "viridis",
    dpi: int = 120,
) -> Path:
    """Save an alignment heatmap of attention weights as a PNG.

    Rows are queries (e.g. target words), columns are keys (e.g. source words), as in
    Bahdanau et al., "Neural Machine Translation by Jointly Learning to Align and
    Translate" (ICLR 2015). The picture is sized to the number of tokens; inputs longer
    than ``max_tokens`` along either axis are cut, and the title says so
    (e.g. "keys: first 80 of 312 tokens shown").

    Args:
        weights: Attention weights, a tensor or array of shape (Lq, Lk).
        x_tokens: The Lk key tokens (column labels).
        y_tokens: The Lq query tokens (row labels).
        path: Where to write the PNG; parent folders are created.
        title: Title above the heatmap.
        max_tokens: The most tokens drawn along each axis.
        x_label: Name of the column axis (e.g. "source").
        y_label: Name of the row axis (e.g. "target").
        cmap: A matplotlib colormap name.
        dpi: Resolution of the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: If the weights are not 2-D, are empty or contain NaN/inf, or the
            token counts do not match the weights' shape.

    Shapes:
        weights: (Lq, Lk); len(y_tokens) == Lq; len(x_tokens) == Lk.

    Example:
        >>> import tempfile, pathlib, torch
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "align.png"
        >>> w = torch.softmax(torch.randn(3, 4), dim=-1)
        >>> plot_alignment(w, x_tokens=["le", "chat", "dort", "."],
        ...                y_tokens=["the", "cat", "sleeps"], path=path).name
        'align.png'
    """
    fig = alignment_figure(
        weights,
        x_tokens=x_tokens,
        y_tokens=y_tokens,
        title=title,
        max_tokens=max_tokens,
        x_label=x_label,
        y_label=y_label,
        cmap=cmap,
        dpi=dpi,
    )
    return save_png(fig, path, dpi)


def token_weights_figure(
    rows: Sequence[TokenWeightsRow],
    *,
    title: str = "",
    max_tokens: int = 60,
    normalize: Literal["row", "global"] = "row",
    cmap: str = "Oranges",
    dpi: int = 120,
) -> Figure:
    """Build the stacked per-sentence strips of :func:`plot_token_weights` without saving.

    See :func:`plot_token_weights` for the arguments. Each strip's caption (with the
    truncation note, if any) is its axes' left title: ``ax.get_title(loc="left")``.

    Returns:
        The figure; its first ``len(rows)`` axes are the strips, the last the colorbar.

    Raises:
        ValueError: On an empty ``rows``, a malformed row, a token count that does not
            match its weights, weights that are not 1-D, empty, negative or non-finite.
    """
    if normalize not in ("row", "global"):
        raise ValueError(f"normalize must be 'row' or 'global', got {normalize!r}")
    check_max_tokens(max_tokens)
    parsed = parse_token_rows(rows)
    n_cols = max(min(w.size, max_tokens) for _, w, _ in parsed)
    cell = cell_inches(n_cols)
    font = font_pt(cell)
    width = max(4.5, n_cols * cell + 1.4)
    global_max = max(float(w.max()) for _, w, _ in parsed)

    captions, label_heights = [], []
    for toks, w, caption in parsed:
        note = truncation_note(min(w.size, max_tokens), w.size)
        # The note is appended after wrapping so a line break never splits it.
        text = wrap_text(escape_mathtext(caption), width - 0.6, font + 1) if caption else ""
        captions.append(f"{text} ({note})".lstrip() if note else text)
        label_heights.append(text_inches(max(len(tick_label(t)) for t in toks[:max_tokens]), font))
    heights = [
        cell + lh + 0.3 + 0.22 * (1 + c.count("\n"))
        for c, lh in zip(captions, label_heights, strict=True)
    ]
    height = sum(heights) + (0.5 if title else 0.15)

    fig = Figure(figsize=(width, max(1.6, height)), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(parsed), 1, squeeze=False)[:, 0]
    image = None
    for ax, (toks, w, _), caption in zip(axes, parsed, captions, strict=True):
        n_show = min(w.size, max_tokens)
        values = np.ma.masked_all((1, n_cols))
        if normalize == "row":
            # Divide by the whole sentence's max, not the shown part's: a truncated
            # sentence's colours must mean what they would mean if drawn in full.
            peak = float(w.max())
            values[0, :n_show] = w[:n_show] / peak if peak > 0 else 0.0
            vmax = 1.0
        else:
            values[0, :n_show] = w[:n_show]
            vmax = max(global_max, 1e-12)
        image = ax.imshow(
            values, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest"
        )
        # Padding cells of shorter sentences are masked and left blank; a frame marks
        # the real sentence so every strip keeps the same cell size.
        ax.add_patch(
            Rectangle((-0.5, -0.5), n_show, 1, fill=False, lw=0.6, ec="0.35", clip_on=False)
        )
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks(range(n_show), labels=[tick_label(t) for t in toks[:n_show]], rotation=90)
        ax.tick_params(axis="x", labelsize=font, length=2)
        ax.set_yticks([])
        ax.set_title(caption, loc="left", fontsize=font + 1)
    if title:
        fig.suptitle(wrap_text(escape_mathtext(title), width, font + 3), fontsize=font + 3)
    assert image is not None  # rows is non-empty, checked above
    bar = fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01, aspect=max(8, 6 * len(axes)))
    bar_label = "weight / sentence max" if normalize == "row" else "attention weight"
    bar.set_label(bar_label, fontsize=font)
    bar.ax.tick_params(labelsize=font)
    return fig


def plot_token_weights(
    rows: Sequence[TokenWeightsRow],
    path: str | Path,
    title: str = "",
    *,
    max_tokens: int = 60,
    normalize: Literal["row", "global"] = "row",
    cmap: str = "Oranges",
    dpi: int = 120,
) -> Path:
    """Save one attention strip per sentence, stacked vertically, as a PNG.

    Made for text classifiers with one attention distribution over each sentence's
    words (attention pooling as in Yang et al., "Hierarchical Attention Networks for
    Document Classification", NAACL 2016). Each sentence is a 1 x L heatmap with its
    words as labels and a caption above it, e.g. "true: positive, predicted: positive
    (0.93)". Sentences longer than ``max_tokens`` are cut, with a note in the caption.

    Args:
        rows: One ``(tokens, weights, caption)`` tuple per sentence; weights is a tensor
            or array of shape (L,), non-negative, with ``len(tokens) == L``.
        path: Where to write the PNG; parent folders are created.
        title: Title above all strips.
        max_tokens: The most words drawn per sentence.
        normalize: ``"row"`` scales each sentence by its own max weight (as the HTML
            report does), so short and long sentences are equally readable;
            ``"global"`` uses one scale for all, so colours compare across sentences.
        cmap: A matplotlib colormap name.
        dpi: Resolution of the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: On a token count that does not match its weights, or weights that
            are not 1-D, empty, negative or NaN/inf.

    Example:
        >>> caption = "true: positive, predicted: positive (0.93)"
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "s.png"
        >>> plot_token_weights([(["a", "fine", "film"], [0.1, 0.7, 0.2], caption)], out).name
        's.png'
    """
    fig = token_weights_figure(
        rows, title=title, max_tokens=max_tokens, normalize=normalize, cmap=cmap, dpi=dpi
    )
    return save_png(fig, path, dpi)
