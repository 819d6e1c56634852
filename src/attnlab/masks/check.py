"""The one check of a boolean attention mask (True = may attend), used everywhere.

Every attention function and module of attnlab validates its ``mask=`` through
:func:`check_mask` (type, dtype, number of dims, broadcastable shape), so a wrong mask
gets the same one-line error, and the same exception type, wherever it is passed:
TypeError for something that is not a boolean tensor, ValueError for a shape.
Users can call it where they build a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_broadcast", "check_mask"]


def check_mask(
    mask: object,
    *,
    ndim_max: int | None = 4,
    shape: Sequence[int] | None = None,
    expected: str | None = None,
) -> Tensor:
    """Check that ``mask`` is a boolean attention mask (True = may attend) and return it.

    Args:
        mask: Candidate mask. Must be a ``torch.bool`` tensor.
        ndim_max: Largest number of dimensions allowed (4 for ``(B, H, Lq, Lk)``);
            ``None`` for no limit.
        shape: Optional full shape, e.g. ``(B, H, Lq, Lk)``, that ``mask`` must
            broadcast to.
        expected: What the caller accepts, in words, for the error message (e.g.
            ``"a boolean key mask (B, Lk)"``); default ``(B, H, Lq, Lk)``.

    Returns:
        The same ``mask``, unchanged.

    Raises:
        TypeError: ``mask`` is not a tensor, or not boolean (e.g. an additive
            float mask or a torch ``key_padding_mask`` passed by mistake).
        ValueError: ``mask`` has more than ``ndim_max`` dimensions or does not
            broadcast to ``shape``.

    Shapes:
        mask: anything broadcastable to ``shape``, at most ``ndim_max`` dims.

    Example:
        >>> check_mask(torch.ones(2, 1, 1, 5, dtype=torch.bool)).shape
        torch.Size([2, 1, 1, 5])
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean with True = may attend; got {mask.dtype}. "
            "An additive float mask goes through attnlab.masks.from_additive_mask (or bias=); "
            "a torch key_padding_mask (True = ignore) through "
            "attnlab.masks.from_key_padding_mask"
        )
    if ndim_max is not None and mask.dim() > ndim_max:
        raise ValueError(
            f"mask must have at most {ndim_max} dims, {expected or '(B, H, Lq, Lk)'}; "
            f"got shape {tuple(mask.shape)}"
        )
    if shape is not None:
        check_broadcast("mask", mask, shape, expected)
    return mask


def check_broadcast(name: str, t: Tensor, shape: Sequence[int], expected: str | None) -> None:
    """A one-line ValueError unless ``t`` broadcasts to exactly ``shape``.

    Example:
        >>> check_broadcast("bias", torch.zeros(1, 5), (2, 3, 5), None)
    """
    # A loop rather than torch.broadcast_shapes: this runs on every attention call.
    if t.dim() > len(shape) or any(
        a != 1 and a != b for a, b in zip(reversed(t.shape), reversed(shape))
    ):
        what = (
            f"; {name} must be {expected}"
            if expected
            else ("; use size-1 dims for the axes it does not vary over")
        )
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to {tuple(shape)}{what}"
        )
