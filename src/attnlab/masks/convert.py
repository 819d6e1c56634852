"""Converters between attnlab's boolean masks and other mask conventions.

attnlab: boolean, True = may attend, additive biases separate (``bias=``).
Others met in the wild:

- ``torch.nn.MultiheadAttention``'s ``key_padding_mask``: bool ``(B, Lk)``, True = ignore.
- ``torch.nn.MultiheadAttention``'s ``attn_mask``: bool with True = NOT allowed, or
  a float mask that is added to the scores.
- Additive float masks: 0 = attend, ``-inf`` (or a huge negative such as ``-1e9``
  or ``finfo.min``) = masked; any other value is a bias, not a mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.masks._validate import as_size
from attnlab.masks.check import check_mask

__all__ = [
    "from_additive_mask",
    "from_key_padding_mask",
    "from_torch_attn_mask",
    "split_additive_mask",
    "to_additive_mask",
    "to_key_padding_mask",
]

_HUGE_NEGATIVE = -1e9


def from_key_padding_mask(key_padding_mask: Tensor) -> Tensor:
    """Turn a torch ``key_padding_mask`` (True = ignore) into an attnlab mask.

    Args:
        key_padding_mask: Boolean, True at padded keys, as taken by
            ``torch.nn.MultiheadAttention`` and ``nn.TransformerEncoder``.

    Returns:
        Boolean mask, True = may attend, ready to pass as ``mask=``.

    Raises:
        TypeError: The input is not boolean.
        ValueError: The input is not 2-D.

    Shapes:
        key_padding_mask: ``(B, Lk)``; output: ``(B, 1, 1, Lk)``.

    Example:
        >>> from_key_padding_mask(torch.tensor([[False, True]])).tolist()
        [[[[True, False]]]]
    """
    if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
        raise TypeError(
            "key_padding_mask must be a bool tensor (B, Lk) with True = ignore; got "
            f"{_describe(key_padding_mask)}; for a float one use from_additive_mask(kpm)"
        )
    if key_padding_mask.ndim != 2:
        raise ValueError(
            f"key_padding_mask must be 2-D (B, Lk); got shape {tuple(key_padding_mask.shape)}"
        )
    return ~key_padding_mask[:, None, None, :]


def to_key_padding_mask(mask: Tensor) -> Tensor:
    """Turn an attnlab key mask into a torch ``key_padding_mask`` (True = ignore).

    Args:
        mask: Boolean key mask, True = may attend, varying only over batch and keys.

    Returns:
        Boolean ``key_padding_mask`` for ``torch.nn.MultiheadAttention``, True = ignore.

    Raises:
        TypeError: ``mask`` is not boolean.
        ValueError: ``mask`` is not ``(B, Lk)`` or ``(B, 1, 1, Lk)``, e.g. it
            varies over heads or queries, which a key padding mask cannot express.

    Shapes:
        mask: ``(B, 1, 1, Lk)`` or ``(B, Lk)``; output: ``(B, Lk)``.

    Example:
        >>> to_key_padding_mask(torch.tensor([[[[True, False]]]])).tolist()
        [[False, True]]
    """
    check_mask(mask)
    if mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[2] == 1:
        mask = mask[:, 0, 0, :]
    if mask.ndim != 2:
        raise ValueError(
            "to_key_padding_mask needs a key mask of shape (B, 1, 1, Lk) or (B, Lk); "
            f"got {tuple(mask.shape)} (a key padding mask cannot vary over heads or queries)"
        )
    return ~mask


def split_additive_mask(
    float_mask: Tensor, *, threshold: float | None = None
) -> tuple[Tensor, Tensor]:
    """Split an additive float mask into a boolean mask and a float bias.

    A value is "masked" when it is ``-inf`` or ``<= threshold``; every other
    value is kept as bias. The default threshold is ``-1e9`` (or half the
    dtype's lowest finite value when that is larger, e.g. ``-32752`` in fp16), so
    ``-inf``, ``finfo.min`` and ``-1e9`` fills all count as masked.

    Args:
        float_mask: Additive mask, 0 = attend, large negative = masked, other
            finite values = bias added to the scores.
        threshold: Values ``<=`` this count as masked; see the default above.

    Returns:
        ``(mask, bias)``: boolean mask, True = may attend, and a float bias of the
        same dtype with masked positions set to 0. Pass them as ``mask=``, ``bias=``.

    Raises:
        TypeError: ``float_mask`` is not a floating-point tensor.
        ValueError: ``float_mask`` holds NaN or ``+inf``.

    Shapes:
        float_mask: any; mask, bias: same shape.

    Example:
        >>> mask, bias = split_additive_mask(torch.tensor([0.0, -float("inf"), 0.5]))
        >>> mask.tolist(), bias.tolist()
        ([True, False, True], [0.0, 0.0, 0.5])
    """
    masked = _masked_positions(float_mask, threshold)
    bias = float_mask.masked_fill(masked, 0.0)
    return ~masked, bias


def from_additive_mask(float_mask: Tensor, *, threshold: float | None = None) -> Tensor:
    """Turn an additive float mask holding only 0 and masked values into a boolean mask.

    0 becomes True (may attend); ``-inf`` or a huge negative (``<= threshold``,
    see :func:`split_additive_mask`) becomes False. Any other finite value is a
    bias, not a mask, and raises: use :func:`split_additive_mask` and ``bias=``.

    Args:
        float_mask: Additive mask of 0 and masked values.
        threshold: Values ``<=`` this count as masked; default as in
            :func:`split_additive_mask`.

    Returns:
        Boolean mask, True = may attend.

    Raises:
        TypeError: ``float_mask`` is not a floating-point tensor.
        ValueError: It holds NaN, ``+inf`` or finite values other than 0 that are
            above ``threshold``.

    Shapes:
        float_mask: any; output: same shape.

    Example:
        >>> from_additive_mask(torch.tensor([[0.0, -1e9, -float("inf")]])).tolist()
        [[True, False, False]]
    """
    mask, bias = split_additive_mask(float_mask, threshold=threshold)
    nonzero = bias != 0
    if bool(nonzero.any()):
        example = float(bias[nonzero].flatten()[0])
        raise ValueError(
            f"from_additive_mask: float mask holds values other than 0 and masked "
            f"(e.g. {example:g}); those are a bias: use "
            "attnlab.masks.split_additive_mask(mask) -> (mask, bias) and pass bias="
        )
    return mask


def to_additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Turn a boolean mask into an additive float mask: 0 where True, ``-inf`` where False.

    For passing an attnlab mask to code that wants a float mask, such as
    ``torch.nn.MultiheadAttention(attn_mask=...)``. Note that torch returns NaN for
    rows with nothing to attend to, while attnlab returns zeros.

    Args:
        mask: Boolean mask, True = may attend.
        dtype: Floating-point dtype of the result.

    Returns:
        Float mask on ``mask``'s device.

    Raises:
        TypeError: ``mask`` is not boolean or ``dtype`` is not floating point.

    Shapes:
        mask: any; output: same shape.

    Example:
        >>> to_additive_mask(torch.tensor([True, False])).tolist()
        [0.0, -inf]
    """
    check_mask(mask, ndim_max=None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def from_torch_attn_mask(
    attn_mask: Tensor, *, num_heads: int | None = None, threshold: float | None = None
) -> tuple[Tensor, Tensor | None]:
    """Convert what ``torch.nn.MultiheadAttention`` takes as ``attn_mask`` to (mask, bias).

    torch's bool ``attn_mask`` has True = NOT allowed (the opposite of attnlab and
    SDPA); a float ``attn_mask`` is added to the scores and is split into a
    boolean mask and a bias as in :func:`split_additive_mask`.

    Args:
        attn_mask: Bool (True = not allowed) or float additive mask, shaped
            ``(Lq, Lk)`` or ``(B * H, Lq, Lk)`` as ``MultiheadAttention`` wants.
        num_heads: H; required for a 3-D ``attn_mask`` to unfold ``B * H``.
        threshold: Float values ``<=`` this count as masked (see
            :func:`split_additive_mask`).

    Returns:
        ``(mask, bias)``: boolean mask, True = may attend, and the float bias, or
        ``None`` when there is none (bool input, or a float mask of only 0/masked).

    Raises:
        TypeError: ``attn_mask`` is neither bool nor floating point.
        ValueError: Wrong number of dims, a 3-D mask without ``num_heads``, or a
            first dim not divisible by ``num_heads``.

    Shapes:
        attn_mask: ``(Lq, Lk)`` or ``(B * H, Lq, Lk)``;
        mask, bias: ``(Lq, Lk)`` or ``(B, H, Lq, Lk)``.

    Example:
        >>> mask, bias = from_torch_attn_mask(torch.tensor([[False, True]]))
        >>> mask.tolist(), bias
        ([[True, False]], None)
    """
    if not isinstance(attn_mask, Tensor) or not (
        attn_mask.dtype == torch.bool or attn_mask.is_floating_point()
    ):
        raise TypeError(
            f"attn_mask must be a bool (True = not allowed) or float tensor; "
            f"got {_describe(attn_mask)}"
        )
    attn_mask = _unfold_heads(attn_mask, num_heads)
    if attn_mask.dtype == torch.bool:
        return ~attn_mask, None
    mask, bias = split_additive_mask(attn_mask, threshold=threshold)
    return mask, (bias if bool((bias != 0).any()) else None)


def _unfold_heads(attn_mask: Tensor, num_heads: int | None) -> Tensor:
    if attn_mask.ndim == 2:
        return attn_mask
    if attn_mask.ndim != 3:
        raise ValueError(
            f"attn_mask must be (Lq, Lk) or (B * H, Lq, Lk); got shape {tuple(attn_mask.shape)}"
        )
    if num_heads is None:
        raise ValueError("a 3-D attn_mask (B * H, Lq, Lk) needs num_heads=H to unfold B * H")
    heads = as_size("num_heads", num_heads)
    if heads == 0 or attn_mask.shape[0] % heads:
        raise ValueError(
            f"attn_mask's first dim {attn_mask.shape[0]} is not divisible by num_heads={heads}"
        )
    return attn_mask.reshape(-1, heads, *attn_mask.shape[1:])


def _masked_positions(float_mask: Tensor, threshold: float | None) -> Tensor:
    """Boolean tensor, True where ``float_mask`` is -inf or <= threshold."""
    if not isinstance(float_mask, Tensor) or not float_mask.is_floating_point():
        raise TypeError(
            f"float_mask must be a floating-point tensor (0 = attend, -inf = masked); "
            f"got {_describe(float_mask)}; a boolean mask needs no conversion"
        )
    if bool(torch.isnan(float_mask).any()) or bool(torch.isposinf(float_mask).any()):
        raise ValueError("float_mask holds NaN or +inf; an additive mask needs 0, -inf or biases")
    if threshold is None:
        threshold = max(_HUGE_NEGATIVE, torch.finfo(float_mask.dtype).min / 2)
    limit = torch.tensor(threshold, dtype=float_mask.dtype, device=float_mask.device)
    return float_mask <= limit


def _describe(value: object) -> str:
    return f"{value.dtype} tensor" if isinstance(value, Tensor) else type(value).__name__
