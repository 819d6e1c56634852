r"""The ``banded`` and ``block_sparse`` engines: attention computed only where a pattern allows.

For a :class:`~attnlab.masks.patterns.SparsePattern` (sliding window, Longformer,
BigBird, Sparse Transformer, ...) the pattern's :class:`~attnlab.masks.patterns.BlockLayout`
lists, per block of ``b`` queries, the key blocks (and global key columns) that may
hold an allowed pair. Each query block gathers exactly those keys, so the problem
becomes a batch of small dense problems

.. math::
    O_i = \mathrm{softmax}\!\left(s\, Q_i K_{S(i)}^\top + M_i\right) V_{S(i)}

with ``S(i)`` the listed keys and ``M_i`` the pattern's exact predicate (plus the
caller's mask, causality and bias) as an additive ``0 / -inf`` bias. The whole batch
runs as ONE call of torch's fused ``scaled_dot_product_attention``, forward and
backward, so the band runs at fused-kernel speed: time and memory are
O(L * keys per query) instead of O(L^2). Query positions a pattern marks as dense
rows (global tokens) are computed against every key in a second, small call.

A float bias, not a boolean mask: on CPU torch 2.13 converts a boolean mask on every
call and runs 4-5x slower than with the equivalent float bias. A query with nothing
to attend to gets zeros (SDPA's fused kernels give 0 for an all ``-inf`` row).

Where a query block's keys land in another head's or batch row's mask, the layout
below folds only the dimensions the mask depends on into SDPA's "heads" axis, so a
batch-independent pattern is never copied per batch row.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.functional._problem import Problem, pair_values
from attnlab.functional.engines import fused_bias, sdpa_attention
from attnlab.masks.patterns import BlockLayout, SparsePattern

__all__ = ["block_sparse_attention"]


def _pattern_pairs(
    pattern: SparsePattern, layout: BlockLayout, lq: int, lk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(allowed, q_idx, kv_idx)``: the pattern's predicate on every gathered pair."""
    keys = layout.key_positions
    q_idx = layout.q_positions.view(keys.shape[0], layout.block_size, 1)
    kv_idx = keys[:, None, :]
    zero = q_idx.new_zeros(())
    mask_mod = pattern.mask_mod(lq, lk)
    allowed = mask_mod(zero, zero, q_idx.clamp(min=0), kv_idx.clamp(min=0))
    return allowed & (q_idx >= 0) & (kv_idx >= 0), q_idx, kv_idx


def _pair_bias(
    allowed: Tensor,
    q_idx: Tensor,
    kv_idx: Tensor,
    dtype: torch.dtype,
    causal_offset: int | None,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """``0 / -inf`` bias ``(Bm, Hm, ...)`` from the pattern, causality, mask and bias."""
    if causal_offset is not None:
        allowed = allowed & (kv_idx <= q_idx + causal_offset)
    allowed = allowed[None, None]
    if mask is not None:
        allowed = allowed & pair_values(mask, q_idx, kv_idx)
    if bias is None:
        return torch.where(allowed, 0.0, -math.inf).to(dtype)
    return fused_bias(pair_values(bias, q_idx, kv_idx), allowed, dtype)


@functools.lru_cache(maxsize=4)
def _cached_pattern_bias(
    pattern: SparsePattern,
    lq: int,
    lk: int,
    block_size: int,
    causal: int | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    # Evaluating the predicate on every gathered pair costs about a fifth of a
    # training step at L = 16k; a layer called again with the same shapes reuses it.
    layout = pattern.layout(lq, lk, block_size, device)
    allowed, q_idx, kv_idx = _pattern_pairs(pattern, layout, lq, lk)
    return _pair_bias(allowed, q_idx, kv_idx, dtype, causal)


def _bias(p: Problem, pattern: SparsePattern, layout: BlockLayout) -> Tensor:
    """The additive bias of every gathered pair, ``(Bm, Hm, n_blocks, block, span)``."""
    lq, lk = p.shape[2:]
    if p.mask is None and p.bias is None:
        return _cached_pattern_bias(
            pattern, lq, lk, layout.block_size, p.causal_offset, p.q.dtype, p.q.device
        )
    allowed, q_idx, kv_idx = _pattern_pairs(pattern, layout, lq, lk)
    return _pair_bias(allowed, q_idx, kv_idx, p.q.dtype, p.causal_offset, p.mask, p.bias)


def _fold(t: Tensor, order: list[int], folded: int) -> Tensor:
    """``(B, H, n, x, D)`` -> ``(rest, folded dims * n, x, D)`` with ``order`` of (B, H)."""
    t = t.permute(*order, 2, 3, 4)
    lead = math.prod(t.shape[: 2 - folded])
    # Explicit sizes, no -1: a zero-width head dim would make -1 ambiguous.
    return t.reshape(lead, math.prod(t.shape[2 - folded : 3]), t.shape[-2], t.shape[-1])


def _unfold(t: Tensor, order: list[int], sizes: tuple[int, int, int]) -> Tensor:
    b, h, n = sizes
    dims = [(b, h)[i] for i in order]
    t = t.reshape(*dims, n, t.shape[-2], t.shape[-1])
    inverse = sorted(range(2), key=lambda i: order[i])
    return t.permute(*inverse, 2, 3, 4)


def _take_slots(t: Tensor, layout: BlockLayout) -> Tensor:
    """Queries ``(B, H, L, D)`` laid out in the layout's slots (padding reads query 0)."""
    if layout.query_slots is None:  # the common layout: no gather, at most a pad
        pad = layout.q_positions.numel() - t.shape[2]
        return F.pad(t, (0, 0, 0, pad)) if pad else t
    return t.index_select(2, layout.q_positions.clamp(min=0))


def _blocks_attention(p: Problem, pattern: SparsePattern, layout: BlockLayout) -> Tensor:
    """Output ``(B, H, slots, Dv)`` of every query slot against its listed keys."""
    b, h, _, _ = p.shape
    size = layout.block_size
    keys = layout.key_positions
    n_blocks = keys.shape[0]
    bias = _bias(p, pattern, layout)
    # Fold into SDPA's head axis only the dims the bias depends on (see module doc).
    depends = [i for i in range(2) if bias.shape[i] != 1]
    order = [i for i in range(2) if i not in depends] + depends
    # index_select, not advanced indexing: its backward is index_add, several times
    # faster than the sorting index_put that advanced indexing differentiates into.
    # (Gathering span-major to match the layout of SDPA's CPU gradients saves a copy
    # but slows the kernel itself by more: measured, and left contiguous.)
    span = keys.shape[1]
    key_index = keys.clamp(min=0).flatten()
    qg = _take_slots(p.q, layout).view(b, h, n_blocks, size, p.q.shape[-1])
    kg = p.k.index_select(2, key_index).view(b, h, n_blocks, span, p.k.shape[-1])
    vg = p.v.index_select(2, key_index).view(b, h, n_blocks, span, p.v.shape[-1])
    q4, k4, v4 = (_fold(t, order, len(depends)) for t in (qg, kg, vg))
    bias4 = bias.permute(*order, 2, 3, 4).reshape(1, -1, size, span)
    out = F.scaled_dot_product_attention(
        q4, k4, v4, attn_mask=bias4, dropout_p=p.dropout_p, scale=p.scale
    )
    return _unfold(out, order, (b, h, n_blocks)).reshape(b, h, n_blocks * size, p.v.shape[-1])


def _dense_rows(p: Problem, rows: Tensor, mask_mod) -> Tensor:
    """Output ``(B, H, len(rows), Dv)`` of the given query positions against every key."""
    lk = p.k.shape[-2]
    q_idx = rows[:, None]
    kv_idx = torch.arange(lk, device=rows.device)[None, :]
    allowed = mask_mod(q_idx.new_zeros(()), q_idx.new_zeros(()), q_idx, kv_idx)
    bias = _pair_bias(allowed, q_idx, kv_idx, p.q.dtype, p.causal_offset, p.mask, p.bias)
    return F.scaled_dot_product_attention(
        p.q[:, :, rows], p.k, p.v, attn_mask=bias, dropout_p=p.dropout_p, scale=p.scale
    )


def block_sparse_attention(
    p: Problem, pattern: SparsePattern, *, block_size: int | None = None
) -> Tensor:
    """Run the blockwise engine on a prepared dot-product :class:`Problem`.

    Args:
        p: the validated call (``p.scale`` must not be None).
        pattern: the sparsity pattern; its predicate is exact, its layout says which
            blocks are computed.
        block_size: override the pattern's block size (sequences that do not divide
            into blocks are padded, never rejected).

    Returns:
        Output ``(B, H, Lq, Dv)`` in v's dtype.

    Shapes:
        q ``(B, H, Lq, D)``, k ``(B, H, Lk, D)``, v ``(B, H, Lk, Dv)`` -> ``(B, H, Lq, Dv)``.
    """
    b, h, lq, lk = p.shape
    if 0 in (b, h, lq, lk):
        pattern.mask_mod(lq, lk)  # the pattern still checks that it fits these lengths
        return sdpa_attention(p)  # no pair to compute: an empty output or zero rows
    layout = pattern.layout(lq, lk, block_size, p.q.device)
    outputs = _blocks_attention(p, pattern, layout)
    slots = layout.query_slots
    out = outputs[:, :, :lq] if slots is None else outputs.index_select(2, slots)
    rows = layout.dense_rows
    if rows is not None and rows.numel() > 0:
        out = out.index_copy(2, rows, _dense_rows(p, rows, pattern.mask_mod(lq, lk)))
    return out
