"""The position-wise feed-forward sublayer of Transformer blocks (Vaswani et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from attnlab.nn._checks import as_positive, check_input, factory_kwargs, probability

__all__ = ["Activation", "FeedForward"]

Activation = Literal["relu", "gelu", "gelu_tanh"]
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class FeedForward(nn.Module):
    """Position-wise feed-forward ``W_2 act(W_1 x + b_1) + b_2`` (dropout inside).

    Example:
        >>> FeedForward(8, 32)(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(
        self,
        d_model: int,
        ff_dim: int,
        *,
        activation: Activation = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        factory = factory_kwargs(device, dtype)
        d_model, ff_dim = as_positive("d_model", d_model), as_positive("ff_dim", ff_dim)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, ff_dim, bias=bias, **factory)
        self.linear2 = nn.Linear(ff_dim, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(probability("dropout", dropout))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d_model) -> (..., d_model)``."""
        check_input(self, "x", x, self.linear1.weight.dtype)
        return self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x))))
