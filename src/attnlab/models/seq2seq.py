"""RNN encoder-decoder for translation with a pluggable attention (or none).

* Encoder: embedding -> bidirectional GRU/LSTM (``hidden_size // 2`` per direction, so
  annotations ``h_j = [fwd_j; bwd_j]`` have the decoder's size and ``dot`` works); its
  summary ``[fwd_S; bwd_1]`` initialises the decoder (``tanh(W s)``, Bahdanau et al.).
* ``attention="none"``: Cho et al. 2014; the summary is the context of every step, fed to
  the decoder's input and output: the baseline that shows what attention buys.
* ``"bahdanau"``: Bahdanau et al. 2015; the previous state ``s_{i-1}`` attends with
  ``v^T tanh(W s_{i-1} + U h_j)`` and the context enters the RNN input.
* every other variant follows Luong et al. 2015: the current state ``h_t`` attends, and
  ``h~_t = tanh(W_c [c_t; h_t])`` predicts the word; with ``input_feeding`` ``h~_{t-1}``
  joins the next input. Without it the whole target runs as one RNN call and one
  attention call (all queries at once), which is much faster on a CPU.

All variants share one output layer ``softmax(W_o dropout(h~_t))``. Decoding (greedy,
beam) lives in :mod:`attnlab.models.search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.functional.hard import reinforce_loss
from attnlab.models._translation import StepOutput, check_source, check_target, sequence_loss
from attnlab.nn import AdditiveAttention, LuongAttention
from attnlab.nn._checks import (
    as_positive,
    check_token_id,
    factory_kwargs,
    positive_float,
    probability,
    real,
)
from attnlab.nn.hard import HardAttention, MovingAverageBaseline
from attnlab.nn.local import LocalAttention

ATTENTIONS = (
    "none",
    "bahdanau",
    "luong-dot",
    "luong-general",
    "luong-concat",
    "luong-location",
    "local-m",
    "local-p",
    "hard-reinforce",
    "hard-gumbel",
)
RNNKind = Literal["gru", "lstm"]
State = Tensor | tuple[Tensor, Tensor]


@dataclass
class Memory:
    """The encoded source, reused at every decoding step (reordered by beam search)."""

    values: Tensor  # (B, S, H) annotations
    keys: Tensor  # (B, S, *) keys as the attention prepared them
    mask: Tensor  # (B, S) True = real token
    summary: Tensor  # (B, H)

    def select(self, index: Tensor) -> Memory:
        """The memory of the batch rows ``index`` (repeats allowed)."""
        return Memory(*(t.index_select(0, index) for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.values, self.keys, self.mask, self.summary


def build_attention(
    name: str,
    size: int,
    *,
    half_width: int,
    max_source_len: int,
    temperature: float,
    hard_evaluation: Literal["argmax", "expectation"],
    factory: dict,
) -> nn.Module | None:
    """The attention module of a variant in :data:`ATTENTIONS` (None for ``"none"``)."""
    if name not in ATTENTIONS:
        raise ValueError(f"unknown attention {name!r}; choose one of {', '.join(ATTENTIONS)}")
    if name == "none":
        return None
    if name == "bahdanau":
        return AdditiveAttention(size, size, size, **factory)
    if name.startswith("luong-"):
        score = name.removeprefix("luong-")
        return LuongAttention(size, score=score, max_source_len=max_source_len, **factory)
    if name.startswith("local-"):
        mode = "monotonic" if name == "local-m" else "predictive"
        return LocalAttention(size, half_width=half_width, mode=mode, **factory)
    estimator = "reinforce" if name == "hard-reinforce" else "gumbel"
    return HardAttention(
        LuongAttention(size, score="general", **factory),
        estimator=estimator,
        temperature=temperature,
        evaluation=hard_evaluation,
    )


class Seq2Seq(nn.Module):
    """Encoder-decoder translation model; see the module docstring for the variants.

    Args:
        src_vocab: source vocabulary size.
        tgt_vocab: target vocabulary size.
        attention: one of :data:`ATTENTIONS`.
        rnn: ``"gru"`` or ``"lstm"``.
        embedding_dim: token embedding size.
        hidden_size: decoder state size (even: the encoder gives half per direction).
        layers: RNN layers of encoder and decoder.
        dropout: on embeddings, between RNN layers and before the output layer.
        input_feeding: Luong's input feeding (Luong-style variants only).
        half_width: ``D`` of local attention.
        max_source_len: source positions ``luong-location`` can score.
        hard_temperature: Gumbel-softmax temperature (``hard-gumbel``).
        hard_evaluation: ``"argmax"`` or ``"expectation"`` for hard attention at eval.
        entropy_weight: entropy bonus of ``hard-reinforce``.
        pad_id: padding id of both vocabularies.

    Shapes:
        src ``(B, S)``, src_lengths ``(B,)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``.

    Example:
        >>> model = Seq2Seq(11, 13, attention="luong-general", embedding_dim=8, hidden_size=6)
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
        attention: str = "luong-general",
        rnn: RNNKind = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        layers: int = 1,
        dropout: float = 0.3,
        input_feeding: bool = False,
        half_width: int = 5,
        max_source_len: int = 64,
        hard_temperature: float = 1.0,
        hard_evaluation: Literal["argmax", "expectation"] = "argmax",
        entropy_weight: float = 0.01,
        pad_id: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"rnn must be 'gru' or 'lstm'; got {rnn!r}")
        self.src_vocab = src_vocab = as_positive("src_vocab", src_vocab)
        self.tgt_vocab = tgt_vocab = as_positive("tgt_vocab", tgt_vocab)
        embedding_dim = as_positive("embedding_dim", embedding_dim)
        layers = as_positive("layers", layers)
        if as_positive("hidden_size", hidden_size) % 2:
            raise ValueError(f"hidden_size must be even (half per direction); got {hidden_size}")
        dropout = probability("dropout", dropout)
        hard_temperature = positive_float("hard_temperature", hard_temperature)
        self.attention_name, self.rnn_kind, self.hidden_size = attention, rnn, hidden_size
        self.pad_id = check_token_id("pad_id", pad_id, min(src_vocab, tgt_vocab))
        self.entropy_weight = real("entropy_weight", entropy_weight)
        self.max_source_len = as_positive("max_source_len", max_source_len)
        self.attend_before = attention == "bahdanau"
        self.input_feeding = input_feeding and not self.attend_before and attention != "none"
        self.attention = build_attention(
            attention,
            hidden_size,
            half_width=half_width,
            max_source_len=max_source_len,
            temperature=hard_temperature,
            hard_evaluation=hard_evaluation,
            factory=factory,
        )
        cell = nn.GRU if rnn == "gru" else nn.LSTM
        between = dropout if layers > 1 else 0.0
        self.src_embed = nn.Embedding(src_vocab, embedding_dim, padding_idx=pad_id, **factory)
        self.tgt_embed = nn.Embedding(tgt_vocab, embedding_dim, padding_idx=pad_id, **factory)
        self.encoder = cell(
            embedding_dim,
            hidden_size // 2,
            layers,
            batch_first=True,
            bidirectional=True,
            dropout=between,
            **factory,
        )
        extra = (
            hidden_size if (self.attend_before or self.input_feeding or attention == "none") else 0
        )
        self.decoder = cell(
            embedding_dim + extra,
            hidden_size,
            layers,
            batch_first=True,
            dropout=between,
            **factory,
        )
        self.bridge = nn.Linear(hidden_size, hidden_size * layers, **factory)
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False, **factory)
        self.output = nn.Linear(hidden_size, tgt_vocab, **factory)
        self.dropout = nn.Dropout(dropout)
        self.baseline = MovingAverageBaseline() if attention == "hard-reinforce" else None

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        """Annotations, prepared keys, mask and summary of a source batch."""
        check_source(src, src_lengths, self.src_vocab)
        return self._encode(src, src_lengths)

    def _encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        embedded = self.dropout(self.src_embed(src))
        packed = pack_padded_sequence(
            embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, final = self.encoder(packed)
        values, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        h = final[0] if isinstance(final, tuple) else final
        summary = torch.cat([h[-2], h[-1]], dim=-1)  # top layer: forward last, backward first
        mask = torch.arange(src.shape[1], device=src.device) < src_lengths.unsqueeze(-1)
        prepare = getattr(self.attention, "prepare_keys", None)
        keys = prepare(values) if prepare is not None else values
        return Memory(values, keys, mask, summary)

    def initial_state(self, memory: Memory) -> State:
        """Decoder state ``tanh(W summary)`` for every layer (LSTM cells start at zero)."""
        batch = memory.summary.shape[0]
        h = torch.tanh(self.bridge(memory.summary)).view(batch, -1, self.hidden_size)
        h = h.transpose(0, 1).contiguous()
        return (h, torch.zeros_like(h)) if self.rnn_kind == "lstm" else h

    # -- decoder ---------------------------------------------------------------------------
    def _attend(
        self, query: Tensor, memory: Memory, steps: Tensor | int | None, need_weights: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        if self.attention is None:
            return memory.summary.unsqueeze(1).expand_as(query), None, None, None
        out = self.attention(
            query,
            memory.keys,
            memory.values,
            mask=memory.mask,
            steps=steps,
            need_weights=need_weights,
            keys_prepared=True,
        )
        return out.context, out.weights, out.get("log_prob"), out.get("entropy")

    def _top(self, state: State) -> Tensor:
        return (state[0] if isinstance(state, tuple) else state)[-1]

    def step(
        self,
        memory: Memory,
        tokens: Tensor,
        state: State,
        feed: Tensor | None,
        t: int,
        *,
        need_weights: bool = False,
    ) -> tuple[StepOutput, State, Tensor | None]:
        """One decoding step for tokens ``(B,)``; returns the output, state and next feed."""
        embedded = self.dropout(self.tgt_embed(tokens)).unsqueeze(1)
        attended = None
        if self.attend_before:
            attended = self._attend(self._top(state).unsqueeze(1), memory, t, need_weights)
            embedded = torch.cat([embedded, attended[0]], dim=-1)
        elif self.attention is None:
            embedded = torch.cat([embedded, memory.summary.unsqueeze(1)], dim=-1)
        elif self.input_feeding:
            if feed is None:
                feed = embedded.new_zeros(embedded.shape[0], 1, self.hidden_size)
            embedded = torch.cat([embedded, feed], dim=-1)
        hidden, state = self.decoder(embedded, state)
        if attended is None:
            steps = torch.full_like(tokens, t).unsqueeze(-1)
            attended = self._attend(hidden, memory, steps, need_weights)
        out, feed = self._output(hidden, attended)
        return out, state, feed

    def _output(
        self, hidden: Tensor, attended: tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]
    ) -> tuple[StepOutput, Tensor]:
        context, weights, log_prob, entropy = attended
        combined = torch.tanh(self.combine(torch.cat([context, hidden], dim=-1)))
        logits = self.output(self.dropout(combined))
        return StepOutput(logits, weights, log_prob, entropy), combined

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, need_weights: bool = False
    ) -> StepOutput:
        """Teacher-forced decoding of ``tgt_in`` (BOS + target without its last token)."""
        check_source(src, src_lengths, self.src_vocab)
        check_target("tgt_in", tgt_in, self.tgt_vocab, src.shape[0])
        memory = self._encode(src, src_lengths)
        state = self.initial_state(memory)
        if not (self.attend_before or self.input_feeding):
            embedded = self.dropout(self.tgt_embed(tgt_in))
            if self.attention is None:
                summary = memory.summary.unsqueeze(1).expand(-1, tgt_in.shape[1], -1)
                embedded = torch.cat([embedded, summary], dim=-1)
            hidden, _ = self.decoder(embedded, state)
            return self._output(hidden, self._attend(hidden, memory, None, need_weights))[0]
        steps, feed = [], None
        for t in range(tgt_in.shape[1]):
            out, state, feed = self.step(
                memory, tgt_in[:, t], state, feed, t, need_weights=need_weights
            )
            steps.append(out)
        return StepOutput(
            *(_cat([getattr(s, f) for s in steps]) for f in StepOutput.__annotations__)
        )

    def loss(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor,
        *,
        label_smoothing: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training loss (mean per target token), summed NLL and the token count.

        ``hard-reinforce`` adds the REINFORCE term with the per-token reward
        ``log p(y_t)``: without input feeding a step's sample only affects that step's
        word, so this reward is exact credit assignment; the baseline is its moving
        average and the entropy bonus is ``entropy_weight``.
        """
        check_target("tgt_out", tgt_out, self.tgt_vocab)
        out = self(src, src_lengths, tgt_in)
        loss, nll, count, token_ll = sequence_loss(
            out.logits, tgt_out, pad_id=self.pad_id, label_smoothing=label_smoothing
        )
        real = tgt_out != self.pad_id
        if self.baseline is not None and self.training and out.log_prob is not None:
            reward = token_ll.detach()
            if not bool(self.baseline.started):  # first batch: its own mean, not zero
                self.baseline.update(reward[real])
            baseline = self.baseline.value.clone()
            loss = loss + reinforce_loss(
                out.log_prob,
                reward,
                baseline,
                out.entropy,
                real,
                entropy_weight=self.entropy_weight,
            )
            self.baseline.update(reward[real])
        return loss, nll, count


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    return None if parts[0] is None else torch.cat(parts, dim=1)
