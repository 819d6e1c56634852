"""RNN encoder-decoder for translation with an injected attention module (or none).

* Encoder: embedding -> bidirectional GRU/LSTM (``hidden_size // 2`` per direction, so
  annotations ``h_j = [fwd_j; bwd_j]`` have the decoder's size and ``dot`` works); its
  summary ``[fwd_S; bwd_1]`` initialises the decoder (``tanh(W s)``, Bahdanau et al.).
* ``attention=None``: Cho et al. 2014; the summary is the context of every step, fed to
  the decoder's input and output: the baseline that shows what attention buys.
* ``attend_before=True``: Bahdanau et al. 2015; the previous state ``s_{i-1}`` attends
  and the context enters the RNN input.
* otherwise Luong et al. 2015: the current state ``h_t`` attends, and
  ``h~_t = tanh(W_c [c_t; h_t])`` predicts the word; with ``input_feeding`` ``h~_{t-1}``
  joins the next input. Without it the whole target runs as one RNN call and one
  attention call (all queries at once), which is much faster on a CPU.

All variants share one output layer ``softmax(W_o dropout(h~_t))``. The attention is any
module called like :class:`~attnlab.nn.SourceAttention`; the named variants of the
papers (``"bahdanau"``, ``"luong-general"``, ``"hard-reinforce"``, ...) are built with
their wiring by :data:`attnlab.models.SEQ2SEQ_ATTENTIONS`. Decoding (greedy, beam)
lives in :mod:`attnlab.models.search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.functional.hard import reinforce_loss
from attnlab.models._translation import StepOutput, check_source, check_target, sequence_loss
from attnlab.nn._checks import (
    as_positive,
    check_token_id,
    factory_kwargs,
    probability,
    real,
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


class Seq2Seq(nn.Module):
    """Encoder-decoder translation model around the attention it is given.

    Args:
        src_vocab: source vocabulary size.
        tgt_vocab: target vocabulary size.
        attention: the decoder's attention over the annotations, called as
            ``attention(query, keys, values, mask=, steps=, need_weights=,
            keys_prepared=True)`` (any :class:`~attnlab.nn.SourceAttention`), with
            queries and keys of ``hidden_size``; its ``prepare_keys`` runs once per
            source. None: no attention, the encoder summary is every step's context.
        attend_before: Bahdanau's decoder: the previous state attends and the context
            enters the RNN input (otherwise Luong's: the new state attends).
        input_feeding: Luong's input feeding (attentional state into the next input).
        baseline: REINFORCE baseline (:class:`~attnlab.nn.MovingAverageBaseline`) for an
            attention that samples (returns ``log_prob``): the loss then adds the
            REINFORCE term; None trains through the attention's own gradients.
        rnn: ``"gru"`` or ``"lstm"``.
        embedding_dim: token embedding size.
        hidden_size: decoder state size (even: the encoder gives half per direction).
        layers: RNN layers of encoder and decoder.
        dropout: on embeddings, between RNN layers and before the output layer.
        entropy_weight: entropy bonus of the REINFORCE term.
        pad_id: padding id of both vocabularies.

    Shapes:
        src ``(B, S)``, src_lengths ``(B,)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``.

    Example:
        >>> from attnlab.nn import LuongAttention
        >>> model = Seq2Seq(11, 13, attention=LuongAttention(6, score="general"),
        ...                 embedding_dim=8, hidden_size=6)
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
        attention: nn.Module | None,
        attend_before: bool = False,
        input_feeding: bool = False,
        baseline: nn.Module | None = None,
        rnn: RNNKind = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        layers: int = 1,
        dropout: float = 0.3,
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
        _check_wiring(attention, attend_before, input_feeding, baseline, hidden_size)
        self.rnn_kind, self.hidden_size = rnn, hidden_size
        self.pad_id = check_token_id("pad_id", pad_id, min(src_vocab, tgt_vocab))
        self.entropy_weight = real("entropy_weight", entropy_weight)
        self.attend_before, self.input_feeding = attend_before, input_feeding
        self.attention = attention
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
        # Bahdanau's context, Luong's fed attentional state or the summary joins the input.
        extra = hidden_size if (attend_before or input_feeding or attention is None) else 0
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
        self.baseline = baseline

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

        With a ``baseline`` (hard attention trained by REINFORCE) the loss adds the
        REINFORCE term with the per-token reward ``log p(y_t)``: without input feeding a
        step's sample only affects that step's word, so this reward is exact credit
        assignment; the baseline is its moving average and the entropy bonus is
        ``entropy_weight``.
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


def _check_wiring(
    attention: object,
    attend_before: bool,
    input_feeding: bool,
    baseline: object,
    hidden_size: int,
) -> None:
    """One-line errors for an attention and decoder wiring that do not fit together."""
    if attention is not None and not isinstance(attention, nn.Module):
        raise TypeError(
            f"attention must be an attention module or None, got {type(attention).__name__} "
            f"{attention!r}; names resolve through SEQ2SEQ_ATTENTIONS"
        )
    if baseline is not None and not isinstance(baseline, nn.Module):
        raise TypeError(f"baseline must be an nn.Module or None, got {type(baseline).__name__}")
    if attention is None and (attend_before or input_feeding):
        raise ValueError(
            "attend_before and input_feeding wire an attention into the decoder; with "
            "attention=None the encoder summary is every step's context"
        )
    if attend_before and input_feeding:
        raise ValueError(
            "input_feeding is Luong's decoder; with attend_before=True (Bahdanau's) the "
            "context already enters the RNN input: choose one"
        )
    for side in ("query_size", "key_size"):
        size = getattr(attention, side, None)
        if isinstance(size, int) and size != hidden_size:
            raise ValueError(
                f"the attention's {side} is {size} but hidden_size is {hidden_size}; build "
                "it for the decoder's state size (the annotations have it too)"
            )
