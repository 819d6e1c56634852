"""Combine boolean masks; ``None`` means "no restriction" (everything allowed)."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.masks.check import check_mask

__all__ = ["and_masks", "or_masks"]


def and_masks(*masks: Tensor | None) -> Tensor | None:
    """Intersect masks: a position is allowed only if every mask allows it.

    ``None`` entries mean "no restriction" and are skipped.

    Args:
        *masks: Boolean masks (True = may attend) or ``None``.

    Returns:
        The broadcast logical AND, or ``None`` if every entry is ``None`` (or
        there are none), meaning everything is allowed.

    Raises:
        TypeError: An entry is neither ``None`` nor a boolean tensor.
        ValueError: The masks do not broadcast together or sit on different devices.

    Shapes:
        masks: mutually broadcastable, e.g. ``(B, 1, 1, Lk)`` and ``(Lq, Lk)``;
        output: their broadcast shape, e.g. ``(B, 1, Lq, Lk)``.

    Example:
        >>> from attnlab.masks import causal_mask, key_padding_mask
        >>> pad = key_padding_mask(torch.tensor([2, 3]))
        >>> and_masks(pad, None, causal_mask(3)).shape
        torch.Size([2, 1, 3, 3])
    """
    given = _given(masks, "and_masks")
    if not given:
        return None
    result = given[0]
    for mask in given[1:]:
        result = result & mask
    return result


def or_masks(*masks: Tensor | None) -> Tensor | None:
    """Unite masks: a position is allowed if any mask allows it.

    A ``None`` entry means "no restriction", so the union allows everything.

    Args:
        *masks: At least one boolean mask (True = may attend) or ``None``.

    Returns:
        The broadcast logical OR, or ``None`` if any entry is ``None``.

    Raises:
        TypeError: An entry is neither ``None`` nor a boolean tensor.
        ValueError: No masks were given, or they do not broadcast together or sit
            on different devices.

    Shapes:
        masks: mutually broadcastable; output: their broadcast shape.

    Example:
        >>> from attnlab.masks import causal_mask, sliding_window_mask
        >>> or_masks(causal_mask(3), sliding_window_mask(3, window=1)).int().tolist()
        [[1, 1, 0], [1, 1, 1], [1, 1, 1]]
    """
    if not masks:
        raise ValueError("or_masks needs at least one mask (or None for 'everything'); got none")
    given = _given(masks, "or_masks")
    if len(given) < len(masks):
        return None
    result = given[0]
    for mask in given[1:]:
        result = result | mask
    return result


def _given(masks: tuple[Tensor | None, ...], caller: str) -> list[Tensor]:
    """Return the non-None masks after checking dtype, broadcastability and device."""
    given = [check_mask(mask) for mask in masks if mask is not None]
    if not given:
        return given
    devices = {mask.device for mask in given}
    if len(devices) > 1:
        names = ", ".join(sorted(str(device) for device in devices))
        raise ValueError(f"{caller}: masks must be on one device; got {names}")
    try:
        torch.broadcast_shapes(*(mask.shape for mask in given))
    except RuntimeError:
        shapes = ", ".join(str(tuple(mask.shape)) for mask in given)
        raise ValueError(f"{caller}: mask shapes do not broadcast together: {shapes}") from None
    return given
