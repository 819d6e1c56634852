"""Pictures of DRAW (Gregor et al. 2015): the canvas step by step with its glimpses, samples.

The DRAW experiment (:mod:`attnlab.experiments.draw`) draws, for its seed-0 models:

- :func:`plot_draw_steps`: a PNG strip, one row per image: the image, then the canvas
  ``sigmoid(c_t)`` after each step ``t = 1..T`` with the read window (green, where the
  encoder looked during step ``t``) and the write window (red, where step ``t`` drew)
  as boxes (:func:`~attnlab.vision.draw_attention.glimpse_boxes`), as in the paper's
  figures 4 and 7;
- :func:`animate_draw_steps`: the same as an animated GIF, one frame per step
  (matplotlib's animation with the Pillow writer);
- :func:`plot_samples`: a grid of images drawn from the prior.

A model without attention has no windows (``None``): its canvases are drawn bare.
Figures are built with matplotlib's object API on an Agg canvas, never through ``pyplot``.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from attnlab.interpret._layout import save_png
from attnlab.models.draw import DrawSteps
from attnlab.vision.draw_attention import glimpse_boxes

__all__ = ["READ_COLOUR", "WRITE_COLOUR", "animate_draw_steps", "plot_draw_steps", "plot_samples"]

READ_COLOUR = "#2ca02c"  # matplotlib's green
WRITE_COLOUR = "#d62728"  # matplotlib's red
_CELL_IN = 0.9  # side of one image panel, in inches
_DPI = 100


def _boxes(window: Tensor | None, size: int) -> Tensor | None:
    return None if window is None else glimpse_boxes(window.detach().float().cpu(), size)


def _show(ax: Axes, image: Tensor) -> None:
    ax.imshow(image.detach().float().cpu()[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0,
              interpolation="nearest")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax: Axes, box: Tensor, colour: str) -> None:
    x0, y0, x1, y1 = box.tolist()
    # Patches are clipped to the axes, so a window reaching past the border stays inside.
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.2))


def _check(images: Tensor, steps: DrawSteps) -> tuple[int, int]:
    """(rows, T), after checking that images and step records belong together."""
    if images.dim() != 4 or steps.canvases.dim() != 5:
        raise ValueError(
            f"images must be (B, C, H, W) and canvases (B, T, C, H, W); got "
            f"{tuple(images.shape)} and {tuple(steps.canvases.shape)}"
        )
    if steps.canvases.shape[:1] + steps.canvases.shape[2:] != images.shape:
        raise ValueError(
            f"canvases {tuple(steps.canvases.shape)} do not match images {tuple(images.shape)}; "
            "pass the step records of these images"
        )
    return images.shape[0], steps.canvases.shape[1]


def plot_draw_steps(
    images: Tensor,
    steps: DrawSteps,
    path: str | Path,
    *,
    read_size: int,
    write_size: int,
    title: str = "",
) -> Path:
    """The canvas after every step, with the read (green) and write (red) windows.

    Args:
        images: The images drawn (first column).
        steps: Their records (``DRAW(images, return_steps=True).steps``).
        path: The PNG to write.
        read_size: ``N`` of the read grid (sizes the boxes).
        write_size: ``N`` of the write grid.
        title: Above the strip.

    Returns:
        ``path``.

    Shapes:
        images ``(B, C, H, W)``; ``steps.canvases`` ``(B, T, C, H, W)``.

    Example:
        >>> import tempfile, torch
        >>> window = torch.tensor([4.5, 4.5, 1.0, 2.0, 1.0]).expand(2, 3, 5)
        >>> steps = DrawSteps(torch.rand(2, 3, 1, 8, 8), window, None)
        >>> plot_draw_steps(torch.rand(2, 1, 8, 8), steps, Path(tempfile.mkdtemp()) / "s.png",
        ...                 read_size=2, write_size=5).stat().st_size > 0
        True
    """
    rows, T = _check(images, steps)
    reads, writes = _boxes(steps.read, read_size), _boxes(steps.write, write_size)
    fig = Figure(figsize=((T + 1) * _CELL_IN, rows * _CELL_IN + 0.5), layout="constrained")
    axes = fig.subplots(rows, T + 1, squeeze=False)
    for i in range(rows):
        _show(axes[i, 0], images[i])
        for t in range(T):
            ax = axes[i, t + 1]
            _show(ax, steps.canvases[i, t])
            if reads is not None:
                _box(ax, reads[i, t], READ_COLOUR)
            if writes is not None:
                _box(ax, writes[i, t], WRITE_COLOUR)
            if i == 0:
                ax.set_title(f"t={t + 1}", fontsize=7)
    axes[0, 0].set_title("image", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path, _DPI)


def animate_draw_steps(
    images: Tensor,
    steps: DrawSteps,
    path: str | Path,
    *,
    read_size: int,
    write_size: int,
    title: str = "",
    fps: float = 4.0,
) -> Path:
    """An animated GIF of the drawing: frame ``t`` shows every canvas after step ``t``.

    Args, shapes: as :func:`plot_draw_steps`; ``fps`` frames per second.

    Returns:
        ``path``.

    Example:
        >>> import tempfile, torch
        >>> steps = DrawSteps(torch.rand(2, 3, 1, 8, 8), None, None)
        >>> out = animate_draw_steps(torch.rand(2, 1, 8, 8), steps,
        ...                          Path(tempfile.mkdtemp()) / "s.gif", read_size=2, write_size=5)
        >>> out.read_bytes()[:3]
        b'GIF'
    """
    rows, T = _check(images, steps)
    reads, writes = _boxes(steps.read, read_size), _boxes(steps.write, write_size)
    fig = Figure(figsize=(2 * _CELL_IN * 1.2, rows * _CELL_IN * 1.2 + 0.4), layout="constrained")
    FigureCanvasAgg(fig)  # an Agg canvas: no display, no pyplot state
    axes = fig.subplots(rows, 2, squeeze=False)
    for i in range(rows):
        _show(axes[i, 0], images[i])
    axes[0, 0].set_title("image", fontsize=7)

    def frame(t: int) -> None:
        for i in range(rows):
            ax = axes[i, 1]
            ax.clear()
            _show(ax, steps.canvases[i, t])
            if reads is not None:
                _box(ax, reads[i, t], READ_COLOUR)
            if writes is not None:
                _box(ax, writes[i, t], WRITE_COLOUR)
        axes[0, 1].set_title(f"step {t + 1}/{T}", fontsize=7)
        if title:
            fig.suptitle(title, fontsize=8)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    animation = FuncAnimation(fig, frame, frames=T, repeat=False)
    animation.save(out, writer=PillowWriter(fps=fps), dpi=_DPI)
    return out


def plot_samples(images: Tensor, path: str | Path, *, title: str = "") -> Path:
    """A square-ish grid of generated images (Bernoulli means, shown as they are).

    Shapes:
        images ``(n, C, H, W)`` in ``[0, 1]``.

    Example:
        >>> import tempfile, torch
        >>> plot_samples(torch.rand(5, 1, 8, 8), Path(tempfile.mkdtemp()) / "g.png").suffix
        '.png'
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty (n, C, H, W) batch, got {tuple(images.shape)}"
        )
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(cols * _CELL_IN * 0.8, rows * _CELL_IN * 0.8 + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image in zip(axes, images, strict=False):
        _show(ax, image)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path, _DPI)
