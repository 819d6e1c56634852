"""Transformer models: an encoder-decoder for translation and a decoder-only language model.

* :class:`TransformerSeq2Seq` (Vaswani et al. 2017) speaks the same decoding protocol
  as the RNN :class:`~attnlab.models.seq2seq.Seq2Seq` (``encode``, ``initial_state``,
  ``step``, ``loss``), so :mod:`attnlab.models.search` decodes both and one experiment
  compares them; its decoder state is the per-layer KV caches.
* :class:`TransformerLM` (GPT-style, Radford et al. 2018): causal self-attention only,
  with cached generation.

Positions are one of :data:`POSITIONS`: added embeddings (``sinusoidal``, ``learned``),
rotary queries and keys (``rotary``), or additive biases (``alibi``, ``relative``;
language model only) computed once per call and shared by every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.models.seq2seq import StepOutput, check_source, sequence_loss
from attnlab.nn.multihead import KVCache
from attnlab.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from attnlab.nn.transformer import TransformerDecoder, TransformerEncoder

__all__ = ["POSITIONS", "TransformerLM", "TransformerSeq2Seq"]

Positions = Literal["sinusoidal", "learned", "rotary", "alibi", "relative"]
POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "relative")


class _Positions(nn.Module):
    """One position scheme: embeddings added to tokens, a rotary module, or a bias."""

    def __init__(
        self, kind: str, d_model: int, num_heads: int, max_len: int, causal: bool, factory: dict
    ) -> None:
        super().__init__()
        if kind not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; got {kind!r}")
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


class _TokenEmbedding(nn.Embedding):
    """Embedding scaled by ``sqrt(d_model)`` (Vaswani et al. 3.4), N(0, 1/d) initialised."""

    def __init__(self, vocab: int, d_model: int, pad_id: int, factory: dict) -> None:
        super().__init__(vocab, d_model, padding_idx=pad_id, **factory)
        nn.init.normal_(self.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    def forward(self, ids: Tensor) -> Tensor:  # noqa: D102
        return super().forward(ids) * self.scale


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
        positions: ``"sinusoidal"``, ``"learned"`` or ``"rotary"``.
        max_len: longest sequence the position embeddings cover.
        tie_output: share the target embedding with the output layer (Press & Wolf 2017).
        pad_id: padding id of both vocabularies.

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
        positions: Literal["sinusoidal", "learned", "rotary"] = "sinusoidal",
        max_len: int = 512,
        tie_output: bool = True,
        pad_id: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if positions not in ("sinusoidal", "learned", "rotary"):
            raise ValueError(
                f"positions must be sinusoidal, learned or rotary here; got {positions!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.pad_id = pad_id
        self.positions = _Positions(positions, d_model, num_heads, max_len, False, factory)
        layer = {
            "dropout": dropout,
            "attention_dropout": attention_dropout,
            "ff_dropout": ff_dropout,
            "norm_first": norm_first,
            "rotary": self.positions.rotary,
            **factory,
        }
        self.src_embed = _TokenEmbedding(src_vocab, d_model, pad_id, factory)
        self.tgt_embed = _TokenEmbedding(tgt_vocab, d_model, pad_id, factory)
        self.encoder = TransformerEncoder(encoder_layers, d_model, num_heads, ff_dim, **layer)
        self.decoder = TransformerDecoder(decoder_layers, d_model, num_heads, ff_dim, **layer)
        self.output = nn.Linear(d_model, tgt_vocab, bias=False, **factory)
        if tie_output:
            self.output.weight = self.tgt_embed.weight
        self.dropout = nn.Dropout(dropout)

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerMemory:
        """Encoder states and the source key mask."""
        check_source(src, src_lengths)
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
        return self._decode(tgt_in, self.encode(src, src_lengths), 0, need_weights, None)

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
        positions: one of :data:`POSITIONS`.
        max_len: longest sequence for the embedding schemes.
        pad_id: padding id.

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
        positions: Positions = "sinusoidal",
        max_len: int = 1024,
        pad_id: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.pad_id = pad_id
        self.positions = _Positions(positions, d_model, num_heads, max_len, True, factory)
        self.embed = _TokenEmbedding(vocab, d_model, pad_id, factory)
        self.blocks = TransformerEncoder(
            layers,
            d_model,
            num_heads,
            ff_dim,
            dropout=dropout,
            norm_first=norm_first,
            rotary=self.positions.rotary,
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
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, T), got shape {tuple(ids.shape)}")
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

        Returns:
            ``(B, T + max_new_tokens)`` ids.
        """
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (B, T) with T >= 1, got {tuple(prompt.shape)}")
        was_training = self.training
        self.eval()
        cache, ids, step_input = self.new_cache(), prompt, prompt
        try:
            for _ in range(max_new_tokens):
                logits = self(step_input, cache=cache)[0][:, -1].float()
                if greedy:
                    token = logits.argmax(-1, keepdim=True)
                else:
                    logits = logits / max(temperature, 1e-6)
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
