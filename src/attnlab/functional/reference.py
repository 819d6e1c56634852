"""Slow, obviously correct attention, the yardstick every engine is tested against.

Row by row, in float64, straight from the definition
``out_i = sum_j softmax_j(s(q_i, k_j) + b_ij | mask_ij) v_j``, with the convention
that a row with nothing visible (every key masked or carrying a ``-inf`` logit) has
zero weights. Only for tests and small sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["reference_attention"]


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    score: Callable[[Tensor, Tensor], Tensor],
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention by explicit loops over batch, head and query row.

    Args:
        q: ``(B, H, Lq, Dq)``.
        k: ``(B, H, Lk, Dk)``.
        v: ``(B, H, Lk, Dv)``.
        score: maps one query row ``(Dq,)`` and all keys ``(Lk, Dk)`` to ``(Lk,)`` logits.
        mask: boolean, True = may attend, broadcastable to ``(B, H, Lq, Lk)``.
        bias: float, broadcastable likewise.

    Returns:
        ``(output (B, H, Lq, Dv), weights (B, H, Lq, Lk))`` in float64.
    """
    b, h, lq, _ = q.shape
    lk = k.shape[-2]
    q, k, v = q.double(), k.double(), v.double()
    full = torch.ones(b, h, lq, lk, dtype=torch.bool) if mask is None else mask.expand(b, h, lq, lk)
    add = (
        torch.zeros(b, h, lq, lk, dtype=torch.float64)
        if bias is None
        else bias.double().expand(b, h, lq, lk)
    )
    out = torch.zeros(b, h, lq, v.shape[-1], dtype=torch.float64)
    weights = torch.zeros(b, h, lq, lk, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(lq):
                logits = score(q[bi, hi, i], k[bi, hi]) + add[bi, hi, i]
                visible = full[bi, hi, i].cpu() & (logits.cpu() > -math.inf)
                if not visible.any():
                    continue
                logits = logits[visible]
                w = torch.exp(logits - logits.max())
                w = w / w.sum()
                weights[bi, hi, i, visible] = w
                out[bi, hi, i] = w @ v[bi, hi][visible]
    return out, weights
