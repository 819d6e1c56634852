"""Document classifiers: hierarchical attention (Yang et al. 2016) and its flat baselines."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import as_positive, check_ids, factory_kwargs, probability
from attnlab.nn.hierarchical import CONTEXT_POOLING, HierarchicalAttention, SequenceEncoder
from attnlab.nn.pooling import PoolingFactory


class _DocumentClassifier(nn.Module):
    """Embedding (id 0 = padding) -> encoder -> dropout -> Linear.

    Subclasses set ``layout`` (the ids' dimensions), ``encoder`` and ``classifier``.
    """

    layout: str
    encoder: nn.Module
    classifier: nn.Linear

    def __init__(
        self, vocab_size: int, num_classes: int, embedding_dim: int, dropout: float, factory: dict
    ) -> None:
        super().__init__()
        self.vocab_size = as_positive("vocab_size", vocab_size)
        self.num_classes = as_positive("num_classes", num_classes)
        embedding_dim = as_positive("embedding_dim", embedding_dim)
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim, padding_idx=0, **factory)
        self.dropout = nn.Dropout(probability("dropout", dropout))

    def forward_with_weights(self, ids: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``(logits, weights)`` and the encoder's extras (``sentence_weights`` for a HAN)."""
        dims = len(self.layout.split(","))
        check_ids("ids", ids, self.vocab_size, dims=dims, layout=f"({self.layout})")
        embedded = self.dropout(self.embedding(ids))
        encoded = self.encoder(embedded, mask=ids != 0, need_weights=need_weights)
        return encoded.replace(context=self.classifier(self.dropout(encoded.context)))

    def forward(self, ids: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.forward_with_weights(ids, need_weights=False)[0]


class HANClassifier(_DocumentClassifier):
    r"""Hierarchical attention network for document classification (Yang et al. 2016).

    "Hierarchical Attention Networks for Document Classification" (NAACL 2016):
    word embeddings go through :class:`~attnlab.nn.hierarchical.HierarchicalAttention`
    (bi-GRU + word attention per sentence, bi-GRU + sentence attention per
    document), and a linear layer turns the document vector :math:`v` into logits,
    :math:`p = \mathrm{softmax}(W_c v + b_c)`. The paper's sizes are embedding 200,
    GRU 50 per direction and attention 100; the defaults here are smaller for CPU.

    Token id 0 is padding: the model derives its word mask from ``ids != 0``, so a
    batch is just ``(ids, labels)`` and it trains with :func:`attnlab.train.fit`.

    Args:
        vocab_size: number of token ids (id 0 is padding).
        num_classes: output classes.
        embedding_dim: token embedding size.
        hidden_size: GRU state size per direction (both levels).
        attention_size: tanh layer size of both attentions (default ``2 * hidden_size``).
        dropout: dropout on the word embeddings and on the document vector.

    Shapes:
        ids ``(B, S, W)`` long, right-padded with 0 (real words first in each
        sentence, empty sentences last) -> logits ``(B, num_classes)``; from
        :meth:`forward_with_weights`: ``(logits, word weights (B, S, W))`` with the
        extra ``sentence_weights`` ``(B, S)``.

    Example:
        >>> model = HANClassifier(50, 3, embedding_dim=8, hidden_size=4)
        >>> ids = torch.tensor([[[3, 4, 0], [5, 0, 0]]])
        >>> out = model.forward_with_weights(ids)
        >>> logits, words = out
        >>> logits.shape, out.sentence_weights.shape, words[0, 1, 1].item()
        (torch.Size([1, 3]), torch.Size([1, 2]), 0.0)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        *,
        embedding_dim: int = 64,
        hidden_size: int = 50,
        attention_size: int | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory = factory_kwargs(device, dtype)
        super().__init__(vocab_size, num_classes, embedding_dim, dropout, factory)
        self.layout = "B, S, W"
        self.encoder = HierarchicalAttention(
            embedding_dim, hidden_size, attention_size=attention_size, **factory
        )
        self.classifier = nn.Linear(self.encoder.output_size, self.num_classes, **factory)


class FlatClassifier(_DocumentClassifier):
    """The flat baselines of a HAN: one bi-GRU over the whole document, then pooling.

    The same pieces as :class:`HANClassifier` without the sentence level (Yang et
    al. 2016 compare with such flat recurrent models): the document's words, all
    sentences concatenated, go through one
    :class:`~attnlab.nn.hierarchical.SequenceEncoder`, with the pooling it is given:
    word attention (learned context vector, the default
    :data:`~attnlab.nn.hierarchical.CONTEXT_POOLING`) or the GRU's final states
    (:class:`~attnlab.nn.pooling.LastStatePooling`).

    Args:
        vocab_size: number of token ids (id 0 is padding).
        num_classes: output classes.
        embedding_dim: token embedding size.
        hidden_size: GRU state size per direction.
        pooling: class or factory of the pooling (any
            :class:`~attnlab.nn.pooling.StatePooling`), built with the bi-GRU's width.
        attention_size: tanh layer size of the pooling (default ``2 * hidden_size``).
        dropout: dropout on the word embeddings and on the document vector.

    Shapes:
        ids ``(B, L)`` long, right-padded with 0 -> logits ``(B, num_classes)``;
        weights ``(B, L)`` from :meth:`forward_with_weights` (None from poolings without
        attention).

    Example:
        >>> model = FlatClassifier(50, embedding_dim=8, hidden_size=4)
        >>> logits, w = model.forward_with_weights(torch.tensor([[3, 4, 0]]))
        >>> logits.shape, w[0, 2].item()
        (torch.Size([1, 2]), 0.0)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        *,
        embedding_dim: int = 64,
        hidden_size: int = 50,
        pooling: PoolingFactory = CONTEXT_POOLING,
        attention_size: int | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory = factory_kwargs(device, dtype)
        super().__init__(vocab_size, num_classes, embedding_dim, dropout, factory)
        self.layout = "B, L"
        self.encoder = SequenceEncoder(
            embedding_dim, hidden_size, pooling=pooling, attention_size=attention_size, **factory
        )
        self.classifier = nn.Linear(self.encoder.output_size, self.num_classes, **factory)
