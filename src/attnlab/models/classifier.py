"""Text classifier: Embedding -> LSTM -> pooling (a module it is given) -> Linear.

How the states become one vector is injected: ``pooling=`` is a
:class:`~attnlab.nn.pooling.StatePooling` class or factory, called with the state width.
:data:`POOLINGS` names them for the experiment configs and the command line.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.masks import lengths_to_mask
from attnlab.nn._checks import (
    as_positive,
    check_ids,
    check_tensor,
    factory_kwargs,
    probability,
)
from attnlab.nn.pooling import (
    AdditivePooling,
    FeedForwardPooling,
    LastStatePooling,
    LuongPooling,
    PoolingFactory,
    adopt_legacy_keys,
    build_pooling,
)

__all__ = ["POOLINGS", "PoolingFactory", "TextClassifier"]

# ``factory(width, *, hidden_size=64, device=None, dtype=None) -> StatePooling``.

# The names people type (``--models`` of the sentiment experiment) -> the pooling.
POOLINGS: dict[str, PoolingFactory] = {
    "last": LastStatePooling,
    "attention": FeedForwardPooling,
    "additive": AdditivePooling,
    "luong": LuongPooling,
}

# Checkpoints written when the classifier held the pooling's parts itself.
_LEGACY_POOLING_KEYS = ("attention", "query", "combine")


class TextClassifier(nn.Module):
    """The reference sentiment model: an LSTM whose states a given pooling turns into one vector.

    ``pooling`` is called as ``pooling(width, device=, dtype=)`` with the LSTM's state
    width, after the LSTM is built (so a seed gives the same parameters whichever
    pooling is chosen), e.g. one of :data:`POOLINGS`:

    * :class:`~attnlab.nn.pooling.LastStatePooling` (``"last"``): the LSTM's final
      state (Cho et al. 2014 style encoder summary);
    * :class:`~attnlab.nn.pooling.FeedForwardPooling` (``"attention"``): the tutorial's
      layer, masked (``query=True``: a learned query, HAN style);
    * :class:`~attnlab.nn.pooling.AdditivePooling` (``"additive"``): Bahdanau's score
      with a learned query vector;
    * :class:`~attnlab.nn.pooling.LuongPooling` (``"luong"``): Luong's ``general``
      score with the final state as the query, combined as ``tanh(W_c [c; h_T])``.

    Options of a pooling go in a ``functools.partial`` (``partial(AdditivePooling,
    hidden_size=32)``). The defaults are the tutorial's sizes: Embedding(32) ->
    LSTM(100) -> Linear.

    Args:
        vocab_size: number of token ids (id 0 is padding).
        num_classes: output classes.
        embedding_dim: token embedding size.
        hidden_size: LSTM state size (per direction).
        pooling: class or factory of the pooling (default: the last state).
        bidirectional: run the LSTM both ways.
        dropout: dropout on embeddings and on the pooled vector.
        word_dropout: in training, replace each token by ``<unk>`` (id 1) with this
            probability, so the model cannot lean on a few memorised words.

    Shapes:
        ids ``(B, L)`` long, lengths ``(B,)`` -> logits ``(B, num_classes)``;
        weights ``(B, L)`` from :meth:`forward_with_weights`.

    Example:
        >>> model = TextClassifier(50, pooling=POOLINGS["additive"])
        >>> logits, w = model.forward_with_weights(torch.tensor([[3, 4, 0]]), torch.tensor([2]))
        >>> logits.shape, w.shape, w[0, 2].item()
        (torch.Size([1, 2]), torch.Size([1, 3]), 0.0)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        *,
        embedding_dim: int = 32,
        hidden_size: int = 100,
        pooling: PoolingFactory = LastStatePooling,
        bidirectional: bool = False,
        dropout: float = 0.0,
        word_dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.vocab_size = vocab_size = as_positive("vocab_size", vocab_size)
        num_classes = as_positive("num_classes", num_classes)
        embedding_dim = as_positive("embedding_dim", embedding_dim)
        hidden_size = as_positive("hidden_size", hidden_size)
        dropout = probability("dropout", dropout)
        self.word_dropout = probability("word_dropout", word_dropout, allow_one=True)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0, **factory)
        self.encoder = nn.LSTM(
            embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional, **factory
        )
        width = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.pooling = build_pooling(pooling, width, owner="the LSTM", **factory)
        self.classifier = nn.Linear(width, num_classes, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' initialisation, which the tutorial's numbers were obtained with.

        Small embeddings (uniform +-0.05), Glorot input weights, orthogonal recurrent
        weights and a forget-gate bias of 1 (Jozefowicz et al. 2015) train markedly
        more steadily on a 2000-sentence dataset than torch's defaults.
        """
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        hidden = self.encoder.hidden_size
        for name, param in self.encoder.named_parameters():
            if name.startswith("weight_ih"):
                for gate in param.split(hidden):
                    nn.init.xavier_uniform_(gate)
            elif name.startswith("weight_hh"):
                for gate in param.split(hidden):
                    nn.init.orthogonal_(gate)
            else:
                nn.init.zeros_(param)
                if name.startswith("bias_ih"):
                    param.data[hidden : 2 * hidden] = 1.0  # gates are ordered i, f, g, o

    def _check(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """The padding mask ``(B, L)``, after one-line errors for bad ids or lengths."""
        check_tensor("ids", ids)
        if check_tensor("lengths", lengths).shape != ids.shape[:1] or ids.dim() != 2:
            raise ValueError(
                f"expected ids (B, L) and lengths (B,), got {tuple(ids.shape)} "
                f"and {tuple(lengths.shape)}"
            )
        check_ids("ids", ids, self.vocab_size, dims=2, layout="(B, L)")
        return lengths_to_mask(lengths, ids.shape[1])

    def _encode(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = ids.masked_fill(dropped & (ids != 0), 1)
        embedded = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(
            embedded, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        states, (h_n, _) = self.encoder(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        # h_n is (layers * directions, B, H): the last layer's directions side by side.
        last = torch.cat(list(h_n[-(2 if self.encoder.bidirectional else 1) :]), dim=-1)
        return states, last

    def forward_with_weights(
        self, ids: Tensor, lengths: Tensor, *, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Logits and, for attention poolings, the weights over tokens."""
        mask = self._check(ids, lengths)
        states, last = self._encode(ids, lengths)
        pooled, weights = self.pooling(states, last, mask=mask, need_weights=need_weights)
        return self.classifier(self.dropout(pooled)), weights

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.forward_with_weights(ids, lengths, need_weights=False)[0]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Checkpoints from before the pooling was a module hold "attention.*", "query"
        # and "combine.*" at the top: they are the pooling's now.
        adopt_legacy_keys(state_dict, prefix, _LEGACY_POOLING_KEYS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
