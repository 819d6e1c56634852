"""Masks as predicates over positions (FlexAttention ``mask_mod`` style).

A mask_mod is a callable ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``, True =
may attend, built only from broadcasting tensor ops, so it works both with
``torch.nn.attention.flex_attention.create_block_mask`` (which calls it on scalar
index tensors under ``vmap``) and with :func:`materialize_mask_mod` here (which
calls it once on broadcast index grids). The tensor builders in
:mod:`attnlab.masks.builders` use the same predicates, so the two never disagree.

Note: ``torch.nn.attention.flex_attention.and_masks`` combines mask_mods; here that
is :func:`and_mask_mods`, while :func:`attnlab.masks.and_masks` combines tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from attnlab.masks._validate import (
    Alignment,
    DeviceLike,
    as_lengths,
    as_size,
    check_alignment,
    diagonal_offset,
    window_sides,
)

__all__ = [
    "MaskMod",
    "and_mask_mods",
    "causal_mask_mod",
    "materialize_mask_mod",
    "or_mask_mods",
    "padding_mask_mod",
    "sliding_window_mask_mod",
]

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def causal_predicate(q_idx: Tensor, kv_idx: Tensor, offset: int) -> Tensor:
    """True where key ``kv_idx`` is not after query ``q_idx`` aligned by ``offset``."""
    return kv_idx <= q_idx + offset


def band_predicate(q_idx: Tensor, kv_idx: Tensor, offset: int, left: int, right: int) -> Tensor:
    """True where ``-left <= kv_idx - (q_idx + offset) <= right``."""
    distance = kv_idx - (q_idx + offset)
    return (distance >= -left) & (distance <= right)


def causal_mask_mod(
    lq: int, lk: int | None = None, *, alignment: Alignment = "upper_left"
) -> MaskMod:
    """Causal mask as a mask_mod; see :func:`attnlab.masks.causal_mask` for the picture.

    Args:
        lq: Query length Lq (needed only to align lower-right).
        lk: Key length Lk; defaults to ``lq``.
        alignment: ``"upper_left"`` (query i sees keys j <= i) or ``"lower_right"``
            (query i sees keys j <= i + Lk - Lq).

    Returns:
        ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``.

    Shapes:
        q_idx, kv_idx: any broadcastable integer tensors; output: their broadcast shape.

    Example:
        >>> mod = causal_mask_mod(2, 4, alignment="lower_right")
        >>> bool(mod(0, 0, torch.tensor(0), torch.tensor(3)))
        False
    """
    lq = as_size("lq", lq)
    lk = lq if lk is None else as_size("lk", lk)
    offset = diagonal_offset(lq, lk, check_alignment(alignment))

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return causal_predicate(q_idx, kv_idx, offset)

    return mask_mod


def sliding_window_mask_mod(
    lq: int,
    lk: int | None = None,
    *,
    window: int | tuple[int, int],
    causal: bool = False,
    alignment: Alignment = "upper_left",
) -> MaskMod:
    """Sliding-window mask as a mask_mod; see :func:`attnlab.masks.sliding_window_mask`.

    Args:
        lq: Query length Lq (needed only to align lower-right).
        lk: Key length Lk; defaults to ``lq``.
        window: ``w`` (w keys each side) or ``(left, right)``.
        causal: If True, no keys after the aligned diagonal (right = 0).
        alignment: ``"upper_left"`` or ``"lower_right"``.

    Returns:
        ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``.

    Shapes:
        q_idx, kv_idx: any broadcastable integer tensors; output: their broadcast shape.

    Example:
        >>> mod = sliding_window_mask_mod(5, window=1)
        >>> mod(0, 0, torch.tensor(2), torch.arange(5)).tolist()
        [False, True, True, True, False]
    """
    lq = as_size("lq", lq)
    lk = lq if lk is None else as_size("lk", lk)
    offset = diagonal_offset(lq, lk, check_alignment(alignment))
    left, right = window_sides(window, causal)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return band_predicate(q_idx, kv_idx, offset, left, right)

    return mask_mod


def padding_mask_mod(
    k_lengths: Tensor | Sequence[int], q_lengths: Tensor | Sequence[int] | None = None
) -> MaskMod:
    """Padding mask as a mask_mod: key ``kv_idx < k_lengths[b]`` (and query ``< q_lengths[b]``).

    Args:
        k_lengths: Valid key count per batch element, integers >= 0.
        q_lengths: Optional valid query count per batch element; padded query
            rows then have nothing to attend to (attnlab returns zeros there).

    Returns:
        ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``; the lengths stay on
        their own device, so index with tensors on that device.

    Shapes:
        k_lengths, q_lengths: ``(B,)``.

    Example:
        >>> mod = padding_mask_mod(torch.tensor([1, 3]))
        >>> mod(torch.tensor(1), 0, torch.tensor(0), torch.arange(4)).tolist()
        [True, True, True, False]
    """
    k_len = as_lengths("k_lengths", k_lengths, None)
    q_len = None if q_lengths is None else as_lengths("q_lengths", q_lengths, None)
    if q_len is not None and q_len.shape != k_len.shape:
        raise ValueError(
            f"q_lengths and k_lengths must have the same batch size; "
            f"got {tuple(q_len.shape)} and {tuple(k_len.shape)}"
        )

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        allowed = kv_idx < k_len[b]
        if q_len is not None:
            allowed = allowed & (q_idx < q_len[b])
        return allowed

    return mask_mod


def and_mask_mods(*mask_mods: MaskMod) -> MaskMod:
    """Combine mask_mods: a position is allowed only if every mask_mod allows it.

    Args:
        *mask_mods: mask_mods to intersect; none at all means "everything allowed".

    Returns:
        The combined ``mask_mod``.

    Shapes:
        output: the broadcast of the inputs' outputs.

    Example:
        >>> mod = and_mask_mods(causal_mask_mod(4), sliding_window_mask_mod(4, window=1))
        >>> mod(0, 0, torch.tensor(3), torch.arange(4)).tolist()
        [False, False, True, True]
    """
    mods = _check_mods(mask_mods)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        if not mods:
            return torch.ones((), dtype=torch.bool, device=_device_of(q_idx, kv_idx))
        allowed = mods[0](b, h, q_idx, kv_idx)
        for mod in mods[1:]:
            allowed = allowed & mod(b, h, q_idx, kv_idx)
        return allowed

    return mask_mod


def or_mask_mods(*mask_mods: MaskMod) -> MaskMod:
    """Combine mask_mods: a position is allowed if any mask_mod allows it.

    Args:
        *mask_mods: At least one mask_mod.

    Returns:
        The combined ``mask_mod``.

    Shapes:
        output: the broadcast of the inputs' outputs.

    Example:
        >>> mod = or_mask_mods(causal_mask_mod(3), sliding_window_mask_mod(3, window=1))
        >>> mod(0, 0, torch.tensor(0), torch.arange(3)).tolist()
        [True, True, False]
    """
    mods = _check_mods(mask_mods)
    if not mods:
        raise ValueError("or_mask_mods needs at least one mask_mod; got none")

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        allowed = mods[0](b, h, q_idx, kv_idx)
        for mod in mods[1:]:
            allowed = allowed | mod(b, h, q_idx, kv_idx)
        return allowed

    return mask_mod


def materialize_mask_mod(
    mask_mod: MaskMod,
    lq: int,
    lk: int | None = None,
    *,
    batch: int = 1,
    heads: int = 1,
    device: DeviceLike = None,
) -> Tensor:
    """Evaluate a mask_mod on every ``(b, h, q, kv)`` position, as a boolean tensor.

    Like ``flex_attention.create_mask`` but without ``vmap``: the mask_mod is
    called once on broadcast index grids.

    Args:
        mask_mod: ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``.
        lq: Query length Lq.
        lk: Key length Lk; defaults to ``lq``.
        batch: Batch size B to evaluate (use 1 if the mask_mod ignores ``b``).
        heads: Number of heads H to evaluate (use 1 if it ignores ``h``).
        device: Device of the index grids and the result.

    Returns:
        Boolean mask, True = may attend (a broadcast view where the mask_mod
        ignores some index).

    Shapes:
        output: ``(batch, heads, Lq, Lk)``.

    Example:
        >>> materialize_mask_mod(causal_mask_mod(2, 3), 2, 3).shape
        torch.Size([1, 1, 2, 3])
    """
    lq = as_size("lq", lq)
    lk = lq if lk is None else as_size("lk", lk)
    batch, heads = as_size("batch", batch), as_size("heads", heads)
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    h = torch.arange(heads, device=device).view(1, -1, 1, 1)
    q_idx = torch.arange(lq, device=device).view(1, 1, -1, 1)
    kv_idx = torch.arange(lk, device=device).view(1, 1, 1, -1)
    allowed = mask_mod(b, h, q_idx, kv_idx)
    if not isinstance(allowed, Tensor) or allowed.dtype != torch.bool:
        raise TypeError(f"mask_mod must return a bool tensor; got {_describe(allowed)}")
    return allowed.expand(batch, heads, lq, lk)


def _check_mods(mask_mods: tuple[object, ...]) -> tuple[MaskMod, ...]:
    for i, mod in enumerate(mask_mods):
        if not callable(mod):
            raise TypeError(
                f"mask_mods must be callables (b, h, q_idx, kv_idx) -> bool tensor; "
                f"argument {i} is {type(mod).__name__}"
            )
    return mask_mods  # type: ignore[return-value]


def _device_of(*values: object) -> torch.device | None:
    for value in values:
        if isinstance(value, Tensor):
            return value.device
    return None


def _describe(value: object) -> str:
    return f"{value.dtype} tensor" if isinstance(value, Tensor) else type(value).__name__
