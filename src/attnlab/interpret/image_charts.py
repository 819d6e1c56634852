r"""Attention charts for image models that are not overlays: SE excitations, ViT distances.

- :func:`mean_excitation_by_class` and :func:`plot_channel_excitations`: the mean
  excitation of each channel per class and stage of Squeeze-and-Excitation blocks
  (Hu et al. 2018, fig. 6), as heatmaps.
- :func:`plot_attention_distance`: how far each ViT head looks, per layer
  (Dosovitskiy et al. 2021, fig. 7), from
  :func:`attnlab.interpret.vit.mean_attention_distance`.

Drawn with matplotlib's object API and saved with Agg, as every picture of
:mod:`attnlab.interpret`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from attnlab._validate import as_positive
from attnlab.interpret._common import as_weights
from attnlab.interpret._layout import escape_mathtext, save_png, tick_label

__all__ = [
    "mean_excitation_by_class",
    "plot_attention_distance",
    "plot_channel_excitations",
]


def mean_excitation_by_class(excitations: Any, labels: Any, num_classes: int) -> torch.Tensor:
    """Average SE excitations over the images of each class (Hu et al. 2018, fig. 6).

    Args:
        excitations: One stage's excitations over N images.
        labels: Class of each image, integers in ``[0, num_classes)``.
        num_classes: How many classes.

    Returns:
        Mean excitation per class and channel, float64; a class with no image is NaN.

    Shapes:
        excitations: (N, C) or (N, C, 1, 1); labels: (N,); output: (num_classes, C).

    Example:
        >>> mean_excitation_by_class(torch.tensor([[1.0], [0.0], [0.5]]), [0, 1, 0], 2)
        tensor([[0.7500],
                [0.0000]], dtype=torch.float64)
    """
    num_classes = as_positive("num_classes", num_classes)
    e = torch.as_tensor(excitations).detach().cpu().double()
    e = e.reshape(e.shape[0], -1) if e.ndim == 4 and e.shape[2:] == (1, 1) else e
    y = torch.as_tensor(labels).cpu()
    if e.ndim != 2 or y.shape != (e.shape[0],):
        raise ValueError(
            f"excitations must be (N, C) or (N, C, 1, 1) with labels (N,), got "
            f"{tuple(torch.as_tensor(excitations).shape)} and {tuple(y.shape)}"
        )
    if y.numel() and not (0 <= int(y.min()) and int(y.max()) < num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {int(y.min())}..{int(y.max())}"
        )
    sums = torch.zeros(num_classes, e.shape[1], dtype=e.dtype).index_add_(0, y.long(), e)
    counts = torch.bincount(y.long(), minlength=num_classes).to(e.dtype)
    return sums / counts[:, None]


def plot_channel_excitations(
    excitations: Mapping[str, Any],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    cmap: str = "viridis",
    dpi: int = 110,
) -> Path:
    """Save SE's mean excitation per class and channel, one heatmap per stage (PNG).

    Hu et al. 2018 ("Squeeze-and-Excitation Networks", fig. 6) plot the mean
    excitation of each channel for several classes: similar across classes in early
    stages, class-specific in late ones. Here rows are classes and columns channels;
    sigmoid excitations share one 0-to-1 colour scale.

    Args:
        excitations: Stage name -> ``(classes, C)`` means (:func:`mean_excitation_by_class`).
        class_names: One name per row.
        path: Where to write the PNG; parent folders are created.
        title: Title above the heatmaps.
        cmap: A matplotlib colour map name.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: No stage, or a stage whose rows do not match ``class_names``.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "se.png"
        >>> plot_channel_excitations({"stage 1": torch.rand(2, 8)}, ["a", "b"], out).name
        'se.png'
    """
    if not excitations:
        raise ValueError("excitations is empty; give at least one stage -> (classes, C) map")
    names = [tick_label(str(n)) for n in class_names]
    stages = {}
    for stage, e in excitations.items():
        stages[stage] = as_weights(e, ndim=2, name=f"excitations[{stage!r}]")
        if stages[stage].shape[0] != len(names):
            raise ValueError(
                f"excitations[{stage!r}] has {stages[stage].shape[0]} rows but class_names has "
                f"{len(names)} names"
            )
    low = min(0.0, *(float(e.min()) for e in stages.values()))
    high = max(1.0, *(float(e.max()) for e in stages.values()))
    heights = [0.5 + 0.2 * len(names) for _ in stages]
    fig = Figure(figsize=(7.5, sum(heights) + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(stages), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (stage, e) in zip(axes, stages.items(), strict=True):
        image = ax.imshow(e, cmap=cmap, vmin=low, vmax=high, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(names)), labels=names, fontsize=7)
        ax.set_title(escape_mathtext(f"{stage} ({e.shape[1]} channels)"), fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("channel index", fontsize=8)
    bar = fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.01)
    bar.set_label("mean excitation", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(escape_mathtext(title), fontsize=10)
    return save_png(fig, path, dpi)


def plot_attention_distance(
    distances: Any, path: str | Path, *, title: str = "", unit: str = "pixels", dpi: int = 110
) -> Path:
    """Save the mean attention distance of every head against depth (ViT fig. 7, PNG).

    Args:
        distances: :func:`attnlab.interpret.vit.mean_attention_distance`'s output, one
            dot per head and layer.
        path: Where to write the PNG; parent folders are created.
        title: Title above the chart.
        unit: The distance unit for the axis label.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: Distances not 2-D, empty, negative or non-finite.

    Shapes:
        distances: (layers, heads).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.png"
        >>> plot_attention_distance(torch.rand(4, 3) * 20, out).name
        'd.png'
    """
    d = as_weights(distances, ndim=2, name="distances", allow_negative=False)
    if d.size == 0:
        raise ValueError(f"distances must be non-empty, got shape {d.shape}")
    layers, heads = d.shape
    fig = Figure(figsize=(max(3.6, 0.45 * layers + 1.8), 3.2), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10" if heads <= 10 else "tab20"]
    # Heads are dodged sideways a little, so equal distances do not hide each other.
    dodge = np.linspace(-0.15, 0.15, heads) if heads > 1 else np.zeros(1)
    for head in range(heads):
        ax.scatter(np.arange(1, layers + 1) + dodge[head], d[:, head], s=18,
                   color=colours(head % colours.N), label=f"head {head + 1}", zorder=2)  # fmt: skip
    ax.set_xticks(range(1, layers + 1))
    ax.set_xlabel("network depth (layer)", fontsize=9)
    ax.set_ylabel(f"mean attention distance ({escape_mathtext(unit)})", fontsize=9)
    ax.set_ylim(0, max(1e-9, float(d.max())) * 1.08)
    ax.grid(alpha=0.3, zorder=0)
    if heads <= 16:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        ax.set_title(escape_mathtext(title), fontsize=10)
    return save_png(fig, path, dpi)
