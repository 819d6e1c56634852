"""Attention over subword pieces shown over words.

A subword model (SentencePiece, BPE) splits "Fahrrad" into "▁Fahr" "rad"; people
read words. :func:`merge_subword_alignment` folds an alignment matrix over pieces
into one over words: a source word receives the sum of its pieces' weights (so each
row stays a distribution), a target word the mean of its pieces' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from attnlab.interpret._common import as_weights, check_tokens

__all__ = ["group_pieces", "merge_subword_alignment"]

WORD_START = "\u2581"  # SentencePiece's "▁"


def group_pieces(pieces: Sequence[str], marker: str = WORD_START) -> tuple[list[str], list[int]]:
    """Join pieces into words; a piece that starts with ``marker`` starts a new word.

    Special tokens written in angle brackets (``</s>``) stay words of their own.

    Args:
        pieces: The pieces in order.
        marker: The word-start marker.

    Returns:
        ``(words, word_of_piece)``: the words, and for each piece the index of its word.

    Example:
        >>> group_pieces(["▁Ein", "▁Fahr", "rad", "."])
        (['Ein', 'Fahrrad.'], [0, 1, 1, 1])
    """
    words: list[str] = []
    owner: list[int] = []
    for piece in pieces:
        special = piece.startswith("<") and piece.endswith(">")
        if not words or piece.startswith(marker) or special or words[-1].startswith("<"):
            words.append(piece if special else piece.removeprefix(marker))
        else:
            words[-1] += piece
        owner.append(len(words) - 1)
    return words, owner


def merge_subword_alignment(
    weights: Any,
    source_pieces: Sequence[str],
    target_pieces: Sequence[str],
    marker: str = WORD_START,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Fold a ``(target pieces, source pieces)`` alignment into ``(target words, source words)``.

    Args:
        weights: ``(Lt, Ls)`` weights, a tensor or array.
        source_pieces: the ``Ls`` column pieces.
        target_pieces: the ``Lt`` row pieces.
        marker: The word-start marker.

    Returns:
        ``(word_weights, source_words, target_words)``.

    Example:
        >>> w = np.array([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5]])
        >>> m, src, tgt = merge_subword_alignment(w, ["▁Ein", "▁Fahr", "rad"], ["▁A", "▁bike"])
        >>> m.tolist(), src, tgt
        ([[0.5, 0.5], [0.0, 1.0]], ['Ein', 'Fahrrad'], ['A', 'bike'])
    """
    w = as_weights(weights, ndim=2)
    check_tokens(source_pieces, w.shape[1], name="source_pieces", axis="columns")
    check_tokens(target_pieces, w.shape[0], name="target_pieces", axis="rows")
    src_words, src_owner = group_pieces(source_pieces, marker)
    tgt_words, tgt_owner = group_pieces(target_pieces, marker)
    columns = np.zeros((w.shape[0], len(src_words)))
    np.add.at(columns.T, np.array(src_owner), w.T)
    rows = np.zeros((len(tgt_words), len(src_words)))
    np.add.at(rows, np.array(tgt_owner), columns)
    counts = np.bincount(np.array(tgt_owner), minlength=len(tgt_words))
    return rows / counts[:, None], src_words, tgt_words
