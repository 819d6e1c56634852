"""Additive (Bahdanau) attention as a module."""

from __future__ import annotations

import torch
from torch import nn

from attnlab.functional import Additive
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.nn._common import SourceAttention


class AdditiveAttention(SourceAttention):
    r"""Additive attention of Bahdanau et al. 2015.

    From "Neural Machine Translation by Jointly Learning to Align and Translate".

    .. math::
        e_{ij} = v^\top \tanh(W_q s_{i-1} + W_k h_j + b), \quad
        \alpha_{ij} = \mathrm{softmax}_j(e_{ij}), \quad c_i = \sum_j \alpha_{ij} h_j

    Keys are projected once per source sequence with :meth:`prepare_keys`; pass the
    result with ``keys_prepared=True`` at every decoder step. Runs on the chunked
    engine, so the ``(B, Lq, Lk, hidden)`` tensor is never built.

    Args:
        query_size: ``Dq``, the decoder state size.
        key_size: ``Dk``, the annotation size.
        hidden_size: size of the tanh layer.
        bias: learn ``b``.

    Shapes:
        query ``(B, Lq, Dq)`` or ``(B, Dq)``; keys ``(B, Lk, Dk)``; values ``(B, Lk, Dv)``
        (default: keys); mask ``(B, Lk)`` or ``(B, Lq, Lk)``, True = may attend ->
        context ``(B, Lq, Dv)`` or ``(B, Dv)``; weights ``(B, Lq, Lk)`` or ``(B, Lk)``.

    Example:
        >>> attn = AdditiveAttention(4, 6, 5)
        >>> context, weights = attn(torch.randn(2, 4), torch.randn(2, 7, 6), need_weights=True)
        >>> context.shape, weights.shape
        (torch.Size([2, 6]), torch.Size([2, 7]))
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.query_size = query_size = as_positive("query_size", query_size)
        self.key_size = key_size = as_positive("key_size", key_size)
        self.hidden_size = hidden_size = as_positive("hidden_size", hidden_size)
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False, **factory)
        self.key_proj = nn.Linear(key_size, hidden_size, bias=bias, **factory)
        self.v = nn.Parameter(torch.empty(hidden_size, **factory))
        nn.init.uniform_(self.v, -(hidden_size**-0.5), hidden_size**-0.5)

    def score(self) -> Additive:
        """The score function with this module's parameters."""
        return Additive(self.v, self.query_proj.weight, self.key_proj.weight, self.key_proj.bias)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, "
            f"hidden_size={self.hidden_size}, bias={self.key_proj.bias is not None}"
        )
