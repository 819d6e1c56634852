r"""The Sparse Transformer's factorised patterns (Child et al. 2019).

"Generating Long Sequences with Sparse Transformers" splits full causal attention
into patterns that each cost O(L sqrt(L)) when the stride is about sqrt(L):

* :class:`StridedPattern`: query ``i`` sees key ``j <= i`` when ``i - j < stride``
  (local) or ``(i - j) % stride == 0`` (strided), as two heads or their union;
* :class:`FixedPattern`: the same block of ``stride`` positions, or one of the last
  ``summary`` positions of every block (the summary columns).

Both are :class:`~attnlab.masks.patterns.SparsePattern`\ s: an exact ``mask_mod`` and
a block layout for the blockwise engines (see :mod:`attnlab.masks.sparse` for
Longformer and BigBird).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from attnlab.masks._validate import (
    Alignment,
    DeviceLike,
    as_positive,
    as_size,
    check_alignment,
    diagonal_offset,
)
from attnlab.masks.patterns import (
    BlockLayout,
    SlidingWindowPattern,
    SparsePattern,
    block_ranges,
    identity_slots,
)
from attnlab.masks.predicates import MaskMod, causal_predicate, or_mask_mods

__all__ = ["FixedPattern", "StridedPattern", "fixed_pattern", "strided_pattern"]

StridedPart = Literal["local", "strided", "both"]
_PARTS: tuple[str, ...] = ("local", "strided", "both")


@dataclass(frozen=True)
class StridedPattern(SparsePattern):
    r"""Strided attention of the Sparse Transformer (Child et al. 2019).

    From "Generating Long Sequences with Sparse Transformers" (arXiv:1904.10509),
    section 4.2. Causal; with ``l`` the stride and ``i' = i + offset``, query ``i`` may
    attend key ``j \le i'`` when

    .. math::
        \underbrace{i' - j < l}_{\text{local}} \;\lor\;
        \underbrace{(i' - j) \bmod l = 0}_{\text{strided}}

    ``part`` keeps one head's half (``"local"`` or ``"strided"``, the factorised heads)
    or the union (``"both"``, the paper's merged head). With ``l ~ sqrt(L)`` each
    query then sees ``O(sqrt(L))`` keys.

    Layout: ``"local"`` is a causal window of ``l - 1`` keys and ``"strided"`` a causal
    window dilated by ``l``, laid out by residue (both
    :class:`~attnlab.masks.patterns.SlidingWindowPattern`), so each skips most blocks.
    ``"both"`` lists every causal block: its strided keys reach back to the start, so
    (once a block is at least ``l`` long) every earlier block holds an allowed pair and
    none can be skipped: O(L^2 / 2) work. For sparse work use two heads, one per part.

    Args:
        stride: ``l`` >= 1.
        part: ``"local"``, ``"strided"`` or ``"both"``.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Example:
        >>> StridedPattern(2).mask(5).int().tolist()[4]
        [1, 0, 1, 1, 1]
    """

    stride: int
    part: StridedPart = "both"
    alignment: Alignment = "upper_left"
    block_size: int = 256

    def __post_init__(self) -> None:
        """Validate once, with one-line errors."""
        as_positive("stride", self.stride)
        if self.part not in _PARTS:
            raise ValueError(f"part must be 'local', 'strided' or 'both'; got {self.part!r}")
        check_alignment(self.alignment)
        as_positive("block_size", self.block_size)

    def _local(self) -> SlidingWindowPattern:
        return SlidingWindowPattern(self.stride - 1, 0, 1, self.alignment, self.block_size)

    def _strided(self, lq: int, lk: int, dilation: int) -> SlidingWindowPattern:
        # A causal window long enough to reach key 0 from every query.
        reach = max(lq, lk, 1)
        return SlidingWindowPattern(reach, 0, dilation, self.alignment, self.block_size)

    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """The local and/or strided window's predicate."""
        local = self._local().mask_mod(lq, lk)
        strided = self._strided(lq, lk, self.stride).mask_mod(lq, lk)
        if self.part == "both":
            return or_mask_mods(local, strided)
        return local if self.part == "local" else strided

    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """Window layouts (local; strided by residue); every causal block for the union."""
        if self.part == "local":
            window = self._local()
        else:
            window = self._strided(lq, lk, self.stride if self.part == "strided" else 1)
        return window.build_layout(lq, lk, block_size, device)


def strided_pattern(
    stride: int,
    *,
    part: StridedPart = "both",
    alignment: Alignment = "upper_left",
    block_size: int = 256,
) -> StridedPattern:
    """The Sparse Transformer's strided pattern (see :class:`StridedPattern`).

    Args:
        stride: ``l``, about ``sqrt(L)`` in the paper.
        part: ``"local"``, ``"strided"`` or ``"both"`` (the union).
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Returns:
        A :class:`StridedPattern`.

    Example:
        >>> strided_pattern(3, part="strided").mask(7).int().tolist()[6]
        [1, 0, 0, 1, 0, 0, 1]
    """
    return StridedPattern(stride, part, alignment, block_size)


@dataclass(frozen=True)
class FixedPattern(SparsePattern):
    r"""Fixed attention of the Sparse Transformer (Child et al. 2019).

    From "Generating Long Sequences with Sparse Transformers" (arXiv:1904.10509),
    section 4.2. Causal; with ``l`` the stride, ``c`` the summary width and
    ``i' = i + offset``, query ``i`` may attend key ``j \le i'`` when

    .. math::
        \lfloor j / l \rfloor = \lfloor i' / l \rfloor \;\lor\; j \bmod l \ge l - c

    (its own stride block, or the last ``c`` "summary" positions of any block; the
    union of the paper's two fixed heads).

    Layout: per query block the key blocks of its own stride blocks, and the summary
    columns as ``extra_keys`` (``c L / l`` keys, read by every query block), so the work
    per query is ``O(l + c L / l)``: ``O(sqrt(L))`` for ``l ~ sqrt(L)``.

    Args:
        stride: ``l`` >= 1.
        summary: ``c``, with ``0 <= c <= l`` (the paper uses 8 to 32).
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Example:
        >>> FixedPattern(3, 1).mask(7).int().tolist()[6]
        [0, 0, 1, 0, 0, 1, 1]
    """

    stride: int
    summary: int = 1
    alignment: Alignment = "upper_left"
    block_size: int = 256

    def __post_init__(self) -> None:
        """Validate once, with one-line errors."""
        as_positive("stride", self.stride)
        if as_size("summary", self.summary) > self.stride:
            raise ValueError(f"summary must be <= stride={self.stride}; got {self.summary}")
        check_alignment(self.alignment)
        as_positive("block_size", self.block_size)

    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """Causal and (same stride block or summary column)."""
        offset = diagonal_offset(lq, lk, self.alignment)
        stride, first_summary = self.stride, self.stride - self.summary

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            same = kv_idx // stride == (q_idx + offset) // stride
            summary = kv_idx % stride >= first_summary
            return causal_predicate(q_idx, kv_idx, offset) & (same | summary)

        return mask_mod

    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """Own stride blocks per query block; the summary columns as extra keys."""
        offset, stride = diagonal_offset(lq, lk, self.alignment), self.stride
        starts = torch.arange(-(-lq // block_size), device=device) * block_size
        ends = (starts + block_size - 1).clamp(max=lq - 1)
        own = (starts + offset).div(stride, rounding_mode="floor") * stride
        first = own.div(block_size, rounding_mode="floor")
        last = (ends + offset).div(block_size, rounding_mode="floor")
        keys = torch.arange(lk, device=device)
        summary = keys[keys % stride >= stride - self.summary]
        return BlockLayout(
            block_size,
            identity_slots(lq, block_size, device),
            identity_slots(lk, block_size, device),
            block_ranges(first, last, -(-lk // block_size)),
            extra_keys=summary if summary.numel() else None,
        )


def fixed_pattern(
    stride: int,
    summary: int = 1,
    *,
    alignment: Alignment = "upper_left",
    block_size: int = 256,
) -> FixedPattern:
    """The Sparse Transformer's fixed pattern (see :class:`FixedPattern`).

    Args:
        stride: ``l``, the block length.
        summary: ``c``, summary positions at the end of each block.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Returns:
        A :class:`FixedPattern`.

    Example:
        >>> fixed_pattern(128, 8).layout(4096, 4096).extra_keys.numel()
        256
    """
    return FixedPattern(stride, summary, alignment, block_size)
