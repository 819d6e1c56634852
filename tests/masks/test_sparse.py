"""Longformer, BigBird and the Sparse Transformer's strided and fixed patterns.

Each predicate is checked against the paper's rule written as a double loop, each
layout with the shared coverage checker of ``test_patterns.py``.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks import (
    BigBirdPattern,
    FixedPattern,
    LongformerPattern,
    StridedPattern,
    bigbird_pattern,
    fixed_pattern,
    longformer_pattern,
    strided_pattern,
)
from attnlab.masks.patterns import SlidingWindowPattern

from .test_patterns import check_flex, check_layout, computed_pairs

FAST = settings(max_examples=40, deadline=None)
ALIGNMENTS = ["upper_left", "lower_right"]
SIZES = [(1, 1), (5, 5), (7, 7), (13, 13), (6, 11), (11, 6)]
blocks = st.sampled_from([1, 3, 4, 8, 64])


def loop_mask(lq: int, lk: int, rule) -> torch.Tensor:
    return torch.tensor([[rule(i, j) for j in range(lk)] for i in range(lq)]).reshape(lq, lk)


def offset_of(lq: int, lk: int, alignment: str) -> int:
    return 0 if alignment == "upper_left" else lk - lq


# ------------------------------------------------------------ Longformer


def longformer_rule(lq, lk, window, globals_, causal, dilation, alignment):
    off = offset_of(lq, lk, alignment)
    left, right = window, 0 if causal else window

    def rule(i, j):
        in_window = (j - (i + off)) in [dilation * t for t in range(-left, right + 1)]
        is_global = (i + off) in globals_ or j in globals_
        if causal:
            is_global = is_global and j <= i + off
        return in_window or is_global

    return rule


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_longformer_mask_matches_loop(causal, dilation, alignment) -> None:
    for lq, lk in SIZES:
        globals_ = tuple(g for g in (0, 4, 5) if g < lk)
        pattern = longformer_pattern(
            1, globals_, causal=causal, dilation=dilation, alignment=alignment
        )
        rule = longformer_rule(lq, lk, 1, globals_, causal, dilation, alignment)
        assert torch.equal(pattern.mask(lq, lk), loop_mask(lq, lk, rule)), (lq, lk)


@FAST
@given(
    lq=st.integers(1, 40),
    lk=st.integers(1, 40),
    window=st.integers(0, 5),
    globals_=st.lists(st.integers(0, 39), max_size=4),
    causal=st.booleans(),
    dilation=st.integers(1, 3),
    alignment=st.sampled_from(ALIGNMENTS),
    block=blocks,
)
def test_longformer_layout_covers(
    lq, lk, window, globals_, causal, dilation, alignment, block
) -> None:
    globals_ = [g % lk for g in globals_]
    pattern = longformer_pattern(
        window, globals_, causal=causal, dilation=dilation, alignment=alignment
    )
    check_layout(pattern, lq, lk, block)


def test_longformer_layout_lists_globals(device: str) -> None:
    layout = check_layout(longformer_pattern(2, (3, 0, 17)), 40, 40, 8, device)
    assert layout.extra_keys.tolist() == [0, 3, 17]
    assert layout.dense_rows.tolist() == [0, 3, 17]
    # dilated self-attention: the window is laid out by residue, globals stay positions
    dilated = longformer_pattern(2, (3, 17), causal=True, dilation=3)
    assert check_layout(dilated, 40, 40, 8, device).extra_keys.tolist() == [3, 17]
    # lower-right, Lq < Lk: query i is global when i + Lk - Lq is
    layout = longformer_pattern(2, (3, 30), alignment="lower_right").layout(12, 40, 8)
    assert layout.dense_rows.tolist() == [2]
    assert longformer_pattern(2).layout(40, 40, 8).extra_keys is None


def test_longformer_work_is_linear() -> None:
    pattern = longformer_pattern(16, (0, 1, 2))
    per_query = {pattern.layout(n, n, 32).keys_per_query for n in (512, 2048, 8192)}
    assert per_query == {3 * 32 + 3}
    assert computed_pairs(pattern.layout(8192, 8192, 32), 8192) < 8192 * (3 * 32 + 3 + 3)


# ------------------------------------------------------------ BigBird


def bigbird_rule(pattern: BigBirdPattern, lq: int, lk: int):
    b, half, g = pattern.block_size, pattern.window_blocks // 2, pattern.global_blocks
    random = pattern.random_key_blocks(lq, lk).tolist()

    def rule(i, j):
        q, k = i // b, j // b
        return abs(q - k) <= half or q < g or k < g or k in random[q]

    return rule


@pytest.mark.parametrize("block", [1, 2, 3])
@pytest.mark.parametrize(("window", "globals_", "random"), [(1, 0, 1), (3, 1, 2), (5, 2, 3)])
def test_bigbird_mask_matches_loop(block, window, globals_, random) -> None:
    pattern = BigBirdPattern(block, window, globals_, random, seed=7)
    for lq, lk in [*SIZES, (30, 30), (19, 31)]:
        expected = loop_mask(lq, lk, bigbird_rule(pattern, lq, lk))
        assert torch.equal(pattern.mask(lq, lk), expected), (lq, lk)


@FAST
@given(
    lq=st.integers(1, 60),
    lk=st.integers(1, 60),
    block=st.integers(1, 6),
    window=st.sampled_from([1, 3, 5]),
    globals_=st.integers(0, 3),
    random=st.integers(0, 4),
    seed=st.integers(0, 3),
)
def test_bigbird_random_blocks_are_fresh_and_layout_covers(
    lq, lk, block, window, globals_, random, seed
) -> None:
    pattern = BigBirdPattern(block, window, globals_, random, seed)
    nk = -(-lk // block)
    for q, row in enumerate(pattern.random_key_blocks(lq, lk).tolist()):
        drawn = [k for k in row if k >= 0]
        fresh = [k for k in range(nk) if abs(q - k) > window // 2 and k >= globals_]
        assert len(set(drawn)) == len(drawn) == min(random, len(fresh))
        assert set(drawn) <= set(fresh)
    layout = check_layout(pattern, lq, lk)
    assert layout.keys_per_query == (min(globals_, nk) + window + random) * block


def test_bigbird_work_is_linear() -> None:
    pattern = bigbird_pattern(16)
    for n in (512, 2048, 8192):
        assert pattern.layout(n, n).keys_per_query == (3 + 2 + 3) * 16
        assert computed_pairs(pattern.layout(n, n), n) == (n - 32) * 128 + 32 * n


def test_bigbird_random_blocks_are_deterministic() -> None:
    a, b = bigbird_pattern(2, seed=5), bigbird_pattern(2, seed=5)
    assert torch.equal(a.random_key_blocks(64, 64), b.random_key_blocks(64, 64))
    assert torch.equal(a.mask(64), b.mask(64))
    other = bigbird_pattern(2, seed=6)
    assert not torch.equal(a.random_key_blocks(64, 64), other.random_key_blocks(64, 64))
    assert not torch.equal(a.mask(64), other.mask(64))


def test_bigbird_layout_on_device(device: str) -> None:
    layout = check_layout(bigbird_pattern(4, global_blocks=1), 37, 37, device=device)
    assert layout.dense_rows.tolist() == [0, 1, 2, 3]


def test_bigbird_layout_needs_its_own_block_size() -> None:
    with pytest.raises(ValueError, match="needs block_size=4"):
        bigbird_pattern(4).layout(32, 32, 8)


# ------------------------------------------------------------ Sparse Transformer


def strided_rule(lq, lk, stride, part, alignment):
    off = offset_of(lq, lk, alignment)

    def rule(i, j):
        distance = i + off - j
        local, strided = 0 <= distance < stride, distance >= 0 and distance % stride == 0
        return {"local": local, "strided": strided, "both": local or strided}[part]

    return rule


def fixed_rule(lq, lk, stride, summary, alignment):
    off = offset_of(lq, lk, alignment)

    def rule(i, j):
        same_block = j // stride == (i + off) // stride
        return j <= i + off and (same_block or j % stride >= stride - summary)

    return rule


@pytest.mark.parametrize("part", ["local", "strided", "both"])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_strided_mask_matches_loop(part, stride, alignment) -> None:
    pattern = strided_pattern(stride, part=part, alignment=alignment)
    for lq, lk in SIZES:
        expected = loop_mask(lq, lk, strided_rule(lq, lk, stride, part, alignment))
        assert torch.equal(pattern.mask(lq, lk), expected), (lq, lk)


@pytest.mark.parametrize(("stride", "summary"), [(1, 0), (1, 1), (3, 1), (4, 2), (4, 4)])
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_fixed_mask_matches_loop(stride, summary, alignment) -> None:
    pattern = fixed_pattern(stride, summary, alignment=alignment)
    for lq, lk in SIZES:
        expected = loop_mask(lq, lk, fixed_rule(lq, lk, stride, summary, alignment))
        assert torch.equal(pattern.mask(lq, lk), expected), (lq, lk)


@FAST
@given(
    lq=st.integers(1, 40),
    lk=st.integers(1, 40),
    stride=st.integers(1, 7),
    part=st.sampled_from(["local", "strided", "both"]),
    alignment=st.sampled_from(ALIGNMENTS),
    block=blocks,
)
def test_strided_layout_covers(lq, lk, stride, part, alignment, block) -> None:
    check_layout(strided_pattern(stride, part=part, alignment=alignment), lq, lk, block)


@FAST
@given(
    lq=st.integers(1, 40),
    lk=st.integers(1, 40),
    stride=st.integers(1, 7),
    summary=st.integers(0, 7),
    alignment=st.sampled_from(ALIGNMENTS),
    block=blocks,
)
def test_fixed_layout_covers(lq, lk, stride, summary, alignment, block) -> None:
    pattern = fixed_pattern(stride, min(summary, stride), alignment=alignment)
    check_layout(pattern, lq, lk, block)


def test_sparse_transformer_layouts_on_device(device: str) -> None:
    for part in ("local", "strided", "both"):
        check_layout(strided_pattern(4, part=part), 45, 45, 8, device)
    check_layout(fixed_pattern(4, 1), 45, 45, 8, device)


def test_strided_work_is_sqrt_l_per_query() -> None:
    # stride = sqrt(L): local and strided heads each read O(sqrt(L)) keys per query
    for n in (1024, 4096, 16384):
        stride = int(n**0.5)
        local = strided_pattern(stride, part="local").layout(n, n, 32)
        strided = strided_pattern(stride, part="strided").layout(n, n, 32)
        assert local.keys_per_query <= stride + 2 * 32
        assert strided.keys_per_query <= n // stride + 2 * 32
    # the union touches every earlier block: the layout is honestly full causal
    both = strided_pattern(32, part="both").layout(1024, 1024, 32)
    assert both.kv_blocks.shape[1] == 1024 // 32


def test_strided_reuses_the_window_layouts() -> None:
    local = strided_pattern(4, part="local").layout(64, 64, 8)
    window = SlidingWindowPattern(3, 0).layout(64, 64, 8)
    assert torch.equal(local.kv_blocks, window.kv_blocks)
    strided = strided_pattern(4, part="strided").layout(64, 64, 8)
    dilated = SlidingWindowPattern(64, 0, dilation=4).layout(64, 64, 8)
    assert torch.equal(strided.q_positions, dilated.q_positions)
    assert torch.equal(strided.kv_blocks, dilated.kv_blocks)


def test_fixed_work_is_sqrt_l_per_query() -> None:
    check_layout(fixed_pattern(32, 2), 1024, 1024, 32)
    for n in (1024, 4096, 16384):
        stride = int(n**0.5)
        layout = fixed_pattern(stride, 2).layout(n, n, 32)
        assert layout.extra_keys.numel() == 2 * n // stride
        assert layout.kv_blocks.shape[1] <= stride // 32 + 2


# ------------------------------------------------------------ FlexAttention and errors


PATTERNS = [
    longformer_pattern(3, (0, 9)),
    longformer_pattern(3, (0, 9), causal=True, dilation=2, alignment="lower_right"),
    bigbird_pattern(4, global_blocks=1, random_blocks=2, seed=1),
    strided_pattern(5),
    strided_pattern(5, part="strided", alignment="lower_right"),
    fixed_pattern(6, 2),
    fixed_pattern(6, 2, alignment="lower_right"),
]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: type(p).__name__)
def test_mask_mod_under_create_block_mask(pattern) -> None:
    check_flex(pattern, 37, 37)
    check_flex(pattern, 29, 43)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: longformer_pattern(-1), "window must be >= 0"),
        (lambda: longformer_pattern(2, (-1,)), "global position must be >= 0"),
        (lambda: longformer_pattern((2, 1), causal=True), "causal=True needs a right"),
        (lambda: LongformerPattern(2, 1, causal=True), "causal=True needs right=0"),
        (lambda: longformer_pattern(2, dilation=0), "dilation must be >= 1"),
        (lambda: longformer_pattern(2, (3,)).layout(3, 3), r"global positions must be < Lk=3"),
        (lambda: longformer_pattern(2, (3,)).mask(2), r"global positions must be < Lk=2"),
        (lambda: bigbird_pattern(0), "block_size must be >= 1"),
        (lambda: bigbird_pattern(4, window_blocks=2), "window_blocks must be odd"),
        (lambda: bigbird_pattern(4, window_blocks=0), "window_blocks must be >= 1"),
        (lambda: bigbird_pattern(4, global_blocks=-1), "global_blocks must be >= 0"),
        (lambda: bigbird_pattern(4, random_blocks=-1), "random_blocks must be >= 0"),
        (lambda: strided_pattern(0), "stride must be >= 1"),
        (lambda: strided_pattern(2, part="dilated"), "part must be 'local', 'strided'"),
        (lambda: strided_pattern(2, alignment="middle"), "alignment must be"),
        (lambda: fixed_pattern(0), "stride must be >= 1"),
        (lambda: fixed_pattern(4, 5), "summary must be <= stride=4"),
        (lambda: fixed_pattern(4, -1), "summary must be >= 0"),
        (lambda: fixed_pattern(4, block_size=0), "block_size must be >= 1"),
    ],
)
def test_clear_errors(build, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        BigBirdPattern(seed=1.5)
    with pytest.raises(TypeError, match="global_positions must be a sequence"):
        LongformerPattern(1, 1, global_positions=3)
    with pytest.raises(TypeError, match="stride must be an int"):
        StridedPattern(2.0)
    with pytest.raises(TypeError, match="summary must be an int"):
        FixedPattern(4, 1.0)


def test_patterns_are_hashable_and_normalised() -> None:
    assert longformer_pattern(2, [5, 0, 5]) == longformer_pattern(2, (0, 5))
    assert hash(longformer_pattern(2, [5, 0])) == hash(longformer_pattern(2, (0, 5)))
    assert len({bigbird_pattern(), bigbird_pattern(), bigbird_pattern(seed=1)}) == 2
