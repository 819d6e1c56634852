"""The validated description of one attention call, shared by every engine."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from attnlab.functional.scores import Score

CAUSAL_ALIGNMENTS = ("upper_left", "lower_right")


class Problem(NamedTuple):
    """Prepared inputs of one call: engines read this and nothing else.

    A named tuple rather than a frozen dataclass: it is built on every call, and the
    dispatch overhead over bare SDPA must stay unmeasurable.

    Attributes:
        q: prepared queries ``(B, H, Lq, D')``.
        k: prepared keys ``(B, H, Lk, D')``.
        v: values ``(B, H, Lk, Dv)``.
        score: the score function (``pairwise`` works on q and k as given).
        scale: ``score.dot_scale(q)``: not None when scores are ``scale * q @ k^T``.
        mask: boolean, True = may attend, broadcastable to ``(B, H, Lq, Lk)``, or None.
        bias: float logits added to the scores, broadcastable likewise, or None.
        causal_offset: None, or the offset ``o`` such that key j is visible to query i
            only when ``j <= i + o`` (0 upper-left, ``Lk - Lq`` lower-right).
        dropout_p: dropout on the attention probabilities (0 when not training).
    """

    q: Tensor
    k: Tensor
    v: Tensor
    score: Score
    scale: float | None
    mask: Tensor | None
    bias: Tensor | None
    causal_offset: int | None
    dropout_p: float

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, H, Lq, Lk)``."""
        b, h, lq, _ = self.q.shape
        return b, h, lq, self.k.shape[-2]


def causal_offset(causal: bool | str, lq: int, lk: int) -> int | None:
    """Translate the ``causal=`` argument into the offset of :class:`Problem`."""
    if causal is False or causal is None:
        return None
    if causal is True or causal == "upper_left":
        return 0
    if causal == "lower_right":
        return lk - lq
    raise ValueError(f"causal must be False, True, 'upper_left' or 'lower_right', got {causal!r}")


def causal_block(offset: int, qs: int, qe: int, ks: int, ke: int, device: torch.device) -> Tensor:
    """Boolean ``(qe - qs, ke - ks)`` block of the causal mask, True = may attend."""
    rows = torch.arange(qs, qe, device=device).unsqueeze(-1)
    cols = torch.arange(ks, ke, device=device)
    return cols <= rows + offset


def full_mask(p: Problem) -> Tensor | None:
    """The boolean mask with causality folded in (materialised only for small engines)."""
    if p.causal_offset is None:
        return p.mask
    _, _, lq, lk = p.shape
    causal = causal_block(p.causal_offset, 0, lq, 0, lk, p.q.device)
    return causal if p.mask is None else p.mask & causal


def block_of(t: Tensor | None, qs: int, qe: int, ks: int, ke: int) -> Tensor | None:
    """Slice the query/key block out of a broadcastable ``(..., Lq, Lk)`` tensor.

    Broadcast dimensions (size 1) are kept as they are.
    """
    if t is None:
        return None
    rows = slice(qs, qe) if t.shape[-2] != 1 else slice(None)
    cols = slice(ks, ke) if t.shape[-1] != 1 else slice(None)
    return t[..., rows, cols]


def check_qkv(
    q: object,
    k: object,
    v: object,
    *,
    names: tuple[str, str, str] = ("q", "k", "v"),
    accepted: str = "(B, H, L, D)",
    same_width: bool = False,
) -> None:
    """One-line errors for q, k, v that do not fit together as attention inputs.

    They must be ``(B, H, Lq, D)``, ``(B, H, Lk, D)``, ``(B, H, Lk, Dv)`` of one floating
    dtype (and ``q``, ``k`` of one width when ``same_width``).

    Raises:
        TypeError: a non-tensor, a non-floating tensor, or mixed dtypes.
        ValueError: a tensor that is not 4-D, or shapes that do not fit together.
    """
    for name, t in zip(names, (q, k, v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be {accepted}, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(
            f"{', '.join(names)} must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    widths_differ = same_width and q.shape[-1] != k.shape[-1]
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or widths_differ:
        nq, nk, nv = names
        raise ValueError(
            f"shapes do not match: {nq} {tuple(q.shape)} = (B, H, Lq, D), "
            f"{nk} {tuple(k.shape)} = (B, H, Lk, D), {nv} {tuple(v.shape)} = (B, H, Lk, Dv)"
        )


def pair_values(
    t: Tensor, q_idx: Tensor, kv_idx: Tensor, b: Tensor | None = None, h: Tensor | None = None
) -> Tensor:
    """``t`` at query/key index pairs, for ``t`` broadcastable to ``(B, H, Lq, Lk)``.

    A size-1 dimension of ``t`` is read at index 0 and negative (padding) indices at 0.
    Without ``b`` and ``h`` the result keeps ``t``'s batch and head dims:
    ``(Bt, Ht, *broadcast(q_idx, kv_idx))``; with them, every index is looked up (as
    FlexAttention's ``mask_mod`` and ``score_mod`` do).
    """
    t4 = t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))

    def pick(index: Tensor, size: int) -> Tensor:
        return index.clamp(min=0) if size != 1 else torch.zeros_like(index)

    rows, cols = pick(q_idx, t4.shape[2]), pick(kv_idx, t4.shape[3])
    if b is None or h is None:
        return t4[:, :, rows, cols]
    return t4[pick(b, t4.shape[0]), pick(h, t4.shape[1]), rows, cols]
