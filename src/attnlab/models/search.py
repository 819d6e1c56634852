"""Batched beam search (and greedy search, its beam of one) for encoder-decoders.

Any model with ``encode``, ``initial_state``, ``step``, ``pad_id`` and ``tgt_vocab``
works: the RNN
:class:`~attnlab.models.seq2seq.Seq2Seq` and the
:class:`~attnlab.models.transformer.TransformerSeq2Seq` (whose state is its KV caches).

Every sentence of the batch keeps ``beam_size`` hypotheses. A hypothesis that emits
EOS is finished: it keeps its score and only extends with padding at no cost, so it
competes with the live ones until all are finished or ``max_len`` is reached. The
winner maximises the length-normalised score ``log p(y) / |y|^alpha`` (Wu et al.
2016 use a smoothed variant; ``alpha = 0`` is the raw log-probability). The attention
weights of the winner, one row per target token, come back with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from attnlab.models._translation import StepOutput
from attnlab.nn._checks import as_positive, check_token_id, real


class EncoderDecoder(Protocol):
    """What the search needs of a model."""

    pad_id: int
    tgt_vocab: int
    training: bool

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any:  # noqa: D102
        ...

    def initial_state(self, memory: Any) -> Any:  # noqa: D102
        ...

    def step(  # noqa: D102
        self,
        memory: Any,
        tokens: Tensor,
        state: Any,
        feed: Tensor | None,
        t: int,
        *,
        need_weights: bool = False,
    ) -> tuple[StepOutput, Any, Tensor | None]: ...

    def eval(self) -> Any:  # noqa: D102
        ...

    def train(self, mode: bool = True) -> Any:  # noqa: D102
        ...


@dataclass(frozen=True)
class Hypothesis:
    """A decoded sentence: token ids (without BOS/EOS), its score, its attention weights."""

    tokens: list[int]
    score: float
    weights: Tensor | None  # (len(tokens) + 1, S): one row per emitted token, EOS included


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src: Tensor,
    src_lengths: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 5,
    max_len: int = 80,
    length_penalty: float = 1.0,
    need_weights: bool = True,
) -> list[Hypothesis]:
    """Decode a source batch with beam search.

    Args:
        model: the trained model (put in eval mode here, restored after).
        src: ``(B, S)`` source ids.
        src_lengths: ``(B,)`` real source lengths.
        bos_id: start symbol fed at the first step.
        eos_id: end symbol.
        beam_size: hypotheses per sentence; 1 is greedy search.
        max_len: most target tokens per sentence, EOS included.
        length_penalty: ``alpha`` of the normalisation ``score / len^alpha``.
        need_weights: also return the winner's attention weights (None for ``"none"``).

    Returns:
        One :class:`Hypothesis` per source sentence, in order.

    Example:
        >>> from attnlab.models import SEQ2SEQ_ATTENTIONS, Seq2Seq
        >>> variant = SEQ2SEQ_ATTENTIONS["luong-dot"](4)
        >>> model = Seq2Seq(9, 9, embedding_dim=4, hidden_size=4, **variant.as_kwargs())
        >>> hyps = beam_search(model, torch.tensor([[3, 4, 5]]), torch.tensor([3]),
        ...                    bos_id=1, eos_id=2, beam_size=2, max_len=4)
        >>> len(hyps), hyps[0].weights.shape[1]
        (1, 3)
    """
    beam_size, max_len = as_positive("beam_size", beam_size), as_positive("max_len", max_len)
    length_penalty = real("length_penalty", length_penalty)
    bos_id = check_token_id("bos_id", bos_id, model.tgt_vocab)
    eos_id = check_token_id("eos_id", eos_id, model.tgt_vocab)
    was_training = model.training
    model.eval()
    try:
        return _search(
            model,
            src,
            src_lengths,
            bos_id,
            eos_id,
            beam_size,
            max_len,
            length_penalty,
            need_weights,
        )
    finally:
        model.train(was_training)


def greedy_search(
    model: EncoderDecoder,
    src: Tensor,
    src_lengths: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int = 80,
    need_weights: bool = True,
) -> list[Hypothesis]:
    """Greedy decoding: :func:`beam_search` with a beam of one."""
    return beam_search(
        model,
        src,
        src_lengths,
        bos_id=bos_id,
        eos_id=eos_id,
        beam_size=1,
        max_len=max_len,
        length_penalty=0.0,
        need_weights=need_weights,
    )


def _search(
    model: EncoderDecoder,
    src: Tensor,
    src_lengths: Tensor,
    bos_id: int,
    eos_id: int,
    k: int,
    max_len: int,
    alpha: float,
    need_weights: bool,
) -> list[Hypothesis]:
    batch, src_len = src.shape
    rows = torch.arange(batch, device=src.device).repeat_interleave(k)
    memory = model.encode(src, src_lengths).select(rows)
    state = model.initial_state(memory)
    feed = None
    scores = src.new_full((batch, k), float("-inf"), dtype=torch.float32)
    scores[:, 0] = 0.0  # one live hypothesis at first, so the k beams do not repeat it
    tokens = src.new_full((batch * k,), bos_id)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(batch * k, device=src.device)
    history = src.new_zeros(batch * k, 0)
    weights_history = memory.values.new_zeros(batch * k, 0, src_len) if need_weights else None
    attended = False  # a model without attention (RNN "none") returns no weights
    for t in range(max_len):
        out, state, feed = model.step(memory, tokens, state, feed, t, need_weights=need_weights)
        log_p = torch.log_softmax(out.logits[:, 0].float(), dim=-1)
        vocab = log_p.shape[-1]
        # A finished hypothesis extends only with padding, at no cost.
        done_row = torch.full_like(log_p[0], float("-inf"))
        done_row[model.pad_id] = 0.0
        log_p = torch.where(finished.unsqueeze(-1), done_row, log_p)
        total = (scores.view(-1, 1) + log_p).view(batch, k * vocab)
        scores, flat = total.topk(k, dim=-1)
        beam = flat // vocab
        tokens = (flat % vocab).view(-1)
        origin = (beam + torch.arange(batch, device=src.device).unsqueeze(-1) * k).view(-1)
        state = _select_state(state, origin)
        feed = None if feed is None else feed.index_select(0, origin)
        was_finished = finished.index_select(0, origin)
        finished = was_finished | (tokens == eos_id)
        lengths = lengths.index_select(0, origin) + (~was_finished).float()
        history = torch.cat([history.index_select(0, origin), tokens.unsqueeze(-1)], dim=-1)
        if weights_history is not None and out.weights is not None:
            attended = True
            step_w = out.weights[:, 0].index_select(0, origin)
            weights_history = torch.cat(
                [weights_history.index_select(0, origin), step_w.unsqueeze(1)], dim=1
            )
        if bool(finished.all()):
            break
    normalised = scores.view(-1) / lengths.clamp(min=1) ** alpha
    best = normalised.view(batch, k).argmax(-1) + torch.arange(batch, device=src.device) * k
    return [
        _hypothesis(
            history[i],
            int(lengths[i]),
            float(normalised[i]),
            eos_id,
            weights_history[i] if weights_history is not None and attended else None,
        )
        for i in best.tolist()
    ]


def _hypothesis(
    ids: Tensor, length: int, score: float, eos_id: int, w: Tensor | None
) -> Hypothesis:
    ids = ids[:length].tolist()
    words = ids[:-1] if ids and ids[-1] == eos_id else ids
    return Hypothesis(words, score, None if w is None else w[:length].clone())


def _select_state(state: Any, index: Tensor) -> Any:
    if isinstance(state, Tensor):  # an RNN's (layers, B, H) state
        return state.index_select(1, index)
    if isinstance(state, tuple):  # an LSTM's (h, c)
        return tuple(s.index_select(1, index) for s in state)
    return state.select(index)  # a Transformer's per-layer KV caches
