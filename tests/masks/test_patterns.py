"""The SparsePattern base, BlockLayout helpers and SlidingWindowPattern.

``check_layout`` is the one coverage checker, shared by every pattern's tests
(``tests/masks/test_sparse.py`` imports it).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks.patterns import (
    BlockLayout,
    SlidingWindowPattern,
    SparsePattern,
    block_ranges,
    identity_slots,
    sliding_window_pattern,
)

FAST = settings(max_examples=40, deadline=None)
ALIGNMENTS = ["upper_left", "lower_right"]


# ------------------------------------------------------------ the shared checker


def check_layout(
    pattern: SparsePattern, lq: int, lk: int, block_size: int | None = None, device="cpu"
) -> BlockLayout:
    """Assert the layout is well formed and covers every pair the pattern allows.

    A pair (i, j) is covered when i's query block lists j's key block, or j is an
    extra key, or i is a dense row. Returns the layout for further checks.
    """
    layout = pattern.layout(lq, lk, block_size, device)
    size = layout.block_size
    assert block_size is None or size == block_size
    allowed = pattern.mask(lq, lk, device=device)
    assert allowed.shape == (lq, lk) and allowed.dtype == torch.bool

    def block_of(positions: torch.Tensor, length: int, name: str) -> torch.Tensor:
        assert positions.dtype == torch.long and positions.dim() == 1, name
        assert positions.device.type == torch.device(device).type, name
        assert positions.numel() % size == 0, f"{name}: not whole blocks"
        assert bool((positions >= -1).all()) and bool((positions < length).all()), name
        valid = positions >= 0
        # every position exactly once: sorted real slots are 0 .. length - 1
        real = positions[valid].sort().values
        assert torch.equal(real.cpu(), torch.arange(length)), f"{name}: not each position once"
        block = torch.empty(length, dtype=torch.long, device=positions.device)
        block[positions[valid]] = torch.nonzero(valid).flatten() // size
        return block

    q_block = block_of(layout.q_positions, lq, "q_positions")
    k_block = block_of(layout.kv_positions, lk, "kv_positions")
    nq, nk = layout.q_positions.numel() // size, layout.kv_positions.numel() // size
    blocks = layout.kv_blocks
    assert blocks.dtype == torch.long and blocks.dim() == 2 and blocks.shape[0] == nq
    assert bool((blocks >= -1).all()) and bool((blocks < nk).all()), "key block out of range"
    for row in blocks.tolist():  # a block listed twice would be counted twice in a softmax
        listed = [x for x in row if x >= 0]
        assert len(set(listed)) == len(listed), f"duplicate key block in row {row}"
    listed = torch.zeros(nq, nk + 1, dtype=torch.bool, device=blocks.device)
    listed[torch.arange(nq, device=blocks.device)[:, None], blocks.where(blocks >= 0, nk)] = True
    covered = listed[q_block[:, None], k_block[None, :]]
    for name, extra, length in (
        ("extra_keys", layout.extra_keys, lk),
        ("dense_rows", layout.dense_rows, lq),
    ):
        if extra is None:
            continue
        assert extra.dtype == torch.long and extra.dim() == 1 and extra.numel() > 0, name
        assert extra.device.type == torch.device(device).type, name
        assert bool((extra >= 0).all()) and bool((extra < length).all()), name
        assert extra.unique().numel() == extra.numel(), f"{name}: duplicates"
        if name == "extra_keys":
            covered[:, extra] = True
        else:
            covered[extra] = True
    missing = allowed & ~covered
    assert not bool(missing.any()), f"uncovered allowed pair {missing.nonzero()[0].tolist()}"
    return layout


def computed_pairs(layout: BlockLayout, lq: int) -> int:
    """Pairs the engine computes: listed blocks and extra keys per query, all keys per dense row."""
    dense = 0 if layout.dense_rows is None else layout.dense_rows.numel()
    lk = int((layout.kv_positions >= 0).sum())
    return (lq - dense) * layout.keys_per_query + dense * lk


# ------------------------------------------------------------ base helpers


def test_identity_slots_pads_with_minus_one() -> None:
    assert identity_slots(5, 4).tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    assert identity_slots(8, 4).tolist() == list(range(8))


def test_block_ranges_pads_and_empties() -> None:
    first, last = torch.tensor([-2, 1, 3, 2]), torch.tensor([0, 3, 9, 1])
    assert block_ranges(first, last, 5).tolist() == [
        [0, -1, -1],
        [1, 2, 3],
        [3, 4, -1],
        [-1, -1, -1],  # last < first: nothing
    ]


def test_keys_per_query_counts_blocks_and_extra_keys() -> None:
    slots = identity_slots(8, 4)
    layout = BlockLayout(4, slots, slots, torch.tensor([[0, -1], [0, 1]]), torch.tensor([7]))
    assert layout.keys_per_query == 2 * 4 + 1


def test_layout_is_cached_and_checks_block_size() -> None:
    pattern = SlidingWindowPattern(2, 2, block_size=8)
    assert pattern.layout(20, 20) is pattern.layout(20, 20, 8, "cpu")
    assert pattern.layout(20, 20).block_size == 8
    assert pattern.layout(20, 20, 4).block_size == 4
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        pattern.layout(20, 20, 0)


def test_mask_defaults_to_self_attention(device: str) -> None:
    mask = SlidingWindowPattern(1, 0).mask(3, device=device)
    assert mask.device.type == torch.device(device).type
    assert mask.cpu().int().tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]


# ------------------------------------------------------------ sliding window: exact rule


def window_reference(lq, lk, left, right, dilation, alignment) -> torch.Tensor:
    """The rule as a double loop: j - i' = d t for some integer -left <= t <= right."""
    offset = 0 if alignment == "upper_left" else lk - lq
    rows = []
    for i in range(lq):
        steps = [dilation * t for t in range(-left, right + 1)]
        rows.append([j - (i + offset) in steps for j in range(lk)])
    return torch.tensor(rows, dtype=torch.bool).reshape(lq, lk)


SIZES = [(1, 1), (5, 5), (7, 7), (13, 13), (6, 11), (11, 6)]


@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize(("left", "right"), [(0, 0), (2, 0), (1, 2), (3, 3)])
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_window_mask_matches_loop(dilation, left, right, alignment) -> None:
    pattern = SlidingWindowPattern(left, right, dilation, alignment)
    for lq, lk in SIZES:
        expected = window_reference(lq, lk, left, right, dilation, alignment)
        assert torch.equal(pattern.mask(lq, lk), expected), (lq, lk)


def test_window_builder_sides() -> None:
    assert sliding_window_pattern(3) == SlidingWindowPattern(3, 3)
    assert sliding_window_pattern(3, causal=True) == SlidingWindowPattern(3, 0)
    assert sliding_window_pattern((1, 2), dilation=2).dilation == 2
    with pytest.raises(ValueError, match="causal=True needs a right window of 0"):
        sliding_window_pattern((1, 2), causal=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"left": -1, "right": 0}, "window left must be >= 0"),
        ({"left": 1, "right": -2}, "window right must be >= 0"),
        ({"left": 1, "right": 1, "dilation": 0}, "dilation must be >= 1"),
        ({"left": 1, "right": 1, "alignment": "middle"}, "alignment must be"),
        ({"left": 1, "right": 1, "block_size": 0}, "block_size must be >= 1"),
    ],
)
def test_window_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        SlidingWindowPattern(**kwargs)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------ sliding window: layout


@FAST
@given(
    lq=st.integers(1, 40),
    lk=st.integers(1, 40),
    left=st.integers(0, 6),
    right=st.integers(0, 6),
    dilation=st.integers(1, 3),
    alignment=st.sampled_from(ALIGNMENTS),
    block=st.sampled_from([1, 3, 4, 8, 64]),
)
def test_window_layout_covers(lq, lk, left, right, dilation, alignment, block) -> None:
    check_layout(SlidingWindowPattern(left, right, dilation, alignment), lq, lk, block)


@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("length", "block"), [(64, 8), (61, 8), (50, 7), (9, 16)])
def test_window_layout_covers_self_attention(dilation, causal, length, block) -> None:
    pattern = sliding_window_pattern(3, causal=causal, dilation=dilation)
    check_layout(pattern, length, length, block)


def test_window_layout_on_device(device: str) -> None:
    check_layout(SlidingWindowPattern(2, 1, dilation=2), 19, 19, 4, device)
    check_layout(SlidingWindowPattern(2, 1), 13, 21, 4, device)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_window_work_is_linear(dilation) -> None:
    pattern = SlidingWindowPattern(16, 16, dilation)
    per_query = {pattern.layout(n, n, 32).keys_per_query for n in (512, 2048, 8192)}
    assert len(per_query) == 1  # does not grow with L
    assert per_query.pop() <= 3 * 32  # the band (33 keys) fits in 2-3 blocks of its residue
    layout = check_layout(pattern, 512, 512, 32)
    assert computed_pairs(layout, 512) < 512 * 512 / 4


def test_window_layout_empty_queries() -> None:
    check_layout(SlidingWindowPattern(1, 1), 0, 5, 4)


# ------------------------------------------------------------ under FlexAttention's vmap


def check_flex(pattern: SparsePattern, lq: int, lk: int, block: int = 8) -> None:
    """create_block_mask (vmap over scalar indices) agrees with pattern.mask, pair by pair."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    mod = pattern.mask_mod(lq, lk)
    expected = pattern.mask(lq, lk)
    dense = flex.create_mask(mod, 1, 1, lq, lk, device="cpu")[0, 0]
    assert torch.equal(dense, expected)
    block_mask = flex.create_block_mask(mod, None, None, lq, lk, device="cpu", BLOCK_SIZE=block)
    nq, nk = -(-lq // block), -(-lk // block)
    padded = torch.zeros(nq * block, nk * block, dtype=torch.bool)
    padded[:lq, :lk] = expected
    any_pair = padded.view(nq, block, nk, block).any(3).any(1)
    assert torch.equal(block_mask.to_dense()[0, 0, :nq, :nk].bool(), any_pair)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("dilation", [1, 3])
def test_window_mask_mod_under_create_block_mask(alignment, dilation) -> None:
    check_flex(SlidingWindowPattern(3, 1, dilation, alignment), 37, 37)
    check_flex(SlidingWindowPattern(3, 1, dilation, alignment), 29, 43)
