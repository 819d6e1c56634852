"""Token and position embeddings of the Transformer models (:mod:`attnlab.models.transformer`).

Positions are one of :data:`POSITIONS`: added embeddings (``sinusoidal``, ``learned``),
rotary queries and keys (``rotary``), or additive biases (``alibi``, ``relative``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.nn._checks import as_positive
from attnlab.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

Positions = Literal["sinusoidal", "learned", "rotary", "alibi", "relative"]
POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "relative")


class PositionScheme(nn.Module):
    """One position scheme: embeddings added to tokens, a rotary module, or a bias."""

    def __init__(
        self, kind: str, d_model: int, num_heads: int, max_len: int, causal: bool, factory: dict
    ) -> None:
        super().__init__()
        if kind not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; got {kind!r}")
        max_len = as_positive("max_len", max_len)
        self.kind = kind
        self.embedding: nn.Module | None = None
        self.rotary: RotaryEmbedding | None = None
        self.bias_module: nn.Module | None = None
        if kind == "sinusoidal":
            self.embedding = SinusoidalPositionalEncoding(d_model, max_len=max_len, **factory)
        elif kind == "learned":
            self.embedding = LearnedPositionalEmbedding(max_len, d_model, **factory)
        elif kind == "rotary":
            self.rotary = RotaryEmbedding(d_model // num_heads, **factory)
        elif kind == "alibi":
            self.bias_module = ALiBi(num_heads, causal=causal)
        else:
            self.bias_module = RelativePositionBias(num_heads, bidirectional=not causal, **factory)

    def embed(self, x: Tensor, offset: int = 0) -> Tensor:
        """Token embeddings plus position embeddings (unchanged for rotary and biases)."""
        return x if self.embedding is None else self.embedding(x, offset)

    def bias(self, lq: int, lk: int, x: Tensor) -> Tensor | None:
        """The ``(1, H, Lq, Lk)`` bias for the last ``lq`` of ``lk`` positions, or None."""
        if self.bias_module is None:
            return None
        return self.bias_module(lq, lk, offset=lk - lq).to(device=x.device, dtype=x.dtype)


class TokenEmbedding(nn.Embedding):
    """Embedding scaled by ``sqrt(d_model)`` (Vaswani et al. 3.4), N(0, 1/d) initialised."""

    def __init__(self, vocab: int, d_model: int, pad_id: int, factory: dict) -> None:
        super().__init__(vocab, d_model, padding_idx=pad_id, **factory)
        nn.init.normal_(self.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    def forward(self, ids: Tensor) -> Tensor:  # noqa: D102
        return super().forward(ids) * self.scale
