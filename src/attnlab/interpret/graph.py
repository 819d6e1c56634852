"""Graph attention drawn over a 2-D embedding of the nodes (e.g. t-SNE), saved as PNG.

Velickovic et al. (2018, "Graph Attention Networks", fig. 2) show a t-SNE of GAT's
hidden features on Cora with nodes coloured by class and edges drawn more strongly
where the attention coefficients (averaged over heads) are larger. This module draws
that picture for any layout: nodes at ``coords`` coloured by ``labels``, every edge a
line segment whose width and opacity grow with its weight, the strongest drawn last
(on top). Self-loops are skipped (they would be points).

Like the rest of :mod:`attnlab.interpret`, figures are built with matplotlib's object
API and saved with the Agg backend: no display, no global pyplot state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from attnlab.interpret._common import as_weights
from attnlab.interpret._layout import save_png

__all__ = ["graph_attention_figure", "plot_graph_attention"]


def _as_int(values: Any, *, ndim: int, name: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check(
    coords: Any, edge_index: Any, weights: Any, labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert the inputs; one-line errors before any drawing."""
    xy = as_weights(coords, ndim=2, name="coords")
    if xy.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {tuple(xy.shape)}")
    n = xy.shape[0]
    edges = _as_int(edge_index, ndim=2, name="edge_index")
    if edges.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edges.shape)}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(
            f"edge_index has node ids in [{edges.min()}, {edges.max()}] but coords has {n} nodes"
        )
    w = as_weights(weights, ndim=1, name="weights", allow_negative=False)
    if w.shape[0] != edges.shape[1]:
        raise ValueError(
            f"weights has {w.shape[0]} values but edge_index has {edges.shape[1]} edges"
        )
    y = _as_int(labels, ndim=1, name="labels")
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} values but coords has {n} nodes")
    return xy, edges, w, y


def graph_attention_figure(
    coords: Any,
    edge_index: Any,
    weights: Any,
    labels: Any,
    *,
    title: str | None = None,
    class_names: list[str] | None = None,
    node_size: float = 6.0,
    max_linewidth: float = 1.6,
    gamma: float = 2.0,
    dpi: int = 150,
) -> Figure:
    """Build the picture without saving it; see :func:`plot_graph_attention`.

    Args:
        coords: Node positions.
        edge_index: Edges ``[source; target]``.
        weights: Non-negative weight per edge (e.g. attention averaged over heads).
        labels: Class index per node (colours).
        title: Figure title.
        class_names: Legend names per class index (default ``"class k"``).
        node_size: Marker area in points squared.
        max_linewidth: Line width of the strongest edge.
        gamma: Width and opacity follow ``(weight / max) ** gamma``; above 1 fades the
            weak edges so the strongest stand out.
        dpi: Figure resolution.

    Returns:
        The figure.

    Shapes:
        coords: (N, 2); edge_index: (2, E); weights: (E,); labels: (N,).
    """
    xy, edges, w, y = _check(coords, edge_index, weights, labels)
    keep = edges[0] != edges[1]
    edges, w = edges[:, keep], w[keep]
    order = np.argsort(w, kind="stable")  # weakest first, so the strongest lie on top
    edges, w = edges[:, order], w[order]
    strength = (w / w.max()) ** gamma if w.size and w.max() > 0 else np.zeros_like(w)
    fig = Figure(figsize=(7.0, 7.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    if edges.size:
        segments = np.stack([xy[edges[0]], xy[edges[1]]], axis=1)  # (E, 2, 2)
        colours = np.zeros((len(w), 4))
        colours[:, 3] = 0.03 + 0.87 * strength
        lines = LineCollection(
            segments, linewidths=0.1 + max_linewidth * strength, colors=colours, zorder=1
        )
        ax.add_collection(lines)
    cmap = _class_colours(int(y.max()) + 1 if y.size else 1)
    for k in np.unique(y):
        name = class_names[k] if class_names is not None and k < len(class_names) else f"class {k}"
        at = y == k
        ax.scatter(xy[at, 0], xy[at, 1], s=node_size, color=cmap[k], label=name, zorder=2, lw=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.autoscale_view()
    if y.size:
        ax.legend(loc="best", fontsize=7, markerscale=2.5, frameon=True)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _class_colours(count: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [tuple(cmap(k % cmap.N)) for k in range(count)]


def plot_graph_attention(
    coords: Any,
    edge_index: Any,
    weights: Any,
    labels: Any,
    path: str | Path,
    *,
    title: str | None = None,
    class_names: list[str] | None = None,
    dpi: int = 150,
) -> Path:
    """Draw nodes coloured by class and edges weighted by attention, as a PNG.

    Velickovic et al. 2018 (GAT), fig. 2: each edge is a segment between its nodes'
    positions; its width and opacity grow with ``(weights / max(weights)) ** 2``,
    and the strongest edges are drawn last, on top. Self-loops are not drawn.

    Args:
        coords: Node positions (e.g. a t-SNE of hidden features); finite numbers.
        edge_index: Edges ``[source; target]``, integer node ids into ``coords``.
        weights: Non-negative, finite weight per edge.
        labels: Integer class per node.
        path: Output PNG file (parent folders are created).
        title: Figure title.
        class_names: Legend names per class index.
        dpi: Resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: A shape, a node id or a weight is wrong (one line, before drawing).
        TypeError: ``edge_index`` or ``labels`` are not integers.

    Shapes:
        coords: (N, 2); edge_index: (2, E); weights: (E,); labels: (N,).

    Example:
        >>> import tempfile
        >>> xy = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> edges = torch.tensor([[0, 1, 0], [1, 0, 2]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = plot_graph_attention(xy, edges, [0.2, 0.9, 0.5], [0, 1, 1], f"{tmp}/g.png")
        ...     out.stat().st_size > 0
        True
    """
    fig = graph_attention_figure(
        coords, edge_index, weights, labels, title=title, class_names=class_names, dpi=dpi
    )
    return save_png(fig, path, dpi)
