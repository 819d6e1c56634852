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
