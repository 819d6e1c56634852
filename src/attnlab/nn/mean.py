"""The no-attention baseline as an attention module (uniform weights, the mean context)."""

from __future__ import annotations

import torch

from attnlab.functional import Score, Zero
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.nn._common import SourceAttention

__all__ = ["MeanAttention"]


class MeanAttention(SourceAttention):
    r"""The no-attention baseline as an attention module: uniform weights, the mean context.

    From Xu et al. 2015 ("Show, Attend and Tell"), who compare their attention against
    the mean-pooled grid. :math:`\alpha_i = 1 / L` whatever the query, so
    :math:`z = \frac{1}{L} \sum_i a_i`. The scores are the core's
    :class:`~attnlab.functional.Zero` (all logits 0, so the softmax is uniform over the
    positions the mask allows), keeping the ``(context, weights)`` contract: a model
    takes it in place of any :class:`~attnlab.nn.SourceAttention` for its no-attention twin.

    Args:
        query_size: ``Dq``, the decoder state size (checked, then ignored).
        key_size: ``Dk``, the annotation size.
        device, dtype: checked like every module's (it holds no parameters).

    Shapes:
        query ``(B, Dq)`` or ``(B, Lq, Dq)``; keys ``(B, Lk, Dk)`` -> context ``(B, Dk)`` or
        ``(B, Lq, Dk)``; weights ``(B, Lk)`` or ``(B, Lq, Lk)``, all ``1 / Lk``.

    Example:
        >>> mean = MeanAttention(4, 3)
        >>> keys = torch.arange(6.0).view(1, 2, 3)
        >>> context, weights = mean(torch.randn(1, 4), keys, need_weights=True)
        >>> context, weights
        (tensor([[1.5000, 2.5000, 3.5000]]), tensor([[0.5000, 0.5000]]))
    """

    projected_keys = False  # prepared keys are the keys themselves

    def __init__(
        self,
        query_size: int,
        key_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs(device, dtype)  # no parameters, but the same checked signature
        self.query_size = as_positive("query_size", query_size)
        self.key_size = as_positive("key_size", key_size)

    def score(self) -> Score:
        """All-zero logits: the softmax is uniform."""
        return Zero()

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"query_size={self.query_size}, key_size={self.key_size}"
