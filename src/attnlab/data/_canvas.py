"""Vectorised drawing and sampling for the image worlds of :mod:`attnlab.data.image_worlds`.

Canvases are uint8 boards ``(n, S + pad, S + pad)`` drawn on for all n images at once
(one fancy-indexing assignment per piece), cropped to ``S x S`` at the end; the padding
lets a fixed-size window hang over the edge. Randomness comes only from the
``numpy.random.Generator`` passed in, in a fixed order, so a seed fixes the world.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import as_positive, as_size
from attnlab.data.fashion_mnist import FashionMNIST

__all__ = [
    "as_images",
    "check_world",
    "far_apart",
    "partners",
    "paste",
    "permuted",
    "rescale",
    "scatter_clutter",
    "tight_boxes",
]


def check_world(items, n, seed, canvas, clutter, clutter_size, per_canvas):
    """Check the shared arguments; return them with the generator and the items as numpy."""
    if not isinstance(items, FashionMNIST):
        raise TypeError(f"items must be a FashionMNIST, got {type(items).__name__}")
    n, size = as_positive("n", n), as_positive("canvas", canvas)
    clutter = as_size("clutter", clutter)
    if len(tuple(clutter_size)) != 2:
        raise ValueError(f"clutter_size must be (lo, hi), got {clutter_size!r}")
    lo, hi = (as_positive("clutter_size", s) for s in clutter_size)
    source = items.images.cpu().numpy()
    h, w = source.shape[1:]
    if clutter and not lo <= hi <= min(h, w):
        raise ValueError(
            f"clutter_size must be (lo, hi) with lo <= hi <= the item side {min(h, w)}, "
            f"got {tuple(clutter_size)}"
        )
    if max(h, w) > size:
        raise ValueError(f"items of {h}x{w} pixels do not fit on a canvas of {size}; enlarge it")
    if len(source) < per_canvas + (clutter > 0):
        raise ValueError(
            f"items must hold at least {per_canvas + (clutter > 0)} images for this world "
            f"(crops come from other images), got {len(source)}"
        )
    return n, size, lo, hi, np.random.default_rng(as_size("seed", seed)), source


def permuted(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """Return n item indices: whole random permutations, so no item repeats while n <= count."""
    rounds = -(-n // count)
    return np.concatenate([rng.permutation(count) for _ in range(rounds)])[:n]


def partners(rng, labels: np.ndarray, first: np.ndarray, same: np.ndarray) -> np.ndarray:
    """For each first item, another image of its class (same) or one of another class."""
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    if len(present) < 2 or counts[present].min() < 2:
        raise ValueError(
            "same-different needs at least 2 classes with at least 2 images each; got "
            f"{dict(zip(present.tolist(), counts[present].tolist()))} images per class"
        )
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - starts[labels[order]]  # position within class
    cls = labels[first]
    # same: a uniform other image of the class, skipping the first one's own slot
    k = rng.integers(0, counts[cls] - 1)
    same_pick = order[starts[cls] + k + (k >= rank[first])]
    # different: a uniform other class, then a uniform image of it
    pos = np.searchsorted(present, cls)
    r = rng.integers(0, len(present) - 1, len(first))
    other = present[r + (r >= pos)]
    diff_pick = order[starts[other] + rng.integers(0, counts[other])]
    return np.where(same, same_pick, diff_pick)


def far_apart(rng, n: int, size: int, hw: tuple[int, int], min_distance: float) -> np.ndarray:
    """(n, 2, 2) frame corners (x, y): frames disjoint, centres >= min_distance apart."""
    h, w = hw
    reach = np.hypot(size - w, size - h)  # the opposite corners: the farthest placement
    if (size < 2 * w and size < 2 * h) or reach < min_distance:
        raise ValueError(
            f"two {h}x{w} items cannot be placed apart on a canvas of {size} with "
            f"min_distance={min_distance} (at most {reach:.1f}); enlarge the canvas"
        )
    found: list[np.ndarray] = []
    total = 0
    for _ in range(1000):
        xy = np.stack(
            [rng.integers(0, size - w + 1, (4 * n, 2)), rng.integers(0, size - h + 1, (4 * n, 2))],
            -1,
        )
        d = np.abs(xy[:, 0] - xy[:, 1])
        ok = ((d[:, 0] >= w) | (d[:, 1] >= h)) & (np.hypot(d[:, 0], d[:, 1]) >= min_distance)
        found.append(xy[ok])
        total += int(ok.sum())
        if total >= n:
            return np.concatenate(found)[:n]
    raise ValueError(f"could not place {n} pairs {min_distance} pixels apart; lower min_distance")


def scatter_clutter(board, rng, source, exclude, count, lo, hi, size) -> None:
    """Draw ``count`` random crops of images other than ``exclude`` onto ``board`` (max)."""
    n, (h, w) = len(board), source.shape[1:]
    exclude = np.sort(exclude, 1)
    reach = np.arange(hi)
    for _ in range(count):
        side = rng.integers(lo, hi + 1, n)
        src = rng.integers(0, len(source) - exclude.shape[1], n)
        for column in exclude.T:  # skip the excluded indices (ascending) one by one
            src += src >= column
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        rows = np.minimum(top[:, None] + reach, h - 1)
        cols = np.minimum(left[:, None] + reach, w - 1)
        crop = source[src[:, None, None], rows[:, :, None], cols[:, None, :]]
        inside = reach[None, :] < side[:, None]
        crop *= inside[:, :, None] & inside[:, None, :]
        paste(
            board,
            crop,
            rng.integers(0, size - side + 1),
            rng.integers(0, size - side + 1),
            over=False,
        )


def paste(
    board: np.ndarray, patch: np.ndarray, x: np.ndarray, y: np.ndarray, *, over: bool
) -> None:
    """Put ``patch[i]`` at ``(x[i], y[i])`` of ``board[i]``: over its nonzero pixels, or by max."""
    ph, pw = patch.shape[1:]
    b = np.arange(len(board))[:, None, None]
    rows = (y[:, None] + np.arange(ph))[:, :, None]
    cols = (x[:, None] + np.arange(pw))[:, None, :]
    under = board[b, rows, cols]
    board[b, rows, cols] = np.where(patch > 0, patch, under) if over else np.maximum(patch, under)


def tight_boxes(patch: np.ndarray) -> np.ndarray:
    """(m, 4) boxes (x0, y0, x1, y1) of the nonzero pixels of each patch; empty: (0, 0, 0, 0)."""
    on = patch > 0
    rows, cols = on.any(2), on.any(1)
    any_on = rows.any(1)
    y0, y1 = rows.argmax(1), rows.shape[1] - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), cols.shape[1] - cols[:, ::-1].argmax(1)
    return (np.stack([x0, y0, x1, y1], 1) * any_on[:, None]).astype(np.int64)


def rescale(images: np.ndarray, side: int) -> np.ndarray:
    """Area-average (m, h, w) uint8 images to (m, side, side), rounded half to even.

    ``out = W_y X W_x^T / (h w)`` with integer overlap weights, so every product and sum
    is an integer that float64 holds exactly: the result is the same on any BLAS.
    """
    h, w = images.shape[1:]
    wy, wx = _area_weights(h, side), _area_weights(w, side)
    total = wy @ images.astype(np.float64) @ wx.T
    return np.rint(total / (h * w)).astype(np.uint8)


def _area_weights(src: int, dst: int) -> np.ndarray:
    """W (dst, src): dst x the overlap of output pixel i with input pixel j; rows sum to src.

    On a grid of 1/dst, output pixel i spans [i src, (i+1) src), input pixel j spans
    [j dst, (j+1) dst): both ends are integers, so the overlaps are too.
    """
    i, j = np.arange(dst)[:, None], np.arange(src)[None, :]
    overlap = np.minimum((i + 1) * src, (j + 1) * dst) - np.maximum(i * src, j * dst)
    return np.clip(overlap, 0, None).astype(np.float64)


def as_images(board: np.ndarray, size: int) -> Tensor:
    """(n, 1, S, S) float32 in [0, 1] from the uint8 board's top-left S x S."""
    return torch.from_numpy(board)[:, None, :size, :size].float().div_(255)
