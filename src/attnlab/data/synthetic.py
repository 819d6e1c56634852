"""Synthetic sequence-to-sequence worlds whose true alignment is known.

Used by the tests to prove that attention mechanisms align, not merely run.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3


class AlignedBatch(NamedTuple):
    """A batch of a synthetic task with its gold alignment.

    Attributes:
        src: ``(B, S)`` source ids, padded with 0.
        src_lengths: ``(B,)``.
        tgt_in: ``(B, T)`` BOS + target, for teacher forcing.
        tgt_out: ``(B, T)`` target + EOS, padded with 0.
        alignment: ``(B, T)`` the source position each ``tgt_out`` token comes from,
            -1 for EOS and padding.
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    alignment: Tensor


def copy_task(
    batch: int,
    *,
    symbols: int = 12,
    min_len: int = 4,
    max_len: int = 8,
    generator: torch.Generator | None = None,
) -> AlignedBatch:
    """Random symbol strings to be copied: target token ``t`` aligns with source ``t``.

    Source and target have their own vocabularies (ids ``3..symbols+2``; 0, 1, 2 are
    PAD, BOS, EOS), so the model must learn the mapping and, above all, where to look.

    Args:
        batch: number of sequences.
        symbols: distinct symbols.
        min_len: shortest sequence.
        max_len: longest sequence.
        generator: random generator.

    Returns:
        An :class:`AlignedBatch`.

    Example:
        >>> b = copy_task(2, generator=torch.Generator().manual_seed(0))
        >>> bool((b.tgt_out[0, : b.src_lengths[0]] == b.src[0, : b.src_lengths[0]]).all())
        True
    """
    if not 1 <= min_len <= max_len or symbols < 1 or batch < 1:
        raise ValueError(
            f"need batch >= 1, symbols >= 1 and 1 <= min_len <= max_len; got {batch}, "
            f"{symbols}, {min_len}, {max_len}"
        )
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=generator)
    tokens = torch.randint(
        FIRST_SYMBOL, FIRST_SYMBOL + symbols, (batch, max_len), generator=generator
    )
    positions = torch.arange(max_len)
    real = positions < lengths.unsqueeze(-1)
    src = torch.where(real, tokens, PAD)
    tgt_out = torch.cat([src, src.new_zeros(batch, 1)], dim=1)
    tgt_out[torch.arange(batch), lengths] = EOS
    tgt_in = torch.cat([src.new_full((batch, 1), BOS), src], dim=1)
    alignment = torch.where(real, positions, -1)
    alignment = torch.cat([alignment, alignment.new_full((batch, 1), -1)], dim=1)
    return AlignedBatch(src, lengths, tgt_in, tgt_out, alignment)
