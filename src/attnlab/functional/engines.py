"""The ``math`` and ``sdpa`` engines (the ``chunked`` engine has its own file).

``math`` is the materialising reference: scores, mask, softmax in at least float32,
weighted sum. It is also what computes attention weights when a caller asks for
them. ``sdpa`` hands dot-product variants to
:func:`torch.nn.functional.scaled_dot_product_attention` and its fused kernels.

A key whose logit is ``-inf`` (a ``-inf`` in ``bias=``) is hidden exactly as a masked
key is: a row whose visible keys all carry ``-inf`` has nothing to attend to and gets
zero output, zero weights and finite gradients on every engine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.functional._problem import Problem, full_mask


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


def full_scores(p: Problem) -> Tensor:
    """The ``(B, H, Lq, Lk)`` logits with bias added, in at least float32 (unmasked)."""
    dtype = _compute_dtype(p.q)
    q, k = p.q.to(dtype), p.k.to(dtype)
    if p.scale is not None:
        scores = torch.matmul(q * p.scale, k.transpose(-2, -1))
    else:
        scores = p.score.pairwise(q, k, *(t.to(dtype) for t in p.score.tensors())).to(dtype)
    if p.bias is not None:
        scores = scores + p.bias.to(dtype)
    return scores


def attention_weights(p: Problem) -> Tensor:
    """Exact pre-dropout probabilities ``(B, H, Lq, Lk)`` in at least float32.

    Masked positions get exactly 0; a row with nothing visible is all zeros.
    """
    scores = full_scores(p)
    mask = full_mask(p)
    if p.bias is not None:
        # A -inf bias hides its key like the mask; a row it empties must give zeros, not
        # softmax's NaN (and never the value of a key the mask hid).
        reachable = scores > -math.inf
        mask = reachable if mask is None else mask & reachable
    if mask is None:
        return torch.softmax(scores, dim=-1)
    # A finite fill keeps softmax and its gradient finite on fully masked rows;
    # those rows are then zeroed explicitly.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask.any(dim=-1, keepdim=True)


def math_attention(p: Problem) -> tuple[Tensor, Tensor]:
    """Materialising reference engine: ``(output (B, H, Lq, Dv), weights)``."""
    weights = attention_weights(p)
    dropped = F.dropout(weights, p.dropout_p) if p.dropout_p > 0 else weights
    out = torch.matmul(dropped, p.v.to(weights.dtype))
    return out.to(p.v.dtype), weights.to(p.v.dtype)


def fused_bias(bias: Tensor, allowed: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The float ``attn_mask`` a fused kernel reads: ``bias`` where allowed, ``-inf`` elsewhere.

    The kernels want it in the inputs' dtype. A bias wider than that (float32 logits
    beside fp16 queries) is first shifted by its largest allowed entry per row:
    softmax ignores a per-row constant, and the narrow dtype then holds only offsets
    from the row's maximum, so a large finite logit (1e5 in fp16) neither overflows to
    inf (NaN output) nor collapses with its neighbours. Rows with nothing allowed keep
    their ``-inf`` (the kernels give them zeros).

    Args:
        bias: float logits, broadcastable to the scores.
        allowed: boolean, True = may attend, broadcastable likewise, or None.
        dtype: the dtype of q, k and v.

    Returns:
        The additive mask in ``dtype``, of the broadcast shape of ``bias`` and ``allowed``.

    Example:
        >>> fused_bias(torch.tensor([[1e5, 1e5 - 2.0]]), None, torch.float16)
        tensor([[ 0., -2.]], dtype=torch.float16)
    """
    if allowed is not None:
        bias = bias.masked_fill(~allowed, -math.inf)
    narrowing = bias.dtype != dtype and torch.promote_types(bias.dtype, dtype) == bias.dtype
    if narrowing and bias.shape[-1] > 0:
        top = bias.detach().amax(-1, keepdim=True)
        bias = bias - torch.where(torch.isfinite(top), top, 0.0)
    return bias.to(dtype)


def sdpa_attention(p: Problem) -> Tensor:
    """Fused engine for scores of the form ``scale * q @ k^T`` (plus bias and mask)."""
    is_causal = p.causal_offset == 0 and p.mask is None and p.bias is None
    attn_mask = None if is_causal else full_mask(p)
    if p.bias is not None:
        attn_mask = fused_bias(p.bias, attn_mask, p.q.dtype)
    return F.scaled_dot_product_attention(
        p.q,
        p.k,
        p.v,
        attn_mask=attn_mask,
        dropout_p=p.dropout_p,
        is_causal=is_causal,
        scale=p.scale,
    )
