"""Validate a user-supplied attention mask against attnlab's one convention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_mask"]


def check_mask(
    mask: Tensor, *, ndim_max: int | None = 4, shape: Sequence[int] | None = None
) -> Tensor:
    """Check that ``mask`` is a boolean attention mask (True = may attend) and return it.

    attnlab's attention functions run their own check; this one is for users who
    want to validate a mask where they build it, with the same one-line errors.

    Args:
        mask: Candidate mask. Must be a ``torch.bool`` tensor.
        ndim_max: Largest number of dimensions allowed (4 for ``(B, H, Lq, Lk)``);
            ``None`` for no limit.
        shape: Optional full shape, e.g. ``(B, H, Lq, Lk)``, that ``mask`` must
            broadcast to.

    Returns:
        The same ``mask``, unchanged.

    Raises:
        TypeError: ``mask`` is not a tensor, or not boolean (e.g. an additive
            float mask or a torch ``key_padding_mask`` passed by mistake).
        ValueError: ``mask`` has more than ``ndim_max`` dimensions or does not
            broadcast to ``shape``.

    Shapes:
        mask: anything broadcastable to ``(B, H, Lq, Lk)``, at most ``ndim_max`` dims.

    Example:
        >>> check_mask(torch.ones(2, 1, 1, 5, dtype=torch.bool)).shape
        torch.Size([2, 1, 1, 5])
    """
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"mask must be a boolean tensor with True = may attend; got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean with True = may attend; got {mask.dtype}. "
            "An additive float mask goes through attnlab.masks.from_additive_mask (or bias=); "
            "a torch key_padding_mask (True = ignore) through "
            "attnlab.masks.from_key_padding_mask"
        )
    if ndim_max is not None and mask.ndim > ndim_max:
        raise ValueError(
            f"mask must have at most {ndim_max} dims (B, H, Lq, Lk); got shape {tuple(mask.shape)}"
        )
    if shape is not None:
        target = tuple(shape)
        try:
            broadcast = torch.broadcast_shapes(mask.shape, target)
        except RuntimeError:
            broadcast = None
        if broadcast != target:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {target}; "
                "use size-1 dims for the axes it does not vary over"
            )
    return mask
