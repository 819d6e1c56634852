"""One block of a score that has no dot-product form, with its vector-Jacobian product.

Blockwise engines (:mod:`attnlab.functional.chunked`) evaluate such scores block by
block and differentiate each block on its own. A score can supply the gradient by
hand by overriding :meth:`~attnlab.functional.scores.Score.pairwise_vjp` (see
:meth:`attnlab.functional.scores.Additive.pairwise_vjp`); any other score (whose
``pairwise_vjp`` returns None) is differentiated with :func:`torch.autograd.grad`
through its ``pairwise``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from attnlab.functional.scores import Score

__all__ = ["BlockVjp", "score_block"]

BlockVjp = Callable[[Tensor], tuple[Tensor | None, ...]]


def score_block(
    score: Score,
    q: Tensor,
    k: Tensor,
    tensors: tuple[Tensor, ...],
    *,
    need_vjp: bool,
    workspace: Callable[[int], Tensor],
) -> tuple[Tensor, BlockVjp | None]:
    """Raw logits ``(..., bq, bk)`` of one block in q's dtype, and their vjp if asked.

    Args:
        score: the score; its ``pairwise_vjp`` is used when it gives one.
        q: prepared query rows ``(..., bq, D')``.
        k: prepared key rows ``(..., bk, D')``.
        tensors: the score's tensors (``score.tensors()``), in the engine's dtype.
        need_vjp: also return ``vjp(dS) -> (dq, dk, *dtensors)`` (entries may be None).
        workspace: gives a reused flat buffer of at least n elements.

    Returns:
        ``(logits, vjp or None)``; the logits are the caller's to modify in place.

    Example:
        >>> from attnlab.functional.scores import additive
        >>> s = additive(torch.ones(2), torch.eye(2), torch.eye(2))
        >>> logits, vjp = score_block(
        ...     s, torch.zeros(1, 2), torch.zeros(3, 2), s.tensors(),
        ...     need_vjp=True, workspace=torch.empty)
        >>> logits.shape, vjp(torch.ones(1, 3))[1]
        (torch.Size([1, 3]), tensor([[1., 1.],
                [1., 1.],
                [1., 1.]]))
    """
    by_hand = score.pairwise_vjp(q, k, *tensors, workspace=workspace)
    if by_hand is not None:
        s, vjp = by_hand
        return s.to(q.dtype), vjp
    if not need_vjp:
        return score.pairwise(q, k, *tensors).to(q.dtype), None
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (q, k, *tensors)]
        s = score.pairwise(*leaves).to(q.dtype)

    def vjp(ds: Tensor) -> tuple[Tensor | None, ...]:
        return torch.autograd.grad(s, leaves, ds, allow_unused=True)

    # A copy: the caller masks the logits in place and the graph may have saved them.
    return s.detach().clone(), vjp
