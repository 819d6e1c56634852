r"""Sparse attention patterns from the long-sequence literature.

Each pattern is a frozen :class:`~attnlab.masks.patterns.SparsePattern`: an exact
``mask_mod`` (broadcasting tensor ops only, so it runs under FlexAttention's
``create_block_mask`` vmap and in :func:`~attnlab.masks.materialize_mask_mod`) and a
:class:`~attnlab.masks.patterns.BlockLayout` that lists the blocks worth computing.

* :class:`LongformerPattern` (Beltagy et al. 2020): sliding window + global tokens.
* :class:`BigBirdPattern` (Zaheer et al. 2020): block window + global + random blocks.

The Sparse Transformer's strided and fixed patterns are in
:mod:`attnlab.masks.sparse_transformer`.

Positions in ``q_idx`` / ``kv_idx`` are 0-based; for Lq != Lk each pattern says how
queries are placed among the keys (``alignment``, as in :func:`~attnlab.masks.causal_mask`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from attnlab.masks._validate import (
    Alignment,
    DeviceLike,
    as_positive,
    as_size,
    diagonal_offset,
    window_sides,
)
from attnlab.masks.patterns import (
    BlockLayout,
    SlidingWindowPattern,
    SparsePattern,
    identity_slots,
)
from attnlab.masks.predicates import MaskMod, causal_predicate

__all__ = [
    "BigBirdPattern",
    "LongformerPattern",
    "bigbird_pattern",
    "longformer_pattern",
]


def _per_device(table: Tensor) -> Callable[[Tensor], Tensor]:
    """``table`` on the device of an index tensor, copied once per device.

    A mask_mod has no device argument, and compiled FlexAttention needs its captured
    tensors on the index's device: the first (eager) call copies, later calls reuse.
    """
    copies = {table.device: table}

    def on(idx: Tensor) -> Tensor:
        copy = copies.get(idx.device)
        if copy is None:
            copy = copies[idx.device] = table.to(idx.device)
        return copy

    return on


@dataclass(frozen=True)
class LongformerPattern(SparsePattern):
    r"""Longformer attention: a sliding window plus global tokens (Beltagy et al. 2020).

    From "Longformer: The Long-Document Transformer" (arXiv:2004.05150). With ``W`` the
    :class:`~attnlab.masks.patterns.SlidingWindowPattern` predicate and ``G`` the global
    positions, query ``i`` (at key position ``i' = i + offset``) may attend key ``j`` when

    .. math::
        W(i, j) \;\lor\; i' \in G \;\lor\; j \in G
        \qquad (\text{and } j \le i' \text{ when causal})

    Global queries attend every key and every query attends the global keys. Our
    ``left = right = w`` is the paper's window ``w_paper = 2 w``. Global positions are key
    positions; for Lq != Lk query ``i`` is global when ``i + offset`` is (``offset`` = 0
    upper-left, ``Lk - Lq`` lower-right, so KV-cache decoding sees the same tokens).

    Layout: the window's blocks, ``extra_keys`` = ``G`` and ``dense_rows`` = the global
    queries, so the work per query is ``O(window + |G|)``.

    Args:
        left: window keys before the diagonal.
        right: window keys after the diagonal (0 when causal).
        global_positions: positions of the global tokens (deduplicated and sorted).
        causal: no key after the aligned diagonal, also for global tokens.
        dilation: the window's dilation (paper section 3.1).
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Example:
        >>> LongformerPattern(1, 1, global_positions=(0,)).mask(4).int().tolist()
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 1, 1]]
    """

    left: int
    right: int
    global_positions: tuple[int, ...] = ()
    causal: bool = False
    dilation: int = 1
    alignment: Alignment = "upper_left"
    block_size: int = 256

    def __post_init__(self) -> None:
        """Validate once (through the window), normalise the global positions."""
        self._window()
        if self.causal and self.right != 0:
            raise ValueError(f"causal=True needs right=0; got right={self.right}")
        if not isinstance(self.global_positions, Iterable):
            raise TypeError(
                f"global_positions must be a sequence of ints; "
                f"got {type(self.global_positions).__name__}"
            )
        positions = {as_size("global position", g) for g in self.global_positions}
        object.__setattr__(self, "global_positions", tuple(sorted(positions)))

    def _window(self) -> SlidingWindowPattern:
        return SlidingWindowPattern(
            self.left, self.right, self.dilation, self.alignment, self.block_size
        )

    def _globals(self, lk: int) -> Tensor:
        """The global positions as a tensor, checked against the key length."""
        if self.global_positions and self.global_positions[-1] >= lk:
            raise ValueError(f"global positions must be < Lk={lk}; got {self.global_positions[-1]}")
        return torch.tensor(self.global_positions, dtype=torch.long)

    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """Window, or global query, or global key (see the class docstring)."""
        window = self._window().mask_mod(lq, lk)
        if not self.global_positions:
            return window
        flags = torch.zeros(lk, dtype=torch.bool)
        flags[self._globals(lk)] = True
        table, causal = _per_device(flags), self.causal
        offset = diagonal_offset(lq, lk, self.alignment)

        def is_global(idx: Tensor) -> Tensor:
            # Clamp so any index can be looked up; out-of-range positions are never global.
            return table(idx)[idx.clamp(0, lk - 1)] & (idx >= 0) & (idx < lk)

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            both = is_global(q_idx + offset) | is_global(kv_idx)
            if causal:
                both = both & causal_predicate(q_idx, kv_idx, offset)
            return window(b, h, q_idx, kv_idx) | both

        return mask_mod

    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """The window's layout, plus the global keys and the global query rows."""
        layout = self._window().build_layout(lq, lk, block_size, device)
        positions = self._globals(lk).to(device)
        if positions.numel() == 0:
            return layout
        rows = positions - diagonal_offset(lq, lk, self.alignment)
        rows = rows[(rows >= 0) & (rows < lq)]
        return replace(layout, extra_keys=positions, dense_rows=rows if rows.numel() else None)


def longformer_pattern(
    window: int | tuple[int, int],
    global_positions: Iterable[int] = (),
    *,
    causal: bool = False,
    dilation: int = 1,
    alignment: Alignment = "upper_left",
    block_size: int = 256,
) -> LongformerPattern:
    """A Longformer pattern, window in the convention of :func:`sliding_window_pattern`.

    Args:
        window: ``w`` (w keys each side; ``(w, 0)`` when causal) or ``(left, right)``.
        global_positions: positions of the global tokens (e.g. ``(0,)`` for [CLS]).
        causal: no keys after the diagonal.
        dilation: the window's dilation.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        block_size: the blockwise engines' block size.

    Returns:
        A :class:`LongformerPattern`.

    Example:
        >>> longformer_pattern(2, [5, 0, 5]).global_positions
        (0, 5)
    """
    left, right = window_sides(window, causal)
    return LongformerPattern(
        left, right, tuple(global_positions), causal, dilation, alignment, block_size
    )


@dataclass(frozen=True)
class BigBirdPattern(SparsePattern):
    r"""BigBird block-sparse attention, ITC form (Zaheer et al. 2020).

    From "Big Bird: Transformers for Longer Sequences" (arXiv:2007.14062), section 2
    (ITC) and appendix D (the blocked form). Queries and keys are cut into blocks of
    ``b`` positions (upper-left: block ``n`` of both is positions ``[n b, (n + 1) b)``,
    also for Lq != Lk). With ``Q = i // b``,
    ``K = j // b``, ``w`` = ``window_blocks``, ``g`` = ``global_blocks``, query ``i`` may
    attend key ``j`` when

    .. math::
        |Q - K| \le (w - 1) / 2 \;\lor\; Q < g \;\lor\; K < g \;\lor\; K \in R(Q)

    with ``R(Q)`` = ``random_blocks`` key blocks drawn per query block from those not
    already attended (without replacement, fewer if fewer remain), deterministic in
    ``(seed, Lq, Lk)``: :meth:`random_key_blocks`. Every query block then reads at most
    ``(w + g + r) b`` keys: linear in L. The engine's block is the pattern's block.

    Args:
        block_size: ``b``, positions per block (also the engine's block size).
        window_blocks: ``w``, odd: the block and ``(w - 1) / 2`` neighbours each side.
        global_blocks: ``g``, the first blocks, global as queries and as keys.
        random_blocks: ``r``, random key blocks per query block.
        seed: seed of the random blocks.

    Example:
        >>> BigBirdPattern(1, 1, 1, 0).mask(3).int().tolist()
        [[1, 1, 1], [1, 1, 0], [1, 0, 1]]
    """

    block_size: int = 64
    window_blocks: int = 3
    global_blocks: int = 2
    random_blocks: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate once, with one-line errors."""
        as_positive("block_size", self.block_size)
        if as_positive("window_blocks", self.window_blocks) % 2 == 0:
            raise ValueError(
                f"window_blocks must be odd (block + neighbours); got {self.window_blocks}"
            )
        as_size("global_blocks", self.global_blocks)
        as_size("random_blocks", self.random_blocks)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int; got {type(self.seed).__name__}")

    def random_key_blocks(self, lq: int, lk: int) -> Tensor:
        """The random key blocks ``R(Q)`` of each query block (the same on every device).

        Args:
            lq: query length Lq.
            lk: key length Lk.

        Returns:
            int64 key-block indices, -1 where fewer blocks were left to draw from.

        Shapes:
            output: ``(ceil(Lq / b), random_blocks)``.

        Example:
            >>> BigBirdPattern(2, 1, 0, 1, seed=3).random_key_blocks(4, 4).shape
            torch.Size([2, 1])
        """
        return _draw_random_blocks(self, as_size("lq", lq), as_size("lk", lk)).clone()

    def mask_mod(self, lq: int, lk: int) -> MaskMod:
        """Block window, global blocks and a lookup in the random block table."""
        b, half, g = self.block_size, self.window_blocks // 2, self.global_blocks
        nq, nk = max(1, -(-lq // b)), max(1, -(-lk // b))
        picks = _draw_random_blocks(self, lq, lk)
        drawn = torch.zeros(nq, nk + 1, dtype=torch.bool)  # column nk absorbs the -1 entries
        drawn[torch.arange(picks.shape[0])[:, None], picks.where(picks >= 0, nk)] = True
        table = _per_device(drawn[:, :nk].contiguous())

        def mask_mod(bi: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            qb, kb = q_idx // b, kv_idx // b
            fixed = ((qb - kb).abs() <= half) | (qb < g) | (kb < g)
            return fixed | table(q_idx)[qb.clamp(0, nq - 1), kb.clamp(0, nk - 1)]

        return mask_mod

    def build_layout(self, lq: int, lk: int, block_size: int, device: DeviceLike) -> BlockLayout:
        """Per query block: global, window and random key blocks; global queries dense."""
        if block_size != self.block_size:
            raise ValueError(
                f"BigBirdPattern's layout needs block_size={self.block_size} (its own); "
                f"got {block_size}"
            )
        b, nq, nk = block_size, -(-lq // block_size), -(-lk // block_size)
        g = min(self.global_blocks, nk)
        rows = torch.arange(nq, device=device)[:, None]
        window = rows - self.window_blocks // 2 + torch.arange(self.window_blocks, device=device)
        # Blocks already listed as global, or outside the keys, would be read twice or not exist.
        window = window.masked_fill_((window < g) | (window >= nk), -1)
        globals_ = torch.arange(g, device=device).expand(nq, g)
        random = _draw_random_blocks(self, lq, lk).to(device)
        dense = torch.arange(min(self.global_blocks * b, lq), device=device)
        return BlockLayout(
            b,
            identity_slots(lq, b, device),
            identity_slots(lk, b, device),
            torch.cat([globals_, window, random], dim=1),
            dense_rows=dense if dense.numel() else None,
        )


@functools.lru_cache(maxsize=32)
def _draw_random_blocks(pattern: BigBirdPattern, lq: int, lk: int) -> Tensor:
    """Draw ``R(Q)`` on the CPU (device-independent), O(query blocks * r) memory."""
    b, r = pattern.block_size, pattern.random_blocks
    nq, nk = -(-lq // b), -(-lk // b)
    g, half = min(pattern.global_blocks, nk), pattern.window_blocks // 2
    rows = torch.arange(nq)
    # Candidates: key blocks [g, nk) minus the row's window [lo, hi].
    lo = (rows - half).clamp(min=g)
    width = ((rows + half).clamp(max=nk - 1) - lo + 1).clamp(min=0)
    free = nk - g - width
    generator = torch.Generator().manual_seed(pattern.seed)
    uniform = torch.rand((r, nq), generator=generator, dtype=torch.float64)
    picks = torch.full((nq, r), -1, dtype=torch.long)
    # Floyd's algorithm: r distinct candidate indices in [0, free) per row, r steps.
    for step in range(r):
        top = free - r + step
        t = (uniform[step] * (top + 1)).long().clamp(max=top)
        taken = (picks == t[:, None]).any(1)
        picks[:, step] = torch.where(top < 0, -1, torch.where(taken, top, t))
    blocks = picks + g
    blocks = torch.where(blocks >= lo[:, None], blocks + width[:, None], blocks)
    return blocks.masked_fill_(picks < 0, -1)


def bigbird_pattern(
    block_size: int = 64,
    *,
    window_blocks: int = 3,
    global_blocks: int = 2,
    random_blocks: int = 3,
    seed: int = 0,
) -> BigBirdPattern:
    """A BigBird ITC pattern (defaults: the paper's base model, b = 64, w = 3, r = 3).

    Args:
        block_size: positions per block (also the engine's block size).
        window_blocks: odd number of neighbouring blocks in the window.
        global_blocks: leading global blocks.
        random_blocks: random key blocks per query block.
        seed: seed of the random blocks.

    Returns:
        A :class:`BigBirdPattern`.

    Example:
        >>> bigbird_pattern(16).layout(256, 256).keys_per_query
        128
    """
    return BigBirdPattern(block_size, window_blocks, global_blocks, random_blocks, seed)
