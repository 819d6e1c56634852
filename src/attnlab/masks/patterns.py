r"""Sparse attention patterns: an exact predicate plus the blocks worth computing.

A pattern answers two questions about an ``(Lq, Lk)`` attention problem:

* which pairs may attend: :meth:`SparsePattern.mask_mod`, a FlexAttention-style
  predicate ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = may attend), exact;
* which work can be skipped: :meth:`SparsePattern.layout`, a :class:`BlockLayout`
  listing, per block of queries, the blocks of keys that may hold an allowed pair
  (a superset is fine; the predicate decides within), plus keys every query block
  reads (global columns) and queries that read every key (global rows).

The dense and flex engines use only the predicate (``pattern.mask(lq, lk)`` or
``create_block_mask``); the ``banded`` and ``block_sparse`` engines
(:mod:`attnlab.functional.blocksparse`) compute only the listed blocks, so their cost
is O(L * keys per query) instead of O(L^2).

This module holds the base class and the sliding window (local attention, with
dilation); Longformer, BigBird and the Sparse Transformer's patterns live in
:mod:`attnlab.masks.sparse`. Patterns never depend on the batch or head index.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.masks._validate import (
    Alignment,
    DeviceLike,
    as_size,
    check_alignment,
    diagonal_offset,
    window_sides,
)
from attnlab.masks.predicates import MaskMod, band_predicate, materialize_mask_mod

__all__ = ["BlockLayout", "SparsePattern", "SlidingWindowPattern", "sliding_window_pattern"]

DEFAULT_BLOCK = 128


@dataclass(frozen=True, eq=False)
class BlockLayout:
    """The work a blockwise engine does for one pattern, one ``(Lq, Lk)``, one block size.

    Queries and keys are laid out in *slots*: slot ``s`` holds the query (or key) at
    position ``q_positions[s]`` (``-1`` = padding). Slots are cut into blocks of
    ``block_size``; query block ``i`` reads the key blocks ``kv_blocks[i]`` (``-1`` =
    empty entry) and the keys ``extra_keys``. Queries in ``dense_rows`` are computed
    against all keys instead. Every allowed pair must be covered by one of the three.

    Attributes:
        block_size: slots per block.
        q_positions: ``(nq_blocks * block_size,)`` int64, query position per slot or -1.
        kv_positions: ``(nk_blocks * block_size,)`` int64, key position per slot or -1.
        kv_blocks: ``(nq_blocks, slots)`` int64 key-block indices, -1 padded.
        extra_keys: ``(G,)`` int64 key positions read by every query block, or None.
        dense_rows: ``(Gq,)`` int64 query positions computed against every key, or None.
    """

    block_size: int
    q_positions: Tensor
    kv_positions: Tensor
    kv_blocks: Tensor
    extra_keys: Tensor | None = None
    dense_rows: Tensor | None = None

    @property
    def keys_per_query(self) -> int:
        """Keys each (non-dense) query reads: the engine's work per query."""
        extra = 0 if self.extra_keys is None else self.extra_keys.numel()
        return self.kv_blocks.shape[1] * self.block_size + extra

    @functools.cached_property
    def query_slots(self) -> Tensor | None:
        """The slot of each query position, or None when slot ``i`` holds query ``i``."""
        slots = slots_of(self.q_positions)
        in_order = torch.equal(slots, torch.arange(slots.numel(), device=slots.device))
        return None if in_order else slots

    @functools.cached_property
    def key_positions(self) -> Tensor:
        """Position of every key each query block reads: ``(nq_blocks, span)``, -1 = none.

        Global columns (``extra_keys``) that already lie in one of a row's blocks are
        dropped from that row, so no key is counted twice in a softmax.
        """
        size = self.block_size
        kv_slots = self.kv_positions.view(-1, size)
        table = torch.cat([kv_slots, kv_slots.new_full((1, size), -1)])  # -1 reads the last
        keys = table[self.kv_blocks].flatten(1)
        if self.extra_keys is None or self.extra_keys.numel() == 0:
            return keys
        extra_block = slots_of(self.kv_positions)[self.extra_keys].div(size, rounding_mode="floor")
        seen = (self.kv_blocks[:, :, None] == extra_block[None, None, :]).any(1)
        extra = torch.where(seen, -1, self.extra_keys.expand(keys.shape[0], -1))
        return torch.cat([keys, extra], 1)


def slots_of(positions: Tensor) -> Tensor:
    """The inverse of a slot layout: ``slots_of(p)[p[s]] == s`` for every non-padding slot.

    Example:
        >>> slots_of(torch.tensor([2, -1, 0, 1]))
        tensor([2, 3, 0])
    """
    valid = positions >= 0
    inverse = torch.full((int(valid.sum()),), -1, dtype=torch.long, device=positions.device)
    inverse[positions[valid]] = torch.nonzero(valid).flatten()
    return inverse


def identity_slots(length: int, block_size: int, device: DeviceLike = None) -> Tensor:
    """Positions ``0 .. length-1`` padded with -1 to a whole number of blocks."""
    padded = -(-length // block_size) * block_size
    slots = torch.arange(padded, device=device)
    return slots.masked_fill_(slots >= length, -1)


def block_ranges(first: Tensor, last: Tensor, count: int) -> Tensor:
    """Key blocks ``first[i] .. last[i]`` per row, -1 padded; rows with last < first empty.

    Args:
        first: ``(n,)`` int64 first block per row.
        last: ``(n,)`` int64 last block per row (inclusive).
        count: number of key blocks (bounds are clipped into ``[0, count)``).

    Returns:
        ``(n, width)`` int64 with ``width`` the widest row (at least 1).
    """
    first, last = first.clamp(0, count - 1), last.clamp(max=count - 1)
    width = max(1, int((last - first + 1).clamp(min=1).max())) if first.numel() else 1
    blocks = first[:, None] + torch.arange(width, device=first.device)
    return blocks.masked_fill_(blocks > last[:, None], -1)


class SparsePattern(ABC):
    """A sparsity pattern: an exact predicate and the blocks that may hold allowed pairs.

    Subclasses are frozen dataclasses (hashable: layouts are cached per pattern).
    """

    block_size: int = DEFAULT_BLOCK

    @abstractmethod
    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """The exact predicate for an ``(Lq, Lk)`` problem (ignores ``b`` and ``h``)."""

    @abstractmethod
    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """The blocks to compute (uncached; call :meth:`layout`)."""

    def layout(
        self, lq: int, lk: int, block_size: int | None = None, device: DeviceLike = None
    ) -> BlockLayout:
        """The blocks to compute, cached per ``(pattern, Lq, Lk, block size, device)``."""
        size = self.preferred_block_size() if block_size is None else block_size
        return _cached_layout(self, lq, lk, size, torch.device(device or "cpu"))

    def preferred_block_size(self) -> int:
        """The block size the engines use unless told otherwise."""
        return self.block_size

    def mask(self, lq: int, lk: int | None = None, *, device: DeviceLike = None) -> Tensor:
        """The pattern as a boolean ``(Lq, Lk)`` mask (True = may attend), for dense engines.

        Example:
            >>> sliding_window_pattern(1).mask(3).int().tolist()
            [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
        """
        lq = as_size("lq", lq)
        lk = lq if lk is None else as_size("lk", lk)
        return materialize_mask_mod(self.mask_mod(lq, lk), lq, lk, device=device)[0, 0]


@functools.lru_cache(maxsize=64)
def _cached_layout(
    pattern: SparsePattern, lq: int, lk: int, block_size: int, device: torch.device
) -> BlockLayout:
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    return pattern.build_layout(lq, lk, block_size, device)


@dataclass(frozen=True)
class SlidingWindowPattern(SparsePattern):
    r"""Sliding-window (local, banded) attention, optionally dilated.

    Query ``i`` may attend key ``j`` when ``j - i' = d t`` for an integer
    ``-left <= t <= right``, with ``i' = i`` (upper-left) or ``i + Lk - Lq``
    (lower-right) and ``d`` the dilation: each query sees at most
    ``left + right + 1`` keys, spread over ``d (left + right) + 1`` positions.
    A window wider than the sequence is clipped (then it is full attention).

    Dilation (as in dilated sliding windows, Beltagy et al. 2020) is laid out by
    residue: queries and keys with position ``r (mod d)`` form their own undilated
    band, so the engine's work stays O(L * window) (Lq = Lk only; otherwise every
    block is listed and the predicate does the work).

    Args:
        left: keys before the diagonal (``window`` each side when built by
            :func:`sliding_window_pattern`).
        right: keys after the diagonal (0 for causal windows).
        dilation: distance between attended keys, >= 1.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size; None picks the window's
            width rounded up to a power of two, between 64 and 256 (256 measured
            fastest for a 513-key window on CPU: each block then reads 3 blocks).

    Example:
        >>> SlidingWindowPattern(1, 0, dilation=2).mask(5).int().tolist()[4]
        [0, 0, 1, 0, 1]
    """

    left: int
    right: int
    dilation: int = 1
    alignment: Alignment = "upper_left"
    block_size: int | None = None

    def __post_init__(self) -> None:
        """Validate once, with one-line errors."""
        as_size("window left", self.left)
        as_size("window right", self.right)
        check_alignment(self.alignment)
        if as_size("dilation", self.dilation) < 1:
            raise ValueError(f"dilation must be >= 1; got {self.dilation}")
        if self.block_size is not None and as_size("block_size", self.block_size) < 1:
            raise ValueError(f"block_size must be >= 1; got {self.block_size}")

    def preferred_block_size(self) -> int:
        """``block_size``, or the window width rounded up to a power of 2 in [64, 256]."""
        if self.block_size is not None:
            return self.block_size
        widest = max(self.left, self.right, 1)
        return min(256, max(64, 1 << (widest - 1).bit_length()))

    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """The band predicate (see the class docstring)."""
        offset = diagonal_offset(lq, lk, self.alignment)
        d, left, right = self.dilation, self.left, self.right

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            if d == 1:
                return band_predicate(q_idx, kv_idx, offset, left, right)
            distance = kv_idx - (q_idx + offset)
            return band_predicate(q_idx, kv_idx, offset, left * d, right * d) & (distance % d == 0)

        return mask_mod

    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """Neighbouring key blocks per query block (per residue class when dilated)."""
        if self.dilation > 1 and lq == lk:
            return self._dilated_layout(lq, block_size, device)
        offset = diagonal_offset(lq, lk, self.alignment)
        d = self.dilation
        nq = -(-lq // block_size)
        starts = torch.arange(nq, device=device) * block_size
        first = (starts + offset - self.left * d).div(block_size, rounding_mode="floor")
        ends = (starts + block_size - 1).clamp(max=lq - 1)
        last = (ends + offset + self.right * d).div(block_size, rounding_mode="floor")
        blocks = block_ranges(first, last, -(-lk // block_size))
        return BlockLayout(
            block_size,
            identity_slots(lq, block_size, device),
            identity_slots(lk, block_size, device),
            blocks,
        )

    def _dilated_layout(self, length: int, block_size: int, device: DeviceLike) -> BlockLayout:
        d = self.dilation
        per_class = -(-length // d)
        undilated = SlidingWindowPattern(self.left, self.right, block_size=block_size)
        inner = undilated.build_layout(per_class, per_class, block_size, device)
        class_slots = inner.q_positions.numel()  # per_class rounded up to whole blocks
        t = torch.arange(class_slots, device=device)
        residue = torch.arange(d, device=device)[:, None]
        positions = t * d + residue  # (d, class_slots): slot r * class_slots + t
        positions = positions.masked_fill_((t >= per_class) | (positions >= length), -1)
        blocks_per_class = class_slots // block_size
        shift = torch.arange(d, device=device)[:, None, None] * blocks_per_class
        blocks = inner.kv_blocks[None] + shift
        blocks = blocks.masked_fill_(inner.kv_blocks[None] < 0, -1).flatten(0, 1)
        slots = positions.flatten()
        return BlockLayout(block_size, slots, slots, blocks)


def sliding_window_pattern(
    window: int | tuple[int, int],
    *,
    causal: bool = False,
    dilation: int = 1,
    alignment: Alignment = "upper_left",
    block_size: int | None = None,
) -> SlidingWindowPattern:
    """A sliding window in the convention of :func:`attnlab.masks.sliding_window_mask`.

    Args:
        window: ``w`` (w keys each side; ``(w, 0)`` when causal) or ``(left, right)``.
        causal: no keys after the diagonal.
        dilation: distance between attended keys.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Returns:
        A :class:`SlidingWindowPattern`.

    Example:
        >>> sliding_window_pattern(2, causal=True)
        SlidingWindowPattern(left=2, right=0, dilation=1, alignment='upper_left', block_size=None)
    """
    left, right = window_sides(window, causal)
    return SlidingWindowPattern(left, right, dilation, alignment, block_size)
