"""Private argument checks of the mask builders (one clear line per error).

Sizes are checked by the library-wide :mod:`attnlab._validate`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from attnlab._validate import as_positive, as_size

__all__ = ["as_positive", "as_size"]  # and the mask-specific checks below

Alignment = Literal["upper_left", "lower_right"]
DeviceLike = torch.device | str | int | None

_ALIGNMENTS: tuple[str, ...] = get_args(Alignment)


def check_alignment(alignment: object) -> Alignment:
    """Return ``alignment`` if it is a known alignment string, else raise ValueError."""
    if alignment not in _ALIGNMENTS:
        raise ValueError(f"alignment must be 'upper_left' or 'lower_right'; got {alignment!r}")
    return alignment  # type: ignore[return-value]


def diagonal_offset(lq: int, lk: int, alignment: Alignment) -> int:
    """Key index aligned with query 0: 0 (upper-left) or ``lk - lq`` (lower-right)."""
    return 0 if alignment == "upper_left" else lk - lq


def window_sides(window: object, causal: bool) -> tuple[int, int]:
    """Turn ``window`` (int or (left, right)) and ``causal`` into ``(left, right)``."""
    if isinstance(window, tuple | list):
        if len(window) != 2:
            raise ValueError(f"window must be an int or a (left, right) pair; got {window!r}")
        left, right = as_size("window left", window[0]), as_size("window right", window[1])
        if causal and right != 0:
            raise ValueError(
                f"causal=True needs a right window of 0; got window={tuple(window)!r}: "
                f"pass window={left} or ({left}, 0)"
            )
    else:
        left = as_size("window", window)
        right = 0 if causal else left
    return left, right


def as_lengths(name: str, lengths: Tensor | Sequence[int], device: DeviceLike) -> Tensor:
    """Return ``lengths`` as a 1-D int64 tensor on ``device``, checking values are >= 0."""
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths, dtype=torch.long)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a 1-D integer tensor (B,); got {type(lengths).__name__}"
            ) from None
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"{name} must be an integer tensor (B,); got {lengths.dtype}")
    if lengths.ndim != 1:
        raise ValueError(f"{name} must be 1-D (B,); got shape {tuple(lengths.shape)}")
    lengths = lengths.to(device=device if device is not None else lengths.device)
    if lengths.numel() and bool((lengths < 0).any()):
        raise ValueError(f"{name} must be >= 0; got min {int(lengths.min())}")
    return lengths.long()


def resolve_max_len(name: str, lengths: Tensor, max_len: object) -> int:
    """Return ``max_len`` (default: the largest length), checking it covers every length."""
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        return longest
    size = as_size(name, max_len)
    if longest > size:
        raise ValueError(f"lengths must be <= {name}={size}; got a length of {longest}")
    return size
