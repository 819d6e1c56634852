"""Attention pooling: one learned distribution over a sequence, for classifiers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Zero
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size
from attnlab.nn._common import attend_core, check_sequence


class AttentionPooling(nn.Module):
    r"""Pool a sequence into one vector with learned attention.

    Without a query vector this is the layer of the Keras sentiment tutorial the
    project grew from (Raffel and Ellis 2016, "feed-forward attention"):

    .. math:: e_t = \tanh(w^\top h_t + b), \quad \alpha = \mathrm{softmax}(e),
              \quad c = \sum_t \alpha_t h_t

    With ``query=True`` it is the word/sentence attention of Yang et al. 2016
    (hierarchical attention networks), with a learned context vector :math:`u`:

    .. math:: e_t = u^\top \tanh(W h_t + b)

    Unlike the tutorial's layer, padding is masked (it gets zero weight), and the
    bias is one scalar rather than one per position, so any length works.

    Args:
        input_size: ``D``, the size of each ``h_t``.
        query: learn a context vector ``u`` (and ``W`` of size ``hidden_size``).
        hidden_size: size of ``W h_t`` when ``query=True`` (default ``input_size``).

    Shapes:
        inputs ``(B, L, D)``, mask ``(B, L)`` True = real token -> context ``(B, D)``,
        weights ``(B, L)``.

    Example:
        >>> pool = AttentionPooling(8)
        >>> mask = torch.tensor([[True, True, False]])
        >>> context, weights = pool(torch.randn(1, 3, 8), mask=mask, need_weights=True)
        >>> context.shape, weights[0, 2].item()
        (torch.Size([1, 8]), 0.0)
    """

    def __init__(
        self,
        input_size: int,
        *,
        query: bool = False,
        hidden_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.input_size = input_size = as_positive("input_size", input_size)
        hidden_size = optional_size("hidden_size", hidden_size)
        self.query = query
        self.hidden_size = (hidden_size or input_size) if query else 1
        self.proj = nn.Linear(input_size, self.hidden_size, **factory)
        self.context = nn.Parameter(torch.empty(self.hidden_size, **factory)) if query else None
        if self.context is not None:
            nn.init.normal_(self.context, std=self.hidden_size**-0.5)

    def logits(self, inputs: Tensor) -> Tensor:
        """Unnormalised scores ``e_t``, ``(B, L)``."""
        hidden = torch.tanh(self.proj(inputs))
        return hidden.squeeze(-1) if self.context is None else hidden @ self.context

    def forward(
        self, inputs: Tensor, *, mask: Tensor | None = None, need_weights: bool = False
    ) -> AttentionOutput:
        """Pool ``inputs``; returns ``(context, weights | None)``."""
        check_sequence(self, "inputs", inputs, ("B", "L", "D"), self.input_size)
        # The scores depend on each position alone: they enter the core as a bias
        # with no content term, so masking and empty rows follow the core's rules.
        bias = self.logits(inputs).unsqueeze(1)
        query = inputs.new_zeros(inputs.shape[0], 1)
        keys = inputs.new_zeros(inputs.shape[0], inputs.shape[1], 1)
        return attend_core(
            query,
            keys,
            inputs,
            Zero(),
            mask=mask,
            need_weights=need_weights,
            keys_prepared=True,
            bias=bias,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        extra = f", hidden_size={self.hidden_size}" if self.query else ""
        return f"input_size={self.input_size}, query={self.query}{extra}"
