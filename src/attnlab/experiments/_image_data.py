"""The data side of the image experiments: splits, normalisation, augmented shuffled batches.

An experiment puts its images into an :class:`ImageSplits` (train, validation and test
:class:`Split` tensors, with the training images' mean and deviation); the training
code of :mod:`attnlab.experiments._images` draws each epoch's batches with
:func:`epoch_batches`, shuffled and augmented from ``(seed, epoch)`` alone, so a resumed
run replays them exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ImageSplits", "Split", "as_float", "augment", "epoch_batches", "holdout"]


@dataclass(frozen=True, eq=False)
class Split:
    """Images and their targets.

    Attributes:
        images: ``(N, C, H, W)``, uint8 (0..255) or float in [0, 1].
        targets: ``(N,)`` int64 class indices, or ``(N, 1, H, W)`` bool masks.
    """

    images: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Tensor | slice) -> Split:
        """The examples at ``index``."""
        return Split(self.images[index], self.targets[index])


@dataclass(frozen=True, eq=False)
class ImageSplits:
    """The splits of a run and the normalisation every model sees.

    Attributes:
        train: Training split.
        val: Validation split (best epoch).
        test: Test split (the reported score).
        mean: Mean pixel value of the training images, in [0, 1].
        std: Their standard deviation.
        classes: Class names (empty for segmentation).
    """

    train: Split
    val: Split
    test: Split
    mean: float
    std: float
    classes: tuple[str, ...] = ()

    @staticmethod
    def pixel_stats(images: Tensor) -> tuple[float, float]:
        """Mean and standard deviation of ``images`` as floats in [0, 1] units."""
        x = as_float(images)
        return float(x.mean()), float(x.std())

    def prepare(self, images: Tensor, device: torch.device | None = None) -> Tensor:
        """Float images in [0, 1] (or uint8), normalised, on ``device``: a model's input.

        Batches of maps come channels-last, the layout the CPU convolutions run fastest on
        (20-30% faster training steps than contiguous maps, measured on 2 cores).
        """
        x = (as_float(images) - self.mean) / self.std
        if x.dim() == 4:
            return x.to(device, memory_format=torch.channels_last)
        return x.to(device)


def as_float(images: Tensor) -> Tensor:
    """uint8 images scaled to [0, 1] float32; float images as float32."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def holdout(n: int, size: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed random split of ``range(n)``: ``(kept, held_out)`` with ``size`` held out.

    Example:
        >>> kept, held = holdout(10, 3, seed=0)
        >>> len(kept), len(held), sorted(torch.cat([kept, held]).tolist()) == list(range(10))
        (7, 3, True)
    """
    if not 0 < size < n:
        raise ValueError(f"the held-out part must have 1..{n - 1} of {n} examples, got {size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[size:].sort().values, order[:size].sort().values


def augment(
    tensors: Sequence[Tensor], generator: torch.Generator, *, pad: int = 2, flip: bool = True
) -> list[Tensor]:
    """Random crop after zero padding, and horizontal flip, the same for every tensor.

    Each example is shifted by up to ``pad`` pixels each way (the crop of a padded
    copy) and mirrored with probability 1/2; images and their masks move together.

    Args:
        tensors: ``(B, C_i, H, W)`` tensors of one batch (any dtype, bool included).
        generator: Source of the random shifts and flips.
        pad: Most pixels of shift.
        flip: Also mirror left-right.

    Returns:
        The augmented tensors, in order.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> augment([x], torch.Generator().manual_seed(0), pad=0, flip=False)[0].equal(x)
        True
    """
    b, (h, w) = tensors[0].shape[0], tensors[0].shape[-2:]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = dy[:, None] + torch.arange(h)  # (B, H) rows of the padded image
    cols = dx[:, None] + torch.arange(w)  # (B, W)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch = torch.arange(b)[:, None, None]
    out = []
    for t in tensors:
        kind = t.dtype
        padded = F.pad(t.to(torch.uint8) if kind == torch.bool else t, (pad,) * 4)
        # Advanced indices around the channel slice put their dims first: (B, H, W, C).
        moved = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        out.append(moved.contiguous().to(kind))
    return out


def epoch_batches(
    split: Split, batch_size: int, *, seed: int, epoch: int, augmented: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled (and augmented) batches of one epoch, drawn from ``(seed, epoch)`` alone.

    The order depends on nothing else, so a resumed run replays exactly the same batches.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(split), generator=generator)
    for index in order.split(batch_size):
        images, targets = split.images[index], split.targets[index]
        if augmented:
            masks = targets.ndim > 1  # segmentation masks move with their images
            moved = augment([images, targets] if masks else [images], generator)
            images, targets = moved[0], (moved[1] if masks else targets)
        yield images, targets
