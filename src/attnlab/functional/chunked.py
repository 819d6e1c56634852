r"""The ``chunked`` engine: online-softmax attention over blocks, for any score.

Flash-attention's algorithm (Dao et al. 2022; Rabe and Staats 2021) in plain
PyTorch: queries and keys are cut into blocks; each query block keeps a running
maximum ``m``, normaliser ``denom`` and unnormalised output ``acc`` while it visits key
blocks, so the ``(Lq x Lk)`` score matrix never exists. Backward is written by hand
(a custom :class:`torch.autograd.Function`) and recomputes each block from the saved
log-sum-exp, so training memory is linear in L as well:

.. math::
    P = \exp(S - \mathrm{lse}), \quad dV = P^T dO, \quad
    dS = P \odot (dO V^T - \mathrm{rowsum}(dO \odot O))

Scores of the form ``scale * q @ k^T`` run on batched matmuls into reused buffers.
Any other score is evaluated and differentiated per block
(:func:`~attnlab.functional._score_blocks.score_block`): by hand when the score's
``pairwise_vjp`` gives one (additive attention builds its ``(B, H, bq, bk, hidden)`` tanh once
per block, in a reused buffer), else with :func:`torch.autograd.grad`. Gradients reach
the score's own tensors (``score.tensors()``), the bias and q/k/v.

Fully masked query rows give zero output and zero gradients (never NaN).
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

from attnlab.functional._problem import Problem, block_of, causal_block
from attnlab.functional._score_blocks import BlockVjp, score_block
from attnlab.functional.engines import math_attention

# 512 x 512 fp32 tiles keep a score block near the cache and measured fastest on a
# 2-core CPU (see DESIGN.md, "Performance rules").
DOT_BLOCK = 512
# Generic scores materialise (B*H x bq x bk x hidden): 4 MiB. For additive attention,
# 8 MiB blocks ran about 5% faster for 4 MiB more memory; 2 MiB blocks ran slower.
GENERIC_BLOCK_ELEMENTS = 2**20

WORKSPACE_LIMIT = 2**22  # 16 MiB of fp32 per slot
_workspaces = threading.local()


def _workspace(slot: str, numel: int, like: Tensor) -> Tensor:
    """A reused flat buffer: touching fresh memory costs more than the GEMMs it feeds.

    Only buffers up to ``WORKSPACE_LIMIT`` elements are kept between calls.
    """
    if numel > WORKSPACE_LIMIT:
        return like.new_empty(numel)
    cache: dict = _workspaces.__dict__.setdefault("buffers", {})
    key = (slot, like.dtype, like.device)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        buf = cache[key] = like.new_empty(numel)
    return buf[:numel]


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def generic_block_sizes(batch_heads: int, lq: int, lk: int, width: int) -> tuple[int, int]:
    """Query and key block sizes ``(bq, bk)`` of a score without a dot-product form.

    Such a score builds a ``(B*H, bq, bk, width)`` intermediate per block (additive
    attention's ``tanh(W_q q + W_k k)``), so ``bq * bk`` is capped to keep it within
    ``GENERIC_BLOCK_ELEMENTS``. Blocks are near square, keys about four times the
    queries: gradients sum the intermediate over both axes, and summing over only a
    few query rows is slow (B=32, Lq=50, Lk=200, hidden 256, fp32, 4 MiB blocks:
    5 x 25 ran the additive forward+backward 1.4 times faster than 1 x 128).

    Example:
        >>> generic_block_sizes(32, 50, 200, 256)
        (5, 25)
    """
    pairs = max(1, GENERIC_BLOCK_ELEMENTS // max(1, batch_heads * width))
    bq = min(lq, max(1, math.isqrt(pairs) // 2))
    bk = min(lk, max(1, pairs // bq))
    # Few keys leave budget unused: give it back to the queries.
    return min(lq, max(1, pairs // bk)), bk


class _Plan:
    """Block layout and per-block mask/bias/dropout shared by forward and backward."""

    def __init__(self, p: Problem, seed: int | None) -> None:
        b, h, lq, lk = p.shape
        self.p = p
        self.fast = p.scale is not None
        bq, bk = (
            (DOT_BLOCK, DOT_BLOCK)
            if self.fast
            else generic_block_sizes(b * h, lq, lk, p.q.shape[-1])
        )
        self.q_blocks = _blocks(lq, bq)
        self.k_blocks = _blocks(lk, bk)
        self.block_elements = b * h * bq * bk
        self.masked_out = None if p.mask is None else ~p.mask
        # Detached: gradients of the bias are computed by hand from dS.
        self.bias = None if p.bias is None else p.bias.detach()
        self.seed = seed

    def skip(self, qs: int, qe: int, ks: int) -> bool:
        """True when causality hides the whole block."""
        off = self.p.causal_offset
        return off is not None and ks > qe - 1 + off

    def hidden(self, qs: int, qe: int, ks: int, ke: int) -> Tensor | None:
        """Boolean block, True = masked out, or None when all is visible."""
        hidden = block_of(self.masked_out, qs, qe, ks, ke)
        off = self.p.causal_offset
        if off is not None and ke - 1 > qs + off:
            causal = ~causal_block(off, qs, qe, ks, ke, self.p.q.device)
            hidden = causal if hidden is None else hidden | causal
        return hidden

    def keep(self, index: int, shape: torch.Size, device: torch.device) -> Tensor | None:
        """Dropout keep-mask of one block, regenerated identically in backward."""
        if self.seed is None:
            return None
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed + index)
        return torch.rand(shape, generator=gen, device=device) >= self.p.dropout_p


def _scores(
    plan: _Plan,
    qb: Tensor,
    kb: Tensor,
    tensors: tuple[Tensor, ...],
    out: Tensor | None,
    bounds: tuple[int, int, int, int],
    offset: Tensor | None = None,
) -> Tensor:
    """Logits of one block in fp32 (or fp64), masked with -inf, shape ``(B, H, bq, bk)``.

    ``offset`` (``(B, H, bq, 1)``, dot scores only) is added inside the GEMM, which
    saves a pass over the block when backward subtracts the log-sum-exp.
    """
    qs, qe, ks, ke = bounds
    if plan.fast:
        b, h = qb.shape[:2]
        s3 = out.view(b * h, qe - qs, ke - ks) if out is not None else None
        q3, k3t = qb.flatten(0, 1), kb.flatten(0, 1).transpose(1, 2)
        if offset is None:
            s3 = torch.bmm(q3, k3t, out=s3)
        else:
            s3 = torch.baddbmm(offset.flatten(0, 1), q3, k3t, out=s3)
        s = s3.view(b, h, qe - qs, ke - ks)
    else:
        s, _ = _score_block(plan, qb, kb, tensors, need_vjp=False)
    return _mask_logits(plan, s, *bounds)


def _score_block(
    plan: _Plan, qb: Tensor, kb: Tensor, tensors: tuple[Tensor, ...], *, need_vjp: bool
) -> tuple[Tensor, BlockVjp | None]:
    def workspace(n: int) -> Tensor:
        return _workspace("hidden", n, qb)

    return score_block(plan.p.score, qb, kb, tensors, need_vjp=need_vjp, workspace=workspace)


def _mask_logits(plan: _Plan, s: Tensor, qs: int, qe: int, ks: int, ke: int) -> Tensor:
    """Add the bias block and fill hidden positions with -inf, in place."""
    bias = block_of(plan.bias, qs, qe, ks, ke)
    if bias is not None:
        s.add_(bias)
    hidden = plan.hidden(qs, qe, ks, ke)
    if hidden is not None:
        s.masked_fill_(hidden, -math.inf)
    return s


def _upcast(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _forward(
    plan: _Plan, q: Tensor, k: Tensor, v: Tensor, tensors: tuple[Tensor, ...]
) -> tuple[Tensor, Tensor]:
    b, h, lq, _ = q.shape
    out = q.new_empty(b, h, lq, v.shape[-1])
    lse = q.new_empty(b, h, lq, 1)
    buf = _workspace("forward", plan.block_elements, q) if plan.fast else None
    nk = len(plan.k_blocks)
    for qi, (qs, qe) in enumerate(plan.q_blocks):
        qb = q[:, :, qs:qe]
        m = q.new_full((b, h, qe - qs, 1), -math.inf)
        denom = q.new_zeros((b, h, qe - qs, 1))
        acc = q.new_zeros((b, h, qe - qs, v.shape[-1]))
        for ki, (ks, ke) in enumerate(plan.k_blocks):
            if plan.skip(qs, qe, ks):
                continue
            out_b = None if buf is None else buf[: b * h * (qe - qs) * (ke - ks)]
            s = _scores(plan, qb, k[:, :, ks:ke], tensors, out_b, (qs, qe, ks, ke))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            # A row with nothing visible yet keeps m = -inf; shift it by 0 instead.
            m_safe = m_new.masked_fill(m_new == -math.inf, 0.0)
            s.sub_(m_safe).exp_()
            alpha = (m - m_safe).exp_()
            denom.mul_(alpha).add_(s.sum(-1, keepdim=True))
            keep = plan.keep(qi * nk + ki, s.shape, s.device)
            if keep is not None:
                s.mul_(keep).div_(1.0 - plan.p.dropout_p)
            acc.mul_(alpha)
            acc.view(b * h, qe - qs, -1).baddbmm_(
                s.view(b * h, qe - qs, ke - ks), v[:, :, ks:ke].flatten(0, 1)
            )
            m = m_safe
        empty = denom == 0
        out[:, :, qs:qe] = acc.div_(denom.masked_fill(empty, 1.0))
        # +inf for empty rows makes exp(S - lse) exactly 0 in backward.
        lse[:, :, qs:qe] = (m + denom.log()).masked_fill_(empty, math.inf)
    return out, lse


def _block_backward(
    plan: _Plan,
    qb: Tensor,
    kb: Tensor,
    vb: Tensor,
    tensors: tuple[Tensor, ...],
    dob: Tensor,
    neg_lse_b: Tensor,
    neg_delta_b: Tensor,
    dvb: Tensor,
    bufs: tuple[Tensor, Tensor],
    bounds: tuple[int, int, int, int],
    index: int,
) -> tuple[Tensor, tuple[Tensor | None, ...]]:
    """One block of backward, adding to ``dvb``.

    Returns dS and, for generic scores, the gradients of (q block, k block, *tensors).
    """
    p = plan.p
    qs, qe, ks, ke = bounds
    b, h, bq, bk = qb.shape[0], qb.shape[1], qe - qs, ke - ks
    grads: tuple[Tensor | None, ...] = ()
    vjp = None
    if plan.fast:
        s = _scores(plan, qb, kb, tensors, bufs[0][: b * h * bq * bk], bounds, offset=neg_lse_b)
        prob = s.exp_()
    else:
        # The score's vjp needs only dS: masked positions get dS = 0 through P = 0.
        s, vjp = _score_block(plan, qb, kb, tensors, need_vjp=True)
        prob = _mask_logits(plan, s, *bounds).add_(neg_lse_b).exp_()
    keep = plan.keep(index, prob.shape, prob.device)
    dob3, v3t = dob.flatten(0, 1), vb.flatten(0, 1).transpose(1, 2)
    dp3 = bufs[1][: b * h * bq * bk].view(b * h, bq, bk)
    if keep is None:
        dvb.flatten(0, 1).baddbmm_(prob.flatten(0, 1).transpose(1, 2), dob3)
        # dS = P * (dO V^T - delta), the subtraction fused into the GEMM.
        dp3 = torch.baddbmm(neg_delta_b.flatten(0, 1), dob3, v3t, out=dp3)
    else:
        scaled_keep = keep / (1.0 - p.dropout_p)
        dvb.flatten(0, 1).baddbmm_((prob * scaled_keep).flatten(0, 1).transpose(1, 2), dob3)
        dp3 = torch.bmm(dob3, v3t, out=dp3)
        dp3.mul_(scaled_keep.flatten(0, 1)).add_(neg_delta_b.flatten(0, 1))
    ds = dp3.view(b, h, bq, bk).mul_(prob)
    if vjp is not None:
        grads = vjp(ds)
    return ds, grads


def _backward(
    plan: _Plan,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    tensors: tuple[Tensor, ...],
    out: Tensor,
    lse: Tensor,
    dout: Tensor,
    need_bias_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, list[Tensor]]:
    p = plan.p
    b, h, lq, _ = q.shape
    neg_delta = (dout * out).sum(-1, keepdim=True).neg_()
    neg_lse = -lse
    # Accumulators are contiguous per block: in-place batched GEMMs into strided
    # slices fall back to one GEMM per batch entry (measured ~35% of backward time).
    dq_blocks = [q.new_zeros(b, h, qe - qs, q.shape[-1]) for qs, qe in plan.q_blocks]
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    dbias = torch.zeros_like(p.bias, dtype=q.dtype) if need_bias_grad else None
    dtensors = [torch.zeros_like(t) for t in tensors]
    bufs = (
        _workspace("scores", plan.block_elements, q),
        _workspace("grads", plan.block_elements, q),
    )
    nk = len(plan.k_blocks)
    # Keys outside, queries inside (as flash-attention 2): dK and dV of a key block
    # stay hot while every query block adds to them.
    for ki, (ks, ke) in enumerate(plan.k_blocks):
        cols = slice(ks, ke)
        dk_b, dv_b = (
            k.new_zeros(b, h, ke - ks, k.shape[-1]),
            v.new_zeros(b, h, ke - ks, v.shape[-1]),
        )
        for qi, (qs, qe) in enumerate(plan.q_blocks):
            if plan.skip(qs, qe, ks):
                continue
            rows = slice(qs, qe)
            ds, grads = _block_backward(
                plan,
                q[:, :, rows],
                k[:, :, cols],
                v[:, :, cols],
                tensors,
                dout[:, :, rows],
                neg_lse[:, :, rows],
                neg_delta[:, :, rows],
                dv_b,
                bufs,
                (qs, qe, ks, ke),
                qi * nk + ki,
            )
            if dbias is not None:
                target = block_of(dbias, qs, qe, ks, ke)
                target += ds.sum_to_size(target.shape)
            if plan.fast:
                ds3 = ds.flatten(0, 1)
                dq_blocks[qi].flatten(0, 1).baddbmm_(ds3, k[:, :, cols].flatten(0, 1))
                dk_b.flatten(0, 1).baddbmm_(ds3.transpose(1, 2), q[:, :, rows].flatten(0, 1))
            else:
                for target, g in zip([dq_blocks[qi], dk_b, *dtensors], grads):
                    if g is not None:
                        target += g
        dk[:, :, cols], dv[:, :, cols] = dk_b, dv_b
        # Freed now, not when the next block's accumulators replace them.
        del dk_b, dv_b
    dq = torch.cat(dq_blocks, dim=2)
    return dq, dk, dv, dbias, dtensors


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, plan: _Plan, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, *tensors: Tensor
    ) -> tuple[Tensor, Tensor]:
        dtype = v.dtype
        # Contiguous copies: block views of them flatten (B, H) into one bmm batch dim.
        q32, k32, v32 = (_upcast(t).contiguous() for t in (q, k, v))
        if plan.fast:
            q32 = q32 * plan.p.scale
        t32 = tuple(_upcast(t) for t in tensors)
        with torch.no_grad():
            out, lse = _forward(plan, q32, k32, v32, t32)
        ctx.plan = plan
        ctx.save_for_backward(q32, k32, v32, out, lse, *t32)
        ctx.dtypes = (
            q.dtype,
            k.dtype,
            v.dtype,
            None if bias is None else bias.dtype,
            [t.dtype for t in tensors],
        )
        ctx.mark_non_differentiable(lse)
        return out.to(dtype), lse

    @staticmethod
    def backward(ctx, dout: Tensor, _dlse: Tensor):
        """See the base class."""
        plan: _Plan = ctx.plan
        q, k, v, out, lse, *tensors = ctx.saved_tensors
        qd, kd, vd, bd, td = ctx.dtypes
        need_bias = bd is not None and ctx.needs_input_grad[4]
        dq, dk, dv, dbias, dts = _backward(
            plan, q, k, v, tuple(tensors), out, lse, _upcast(dout).contiguous(), need_bias
        )
        if plan.fast:
            # S = (scale * q) k^T: k's gradient already used the scaled q; q's needs it.
            dq.mul_(plan.p.scale)
        return (
            None,
            dq.to(qd),
            dk.to(kd),
            dv.to(vd),
            None if dbias is None else dbias.to(bd),
            *(g.to(d) for g, d in zip(dts, td)),
        )


def chunked_attention(p: Problem, *, seed: int | None = None) -> Tensor:
    """Run the chunked engine on a prepared :class:`Problem`.

    Args:
        p: the validated call.
        seed: dropout seed (needed when ``p.dropout_p > 0``; blocks regenerate their
            keep-masks from it in backward).

    Returns:
        Output ``(B, H, Lq, Dv)`` in v's dtype.
    """
    if 0 in p.shape:
        # No block to visit: the reference engine gives the empty output (or zero rows
        # when there are no keys) without materialising anything.
        return math_attention(p)[0]
    if p.dropout_p > 0 and seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    plan = _Plan(p, seed if p.dropout_p > 0 else None)
    bias = p.bias
    out, _ = _ChunkedAttention.apply(plan, p.q, p.k, p.v, bias, *p.score.tensors())
    return out
