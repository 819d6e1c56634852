"""Score functions: how a query row and a key row become one attention logit.

Every score-based attention is ``scores -> (mask, bias) -> softmax -> weighted sum``
(see :func:`attnlab.functional.attention`). Mechanisms differ only in the score, so a
variant plugs in one of these objects and never copies the softmax-and-sum code.

A score works in two steps, so engines can run it blockwise:

* :meth:`Score.prepare` maps ``(q, k)`` once per call to the space where scoring is
  cheap (Luong's ``general`` multiplies the query by ``W``; Bahdanau's additive score
  projects both sides). Keys that were prepared already (a decoder attending to the
  same source at every step) can be passed with ``keys_prepared=True``.
* :meth:`Score.pairwise` scores prepared query rows against prepared key rows:
  ``(..., Lq, D') x (..., Lk, D') -> (..., Lq, Lk)``. Engines call it on blocks.

A score whose pairwise form is ``scale * q @ k^T`` reports ``dot_scale``; such
variants run on torch's fused SDPA kernels and on the chunked engine's fast path.

All score objects are frozen dataclasses holding tensors (parameters live in
``attnlab.nn`` modules, which build a score per call).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Score",
    "Dot",
    "ScaledDot",
    "General",
    "Additive",
    "Location",
    "Zero",
    "Cosine",
    "dot",
    "scaled_dot",
    "general",
    "additive",
    "concat",
    "location",
    "cosine",
]


class Score:
    """Base class: ``prepare`` once, then ``pairwise`` on (blocks of) rows.

    A score without a dot-product form may also override :meth:`pairwise_vjp` (see
    :meth:`Additive.pairwise_vjp`): the chunked engine then differentiates its blocks by
    hand instead of through autograd.
    """

    name: str = "score"

    def prepare(
        self, q: Tensor, k: Tensor, *, keys_prepared: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Map queries and keys to the space ``pairwise`` works in (default: identity)."""
        return q, k

    def prepare_keys(self, k: Tensor) -> Tensor:
        """Prepare keys alone, to reuse them across many queries (default: identity)."""
        return k

    def dot_scale(self, q: Tensor) -> float | None:
        """``s`` if ``pairwise(q, k) == s * q @ k^T`` on prepared inputs, else None."""
        return None

    def tensors(self) -> tuple[Tensor, ...]:
        """Tensors ``pairwise`` reads besides q and k (gradients flow to them)."""
        return ()

    def pairwise(self, q: Tensor, k: Tensor, *tensors: Tensor) -> Tensor:
        """Score prepared rows: ``(..., Lq, D'), (..., Lk, D') -> (..., Lq, Lk)``.

        ``tensors`` are :meth:`tensors` (engines pass detached copies when they
        recompute blocks in backward); default implementations use ``dot_scale``.
        """
        scale = self.dot_scale(q)
        if scale is None:
            raise NotImplementedError(f"{type(self).__name__} must implement pairwise")
        return torch.matmul(q, k.transpose(-2, -1)) * scale

    def query_bias(self, q: Tensor, lk: int) -> Tensor | None:
        """A logit term ``(..., Lq, Lk)`` from the raw query alone, added to the scores."""
        return None

    def pairwise_vjp(
        self,
        q: Tensor,
        k: Tensor,
        *tensors: Tensor,
        workspace: Callable[[int], Tensor] | None = None,
    ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor | None, ...]]] | None:
        """Optional: scores of one block with a hand-written vector-Jacobian product.

        Returns ``(scores (..., Lq, Lk), vjp)`` with ``vjp(G) -> (dq, dk, *dtensors)``,
        computed outside autograd; the default, None, has the blockwise engines
        differentiate :meth:`pairwise` with :func:`torch.autograd.grad` instead.
        """
        return None


@dataclass(frozen=True)
class Dot(Score):
    """Luong et al. 2015 ``dot``: ``s(q, k) = q . k``.

    Example:
        >>> s = Dot(); q = torch.tensor([[1.0, 2.0]]); k = torch.tensor([[3.0, 4.0]])
        >>> s.pairwise(q, k)
        tensor([[11.]])
    """

    name = "dot"

    def dot_scale(self, q: Tensor) -> float | None:
        """See :meth:`Score.dot_scale`."""
        return 1.0


@dataclass(frozen=True)
class ScaledDot(Score):
    """Vaswani et al. 2017: ``s(q, k) = q . k / sqrt(D)`` (or ``q . k * scale``).

    Args:
        scale: multiplier; None means ``1 / sqrt(D)`` with D the query's last dim.
    """

    scale: float | None = None
    name = "scaled_dot"

    def dot_scale(self, q: Tensor) -> float | None:
        """See :meth:`Score.dot_scale`."""
        if self.scale is not None:
            return self.scale
        # Zero-width queries score 0 against every key, whatever the scale.
        return 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0


@dataclass(frozen=True, eq=False)
class General(Score):
    """Luong et al. 2015 ``general`` (bilinear): ``s(h_t, h_s) = h_t^T W h_s``.

    Prepared as ``q' = q @ W`` so the pairwise step is a plain dot product (and runs
    on the fused kernels).

    Args:
        weight: ``W`` of shape ``(Dq, Dk)``.
    """

    weight: Tensor
    name = "general"

    def prepare(
        self, q: Tensor, k: Tensor, *, keys_prepared: bool = False
    ) -> tuple[Tensor, Tensor]:
        """See :meth:`Score.prepare`."""
        return torch.matmul(q, self.weight), k

    def dot_scale(self, q: Tensor) -> float | None:
        """See :meth:`Score.dot_scale`."""
        return 1.0


@dataclass(frozen=True, eq=False)
class Additive(Score):
    """Bahdanau et al. 2015 additive score: ``s(q, k) = v^T tanh(W_q q + W_k k + b)``.

    Luong's ``concat`` score ``v^T tanh(W [h_t; h_s])`` is the same function with
    ``W = [W_q, W_k]``. Engines evaluate it on key blocks, so the
    ``(Lq x Lk x hidden)`` tensor never exists unless the math engine is forced.

    Args:
        v: ``(hidden,)``.
        w_q: ``(hidden, Dq)``.
        w_k: ``(hidden, Dk)``, or None when keys arrive already projected
            (``keys_prepared=True``).
        bias: optional ``(hidden,)``, added on the key side.
    """

    v: Tensor
    w_q: Tensor
    w_k: Tensor | None = None
    bias: Tensor | None = None
    name = "additive"

    def prepare(
        self, q: Tensor, k: Tensor, *, keys_prepared: bool = False
    ) -> tuple[Tensor, Tensor]:
        """See :meth:`Score.prepare`."""
        return F.linear(q, self.w_q), (k if keys_prepared else self.prepare_keys(k))

    def prepare_keys(self, k: Tensor) -> Tensor:
        """See :meth:`Score.prepare_keys`."""
        if self.w_k is None:
            return k if self.bias is None else k + self.bias
        return F.linear(k, self.w_k, self.bias)

    def tensors(self) -> tuple[Tensor, ...]:
        """See :meth:`Score.tensors`."""
        return (self.v,)

    def pairwise(self, q: Tensor, k: Tensor, *tensors: Tensor) -> Tensor:
        """See :meth:`Score.pairwise`."""
        v = tensors[0] if tensors else self.v
        return torch.matmul(torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3)), v)

    def pairwise_vjp(
        self,
        q: Tensor,
        k: Tensor,
        *tensors: Tensor,
        workspace: Callable[[int], Tensor] | None = None,
    ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]]:
        r"""Scores of one block and their hand-written vector-Jacobian product.

        With :math:`T = \tanh(q_i + k_j)` (prepared rows) and upstream :math:`G`:

        .. math::
            dv = \sum_{ij} G_{ij} T_{ij}, \quad
            dq_i = v \odot \sum_j G_{ij} (1 - T_{ij}^2), \quad
            dk_j = v \odot \sum_i G_{ij} (1 - T_{ij}^2)

        The chunked engine calls this per block instead of differentiating
        :meth:`pairwise` with autograd: ``T`` is built once, in a reused buffer, and
        serves both the scores and their gradients (``d tanh = 1 - tanh^2``).

        Args:
            q: prepared queries ``(..., Lq, hidden)``.
            k: prepared keys ``(..., Lk, hidden)``, same leading dims as ``q``.
            tensors: ``(v,)`` as in :meth:`pairwise`.
            workspace: returns a flat buffer of at least the number of elements asked
                for, to hold ``T`` (``(..., Lq, Lk, hidden)``); None allocates one.

        Returns:
            ``(scores (..., Lq, Lk), vjp)``, outside autograd; ``vjp(G)`` returns
            ``(dq, dk, dv)`` and may be called once (it overwrites the buffer).

        Example:
            >>> s = Additive(torch.ones(2), torch.eye(2), torch.eye(2))
            >>> q, k = torch.zeros(1, 2), torch.zeros(3, 2)
            >>> scores, vjp = s.pairwise_vjp(q, k)
            >>> scores, vjp(torch.ones(1, 3))[0]
            (tensor([[0., 0., 0.]]), tensor([[3., 3.]]))
        """
        v = (tensors[0] if tensors else self.v).detach()
        q, k = q.detach(), k.detach()
        shape = (*q.shape[:-1], k.shape[-2], q.shape[-1])
        numel = math.prod(shape)
        t = q.new_empty(shape) if workspace is None else workspace(numel).view(shape)
        torch.add(q.unsqueeze(-2), k.unsqueeze(-3), out=t).tanh_()
        scores = torch.matmul(t, v)

        @torch.no_grad()
        def vjp(g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            hid = t.shape[-1]
            dv = torch.mv(t.view(-1, hid).t(), g.reshape(-1))
            # 1 - T^2 in place (T is no longer needed), in one pass; computing it
            # directly (not sum G - sum G T^2) keeps saturated units exact.
            torch.addcmul(t.new_ones(()), t, t, value=-1.0, out=t)
            dq = torch.matmul(g.unsqueeze(-2), t).squeeze(-2).mul_(v)
            # dk sums over queries, which are not contiguous in T: weight, then reduce.
            dk = t.mul_(g.unsqueeze(-1)).sum(-3).mul_(v)
            return dq, dk, dv

        return scores, vjp


@dataclass(frozen=True)
class Zero(Score):
    """No content term: every logit comes from ``bias=`` (or a subclass's query bias).

    Used by attention pooling, whose logits depend on each key alone, and by
    :class:`Location`.
    """

    name = "zero"

    def prepare(
        self, q: Tensor, k: Tensor, *, keys_prepared: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Width-1 zeros: the content term is 0 whatever the sizes of q and k."""
        return q.new_zeros(*q.shape[:-1], 1), k.new_zeros(*k.shape[:-1], 1)

    def dot_scale(self, q: Tensor) -> float | None:
        """See :meth:`Score.dot_scale`."""
        return 0.0


@dataclass(frozen=True, eq=False)
class Location(Zero):
    """Luong et al. 2015 ``location``: ``a_t = softmax(W_a h_t)``, no source content.

    The logits come from the query alone, one per source position, so they enter
    the core as a query-only bias; the content term is zero.

    Args:
        weight: ``W_a`` of shape ``(max_source_len, Dq)``.
        bias: optional ``(max_source_len,)``.
    """

    weight: Tensor
    bias: Tensor | None = None
    name = "location"

    def query_bias(self, q: Tensor, lk: int) -> Tensor | None:
        """See :meth:`Score.query_bias`."""
        if lk > self.weight.shape[0]:
            raise ValueError(
                f"location attention was built for at most {self.weight.shape[0]} source "
                f"positions but got Lk={lk}; build it with a larger max_source_len"
            )
        bias = None if self.bias is None else self.bias[:lk]
        return F.linear(q, self.weight[:lk], bias)


@dataclass(frozen=True)
class Cosine(Score):
    """Cosine similarity score: ``s(q, k) = scale * cos(q, k)``.

    Used by Graves et al. 2014 (content addressing, with a sharpening ``beta``) and
    Swin v2 (with a temperature). Prepared by L2-normalising rows, then a dot.

    Args:
        scale: the sharpening factor (``beta`` or ``1 / tau``).
        eps: guards the normalisation of zero rows.
    """

    scale: float = 1.0
    eps: float = 1e-8
    name = "cosine"

    def prepare(
        self, q: Tensor, k: Tensor, *, keys_prepared: bool = False
    ) -> tuple[Tensor, Tensor]:
        """See :meth:`Score.prepare`."""
        return F.normalize(q, dim=-1, eps=self.eps), (k if keys_prepared else self.prepare_keys(k))

    def prepare_keys(self, k: Tensor) -> Tensor:
        """See :meth:`Score.prepare_keys`."""
        return F.normalize(k, dim=-1, eps=self.eps)

    def dot_scale(self, q: Tensor) -> float | None:
        """See :meth:`Score.dot_scale`."""
        return self.scale


def dot() -> Dot:
    """Luong's ``dot`` score (see :class:`Dot`)."""
    return Dot()


def scaled_dot(scale: float | None = None) -> ScaledDot:
    """Scaled dot-product score (see :class:`ScaledDot`)."""
    return ScaledDot(scale)


def general(weight: Tensor) -> General:
    """Luong's bilinear ``general`` score (see :class:`General`)."""
    return General(weight)


def additive(
    v: Tensor, w_q: Tensor, w_k: Tensor | None = None, bias: Tensor | None = None
) -> Additive:
    """Bahdanau's additive score (see :class:`Additive`)."""
    return Additive(v, w_q, w_k, bias)


def concat(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Additive:
    """Luong's ``concat`` score ``v^T tanh(W [q; k] + b)`` with ``W = [W_q, W_k]``.

    Args:
        v: ``(hidden,)``.
        weight: ``(hidden, Dq + Dk)``; the first Dq columns act on the query.
        bias: optional ``(hidden,)``.
    """
    raise_if_not_2d(weight, "concat weight")
    dq = weight.shape[1] // 2 if weight.shape[1] % 2 == 0 else None
    if dq is None:
        raise ValueError("concat weight must be (hidden, Dq + Dk); use additive() for Dq != Dk")
    return Additive(v, weight[:, :dq], weight[:, dq:], bias)


def location(weight: Tensor, bias: Tensor | None = None) -> Location:
    """Luong's ``location`` score (see :class:`Location`)."""
    return Location(weight, bias)


def cosine(scale: float = 1.0) -> Cosine:
    """Cosine similarity score (see :class:`Cosine`)."""
    return Cosine(scale)


def raise_if_not_2d(t: Tensor, what: str) -> None:
    """Raise a one-line ValueError unless ``t`` is a matrix."""
    if t.dim() != 2:
        raise ValueError(f"{what} must be a 2-D matrix, got shape {tuple(t.shape)}")
