r"""Linear attention: a kernel feature map in place of the softmax, linear in the length.

Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive Transformers
with Linear Attention", replace :math:`\exp(q^\top k)` by :math:`\phi(q)^\top \phi(k)`
for a non-negative feature map :math:`\phi`; associativity then lets the key-value
sums be formed once instead of per query:

.. math::
    \mathrm{out}_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}
                          {\phi(q_i)^\top \sum_j \phi(k_j)}

in :math:`O(L D D_v)` time. Causal attention (:math:`j \le i`) is a prefix sum, computed
chunk by chunk (a small causal quadratic form inside each chunk of ``C`` positions, a
carried :math:`D \times D_v` state across chunks) with a written backward, in memory
:math:`O(L (D + D_v))`: no :math:`(L, D, D_v)` or :math:`(L_q, L_k)` tensor is built.

Feature maps (the only difference between the methods; the core is shared):
``"elu"``, :math:`\phi(x) = \mathrm{elu}(x) + 1` (Katharopoulos et al.; not an
approximation of softmax, a different attention), and ``"favor"``, FAVOR+ positive
orthogonal random features (Choromanski et al. 2021, "Rethinking Attention with
Performers"), an unbiased estimate of :math:`\mathrm{softmax}(QK^\top / \sqrt{d})`
that sharpens as the feature count ``m`` grows.

Conventions: layout ``(B, H, L, D)``; key masks only (a per-query mask needs the
:math:`(L_q, L_k)` scores this method avoids): boolean, True = may attend, ``(B, Lk)``
or broadcastable to ``(B, H, 1, Lk)``; masked keys get zero features. Denominators
are clamped below at ``eps`` (:data:`EPS` = 1e-12), so a query with no visible key
returns zeros, never NaN. Math runs in at least float32, cast back to the input dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.functional._problem import check_qkv
from attnlab.masks.check import check_mask

__all__ = [
    "DEFAULT_CHUNK",
    "EPS",
    "FEATURE_MAPS",
    "draw_orthogonal_features",
    "elu_feature_map",
    "favor_feature_map",
    "kernelized_attention",
    "linear_attention",
]

FeatureMap = Literal["elu", "favor"]
FEATURE_MAPS = ("elu", "favor")
# Chunk length of the causal prefix sum: the intra-chunk form costs L*C*(D + Dv) and
# the state products 2*L*D*Dv, so C near D balances them (64 measured fastest here).
DEFAULT_CHUNK = 64
# Only turns 0/0 into 0: stabilised FAVOR+ denominators can be small but real, and a
# guard like 1e-6 would bias them.
EPS = 1e-12
# A per-query mask needs the (Lq, Lk) scores linear attention exists to avoid.
KEY_MASK = "a boolean key mask (B, Lk) or (B|1, H|1, 1, Lk): linear attention takes key masks only"


def elu_feature_map(x: Tensor) -> Tensor:
    r"""Katharopoulos et al.'s feature map :math:`\phi(x) = \mathrm{elu}(x) + 1 > 0`.

    Args:
        x: queries or keys, any shape.

    Returns:
        A tensor of the same shape, positive everywhere.

    Example:
        >>> elu_feature_map(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0.3679, 1.0000, 3.0000])
    """
    return F.elu(x).add_(1)  # in place: elu backward reads its input; fresh memory is slow


def draw_orthogonal_features(
    num_features: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Block-orthogonal Gaussian projection ``W`` of FAVOR+ (Choromanski et al. 2021).

    Blocks of ``dim`` exactly orthogonal rows (Haar-uniform: QR of a Gaussian matrix,
    signs of ``R``'s diagonal folded in), each row rescaled to the norm of an
    independent ``N(0, I)`` vector: rows are marginally Gaussian, orthogonal within a
    block (lowering the estimator's variance); more features stack independent blocks.

    Args:
        num_features: ``m``, the number of random features (rows).
        dim: ``d``, the query/key head size.
        generator: drawn from (on its device); default torch's global generator.
        device: where the result goes (default: the generator's device, or CPU).
        dtype: its dtype (default torch's default dtype).

    Returns:
        ``W``.

    Shapes:
        ``(num_features, dim)``.

    Example:
        >>> w = draw_orthogonal_features(3, 4, generator=torch.Generator().manual_seed(0))
        >>> gram = w @ w.T
        >>> w.shape, bool((gram - torch.diag(gram.diagonal())).abs().max() < 1e-5)
        (torch.Size([3, 4]), True)
    """
    for name, value in (("num_features", num_features), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    source = generator.device if generator is not None else torch.device("cpu")
    opts = {"generator": generator, "device": source, "dtype": torch.float64}
    blocks = []
    for _ in range(-(-num_features // dim)):
        q, r = torch.linalg.qr(torch.randn(dim, dim, **opts))
        # Without the sign fix QR's output is not uniformly distributed (Mezzadri 2007).
        blocks.append(q * torch.sign(torch.diagonal(r)).unsqueeze(0))
    w = torch.cat(blocks)[:num_features]
    norms = torch.randn(num_features, dim, **opts).norm(dim=1, keepdim=True)
    return (w * norms).to(device=device or source, dtype=dtype or torch.get_default_dtype())


def favor_feature_map(
    x: Tensor, projection: Tensor, *, is_query: bool, visible: Tensor | None = None
) -> Tensor:
    r"""FAVOR+ positive random features, numerically stabilised.

    .. math::
        \phi(x)_r = \exp\!\left(w_r^\top x' - \tfrac{\lVert x' \rVert^2}{2} - c\right)
        / \sqrt{m}, \qquad x' = d^{-1/4} x

    so that :math:`E[\phi(q)^\top \phi(k)] \propto \exp(q^\top k / \sqrt{d})`. The shift
    ``c`` keeps exponents at most 0 and cancels in the attention ratio: a query's own
    row maximum, or for keys the maximum over the visible keys and features of one
    ``(batch, head)``. It carries no gradient (the ratio does not depend on it).

    Args:
        x: queries or keys ``(B, H, L, d)``, floating.
        projection: ``W`` ``(m, d)`` from :func:`draw_orthogonal_features`.
        is_query: per-row shift (queries) or one shift per ``(B, H)`` (keys).
        visible: boolean, broadcastable to ``(B, H, L)``, True = a real key: the others
            are left out of the key shift and get zero features.

    Returns:
        Non-negative features ``(B, H, L, m)`` in ``x``'s dtype.

    Shapes:
        x ``(B, H, L, d)``, projection ``(m, d)`` -> ``(B, H, L, m)``.

    Example:
        >>> w = draw_orthogonal_features(8, 4, generator=torch.Generator().manual_seed(0))
        >>> phi = favor_feature_map(torch.randn(1, 1, 3, 4), w, is_query=True)
        >>> top = phi.amax(-1)  # each query row's largest feature is exp(0) / sqrt(m)
        >>> phi.shape, bool(phi.min() >= 0), torch.allclose(top, torch.full_like(top, 8**-0.5))
        (torch.Size([1, 1, 3, 8]), True, True)
    """
    phi, key_weight = _favor_parts(x, projection, is_query=is_query, visible=visible)
    phi = phi * projection.shape[0] ** -0.5
    return phi if key_weight is None else phi * key_weight


def _favor_parts(
    x: Tensor, projection: Tensor, *, is_query: bool, visible: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """FAVOR+ features split as ``exp(w^T x' - row max)`` times a per-key weight.

    The key-only factor ``exp(row max - |x'|^2 / 2 - c)`` is one number per key, so
    the core applies it to the value rows (``(L, Dv + 1)``) instead of the ``(L, m)``
    features, and every shift is taken off the one big tensor in place. Both factors
    are at most 1. The ``1/sqrt(m)`` is left out: it cancels in the ratio.
    """
    x = x * x.shape[-1] ** -0.25
    logits = x @ projection.to(x.dtype).T
    row_max = logits.detach().amax(-1, keepdim=True)
    # A query's shift is its own row maximum of w^T x' - |x'|^2/2, so the norm cancels.
    phi = logits.sub_(row_max).exp_()
    if is_query:
        return phi, None
    exponent = row_max - x.square().sum(-1, keepdim=True) / 2
    shown = exponent.detach()
    if visible is not None:
        shown = shown.masked_fill(~visible[..., None], -math.inf)
    # amax over no keys is an error, not -inf: with Lk = 0 any shift will do.
    shift = shown.amax(-2, keepdim=True) if shown.shape[-2] else shown.new_zeros(())
    # A (batch, head) with no visible key has shift -inf: any finite value will do.
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    weight = torch.exp(exponent - shift)
    if visible is not None:
        weight = torch.where(visible[..., None], weight, torch.zeros_like(weight))
    return phi, weight


def _check(
    q: object, k: object, v: object, names: str, causal: bool, chunk_size: int, eps: float
) -> None:
    """One-line errors for the tensors and options of either public entry point."""
    check_qkv(q, k, v, names=tuple(names.split(", ")), same_width=True)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"causal linear attention needs as many queries as keys, got "
            f"Lq={q.shape[-2]}, Lk={k.shape[-2]}"
        )


def _key_visibility(mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    """A key mask ``(B, Lk)`` or ``(B|1, H|1, 1, Lk)`` as ``(B|1, H|1, Lk)`` booleans."""
    if mask is None:
        return None
    b, h, lk = k.shape[0], k.shape[1], k.shape[2]
    if isinstance(mask, Tensor) and mask.dim() == 2:
        mask = mask[:, None, None, :]
    check_mask(mask, shape=(b, h, 1, lk), expected=KEY_MASK)
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)).squeeze(-2)


def _causal_product(a: Tensor, b: Tensor, c: Tensor, chunk: int, reverse: bool) -> Tensor:
    """``out_i = sum_j (a_i . b_j) c_j`` over ``j <= i`` (``j >= i`` if reverse), ``(N, L, .)``.

    Chunk by chunk: the small triangular form inside a chunk, plus ``a_i`` times the
    carried ``(Db, Dc)`` sum of ``b_j c_j^T`` over the chunks already passed. Only that
    state and one chunk's scores are alive at a time, and the state stays in cache.
    """
    length = a.shape[1]
    out = c.new_empty(a.shape[0], length, c.shape[-1])
    state = c.new_zeros(a.shape[0], b.shape[-1], c.shape[-1])
    starts = range(0, length, chunk)
    for s in reversed(starts) if reverse else starts:
        e = min(s + chunk, length)
        ac, bc, cc = a[:, s:e], b[:, s:e], c[:, s:e]
        scores = ac @ bc.transpose(1, 2)
        scores = scores.triu_() if reverse else scores.tril_()
        out[:, s:e] = torch.baddbmm(scores @ cc, ac, state)
        state.baddbmm_(bc.transpose(1, 2), cc)
    return out


class _CausalProduct(torch.autograd.Function):
    """:func:`_causal_product` whose backward is three more (autograd would keep every state).

    ``num_i = sum_{j<=i} (a_i . b_j) c_j`` is bilinear: ``da_i = sum_{j<=i} (g_i . c_j) b_j``,
    ``db_j = sum_{i>=j} (c_j . g_i) a_i`` and ``dc_j = sum_{i>=j} (b_j . a_i) g_i``.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, c: Tensor, chunk: int) -> Tensor:
        ctx.save_for_backward(a, b, c)
        ctx.chunk = chunk
        return _causal_product(a, b, c, chunk, reverse=False)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:
        a, b, c = ctx.saved_tensors
        g, chunk, need = g.contiguous(), ctx.chunk, ctx.needs_input_grad
        da = _causal_product(g, c, b, chunk, reverse=False) if need[0] else None
        db = _causal_product(c, g, a, chunk, reverse=True) if need[1] else None
        dc = _causal_product(b, a, g, chunk, reverse=True) if need[2] else None
        return da, db, dc, None


def _hide(phi_k: Tensor, visible: Tensor | None) -> Tensor:
    """Zero the features of masked keys (True in ``visible`` = keep)."""
    if visible is None:
        return phi_k
    return torch.where(visible[..., None], phi_k, torch.zeros_like(phi_k))


def _kernelized(
    phi_q: Tensor,
    phi_k: Tensor,
    v: Tensor,
    causal: bool,
    chunk: int,
    eps: float,
    key_weight: Tensor | None = None,
) -> Tensor:
    # A column of ones: one product then gives numerator and denominator together.
    v1 = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    if key_weight is not None:  # a per-key factor of phi(k_j), applied to the smaller side
        v1 = v1 * key_weight
    if causal:
        b, h, length, _ = phi_q.shape
        flat = (t.reshape(b * h, length, t.shape[-1]) for t in (phi_q, phi_k, v1))
        num = _CausalProduct.apply(*flat, chunk).view(b, h, length, -1)
    else:  # phi(K)^T [V | 1]: one (F, Dv + 1) summary per (batch, head) for every query
        num = phi_q @ (phi_k.transpose(-1, -2) @ v1)
    return num[..., :-1] / num[..., -1:].clamp_min(eps)  # 0/0 -> 0: no visible key


def kernelized_attention(
    phi_q: Tensor,
    phi_k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    eps: float = EPS,
) -> Tensor:
    r"""The linear-attention core on given non-negative features (any feature map).

    .. math::
        \mathrm{out}_i = \frac{\phi_{q,i}^\top \sum_{j \in S_i} \phi_{k,j} v_j^\top}
            {\max(\phi_{q,i}^\top \sum_{j \in S_i} \phi_{k,j}, \varepsilon)}, \quad
        S_i = \text{visible keys} \;(j \le i \text{ when causal})

    Args:
        phi_q: query features ``(B, H, Lq, F)``, non-negative.
        phi_k: key features ``(B, H, Lk, F)``, non-negative.
        v: values ``(B, H, Lk, Dv)``.
        mask: boolean key mask, True = may attend, ``(B, Lk)`` or ``(B|1, H|1, 1, Lk)``.
        causal: query ``i`` sees keys ``j <= i`` (needs ``Lq == Lk``).
        chunk_size: ``C``, positions per chunk of the causal prefix sum.
        eps: lower clamp of the denominator.

    Returns:
        The output in the inputs' dtype.

    Shapes:
        phi_q ``(B, H, Lq, F)``, phi_k ``(B, H, Lk, F)``, v ``(B, H, Lk, Dv)`` -> ``(B, H, Lq, Dv)``

    Example:
        >>> ones = torch.ones(1, 1, 3, 2)
        >>> v = torch.tensor([1.0, 2.0, 6.0]).view(1, 1, 3, 1)
        >>> kernelized_attention(ones, ones, v, causal=True).flatten()
        tensor([1.0000, 1.5000, 3.0000])
    """
    _check(phi_q, phi_k, v, "phi_q, phi_k, v", causal, chunk_size, eps)
    visible = _key_visibility(mask, phi_q, phi_k)
    cdt = torch.promote_types(v.dtype, torch.float32)
    phi_k = _hide(phi_k.to(cdt), visible)
    return _kernelized(phi_q.to(cdt), phi_k, v.to(cdt), causal, chunk_size, eps).to(v.dtype)


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: FeatureMap = "elu",
    projection: Tensor | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    eps: float = EPS,
) -> Tensor:
    r"""Linear attention (Katharopoulos et al. 2020) or Performer FAVOR+ (Choromanski 2021).

    .. math::
        \mathrm{out}_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}
                              {\phi(q_i)^\top \sum_j \phi(k_j)}

    ``"elu"``: :math:`\phi = \mathrm{elu} + 1` on the raw ``q``, ``k`` (no ``1/sqrt(d)``:
    not softmax attention). ``"favor"``: :func:`favor_feature_map` of ``projection``,
    approximating ``softmax(Q K^T / sqrt(d)) V``. One core for both (see above).

    Args:
        q: queries ``(B, H, Lq, D)``.
        k: keys ``(B, H, Lk, D)``.
        v: values ``(B, H, Lk, Dv)``.
        feature_map: ``"elu"`` or ``"favor"``.
        projection: FAVOR+'s ``(m, D)`` matrix from :func:`draw_orthogonal_features`
            (required for ``"favor"``, unused for ``"elu"``).
        mask: boolean key mask, True = may attend, ``(B, Lk)`` or ``(B|1, H|1, 1, Lk)``.
        causal: query ``i`` sees keys ``j <= i`` (needs ``Lq == Lk``).
        chunk_size: ``C``, positions per chunk of the causal prefix sum.
        eps: lower clamp of the denominator (a query with no visible key gives zeros).

    Returns:
        The output in the inputs' dtype.

    Shapes:
        q ``(B, H, Lq, D)``, k ``(B, H, Lk, D)``, v ``(B, H, Lk, Dv)`` -> ``(B, H, Lq, Dv)``.

    Example:
        >>> q = torch.zeros(1, 1, 2, 3); v = torch.tensor([[[[1.0], [3.0]]]])
        >>> linear_attention(q, q, v).flatten()  # equal features: the mean of v
        tensor([2., 2.])
        >>> linear_attention(q, q, v, causal=True).flatten()
        tensor([1., 2.])
    """
    _check(q, k, v, "q, k, v", causal, chunk_size, eps)
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
    visible = _key_visibility(mask, q, k)
    d = q.shape[-1]
    cdt = torch.promote_types(v.dtype, torch.float32)
    qc, kc = q.to(cdt), k.to(cdt)
    weight = None
    if feature_map == "elu":
        phi_q, phi_k = elu_feature_map(qc), _hide(elu_feature_map(kc), visible)
    else:
        if not isinstance(projection, Tensor) or projection.dim() != 2 or projection.shape[1] != d:
            got = tuple(projection.shape) if isinstance(projection, Tensor) else projection
            raise ValueError(
                f"feature_map='favor' needs projection (m, D={d}) from "
                f"draw_orthogonal_features; got {got}"
            )
        phi_q, _ = _favor_parts(qc, projection, is_query=True, visible=None)
        phi_k, weight = _favor_parts(kc, projection, is_query=False, visible=visible)
    return _kernelized(phi_q, phi_k, v.to(cdt), causal, chunk_size, eps, weight).to(v.dtype)
