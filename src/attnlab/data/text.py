"""Text to tensors: a small word tokenizer, a vocabulary, and stratified splits.

The tokenizer is deliberately simple and fixed, so that a saved :class:`Vocab`
means the same thing later: text is lowercased, then split into

- numbers with an inner decimal point or thousands comma (``3.5``, ``1,000``),
- words: runs of letters and digits, keeping inner apostrophes (``didn't``, ``o'neil``),
- every other non-space character as a token of its own (``!``, ``.``, ``$``).

>>> tokenize("I didn't like it... 3.5/10!")
['i', "didn't", 'like', 'it', '.', '.', '.', '3.5', '/', '10', '!']
"""

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PAD", "UNK", "Vocab", "split_indices", "tokenize"]

PAD = "<pad>"
UNK = "<unk>"

_TOKEN_RE = re.compile(
    r"\d+(?:[.,]\d+)+"  # numbers with a decimal point or thousands separators
    r"|[^\W_]+(?:'[^\W_]+)*"  # words (letters/digits, any script), inner apostrophes kept
    r"|[^\w\s]|_"  # any other visible character on its own
)
_VOCAB_FORMAT = "attnlab.vocab/1"


def tokenize(text: str) -> list[str]:
    """Split text into lowercase word, number and punctuation tokens.

    Args:
        text: Any string.

    Returns:
        The tokens in order; empty for blank text.
    """
    # Typographic apostrophes become ASCII so "don’t" and "don't" share a token.
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


class Vocab:
    """Token <-> id mapping with ``<pad>`` = 0 and ``<unk>`` = 1.

    Build it from training texts only (:meth:`build`) so that validation and test
    words the model never saw map to ``<unk>``.

    Args:
        tokens: All tokens by id; must start with ``<pad>``, ``<unk>`` and hold no
            duplicates.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"vocab tokens must start with {PAD!r}, {UNK!r}, got {tokens[:2]!r}")
        index = {tok: i for i, tok in enumerate(tokens)}
        if len(index) != len(tokens):
            dup = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"vocab tokens must be unique, {dup!r} appears more than once")
        self._itos = tokens
        self._stoi = index

    @classmethod
    def build(
        cls, texts: Iterable[str], *, min_freq: int = 1, max_size: int | None = None
    ) -> "Vocab":
        """Build a vocabulary from (training) texts.

        Tokens are ranked by frequency, ties broken alphabetically, so the result
        does not depend on text order.

        Args:
            texts: The texts to count tokens in.
            min_freq: Keep tokens seen at least this many times.
            max_size: Largest vocabulary size, ``<pad>`` and ``<unk>`` included
                (so it is also the embedding table size); None for no limit.

        Returns:
            The vocabulary.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not one str; wrap it in a list")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {PAD} and {UNK}), got {max_size}")
        counts = Counter(tok for text in texts for tok in tokenize(text))
        ranked = sorted(
            (tok for tok, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([PAD, UNK, *ranked])

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def itos(self) -> list[str]:
        """All tokens, indexed by id (a copy)."""
        return list(self._itos)

    def id(self, token: str) -> int:
        """Return the id of ``token``, or ``unk_id`` when it is not in the vocabulary."""
        return self._stoi.get(token, self.unk_id)

    def tokens(self, text: str, max_len: int | None = None) -> list[str]:
        """Return the text's tokens exactly as :meth:`encode` lays them out.

        Position ``i`` of the result is position ``i`` of the encoded row, so model
        outputs per position (attention weights) can be shown against the words.
        Out-of-vocabulary words are kept as written, not replaced by ``<unk>``;
        a blank text gives ``["<unk>"]``, matching its single encoded id.

        Args:
            text: One text.
            max_len: Truncate to this many tokens, as :meth:`encode` does.

        Returns:
            The tokens.
        """
        toks = tokenize(text) or [UNK]
        return toks if max_len is None else toks[:max_len]

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize and map texts to a right-padded id matrix.

        Args:
            texts: The texts.
            max_len: Keep at most this many leading tokens per text.

        Returns:
            ``(ids, lengths)``: ids is a LongTensor (N, L) padded with ``pad_id`` on the
            right, L = min(max_len, longest text); lengths is a LongTensor (N,) of the
            real token counts. A blank text becomes one ``<unk>`` (length 1) so that
            no row is all padding (which would leave attention nothing to attend to).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one str; wrap it in a list")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        rows = [[self.id(t) for t in self.tokens(text, max_len)] for text in texts]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return ids, lengths

    def decode(self, ids: Sequence[int] | torch.Tensor, length: int | None = None) -> list[str]:
        """Map ids back to vocabulary tokens.

        Args:
            ids: One row of ids (a 1-D tensor or a sequence of ints).
            length: Keep the first ``length`` ids (the row's real length); None drops
                every ``<pad>`` instead.

        Returns:
            The tokens; unknown words come back as ``<unk>``.
        """
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if values and isinstance(values[0], list):
            raise ValueError("decode takes one row of ids; index the batch first (ids[i])")
        if length is not None:
            values = values[:length]
        else:
            values = [i for i in values if i != self.pad_id]
        n = len(self._itos)
        bad = [i for i in values if not 0 <= i < n]
        if bad:
            raise ValueError(f"id {bad[0]} is outside this vocabulary of size {n}")
        return [self._itos[i] for i in values]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form; :meth:`from_dict` reverses it."""
        return {"format": _VOCAB_FORMAT, "tokens": list(self._itos)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocab":
        """Rebuild a vocabulary saved by :meth:`to_dict`.

        Args:
            data: The saved dictionary.

        Returns:
            The vocabulary.
        """
        if not isinstance(data, dict) or data.get("format") != _VOCAB_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"not a saved Vocab (format {got!r}, expected {_VOCAB_FORMAT!r}); "
                "save it with Vocab.to_dict()"
            )
        return cls(data["tokens"])


def split_indices(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[list[int], list[int], list[int]]:
    """Split example indices into train / validation / test, stratified by label.

    Each class is shuffled with its own draw from ``numpy.random.default_rng(seed)``
    and cut by ``fractions``, so every split keeps the class balance. The result
    depends only on ``labels``, ``fractions`` and ``seed``, never on torch's or
    numpy's global random state.

    Args:
        labels: One label per example (any hashable ints).
        fractions: Train, validation and test shares; non-negative, summing to 1.
        seed: Random seed.

    Returns:
        ``(train, val, test)``: disjoint, sorted index lists covering every example.
    """
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    rng = np.random.default_rng(seed)
    splits: tuple[list[int], list[int], list[int]] = ([], [], [])
    for cls in np.unique(y):  # sorted, so classes draw from the generator in a fixed order
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        # Round the cumulative cut points (not each share) so the parts sum to n.
        cut1 = math.floor(n * fractions[0] + 0.5)
        cut2 = max(cut1, min(n, math.floor(n * (fractions[0] + fractions[1]) + 0.5)))
        for part, chunk in zip(splits, (idx[:cut1], idx[cut1:cut2], idx[cut2:])):
            part.extend(int(i) for i in chunk)
    return sorted(splits[0]), sorted(splits[1]), sorted(splits[2])
