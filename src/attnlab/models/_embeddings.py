"""Token and position embeddings of the Transformer models (:mod:`attnlab.models.transformer`).

Where positions enter a Transformer is a :class:`PositionScheme`: added embeddings
(:class:`AddedPositions`: ``sinusoidal``, ``learned``), rotary queries and keys
(:class:`RotaryPositions`), or additive attention biases (:class:`BiasPositions`:
``alibi``, ``relative``). :data:`POSITIONS` builds them from the names people type::

    POSITIONS[name](d_model, num_heads, *, max_len, causal, device=None, dtype=None)

Example:
    >>> scheme = POSITIONS["alibi"](8, 2, max_len=16, causal=True)
    >>> scheme.bias(3, 5, torch.zeros(1)).shape, scheme.rotary
    (torch.Size([1, 2, 3, 5]), None)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab._validate import lookup
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

PositionName = Literal["sinusoidal", "learned", "rotary", "alibi", "relative"]


class PositionScheme(nn.Module):
    """Where a Transformer's positions enter; the base does nothing, each kind one thing.

    A model calls :meth:`embed` on its token embeddings, passes :attr:`rotary` to its
    attention layers and adds :meth:`bias` to their scores.

    Attributes:
        kind: the scheme's name, for ``repr``.
        rotary: the rotary encoding the attention applies, or None.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.rotary: RotaryEmbedding | None = None

    @property
    def gives_bias(self) -> bool:
        """Whether the positions are an additive attention bias."""
        return False

    def embed(self, x: Tensor, offset: int = 0) -> Tensor:
        """Token embeddings plus position embeddings (unchanged when there are none)."""
        return x

    def bias(self, lq: int, lk: int, x: Tensor) -> Tensor | None:
        """The ``(1, H, Lq, Lk)`` bias for the last ``lq`` of ``lk`` positions, or None."""
        return None

    def extra_repr(self) -> str:
        """The scheme's name."""
        return f"kind={self.kind!r}"


class AddedPositions(PositionScheme):
    """Position embeddings added to the token embeddings (Vaswani et al. 2017, 3.5)."""

    def __init__(self, kind: str, embedding: nn.Module) -> None:
        super().__init__(kind)
        self.embedding = embedding

    def embed(self, x: Tensor, offset: int = 0) -> Tensor:  # noqa: D102
        return self.embedding(x, offset)


class RotaryPositions(PositionScheme):
    """Rotary queries and keys (Su et al. 2021), applied inside every attention layer."""

    def __init__(self, rotary: RotaryEmbedding) -> None:
        super().__init__("rotary")
        self.rotary = rotary


class BiasPositions(PositionScheme):
    """An additive attention bias per head (ALiBi, T5's relative buckets), shared by layers."""

    def __init__(self, kind: str, bias_module: nn.Module) -> None:
        super().__init__(kind)
        self.bias_module = bias_module

    @property
    def gives_bias(self) -> bool:  # noqa: D102
        return True

    def bias(self, lq: int, lk: int, x: Tensor) -> Tensor | None:  # noqa: D102
        return self.bias_module(lq, lk, offset=lk - lq).to(device=x.device, dtype=x.dtype)


def _sinusoidal(
    d_model: int, num_heads: int, *, max_len: int, causal: bool, **factory: object
) -> PositionScheme:
    """Sinusoidal embeddings added to the tokens (Vaswani et al. 2017)."""
    return AddedPositions(
        "sinusoidal", SinusoidalPositionalEncoding(d_model, max_len=max_len, **factory)
    )


def _learned(
    d_model: int, num_heads: int, *, max_len: int, causal: bool, **factory: object
) -> PositionScheme:
    """Learned position embeddings added to the tokens (BERT, GPT)."""
    return AddedPositions("learned", LearnedPositionalEmbedding(max_len, d_model, **factory))


def _rotary(
    d_model: int, num_heads: int, *, max_len: int, causal: bool, **factory: object
) -> PositionScheme:
    """Rotary position embedding of queries and keys (Su et al. 2021, RoPE)."""
    return RotaryPositions(RotaryEmbedding(d_model // num_heads, **factory))


def _alibi(
    d_model: int, num_heads: int, *, max_len: int, causal: bool, **factory: object
) -> PositionScheme:
    """ALiBi: a linear distance penalty per head on the scores (Press et al. 2022)."""
    return BiasPositions("alibi", ALiBi(num_heads, causal=causal))


def _relative(
    d_model: int, num_heads: int, *, max_len: int, causal: bool, **factory: object
) -> PositionScheme:
    """T5's learned relative-position buckets as a score bias (Raffel et al. 2020)."""
    bias = RelativePositionBias(num_heads, bidirectional=not causal, **factory)
    return BiasPositions("relative", bias)


PositionFactory = Callable[..., PositionScheme]

# The names people type (``--positions``) -> the factory of the scheme.
POSITIONS: dict[str, PositionFactory] = {
    "sinusoidal": _sinusoidal,
    "learned": _learned,
    "rotary": _rotary,
    "alibi": _alibi,
    "relative": _relative,
}


def resolve_positions(
    positions: str | PositionScheme,
    d_model: int,
    num_heads: int,
    *,
    max_len: int,
    causal: bool,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> PositionScheme:
    """A :class:`PositionScheme` as given, or built from its name in :data:`POSITIONS`.

    Raises:
        ValueError: an unknown name (the known ones listed), or ``max_len < 1``.
        TypeError: neither a name nor a :class:`PositionScheme`.
    """
    max_len = as_positive("max_len", max_len)
    factory = factory_kwargs(device, dtype)
    if isinstance(positions, PositionScheme):
        return positions
    if not isinstance(positions, str):
        raise TypeError(
            f"positions must be a name of POSITIONS or a PositionScheme, got "
            f"{type(positions).__name__}"
        )
    build = lookup(POSITIONS, positions, "positions")
    return build(d_model, num_heads, max_len=max_len, causal=causal, **factory)


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
