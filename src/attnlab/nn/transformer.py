r"""Transformer blocks (Vaswani et al. 2017): encoder and decoder layers and stacks.

Post-norm (the paper, BERT) normalises after each residual sum,
``x = LN(x + Sublayer(x))``; pre-norm (Xiong et al. 2020, GPT-2) normalises the
sublayer's input, ``x = x + Sublayer(LN(x))``, and ends the stack with one more
LayerNorm. Positions are not added here: embeddings go through the model, rotary
encodings through :class:`~attnlab.nn.multihead.MultiHeadAttention` (``rotary=``),
and additive position biases (ALiBi, relative) through ``bias=``, computed once per
stack and shared by its layers.

The attention each layer runs is injected: ``attn_layer=`` (and the decoder's
``cross_attn_layer=``) is a factory called as described in :mod:`attnlab.nn.protocol`,
:class:`~attnlab.nn.multihead.MultiHeadAttention` by default. A sparsity pattern,
linear attention or any attention module so reaches every stack::

    TransformerEncoder(6, 512, 8, 2048,
                       attn_layer=partial(MultiHeadAttention, pattern=sliding_window_pattern(64)))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnlab.nn._checks import (
    as_positive,
    check_heads,
    check_input,
    factory_kwargs,
    positive_float,
    probability,
)
from attnlab.nn.feedforward import Activation, FeedForward
from attnlab.nn.multihead import KVCache, MultiHeadAttention
from attnlab.nn.protocol import AttentionFactory, build_attention, call_attention

__all__ = [
    "Activation",
    "EncoderOutput",
    "FeedForward",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]


class _Block(nn.Module):
    """Shared residual plumbing: ``sublayer`` wrapped in pre- or post-norm."""

    norm_first: bool

    def _check(self, name: str, x: Tensor) -> None:
        check_input(self, name, x, self.norm_attn.weight.dtype)

    def _residual(self, x: Tensor, norm: nn.LayerNorm, sublayer: Callable) -> tuple[Tensor, object]:
        out, extra = sublayer(norm(x) if self.norm_first else x)
        x = x + self.dropout(out)
        return (x if self.norm_first else norm(x)), extra

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self._residual(x, self.norm_ff, lambda h: (self.ff(h), None))[0]


class TransformerEncoderLayer(_Block):
    """Self-attention and feed-forward, each with a residual connection and LayerNorm.

    Args:
        d_model: model width.
        num_heads: attention heads.
        ff_dim: hidden size of the feed-forward.
        dropout: dropout on sublayer outputs and inside the feed-forward.
        attention_dropout: dropout on attention probabilities (default ``dropout``).
        ff_dropout: dropout between the feed-forward's linears (default ``dropout``;
            BERT has none there).
        activation: ``"relu"``, ``"gelu"`` (exact, as BERT) or ``"gelu_tanh"``.
        norm_first: pre-norm instead of post-norm.
        layer_norm_eps: LayerNorm epsilon.
        bias: biases in projections, feed-forward and LayerNorm.
        rotary: rotary position encoding for the attention (passed to ``attn_layer``
            as ``rotary=``), or None.
        attn_layer: builds the self-attention, ``attn_layer(d_model, num_heads, *,
            dropout, bias, device, dtype)`` (see :mod:`attnlab.nn.protocol`);
            default :class:`~attnlab.nn.multihead.MultiHeadAttention`.

    Shapes:
        x ``(B, L, d_model)``; mask ``(B, L)`` key mask or ``(B, L, L)``, True = may
        attend -> ``(B, L, d_model)``, weights ``(B, H, L, L)`` when asked.

    Example:
        >>> layer = TransformerEncoderLayer(8, 2, 16)
        >>> y, w = layer(torch.randn(2, 5, 8), need_weights=True)
        >>> y.shape, w.shape
        (torch.Size([2, 5, 8]), torch.Size([2, 2, 5, 5]))
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        *,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        ff_dropout: float | None = None,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: nn.Module | None = None,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        d_model, num_heads = check_heads("d_model", d_model, num_heads)
        layer_norm_eps = positive_float("layer_norm_eps", layer_norm_eps)
        dropout = probability("dropout", dropout)
        attention_dropout, ff_dropout = (
            dropout if p is None else probability(name, p)
            for name, p in (("attention_dropout", attention_dropout), ("ff_dropout", ff_dropout))
        )
        self.norm_first = norm_first
        # What the decoder's cross-attention is built with too.
        self._attention_options = {"dropout": attention_dropout, "bias": bias, **factory}
        self.self_attn = build_attention(
            attn_layer, d_model, num_heads, rotary=rotary, **self._attention_options
        )
        self.ff = FeedForward(
            d_model,
            ff_dim,
            activation=activation,
            dropout=ff_dropout,
            bias=bias,
            **factory,
        )
        self.norm_attn = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm_ff = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """One layer; returns ``(x, self-attention weights or None)``."""
        self._check("x", x)
        x, weights = self._residual(
            x,
            self.norm_attn,
            lambda h: call_attention(
                self.self_attn,
                h,
                mask=mask,
                bias=bias,
                causal=causal,
                need_weights=need_weights,
                cache=cache,
            ),
        )
        return self._feed_forward(x), weights


class TransformerDecoderLayer(TransformerEncoderLayer):
    """Masked self-attention, cross-attention over the memory, feed-forward.

    Takes the arguments of :class:`TransformerEncoderLayer` (``attn_layer`` builds the
    masked self-attention) and ``cross_attn_layer``, the factory of the
    cross-attention (default :class:`~attnlab.nn.multihead.MultiHeadAttention`).

    Shapes:
        x ``(B, T, d_model)``, memory ``(B, S, d_model)``, memory_mask ``(B, S)``,
        True = real -> ``(B, T, d_model)``; cross-attention weights ``(B, H, T, S)``.

    Example:
        >>> layer = TransformerDecoderLayer(8, 2, 16)
        >>> y, w = layer(torch.randn(2, 4, 8), torch.randn(2, 6, 8), need_weights=True)
        >>> w.shape
        torch.Size([2, 2, 4, 6])
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        *,
        cross_attn_layer: AttentionFactory = MultiHeadAttention,
        **kwargs,
    ) -> None:
        super().__init__(d_model, num_heads, ff_dim, **kwargs)
        options = self._attention_options
        self.cross_attn = build_attention(cross_attn_layer, d_model, num_heads, **options)
        self.norm_cross = nn.LayerNorm(
            d_model,
            eps=self.norm_attn.eps,
            bias=self.norm_attn.bias is not None,
            device=self.norm_attn.weight.device,
            dtype=self.norm_attn.weight.dtype,
        )

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        memory: Tensor,
        *,
        memory_mask: Tensor | None = None,
        bias: Tensor | None = None,
        need_weights: bool = False,
        cache: tuple[KVCache, KVCache] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """One layer, causal over ``x``; returns ``(x, cross-attention weights or None)``."""
        self._check("x", x)
        self._check("memory", memory)
        self_cache, cross_cache = (None, None) if cache is None else cache
        x, _ = self._residual(
            x,
            self.norm_attn,
            lambda h: call_attention(self.self_attn, h, bias=bias, causal=True, cache=self_cache),
        )
        x, weights = self._residual(
            x,
            self.norm_cross,
            lambda h: call_attention(
                self.cross_attn,
                h,
                memory,
                mask=memory_mask,
                need_weights=need_weights,
                cache=cross_cache,
            ),
        )
        return self._feed_forward(x), weights


@dataclass
class EncoderOutput:
    """What a stack returns.

    Attributes:
        last_hidden: ``(B, L, d_model)`` (after the final LayerNorm in pre-norm).
        hidden_states: the input and every layer's output (``layers + 1`` entries), or None.
        attentions: one ``(B, H, Lq, Lk)`` per layer, or None.
    """

    last_hidden: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class _Stack(nn.Module):
    """``num_layers`` copies of ``layer_class``, plus a final LayerNorm if asked."""

    layer_class: type[nn.Module]

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        *,
        final_norm: bool | None = None,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        num_layers = as_positive("num_layers", num_layers)
        self.layers = nn.ModuleList(
            self.layer_class(d_model, num_heads, ff_dim, **layer_kwargs) for _ in range(num_layers)
        )
        if final_norm is None:
            final_norm = bool(layer_kwargs.get("norm_first", False))
        first = self.layers[0].norm_attn
        self.norm = (
            nn.LayerNorm(
                d_model,
                eps=first.eps,
                bias=first.bias is not None,
                device=first.weight.device,
                dtype=first.weight.dtype,
            )
            if final_norm
            else None
        )

    def _run(
        self, x: Tensor, call: Callable, need_weights: bool, return_hidden: bool
    ) -> EncoderOutput:
        hidden, weights = [x], []
        for i, layer in enumerate(self.layers):
            x, w = call(i, layer, x)
            hidden.append(x)
            weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
            hidden[-1] = x
        return EncoderOutput(
            x,
            tuple(hidden) if return_hidden else None,
            tuple(weights) if need_weights else None,
        )


class TransformerEncoder(_Stack):
    """A stack of :class:`TransformerEncoderLayer` (plus a final LayerNorm in pre-norm).

    Args:
        num_layers: layers.
        d_model: width.
        num_heads: heads.
        ff_dim: feed-forward size.
        final_norm: LayerNorm after the last layer (default: ``norm_first``).
        **layer_kwargs: passed to every :class:`TransformerEncoderLayer`, among them
            ``attn_layer=``, the attention every layer builds and runs.

    Example:
        >>> enc = TransformerEncoder(2, 8, 2, 16, norm_first=True)
        >>> out = enc(torch.randn(2, 5, 8), need_weights=True, return_hidden=True)
        >>> len(out.hidden_states), out.attentions[0].shape
        (3, torch.Size([2, 2, 5, 5]))
    """

    layer_class = TransformerEncoderLayer

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        return_hidden: bool = False,
        cache: list[KVCache] | None = None,
    ) -> EncoderOutput:
        """Run every layer; ``cache`` (one :class:`KVCache` per layer) for causal decoding."""
        return self._run(
            x,
            lambda i, layer, h: layer(
                h,
                mask=mask,
                bias=bias,
                causal=causal,
                need_weights=need_weights,
                cache=None if cache is None else cache[i],
            ),
            need_weights,
            return_hidden,
        )


class TransformerDecoder(_Stack):
    """A stack of :class:`TransformerDecoderLayer`; ``attentions`` are cross-attention.

    Example:
        >>> dec = TransformerDecoder(2, 8, 2, 16)
        >>> dec(torch.randn(2, 4, 8), torch.randn(2, 6, 8)).last_hidden.shape
        torch.Size([2, 4, 8])
    """

    layer_class = TransformerDecoderLayer

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        memory_mask: Tensor | None = None,
        bias: Tensor | None = None,
        need_weights: bool = False,
        return_hidden: bool = False,
        cache: list[tuple[KVCache, KVCache]] | None = None,
    ) -> EncoderOutput:
        """Run every layer; ``cache`` holds (self, cross) caches per layer."""
        return self._run(
            x,
            lambda i, layer, h: layer(
                h,
                memory,
                memory_mask=memory_mask,
                bias=bias,
                need_weights=need_weights,
                cache=None if cache is None else cache[i],
            ),
            need_weights,
            return_hidden,
        )

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self, cross) caches, one pair per layer, for incremental decoding."""
        return [(KVCache(), KVCache(static=True)) for _ in self.layers]
