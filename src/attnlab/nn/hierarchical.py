"""Hierarchical attention: words -> sentence vectors -> one document vector."""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.masks.check import check_mask
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size
from attnlab.nn._common import check_sequence
from attnlab.nn.pooling import (
    FeedForwardPooling,
    PoolingFactory,
    adopt_legacy_keys,
    build_pooling,
)

__all__ = ["CONTEXT_POOLING", "HierarchicalAttention", "SequenceEncoder"]

# Yang et al.'s word and sentence attention, a learned context vector: the default pooling.
CONTEXT_POOLING: PoolingFactory = functools.partial(FeedForwardPooling, query=True)
# Checkpoints written when the encoder held its attention itself ("attention.*").
_LEGACY_POOLING_KEYS = ("attention",)
_WORD_GROUPS = 4  # length groups of sentences the word level runs over, one after another


def _check_inputs(
    owner: nn.Module, inputs: Tensor, mask: Tensor | None, size: int, dims: tuple[str, ...]
) -> Tensor:
    """One-line errors for bad inputs or masks; returns the mask (all True when None)."""
    check_sequence(owner, "inputs", inputs, (*dims, "E"), size)
    positions = inputs.shape[:-1]
    if mask is None:
        return torch.ones(positions, dtype=torch.bool, device=inputs.device)
    expected = f"({', '.join(dims)}), True = real position"
    check_mask(mask, ndim_max=len(dims), shape=positions, expected=expected)
    return mask.expand(positions)


def _lengths(mask: Tensor, what: str) -> Tensor:
    """Real positions per row of a right-padded mask ``(..., L)``; one-line error otherwise."""
    lengths = mask.sum(-1)
    positions = torch.arange(mask.shape[-1], device=mask.device)
    if not torch.equal(mask, positions < lengths.unsqueeze(-1)):
        raise ValueError(f"mask must be right-padded: {what}")
    return lengths


def _reverse_within(lengths: Tensor, length: int) -> Tensor:
    """Index ``(B, L)`` that reverses each row's first ``lengths[b]`` positions, keeps the rest."""
    positions = torch.arange(length, device=lengths.device)
    lengths = lengths.unsqueeze(1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


class SequenceEncoder(nn.Module):
    r"""One level of a hierarchical attention network: a bi-GRU, then pooling.

    Yang et al. 2016 ("Hierarchical Attention Networks for Document
    Classification"): the word encoder and word attention (or, one level up, the
    sentence encoder and sentence attention),

    .. math::
        h_t = [\overrightarrow{\mathrm{GRU}}(x_t); \overleftarrow{\mathrm{GRU}}(x_t)],
        \quad \alpha_t = \mathrm{softmax}_t\big(u^\top \tanh(W h_t + b)\big),
        \quad v = \sum_t \alpha_t h_t

    with :data:`CONTEXT_POOLING` (:class:`~attnlab.nn.pooling.FeedForwardPooling`,
    ``query=True``) for the attention. The pooling is injected: any
    :class:`~attnlab.nn.pooling.StatePooling` class or factory, built with the state width
    and ``hidden_size=attention_size``, and called with the states and the final states.
    With :class:`~attnlab.nn.pooling.LastStatePooling` there is no attention: :math:`v` is
    the two directions' final states, the flat-encoder baseline of the paper.

    Sequences are right-padded. The two directions run as two unidirectional GRUs
    over the padded batch, the backward one on each row reversed within its length,
    so padding never enters a real state. (Packed sequences would do the same, but
    their backward pass on CPU costs time quadratic in the sequence length.) Padded
    positions get weight exactly zero; an empty row gives a zero vector.

    Args:
        input_size: ``D``, the size of each input vector.
        hidden_size: GRU state size per direction; outputs are ``2 * hidden_size`` wide.
        pooling: class or factory of the pooling (default :data:`CONTEXT_POOLING`, the
            learned context vector), built after the GRUs.
        attention_size: size of the pooling's tanh layer (default ``2 * hidden_size``).

    Shapes:
        inputs ``(B, L, D)``, mask ``(B, L)`` True = real position, right-padded ->
        vector ``(B, 2 * hidden_size)``, weights ``(B, L)`` (None from poolings without
        attention). The pooling gets states ``(B, L, 2 * hidden_size)`` and final states
        ``(B, 2 * hidden_size)``: the forward GRU's at the last real position and the
        backward GRU's at the first, zero for an empty row.

    Example:
        >>> encoder = SequenceEncoder(8, hidden_size=4)
        >>> mask = torch.tensor([[True, True, False]])
        >>> v, w = encoder(torch.randn(1, 3, 8), mask=mask, need_weights=True)
        >>> v.shape, w[0, 2].item()
        (torch.Size([1, 8]), 0.0)
        >>> from attnlab.nn.pooling import LastStatePooling
        >>> last = SequenceEncoder(8, hidden_size=4, pooling=LastStatePooling)
        >>> last(torch.randn(1, 3, 8), need_weights=True).weights is None
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 50,
        *,
        pooling: PoolingFactory = CONTEXT_POOLING,
        attention_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.input_size = input_size = as_positive("input_size", input_size)
        self.hidden_size = hidden_size = as_positive("hidden_size", hidden_size)
        attention_size = optional_size("attention_size", attention_size)
        self.output_size = 2 * hidden_size
        self.forward_rnn = nn.GRU(input_size, hidden_size, batch_first=True, **factory)
        self.backward_rnn = nn.GRU(input_size, hidden_size, batch_first=True, **factory)
        self.pooling = build_pooling(
            pooling,
            self.output_size,
            owner="the bi-GRU",
            hidden_size=attention_size or self.output_size,
            **factory,
        )

    def states(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Bi-GRU states ``(B, L, 2 * hidden_size)``; rows of padding hold junk."""
        order = _reverse_within(lengths, inputs.shape[1]).unsqueeze(-1)
        forward, _ = self.forward_rnn(inputs)
        backward, _ = self.backward_rnn(inputs.gather(1, order.expand_as(inputs)))
        backward = backward.gather(1, order.expand_as(backward))
        return torch.cat([forward, backward], dim=-1)

    def final_states(self, states: Tensor, lengths: Tensor) -> Tensor:
        """Both directions' final states ``(B, 2 * hidden_size)``, zero for empty rows."""
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.hidden_size)
        forward = states[..., : self.hidden_size].gather(1, last).squeeze(1)
        vector = torch.cat([forward, states[:, 0, self.hidden_size :]], dim=-1)
        return vector * (lengths > 0).unsqueeze(-1).to(vector.dtype)

    def forward(
        self, inputs: Tensor, *, mask: Tensor | None = None, need_weights: bool = False
    ) -> AttentionOutput:
        """Encode and pool; returns ``(vector, weights | None)``."""
        mask = _check_inputs(self, inputs, mask, self.input_size, ("B", "L"))
        if inputs.shape[1] == 0:  # no positions: the GRUs cannot run; every row is empty
            states = inputs.new_zeros(inputs.shape[0], 0, self.output_size)
            last = inputs.new_zeros(inputs.shape[0], self.output_size)
        else:
            lengths = _lengths(mask, "in each row, real positions come first")
            states = self.states(inputs, lengths)
            last = self.final_states(states, lengths)
        return self.pooling(states, last, mask=mask, need_weights=need_weights)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        adopt_legacy_keys(state_dict, prefix, _LEGACY_POOLING_KEYS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr`` (the pooling shows as a child)."""
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


class HierarchicalAttention(nn.Module):
    r"""The hierarchical attention network encoder of Yang et al. 2016.

    "Hierarchical Attention Networks for Document Classification" (NAACL 2016):
    a bidirectional GRU reads the words of each sentence, and attention with a
    learned word context vector :math:`u_w` pools them into a sentence vector; a
    second bidirectional GRU reads the sentence vectors, and attention with a
    sentence context vector :math:`u_s` pools them into the document vector:

    .. math::
        h_{it} = [\overrightarrow{\mathrm{GRU}}(x_{it}); \overleftarrow{\mathrm{GRU}}(x_{it})],
        \quad \alpha_{it} = \mathrm{softmax}_t\big(u_w^\top \tanh(W_w h_{it} + b_w)\big),
        \quad s_i = \sum_t \alpha_{it} h_{it}

        h_i = [\overrightarrow{\mathrm{GRU}}(s_i); \overleftarrow{\mathrm{GRU}}(s_i)],
        \quad \alpha_i = \mathrm{softmax}_i\big(u_s^\top \tanh(W_s h_i + b_s)\big),
        \quad v = \sum_i \alpha_i h_i

    Each level is a :class:`SequenceEncoder` (bi-GRU + :class:`~attnlab.nn.AttentionPooling`
    with ``query=True``). Documents are right-padded to ``S`` sentences of ``W`` words;
    the word level runs only over real sentences (in a few groups of similar length,
    each cut to its longest sentence), padding never enters a GRU state,
    and padded words and sentences get weight exactly zero. A document with no words
    gives a zero vector and zero weights, with finite gradients.

    Args:
        input_size: ``E``, the size of each word vector (the paper's embedding, 200).
        hidden_size: GRU state size per direction (paper: 50); vectors are
            ``2 * hidden_size`` wide.
        attention_size: size of the tanh layer of both attentions (paper: 100);
            default ``2 * hidden_size``.

    Shapes:
        inputs ``(B, S, W, E)``, mask ``(B, S, W)`` True = real word (right-padded:
        real words first in each sentence, empty sentences last) -> document
        ``(B, 2 * hidden_size)``; weights (the distribution over the words it was
        given) ``(B, S, W)``, all zero for padded words and padded sentences; extra
        ``sentence_weights`` ``(B, S)``, each document's distribution over its
        sentences, zero for padded ones (both None unless ``need_weights``).

    Example:
        >>> han = HierarchicalAttention(8, hidden_size=4)
        >>> mask = torch.tensor([[[True, True, False], [True, False, False]]])
        >>> out = han(torch.randn(1, 2, 3, 8), mask=mask, need_weights=True)
        >>> doc, words = out
        >>> doc.shape, words.shape, words[0, 1, 1:].tolist(), out.sentence_weights.shape
        (torch.Size([1, 8]), torch.Size([1, 2, 3]), [0.0, 0.0], torch.Size([1, 2]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 50,
        *,
        attention_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.input_size = input_size = as_positive("input_size", input_size)
        self.hidden_size = hidden_size = as_positive("hidden_size", hidden_size)
        self.output_size = 2 * hidden_size
        self.attention_size = optional_size("attention_size", attention_size) or self.output_size
        level = {"attention_size": self.attention_size, **factory}
        self.words = SequenceEncoder(input_size, hidden_size, **level)
        self.sentences = SequenceEncoder(self.output_size, hidden_size, **level)

    def forward(
        self, inputs: Tensor, *, mask: Tensor | None = None, need_weights: bool = False
    ) -> AttentionOutput:
        """Encode documents: ``(document, word weights | None)``, extra ``sentence_weights``."""
        mask = _check_inputs(self, inputs, mask, self.input_size, ("B", "S", "W"))
        words = _lengths(mask, "in each sentence, real words come first")
        real_sentences = words > 0
        _lengths(real_sentences, "empty (all-padding) sentences must come after every real one")
        batch, num_sentences, num_words, _ = inputs.shape
        flat = batch * num_sentences  # explicit: with W = 0 a -1 would be ambiguous
        flat_inputs = inputs.reshape(flat, num_words, self.input_size)
        flat_mask, flat_words = mask.reshape(flat, num_words), words.flatten()
        vectors = inputs.new_zeros(batch * num_sentences, self.output_size)
        all_words = inputs.new_zeros(batch * num_sentences, num_words) if need_weights else None
        # Only real sentences go through the word level, longest first, in a few
        # groups each cut to its own longest sentence: far less padding is computed.
        real = flat_words.nonzero().squeeze(1)
        order = real[flat_words[real].argsort(descending=True, stable=True)]
        for group in order.chunk(_WORD_GROUPS) if order.numel() else ():
            width = int(flat_words[group[0]])
            pooled, weights = self.words(
                flat_inputs[group, :width], mask=flat_mask[group, :width], need_weights=need_weights
            )
            vectors = vectors.index_copy(0, group, pooled)
            if all_words is not None:
                padded = nn.functional.pad(weights.to(inputs.dtype), (0, num_words - width))
                all_words = all_words.index_copy(0, group, padded)
        vectors = vectors.view(batch, num_sentences, self.output_size)
        document, sentence_weights = self.sentences(
            vectors, mask=real_sentences, need_weights=need_weights
        )
        words_weights = (
            None if all_words is None else all_words.view(batch, num_sentences, num_words)
        )
        return AttentionOutput(document, words_weights, sentence_weights=sentence_weights)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"attention_size={self.attention_size}"
        )
