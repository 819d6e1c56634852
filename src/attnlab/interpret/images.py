r"""Attention over images: maps blended onto the pixels they weigh, one PNG per view.

- :func:`overlay`: an ``(h, w)`` attention map bilinearly upsampled to its image,
  scaled per map from its minimum to its maximum and blended with a colour map, as in
  the attention figures of CBAM (Woo et al. 2018, fig. 4), attention gates (Oktay et
  al. 2018, fig. 4) and the ViT (Dosovitskiy et al. 2021, fig. 6).
- :func:`plot_image_maps`: one image and several named maps (CBAM per stage, residual
  attention soft masks per stage, attention-gate coefficients per scale, rollout);
  :func:`plot_attention_grid`: many images, one map each, as image | overlay pairs.
- :func:`plot_query_attention`: the non-local attention of chosen query pixels
  (Wang et al. 2018, fig. 3).

Charts that are not overlays (SE excitations, ViT attention distance) are in
:mod:`attnlab.interpret.image_charts`, the HTML page in
:mod:`attnlab.interpret.image_page`, one image through a model in
:mod:`attnlab.interpret.explain_image`. Images are grey ``(H, W)`` / ``(1, H, W)`` or
RGB ``(3, H, W)``, float in [0, 1] or uint8; maps are tensors or arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure

from attnlab._validate import as_positive, probability
from attnlab.interpret._common import as_weights, format_weight
from attnlab.interpret._layout import escape_mathtext, save_png, wrap_text

__all__ = ["as_rgb", "overlay", "plot_attention_grid", "plot_image_maps", "plot_query_attention"]

_CELL_IN = 1.7  # side of one image panel, in inches
_MARKER = "#d62728"  # matplotlib's red, as the pinned token of the hover page


def as_rgb(image: Any, name: str = "image") -> np.ndarray:
    """An image as a float64 ``(H, W, 3)`` RGB array in [0, 1] (grey repeated).

    Raises:
        ValueError: Not (H, W), (1, H, W) or (3, H, W), empty, or float outside [0, 1].
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        is_int = not (image.is_floating_point() or image.is_complex())
    else:
        image = np.asarray(image)
        is_int = image.dtype.kind in "ui"
    arr = as_weights(image, ndim=np.ndim(image), name=name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or 0 in arr.shape:
        raise ValueError(
            f"{name} must have shape (H, W), (1, H, W) or (3, H, W), got {tuple(np.shape(image))}"
        )
    if is_int:
        arr = arr / 255.0
    low, high = float(arr.min()), float(arr.max())
    if low < -1e-3 or high > 1 + 1e-3:  # a little slack for rounding after arithmetic
        raise ValueError(
            f"{name} values must lie in [0, 1] (or be uint8), got [{low:.3g}, {high:.3g}]; "
            "undo the input normalisation first"
        )
    return np.repeat(arr, 3 // arr.shape[0], axis=0).clip(0.0, 1.0).transpose(1, 2, 0)


def _spread(attention: np.ndarray) -> np.ndarray:
    # Per-map min-max: a constant map has nothing to show and is drawn all low, not 0/0.
    low, high = float(attention.min()), float(attention.max())
    return (attention - low) / (high - low) if high > low else np.zeros_like(attention)


def _upsample(attention: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    grid = torch.from_numpy(attention)[None, None]
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(image: Any, attention: Any, *, alpha: float = 0.5, cmap: str = "viridis") -> np.ndarray:
    r"""Blend an attention map, upsampled to the image, over the image.

    .. math::
        \text{out} = (1 - \alpha)\, x + \alpha\, \text{cmap}\!\left(
        \frac{a - \min a}{\max a - \min a}\right)

    where :math:`a` is the map bilinearly upsampled to ``(H, W)``
    (``align_corners=False``). The scaling is per map, so the colours show where a map
    is high relative to itself, not how peaked it is: a constant map draws all low.

    Args:
        image: Grey or RGB image, float in [0, 1] or uint8.
        attention: Finite attention map, any scale.
        alpha: Weight of the colour map, in [0, 1].
        cmap: A matplotlib colour map name.

    Returns:
        The blended picture, uint8.

    Raises:
        ValueError: On a malformed image or map, or ``alpha`` outside [0, 1].

    Shapes:
        image: (H, W), (1, H, W) or (3, H, W); attention: (h, w); output: (H, W, 3).

    Example:
        >>> spot = torch.zeros(2, 2); spot[0, 0] = 1.0
        >>> out = overlay(torch.zeros(4, 4), spot)
        >>> out.shape, bool(out[0, 0].sum() > out[3, 3].sum())
        ((4, 4, 3), True)
    """
    alpha = probability("alpha", alpha, allow_one=True)
    rgb = as_rgb(image)
    a = as_weights(attention, ndim=2, name="attention")
    if 0 in a.shape:
        raise ValueError(f"attention must be non-empty, got shape {a.shape}")
    colours = colormaps[cmap](_spread(_upsample(a, rgb.shape[:2])))[..., :3]
    return np.rint(255.0 * ((1.0 - alpha) * rgb + alpha * colours)).astype(np.uint8)


def _items(values: Any, name: str) -> list[Any]:
    # A batch tensor or array, or a list of items; a bare string is neither.
    if isinstance(values, (str, bytes)) or not isinstance(
        values, (Sequence, torch.Tensor, np.ndarray)
    ):
        raise TypeError(f"{name} must be a sequence or a batch tensor, got {type(values).__name__}")
    items = list(values)
    if not items:
        raise ValueError(f"{name} is empty; give at least one")
    return items


def _range_note(attention: Any) -> str:
    a = as_weights(attention, ndim=2, name="attention")
    low, high = format_weight(float(a.min())), format_weight(float(a.max()))
    if low == high and a.max() > a.min():  # a nearly flat map: show the digits that differ
        low, high = f"{float(a.min()):.4g}", f"{float(a.max()):.4g}"
    return f"{low} to {high}"


@dataclass(frozen=True)
class _Panel:
    rgb: np.ndarray  # (H, W, 3) uint8 or float in [0, 1]
    title: str
    points: tuple[tuple[float, float], ...] = ()  # (row, col) pixels to mark, numbered


def _save_panels(panels: list[_Panel], path: Any, *, ncols: int, title: str, dpi: int) -> Path:
    ncols = min(as_positive("ncols", ncols), len(panels))
    rows = math.ceil(len(panels) / ncols)
    size = (ncols * _CELL_IN, rows * (_CELL_IN + 0.3) + (0.4 if title else 0.0))
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, panel in zip(axes, panels, strict=False):
        ax.imshow(panel.rgb, interpolation="nearest")
        for k, (row, col) in enumerate(panel.points):
            ax.plot(col, row, marker="+", ms=11, mew=2.2, color=_MARKER)
            if len(panel.points) > 1:
                ax.annotate(str(k + 1), (col, row), xytext=(5, 3), textcoords="offset points",
                            color=_MARKER, fontsize=8, fontweight="bold")  # fmt: skip
        ax.set_title(wrap_text(escape_mathtext(panel.title), _CELL_IN, 7.5), fontsize=7.5)
    if title:
        fig.suptitle(escape_mathtext(title), fontsize=10)
    return save_png(fig, _path(path), dpi)


def _path(path: Any) -> Path:
    if path is None:
        raise TypeError("path is required: where to write the picture")
    return Path(path)


def plot_image_maps(
    image: Any,
    maps: Mapping[str, Any],
    path: str | Path,
    *,
    title: str = "",
    ncols: int = 6,
    alpha: float = 0.5,
    cmap: str = "viridis",
    dpi: int = 110,
) -> Path:
    """Save one image and an :func:`overlay` of each named map on it, in a grid (PNG).

    The picture for every "image + maps" view: CBAM's spatial map per stage, the
    residual attention soft masks per stage (average a ``(C, h, w)`` mask over its
    channels first), the attention-gate coefficients per scale, ViT rollout. Maps may
    have different resolutions; each is upsampled to the image and scaled on its own,
    and its raw range is printed under its name.

    Args:
        image: Grey or RGB image, float in [0, 1] or uint8.
        maps: Name -> ``(h, w)`` map, drawn in order after the image.
        path: Where to write the PNG; parent folders are created.
        title: Title above the grid.
        ncols: Panels per row (the image counts as one).
        alpha: Weight of the colour map in each overlay.
        cmap: A matplotlib colour map name.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: No maps, or a malformed image or map.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "m.png"
        >>> plot_image_maps(torch.rand(8, 8), {"stage 1": torch.rand(4, 4)}, out).name
        'm.png'
    """
    if not maps:
        raise ValueError("maps is empty; give at least one name -> (h, w) map")
    panels = [_Panel(as_rgb(image), "image")] + [
        _Panel(overlay(image, m, alpha=alpha, cmap=cmap), f"{name}\n{_range_note(m)}")
        for name, m in maps.items()
    ]
    return _save_panels(panels, path, ncols=ncols, title=title, dpi=dpi)


def plot_attention_grid(
    images: Any,
    maps: Any,
    titles: Sequence[str] | None = None,
    path: str | Path | None = None,
    *,
    ncols: int = 4,
    suptitle: str = "",
    alpha: float = 0.5,
    cmap: str = "viridis",
    dpi: int = 110,
) -> Path:
    """Save image | overlay pairs for many images, one attention map each (PNG).

    Args:
        images: N images (a list, or a batch tensor (N, H, W) / (N, C, H, W)).
        maps: N maps (a list, or a tensor (N, h, w)).
        titles: One caption per image (e.g. "true: Bag, predicted: Bag"), or None.
        path: Where to write the PNG (required; positional or keyword).
        ncols: Image | overlay pairs per row.
        suptitle: Title above the grid.
        alpha: Weight of the colour map in each overlay.
        cmap: A matplotlib colour map name.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: Mismatched counts, or a malformed image or map.
        TypeError: No path.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "g.png"
        >>> plot_attention_grid(torch.rand(3, 8, 8), torch.rand(3, 2, 2), path=out).name
        'g.png'
    """
    images, maps = _items(images, "images"), _items(maps, "maps")
    captions = [f"#{i}" for i in range(len(images))] if titles is None else list(titles)
    if not len(images) == len(maps) == len(captions):
        raise ValueError(
            f"images, maps and titles must have one entry each per image, got "
            f"{len(images)}, {len(maps)} and {len(captions)}"
        )
    panels = []
    for image, m, caption in zip(images, maps, captions, strict=True):
        panels.append(_Panel(as_rgb(image), str(caption)))
        panels.append(
            _Panel(overlay(image, m, alpha=alpha, cmap=cmap), f"attention {_range_note(m)}")
        )
    ncols = 2 * as_positive("ncols", ncols)
    return _save_panels(panels, path, ncols=ncols, title=suptitle, dpi=dpi)


def _grid(hw: Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(hw, (str, bytes)) or len(hw) != 2:
        raise ValueError(f"{name} must be a (height, width) pair, got {hw!r}")
    return as_positive(f"{name}[0]", hw[0]), as_positive(f"{name}[1]", hw[1])


def plot_query_attention(
    image: Any,
    weights: Any,
    grid_hw: Sequence[int],
    query_points: Sequence[tuple[int, int]],
    path: str | Path,
    *,
    key_hw: Sequence[int] | None = None,
    title: str = "",
    alpha: float = 0.5,
    cmap: str = "viridis",
    dpi: int = 110,
) -> Path:
    """Save what chosen query pixels attend to in a non-local block (PNG).

    Wang et al. 2018 ("Non-local Neural Networks", fig. 3) show, for a query position,
    its row of the ``(HW, HW')`` attention over all positions. Here each query pixel
    ``(row, col)`` of the image falls in cell ``(row * h // H, col * w // W)`` of the
    block's ``h x w`` grid; that cell's row of ``weights`` is drawn as an overlay,
    with the query marked by a red cross (numbered when there are several).

    Args:
        image: Grey or RGB image, float in [0, 1] or uint8.
        weights: One image's attention, rows = queries, columns = keys.
        grid_hw: The query grid ``(h, w)``, with ``h * w = HW``.
        query_points: Query pixels ``(row, col)`` of the image.
        path: Where to write the PNG; parent folders are created.
        key_hw: The key grid; by default ``grid_hw``, or the half grid when
            ``HW' = (h // 2) * (w // 2)`` (phi and g max-pooled).
        title: Title above the grid.
        alpha: Weight of the colour map in each overlay.
        cmap: A matplotlib colour map name.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: Weights that do not fit the grids, no query points, or a point
            outside the image.

    Shapes:
        weights: (h * w, h' * w').

    Example:
        >>> import tempfile, pathlib
        >>> w = torch.softmax(torch.randn(16, 16), -1)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "q.png"
        >>> plot_query_attention(torch.rand(8, 8), w, (4, 4), [(1, 6)], out).name
        'q.png'
    """
    rgb = as_rgb(image)
    size = rgb.shape[:2]
    w = as_weights(weights, ndim=2, name="weights")
    h_q, w_q = _grid(grid_hw, "grid_hw")
    if w.shape[0] != h_q * w_q:
        raise ValueError(
            f"weights have {w.shape[0]} query rows but grid_hw {grid_hw} has {h_q * w_q}"
        )
    if key_hw is None:
        half = (h_q // 2, w_q // 2)
        if w.shape[1] not in (h_q * w_q, half[0] * half[1]):
            raise ValueError(
                f"weights have {w.shape[1]} key columns, neither h * w = {h_q * w_q} nor "
                f"(h // 2) * (w // 2) = {half[0] * half[1]}: pass key_hw"
            )
        key_hw = (h_q, w_q) if w.shape[1] == h_q * w_q else half
    h_k, w_k = _grid(key_hw, "key_hw")
    if w.shape[1] != h_k * w_k:
        raise ValueError(
            f"weights have {w.shape[1]} key columns but key_hw {key_hw} has {h_k * w_k}"
        )
    points = list(query_points)
    if not points:
        raise ValueError("query_points is empty; give at least one (row, col) pixel")
    panels = [_Panel(rgb, "queries", tuple((float(r), float(c)) for r, c in points))]
    for k, (row, col) in enumerate(points):
        if not (0 <= row < size[0] and 0 <= col < size[1]):
            raise ValueError(f"query point {(row, col)} is outside the {size[0]}x{size[1]} image")
        cell = (int(row) * h_q // size[0]) * w_q + int(col) * w_q // size[1]
        m = w[cell].reshape(h_k, w_k)
        label = f"query {k + 1} ({row}, {col})" if len(points) > 1 else f"query ({row}, {col})"
        picture = overlay(rgb.transpose(2, 0, 1), m, alpha=alpha, cmap=cmap)
        panels.append(_Panel(picture, f"{label}\n{_range_note(m)}", ((row, col),)))
    return _save_panels(panels, path, ncols=len(panels), title=title, dpi=dpi)
