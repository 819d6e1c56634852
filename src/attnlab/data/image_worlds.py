"""Worlds built from real Fashion-MNIST items, with the ground truth to check attention against.

Each world is a set of 64x64 grey canvases made from the items of a
:class:`~attnlab.data.fashion_mnist.FashionMNIST` split, seeded and vectorised
(10,000 images in about a second):

- :func:`make_clutter`: one item at a random place among random crops of *other* items,
  in the spirit of cluttered MNIST (Mnih et al., "Recurrent Models of Visual
  Attention", NeurIPS 2014); label = the item's class, box = its tight box.
- :func:`make_same_different`: two items far apart; label = same class or not. A
  shallow CNN's receptive field cannot see both; a non-local block can (Wang et al.,
  "Non-local Neural Networks", CVPR 2018).
- :func:`make_segment`: one item scaled to one of a few sizes among clutter; target =
  its mask, for U-Net vs Attention U-Net (Oktay et al., "Attention U-Net", MIDL 2018).

Boxes are ``(x0, y0, x1, y1)`` with exclusive ends: the item is inside
``image[..., y0:y1, x0:x1]``. They are *tight*: the smallest box holding every nonzero
pixel of the item as drawn (not its 28x28 frame, whose corners are mostly background).
The item is drawn over the clutter wherever its own pixels are nonzero, so every
pixel inside the item's outline is the item's. Clutter crops come from other images
than the world's item(s), so they carry no label.

Randomness comes from ``numpy.random.default_rng(seed)`` only, so the same seed gives
the same world on any machine. Make the train, validation and test worlds from
disjoint items with different seeds: the test world from ``load_fashion_mnist("test")``
only, the validation world from a held-out part of the training split
(``train.subset(...)``), so no item of a test image (nor of its clutter) was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import as_positive, describe, probability, real
from attnlab.data._canvas import (
    as_images,
    check_world,
    far_apart,
    partners,
    paste,
    permuted,
    rescale,
    scatter_clutter,
    tight_boxes,
)
from attnlab.data.fashion_mnist import FashionMNIST

__all__ = [
    "ClutterWorld",
    "SameDifferentWorld",
    "SegmentWorld",
    "attention_in_box",
    "make_clutter",
    "make_same_different",
    "make_segment",
    "uniform_box_share",
]


@dataclass(frozen=True, eq=False)
class ClutterWorld:
    """One item per canvas among crops of other items.

    Attributes:
        images: Grey values in [0, 1].
        labels: The item's class.
        boxes: The item's tight box ``(x0, y0, x1, y1)``, ends exclusive.
        origins: ``(x, y)`` of the top-left corner of the item's frame on the canvas.
        items: Index of the item in the source :class:`FashionMNIST`.
        classes: Class names, indexed by ``labels``.

    Shapes:
        images: (n, 1, S, S) float32; labels, items: (n,) int64; boxes: (n, 4) int64;
        origins: (n, 2) int64.
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor
    origins: Tensor
    items: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class SameDifferentWorld:
    """Two items per canvas, far apart; label 1 when they share a class.

    Attributes:
        images: Grey values in [0, 1].
        labels: 1 = same class (two different images), 0 = different classes; exactly
            ``n // 2`` pairs are "same".
        boxes: Each item's tight box ``(x0, y0, x1, y1)``.
        origins: ``(x, y)`` of each item's frame.
        items: Index of each item in the source :class:`FashionMNIST`.
        item_labels: Each item's class.
        classes: ``("different", "same")``.

    Shapes:
        images: (n, 1, S, S) float32; labels: (n,) int64; boxes: (n, 2, 4) int64;
        origins: (n, 2, 2); items, item_labels: (n, 2) int64.
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor
    origins: Tensor
    items: Tensor
    item_labels: Tensor
    classes: tuple[str, ...] = ("different", "same")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class SegmentWorld:
    """One item scaled to one of a few sizes, among clutter; the target is its mask.

    Attributes:
        images: Grey values in [0, 1].
        masks: The item's pixels brighter than the threshold (exactly where the image
            shows the item at that brightness).
        sizes: The side in pixels the item's 28x28 frame was scaled to; the sizes
            occur equally often (up to one).
        labels: The item's class.
        boxes: Tight box of the mask ``(x0, y0, x1, y1)``.
        origins: ``(x, y)`` of the scaled frame's top-left corner.
        items: Index of the item in the source :class:`FashionMNIST`.
        classes: Class names, indexed by ``labels``.

    Shapes:
        images: (n, 1, S, S) float32; masks: (n, 1, S, S) bool; sizes, labels, items:
        (n,) int64; boxes: (n, 4) int64; origins: (n, 2) int64.
    """

    images: Tensor
    masks: Tensor
    sizes: Tensor
    labels: Tensor
    boxes: Tensor
    origins: Tensor
    items: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def make_clutter(
    items: FashionMNIST,
    n: int,
    *,
    seed: int,
    canvas: int = 64,
    clutter: int = 6,
    clutter_size: tuple[int, int] = (8, 14),
) -> ClutterWorld:
    """Cluttered Fashion-MNIST: one whole item among square crops of other items.

    Each canvas holds one item at a uniformly random place (its frame inside the
    canvas) and ``clutter`` crops of side ``s ~ U{lo..hi}`` cut at random from other
    images and placed anywhere; crops overlap by maximum and the item is drawn over them.
    Items are taken in a random order without repetition while ``n <= len(items)``.

    Args:
        items: The source items (a Fashion-MNIST split).
        n: Number of canvases.
        seed: Seed of the world; the same seed gives the same world.
        canvas: Side S of the square canvas.
        clutter: Number of crops per canvas.
        clutter_size: Smallest and largest crop side ``(lo, hi)``.

    Returns:
        The world.

    Shapes:
        images: (n, 1, S, S); labels: (n,); boxes: (n, 4).

    Example:
        >>> toy = FashionMNIST(torch.full((4, 8, 8), 200, dtype=torch.uint8),
        ...                    torch.tensor([0, 1, 2, 3]))
        >>> world = make_clutter(toy, 3, seed=0, canvas=16, clutter_size=(2, 4))
        >>> world.images.shape, world.boxes.shape
        (torch.Size([3, 1, 16, 16]), torch.Size([3, 4]))
    """
    n, size, lo, hi, rng, source = check_world(items, n, seed, canvas, clutter, clutter_size, 1)
    h, w = source.shape[1:]
    index = permuted(rng, len(source), n)
    x, y = rng.integers(0, size - w + 1, n), rng.integers(0, size - h + 1, n)
    board = np.zeros((n, size + hi, size + hi), np.uint8)
    scatter_clutter(board, rng, source, index[:, None], clutter, lo, hi, size)
    paste(board, source[index], x, y, over=True)
    labels = items.labels[torch.from_numpy(index)]
    boxes = tight_boxes(source[index]) + np.stack([x, y, x, y], 1)
    return ClutterWorld(
        as_images(board, size),
        labels,
        torch.from_numpy(boxes),
        torch.from_numpy(np.stack([x, y], 1)),
        torch.from_numpy(index),
        items.classes,
    )


def make_same_different(
    items: FashionMNIST,
    n: int,
    *,
    seed: int,
    canvas: int = 64,
    min_distance: float = 30.0,
    clutter: int = 0,
    clutter_size: tuple[int, int] = (8, 14),
) -> SameDifferentWorld:
    """Same or different: two items far apart on one canvas.

    The two frames do not overlap and their centres are at least ``min_distance``
    pixels apart (positions drawn uniformly, pairs that break either rule redrawn).
    Exactly ``n // 2`` pairs are "same": the second item is another image of the first
    one's class; otherwise it is an image of a different class, chosen uniformly.

    Args:
        items: The source items; every class present needs at least two images.
        n: Number of canvases.
        seed: Seed of the world.
        canvas: Side S of the square canvas.
        min_distance: Least distance between the two frames' centres, in pixels.
        clutter: Number of crops of other items per canvas (none by default).
        clutter_size: Smallest and largest crop side ``(lo, hi)``.

    Returns:
        The world.

    Shapes:
        images: (n, 1, S, S); labels: (n,); boxes: (n, 2, 4).

    Example:
        >>> toy = FashionMNIST(torch.full((4, 8, 8), 200, dtype=torch.uint8),
        ...                    torch.tensor([0, 0, 1, 1]))
        >>> world = make_same_different(toy, 4, seed=0, canvas=24, min_distance=10)
        >>> world.labels.sum().item(), world.boxes.shape
        (2, torch.Size([4, 2, 4]))
    """
    n, size, lo, hi, rng, source = check_world(items, n, seed, canvas, clutter, clutter_size, 2)
    labels = items.labels.cpu().numpy()
    min_distance = real("min_distance", min_distance)
    first = permuted(rng, len(source), n)
    same = rng.permutation(np.arange(n) < n // 2)
    second = partners(rng, labels, first, same)
    pair = np.stack([first, second], 1)
    xy = far_apart(rng, n, size, source.shape[1:], min_distance)  # (n, 2 items, 2)
    board = np.zeros((n, size + hi, size + hi), np.uint8)
    scatter_clutter(board, rng, source, np.sort(pair, 1), clutter, lo, hi, size)
    boxes = []
    for k in range(2):
        paste(board, source[pair[:, k]], xy[:, k, 0], xy[:, k, 1], over=True)
        boxes.append(tight_boxes(source[pair[:, k]]) + np.tile(xy[:, k], 2))
    return SameDifferentWorld(
        as_images(board, size),
        torch.from_numpy(same.astype(np.int64)),
        torch.from_numpy(np.stack(boxes, 1)),
        torch.from_numpy(xy),
        torch.from_numpy(pair),
        torch.from_numpy(labels[pair]),
    )


def make_segment(
    items: FashionMNIST,
    n: int,
    *,
    seed: int,
    canvas: int = 64,
    sizes: Sequence[int] = (10, 16, 22, 28),
    threshold: float = 0.1,
    clutter: int = 6,
    clutter_size: tuple[int, int] = (8, 14),
) -> SegmentWorld:
    """Segmentation: the mask of one (possibly small) item among clutter.

    The item's frame is scaled to a side from ``sizes`` (each used for an equal share of
    the canvases) by area averaging, ``R_s X R_s^T`` with ``R_s[i, j]`` the overlap of
    output pixel ``i`` with input pixel ``j``, rounded half to even to grey levels (exact
    integer arithmetic, so the same on any machine); placed at random
    and drawn over the clutter. The mask is the scaled item's pixels above
    ``threshold`` (in [0, 1] units).

    Args:
        items: The source items.
        n: Number of canvases.
        seed: Seed of the world.
        canvas: Side S of the square canvas.
        sizes: Sides, in pixels, the item's frame may be scaled to (at most S).
        threshold: Grey level in [0, 1) a pixel of the item must exceed to be in the mask.
        clutter: Number of crops of other items per canvas (at the items' own scale).
        clutter_size: Smallest and largest crop side ``(lo, hi)``.

    Returns:
        The world.

    Shapes:
        images: (n, 1, S, S); masks: (n, 1, S, S) bool; sizes: (n,).

    Example:
        >>> toy = FashionMNIST(torch.full((4, 8, 8), 200, dtype=torch.uint8),
        ...                    torch.tensor([0, 1, 2, 3]))
        >>> world = make_segment(toy, 4, seed=0, canvas=16, sizes=(4, 8), clutter=0)
        >>> sorted(world.masks.sum((1, 2, 3)).tolist())
        [16, 16, 64, 64]
    """
    n, size, lo, hi, rng, source = check_world(items, n, seed, canvas, clutter, clutter_size, 1)
    sides = np.array([as_positive("sizes", s) for s in sizes], np.int64)
    if not 0 < len(sides) or sides.max() > size:
        raise ValueError(f"sizes must be 1 or more sides of at most canvas={size}, got {sizes}")
    cut = round(probability("threshold", threshold) * 255, 6)
    index = permuted(rng, len(source), n)
    side = rng.permutation(np.resize(sides, n))
    x, y = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
    big = int(sides.max())
    scaled = np.zeros((n, big, big), np.uint8)
    for s in np.unique(side):
        chosen = np.flatnonzero(side == s)
        scaled[chosen, :s, :s] = rescale(source[index[chosen]], int(s))
    pad = max(hi, big)
    board = np.zeros((n, size + pad, size + pad), np.uint8)
    scatter_clutter(board, rng, source, index[:, None], clutter, lo, hi, size)
    paste(board, scaled, x, y, over=True)
    target = np.zeros_like(board, dtype=bool)
    paste(target, scaled > cut, x, y, over=True)
    masks = torch.from_numpy(np.ascontiguousarray(target[:, None, :size, :size]))
    return SegmentWorld(
        as_images(board, size),
        masks,
        torch.from_numpy(side),
        items.labels[torch.from_numpy(index)],
        torch.from_numpy(tight_boxes(scaled > cut) + np.stack([x, y, x, y], 1)),
        torch.from_numpy(np.stack([x, y], 1)),
        torch.from_numpy(index),
        items.classes,
    )


def uniform_box_share(boxes: Tensor, *, canvas: int = 64) -> Tensor:
    """The attention mass a uniform map puts inside each box: box area / canvas area.

    The chance level of :func:`attention_in_box`: a map that attends to every pixel
    equally scores ``(x1 - x0)(y1 - y0) / S^2``.

    Args:
        boxes: Boxes ``(x0, y0, x1, y1)``, ends exclusive.
        canvas: Side S of the square canvas.

    Returns:
        The share per box, float64.

    Shapes:
        boxes: (..., 4); output: (...).

    Example:
        >>> uniform_box_share(torch.tensor([[0, 0, 32, 16]]))
        tensor([0.1250], dtype=torch.float64)
    """
    boxes = _check_boxes(boxes, as_positive("canvas", canvas)).double()
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) / canvas**2


def attention_in_box(maps: Tensor, boxes: Tensor, *, canvas: int = 64) -> Tensor:
    """The share of each attention map's mass that falls inside the item's box.

    A map of any resolution ``h x w`` covers the canvas; each cell's mass is spread
    evenly over the canvas pixels it covers, so the share is
    ``sum_ij a_ij f^y_i f^x_j / sum_ij a_ij`` with ``f^y_i`` the fraction of cell row
    ``i`` inside ``[y0, y1)`` (and ``f^x_j`` likewise). A uniform map scores
    :func:`uniform_box_share`; an all-zero map scores 0.

    Args:
        maps: Non-negative attention maps, one per image.
        boxes: Boxes ``(x0, y0, x1, y1)`` in canvas pixels, ends exclusive.
        canvas: Side S of the square canvas.

    Returns:
        The share per image, float64 in [0, 1].

    Shapes:
        maps: (n, h, w) or (n, 1, h, w); boxes: (n, 4); output: (n,).

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])  # top-right cell holds 3/4
        >>> attention_in_box(maps, torch.tensor([[32, 0, 64, 32]]))
        tensor([0.7500], dtype=torch.float64)
    """
    canvas = as_positive("canvas", canvas)
    boxes = _check_boxes(boxes, canvas)
    if isinstance(maps, Tensor) and maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if not isinstance(maps, Tensor) or maps.dim() != 3 or boxes.shape != (len(maps), 4):
        raise ValueError(
            f"maps must be (n, h, w) or (n, 1, h, w) and boxes (n, 4), got maps "
            f"{describe(maps)} and boxes {describe(boxes)}"
        )
    maps = maps.double()
    boxes = boxes.to(maps.device).double()
    fy = _cover(boxes[:, 1], boxes[:, 3], maps.shape[1], canvas)
    fx = _cover(boxes[:, 0], boxes[:, 2], maps.shape[2], canvas)
    inside = torch.einsum("nhw,nh,nw->n", maps, fy, fx)
    return inside / maps.sum((1, 2)).clamp_min(torch.finfo(maps.dtype).tiny)


def _cover(lo: Tensor, hi: Tensor, cells: int, canvas: int) -> Tensor:
    """Fraction of each of ``cells`` equal cells of ``[0, canvas)`` inside ``[lo, hi)``."""
    edges = torch.arange(cells + 1, dtype=lo.dtype, device=lo.device) * (canvas / cells)
    start = torch.maximum(edges[:-1], lo[:, None])
    end = torch.minimum(edges[1:], hi[:, None])
    return (end - start).clamp_min(0) / (canvas / cells)


def _check_boxes(boxes: Tensor, canvas: int) -> Tensor:
    if not isinstance(boxes, Tensor) or boxes.shape[-1:] != (4,):
        raise ValueError(
            f"boxes must be a (..., 4) tensor of x0, y0, x1, y1, got {describe(boxes)}"
        )
    x0, y0, x1, y1 = boxes.unbind(-1)
    inside = (0 <= x0) & (x0 <= x1) & (x1 <= canvas) & (0 <= y0) & (y0 <= y1) & (y1 <= canvas)
    if not bool(inside.all()):
        raise ValueError(
            f"boxes must satisfy 0 <= x0 <= x1 <= {canvas} and 0 <= y0 <= y1 <= {canvas} "
            f"(canvas={canvas}); got {boxes[~inside][0].tolist()}"
        )
    return boxes
