"""Transformer models: an encoder-decoder for translation and a decoder-only language model.

* :class:`TransformerSeq2Seq` (Vaswani et al. 2017) speaks the same decoding protocol
  as the RNN :class:`~attnlab.models.seq2seq.Seq2Seq` (``encode``, ``initial_state``,
  ``step``, ``loss``), so :mod:`attnlab.models.search` decodes both and one experiment
  compares them; its decoder state is the per-layer KV caches.
* :class:`TransformerLM` (GPT-style, Radford et al. 2018): causal self-attention only,
  with cached generation.

Positions are a :class:`~attnlab.models._embeddings.PositionScheme`, or its name in
:data:`POSITIONS` (resolved once): added embeddings (``sinusoidal``, ``learned``), rotary
queries and keys (``rotary``), or additive biases (``alibi``, ``relative``; language
model only) computed once per call and shared by every layer. The attention the layers
run is injected (``attn_layer=``, ``cross_attn_layer=``; :mod:`attnlab.nn.protocol`):
``TransformerLM(1000, attn_layer=partial(MultiHeadAttention, pattern=...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.models._embeddings import (
    POSITIONS,
    PositionName,
    PositionScheme,
    TokenEmbedding,
    resolve_positions,
)
from attnlab.models._translation import StepOutput, check_source, check_target, sequence_loss
from attnlab.nn._checks import (
    as_positive,
    as_size,
    check_heads,
    check_ids,
    check_token_id,
    factory_kwargs,
    optional_size,
    positive_float,
    probability,
)
from attnlab.nn.multihead import KVCache, MultiHeadAttention
from attnlab.nn.protocol import AttentionFactory
from attnlab.nn.transformer import TransformerDecoder, TransformerEncoder

__all__ = ["POSITIONS", "TransformerLM", "TransformerSeq2Seq"]


@dataclass
class TransformerMemory:
    """The encoded source: states ``(B, S, d_model)`` and key mask ``(B, S)``, True = real."""

    values: Tensor
    mask: Tensor

    def select(self, index: Tensor) -> TransformerMemory:
        """The memory of batch rows ``index`` (beam search)."""
        return TransformerMemory(
            self.values.index_select(0, index), self.mask.index_select(0, index)
        )


class DecoderCache(list):
    """Per-layer ``(self, cross)`` :class:`KVCache` pairs: a decoder's incremental state."""

    def select(self, index: Tensor) -> DecoderCache:
        """Caches of batch rows ``index`` (beam search reorders with it)."""
        return DecoderCache((s.select(index), c.select(index)) for s, c in self)


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer for translation.

    Args:
        src_vocab: source vocabulary size.
        tgt_vocab: target vocabulary size.
        d_model: width.
        num_heads: attention heads.
        ff_dim: feed-forward size.
        encoder_layers: encoder depth.
        decoder_layers: decoder depth.
        dropout: dropout on embeddings and sublayer outputs.
        attention_dropout: dropout on attention probabilities.
        ff_dropout: dropout between the feed-forward's linears (on a CPU the random
            masks of these wide activations cost about a tenth of a training step).
        norm_first: pre-norm (stabler without warm-up) or the paper's post-norm.
        positions: ``"sinusoidal"``, ``"learned"`` or ``"rotary"``, or such a
            :class:`~attnlab.models._embeddings.PositionScheme` (no biases here).
        max_len: longest sequence the position embeddings cover.
        tie_output: share the target embedding with the output layer (Press & Wolf 2017).
        pad_id: padding id of both vocabularies.
        attn_layer: builds the self-attention of every encoder and decoder layer (see
            :mod:`attnlab.nn.protocol`); step-by-step decoding needs its KV cache.
        cross_attn_layer: builds the decoder's attention over the source.

    Shapes:
        src ``(B, S)``, src_lengths ``(B,)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``,
        weights ``(B, T, S)`` (the last layer's cross-attention, mean over heads).

    Example:
        >>> model = TransformerSeq2Seq(11, 13, d_model=8, num_heads=2, ff_dim=16)
        >>> out = model(torch.randint(1, 11, (2, 5)), torch.tensor([5, 3]),
        ...             torch.randint(1, 13, (2, 4)), need_weights=True)
        >>> out.logits.shape, out.weights.shape
        (torch.Size([2, 4, 13]), torch.Size([2, 4, 5]))
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        norm_first: bool = True,
        positions: Literal["sinusoidal", "learned", "rotary"] | PositionScheme = "sinusoidal",
        max_len: int = 512,
        tie_output: bool = True,
        pad_id: int = 0,
        attn_layer: AttentionFactory = MultiHeadAttention,
        cross_attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.src_vocab = src_vocab = as_positive("src_vocab", src_vocab)
        self.tgt_vocab = tgt_vocab = as_positive("tgt_vocab", tgt_vocab)
        d_model, num_heads = check_heads("d_model", d_model, num_heads)
        encoder_layers = as_positive("encoder_layers", encoder_layers)
        decoder_layers = as_positive("decoder_layers", decoder_layers)
        dropout = probability("dropout", dropout)
        self.pad_id = check_token_id("pad_id", pad_id, min(src_vocab, tgt_vocab))
        self.positions = resolve_positions(
            positions, d_model, num_heads, max_len=max_len, causal=False, **factory
        )
        if self.positions.gives_bias:  # the decoder's cross-attention has no relative bias
            raise ValueError(
                f"positions must be sinusoidal, learned or rotary here; got "
                f"{self.positions.kind!r}, an attention bias (TransformerLM takes those)"
            )
        layer = {
            "dropout": dropout,
            "attention_dropout": attention_dropout,
            "ff_dropout": ff_dropout,
            "norm_first": norm_first,
            "rotary": self.positions.rotary,
            "attn_layer": attn_layer,
            **factory,
        }
        self.src_embed = TokenEmbedding(src_vocab, d_model, pad_id, factory)
        self.tgt_embed = TokenEmbedding(tgt_vocab, d_model, pad_id, factory)
        self.encoder = TransformerEncoder(encoder_layers, d_model, num_heads, ff_dim, **layer)
        self.decoder = TransformerDecoder(
            decoder_layers, d_model, num_heads, ff_dim, cross_attn_layer=cross_attn_layer, **layer
        )
        self.output = nn.Linear(d_model, tgt_vocab, bias=False, **factory)
        if tie_output:
            self.output.weight = self.tgt_embed.weight
        self.dropout = nn.Dropout(dropout)

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerMemory:
        """Encoder states and the source key mask."""
        check_source(src, src_lengths, self.src_vocab)
        return self._encode(src, src_lengths)

    def _encode(self, src: Tensor, src_lengths: Tensor) -> TransformerMemory:
        mask = torch.arange(src.shape[1], device=src.device) < src_lengths.unsqueeze(-1)
        x = self.dropout(self.positions.embed(self.src_embed(src)))
        return TransformerMemory(self.encoder(x, mask=mask).last_hidden, mask)

    def initial_state(self, memory: TransformerMemory) -> DecoderCache:
        """Empty KV caches (the cross-attention ones fill at the first step)."""
        return DecoderCache(self.decoder.new_cache())

    def _decode(
        self,
        tgt: Tensor,
        memory: TransformerMemory,
        offset: int,
        need_weights: bool,
        cache: DecoderCache | None,
    ) -> StepOutput:
        x = self.dropout(self.positions.embed(self.tgt_embed(tgt), offset))
        out = self.decoder(
            x, memory.values, memory_mask=memory.mask, need_weights=need_weights, cache=cache
        )
        weights = out.attentions[-1].mean(dim=1) if out.attentions is not None else None
        return StepOutput(self.output(out.last_hidden), weights, None, None)

    def step(
        self,
        memory: TransformerMemory,
        tokens: Tensor,
        state: DecoderCache,
        feed: Tensor | None,
        t: int,
        *,
        need_weights: bool = False,
    ) -> tuple[StepOutput, DecoderCache, None]:
        """One decoding step for tokens ``(B,)`` at position ``t`` (``feed`` is unused)."""
        out = self._decode(tokens.unsqueeze(-1), memory, t, need_weights, state)
        return out, state, None

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, need_weights: bool = False
    ) -> StepOutput:
        """Teacher-forced decoding of ``tgt_in`` (BOS + target without its last token)."""
        check_source(src, src_lengths, self.src_vocab)
        check_target("tgt_in", tgt_in, self.tgt_vocab, src.shape[0])
        return self._decode(tgt_in, self._encode(src, src_lengths), 0, need_weights, None)

    def loss(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor,
        *,
        label_smoothing: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Label-smoothed loss per target token, summed NLL and token count."""
        check_target("tgt_out", tgt_out, self.tgt_vocab)
        logits = self(src, src_lengths, tgt_in).logits
        loss, nll, count, _ = sequence_loss(
            logits, tgt_out, pad_id=self.pad_id, label_smoothing=label_smoothing
        )
        return loss, nll, count


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model with causal masking and cached generation.

    Args:
        vocab: vocabulary size.
        d_model: width.
        num_heads: heads.
        ff_dim: feed-forward size.
        layers: depth.
        dropout: dropout.
        norm_first: pre-norm (GPT-2) or post-norm.
        positions: a name of :data:`POSITIONS` or a
            :class:`~attnlab.models._embeddings.PositionScheme`.
        max_len: longest sequence for the embedding schemes.
        pad_id: padding id.
        attn_layer: builds every layer's causal self-attention (see
            :mod:`attnlab.nn.protocol`); :meth:`generate` needs its KV cache, ``alibi``
            and ``relative`` positions its ``bias=``.

    Shapes:
        ids ``(B, T)`` -> logits ``(B, T, V)``.

    Example:
        >>> lm = TransformerLM(20, d_model=8, num_heads=2, ff_dim=16, positions="alibi")
        >>> lm.generate(torch.tensor([[1, 2]]), 3, greedy=True).shape
        torch.Size([1, 5])
    """

    def __init__(
        self,
        vocab: int,
        *,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        layers: int = 4,
        dropout: float = 0.1,
        norm_first: bool = True,
        positions: PositionName | PositionScheme = "sinusoidal",
        max_len: int = 1024,
        pad_id: int = 0,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.vocab = vocab = as_positive("vocab", vocab)
        d_model, num_heads = check_heads("d_model", d_model, num_heads)
        layers, dropout = as_positive("layers", layers), probability("dropout", dropout)
        self.pad_id = check_token_id("pad_id", pad_id, vocab)
        self.positions = resolve_positions(
            positions, d_model, num_heads, max_len=max_len, causal=True, **factory
        )
        self.embed = TokenEmbedding(vocab, d_model, pad_id, factory)
        self.blocks = TransformerEncoder(
            layers,
            d_model,
            num_heads,
            ff_dim,
            dropout=dropout,
            norm_first=norm_first,
            rotary=self.positions.rotary,
            attn_layer=attn_layer,
            **factory,
        )
        self.output = nn.Linear(d_model, vocab, bias=False, **factory)
        self.output.weight = self.embed.weight
        self.dropout = nn.Dropout(dropout)

    def new_cache(self) -> list[KVCache]:
        """One empty :class:`KVCache` per layer."""
        return [KVCache() for _ in self.blocks.layers]

    def forward(
        self,
        ids: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
        cache: list[KVCache] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """Logits of the next token at every position, and self-attention weights if asked.

        Args:
            ids: ``(B, T)``; with a ``cache`` these continue the cached positions.
            mask: ``(B, T_total)`` key mask, True = real token (left padding), or None.
            need_weights: also return one ``(B, H, T, T_total)`` per layer.
            cache: per-layer caches from :meth:`new_cache`, extended in place.
        """
        check_ids("ids", ids, self.vocab, dims=2, layout="(B, T)")
        if cache is not None and len(cache) != len(self.blocks.layers):
            raise ValueError(
                f"cache must hold one KVCache per layer ({len(self.blocks.layers)}), got "
                f"{len(cache)}; start one with new_cache()"
            )
        return self._forward(ids, mask, need_weights, cache)

    def _forward(
        self, ids: Tensor, mask: Tensor | None, need_weights: bool, cache: list[KVCache] | None
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        offset = 0 if cache is None else cache[0].length
        x = self.dropout(self.positions.embed(self.embed(ids), offset))
        bias = self.positions.bias(ids.shape[1], offset + ids.shape[1], x)
        out = self.blocks(
            x, mask=mask, bias=bias, causal=True, need_weights=need_weights, cache=cache
        )
        return self.output(out.last_hidden), out.attentions

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt (B, T)`` by ``max_new_tokens``, reusing the KV cache.

        Args:
            prompt: ``(B, T)`` ids, ``T >= 1``.
            max_new_tokens: tokens to add (0 returns the prompt).
            temperature: divides the logits before sampling (> 0).
            top_k: sample among the ``top_k`` likeliest tokens (>= 1; one above the
                vocabulary keeps them all); None samples from all.
            greedy: take the argmax instead of sampling.
            generator: random source of the sampling.

        Returns:
            ``(B, T + max_new_tokens)`` ids.
        """
        check_ids("prompt", prompt, self.vocab, dims=2, layout="(B, T)")
        if prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (B, T) with T >= 1, got {tuple(prompt.shape)}")
        max_new_tokens = as_size("max_new_tokens", max_new_tokens)
        temperature = positive_float("temperature", temperature)
        top_k = optional_size("top_k", top_k)
        was_training = self.training
        self.eval()
        cache, ids, step_input = self.new_cache(), prompt, prompt
        try:
            for _ in range(max_new_tokens):
                # Unchecked: after the prompt, the ids come from the model itself.
                logits = self._forward(step_input, None, False, cache)[0][:, -1].float()
                if greedy:
                    token = logits.argmax(-1, keepdim=True)
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    probs = torch.softmax(logits, dim=-1)
                    token = torch.multinomial(probs, 1, generator=generator)
                ids = torch.cat([ids, token], dim=1)
                step_input = token
        finally:
            self.train(was_training)
        return ids
