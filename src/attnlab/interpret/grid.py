"""Several alignment heatmaps side by side, e.g. one per attention variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from attnlab.interpret._common import as_weights, check_tokens
from attnlab.interpret._layout import escape_mathtext, save_png, tick_label

__all__ = ["AlignmentPanel", "plot_alignment_grid"]


@dataclass(frozen=True)
class AlignmentPanel:
    """One heatmap of a grid: its title, ``(Lq, Lk)`` weights and the tokens on each axis."""

    title: str
    weights: Any
    x_tokens: Sequence[str]
    y_tokens: Sequence[str]


def plot_alignment_grid(
    panels: Sequence[AlignmentPanel],
    path: str | Path,
    *,
    columns: int = 4,
    suptitle: str = "",
    dpi: int = 110,
) -> Path:
    """Save alignment heatmaps (rows = queries, columns = keys) in a grid, one PNG.

    Every panel has its own colour scale from 0 to its largest weight. A panel whose
    weights are None (a model without attention) is drawn as an empty box saying so.

    Args:
        panels: The heatmaps, in reading order.
        path: Where to write the PNG.
        columns: Panels per row.
        suptitle: Title above the grid.
        dpi: Resolution.

    Returns:
        The path written.

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = AlignmentPanel("dot", np.eye(2), ["a", "b"], ["x", "y"])
        >>> out = plot_alignment_grid([p, p], os.path.join(tempfile.mkdtemp(), "g.png"))
        >>> out.name
        'g.png'
    """
    if not panels:
        raise ValueError("panels is empty; give at least one AlignmentPanel")
    if columns < 1:
        raise ValueError(f"columns must be >= 1; got {columns}")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    size = max(max(len(p.x_tokens), len(p.y_tokens)) for p in panels)
    side = min(6.0, 1.2 + 0.22 * size)
    fig = Figure(figsize=(columns * side, rows * side + 0.4), dpi=dpi, layout="constrained")
    for index, panel in enumerate(panels):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.set_title(escape_mathtext(panel.title), fontsize=9)
        if panel.weights is None:
            ax.text(0.5, 0.5, "no attention", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        w = as_weights(panel.weights, ndim=2)
        xs = check_tokens(panel.x_tokens, w.shape[1], name="x_tokens", axis="key columns")
        ys = check_tokens(panel.y_tokens, w.shape[0], name="y_tokens", axis="query rows")
        ax.imshow(
            w,
            cmap="viridis",
            vmin=0.0,
            vmax=max(float(w.max()), 1e-12),
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_xticks(range(len(xs)), labels=[tick_label(t) for t in xs], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ys)), labels=[tick_label(t) for t in ys], fontsize=7)
        ax.tick_params(length=2)
    if suptitle:
        fig.suptitle(escape_mathtext(suptitle), fontsize=11)
    return save_png(fig, path, dpi)
