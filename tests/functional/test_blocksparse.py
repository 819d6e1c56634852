"""The blockwise engines equal dense attention with the pattern's mask."""

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.functional import attention
from attnlab.functional.scores import additive
from attnlab.masks import bigbird_pattern, fixed_pattern, longformer_pattern, strided_pattern
from attnlab.masks.patterns import (
    BlockLayout,
    SlidingWindowPattern,
    SparsePattern,
    block_ranges,
    identity_slots,
    sliding_window_pattern,
)
from attnlab.masks.predicates import band_predicate


@dataclass(frozen=True)
class GlobalTokenWindow(SparsePattern):
    """A window plus global tokens, written here to reach every path of the engine."""

    window: int
    tokens: tuple[int, ...]
    block_size: int = 4

    def mask_mod(self, lq, lk):
        tokens = torch.tensor(self.tokens)

        def mod(b, h, q_idx, kv_idx):
            is_global = (q_idx[..., None] == tokens).any(-1) | (kv_idx[..., None] == tokens).any(-1)
            return band_predicate(q_idx, kv_idx, 0, self.window, self.window) | is_global

        return mod

    def build_layout(self, lq, lk, block_size, device):
        starts = torch.arange(-(-lq // block_size)) * block_size
        first = (starts - self.window).div(block_size, rounding_mode="floor")
        last = (starts + block_size - 1 + self.window).div(block_size, rounding_mode="floor")
        tokens = torch.tensor(self.tokens, dtype=torch.long)
        return BlockLayout(
            block_size,
            identity_slots(lq, block_size),
            identity_slots(lk, block_size),
            block_ranges(first, last, -(-lk // block_size)),
            extra_keys=tokens,
            dense_rows=tokens,
        )


def _qkv(b, h, lq, lk, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(b, h, n, d, generator=g, dtype=dtype, requires_grad=True) for n in (lq, lk, lk)
    )


def _dense_and_sparse(q, k, v, pattern, backend, **kwargs):
    lq, lk = q.shape[-2], k.shape[-2]
    mask = kwargs.pop("mask", None)
    dense_mask = pattern.mask(lq, lk) if mask is None else mask & pattern.mask(lq, lk)
    ref = attention(q, k, v, mask=dense_mask, backend="math", **kwargs)
    got = attention(q, k, v, mask=mask, pattern=pattern, backend=backend, **kwargs)
    assert got.engine == backend
    return ref.output, got.output


def _assert_same_with_grads(ref, got, inputs, atol=1e-10):
    torch.testing.assert_close(got, ref, atol=atol, rtol=0)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, inputs, grad), torch.autograd.grad(got, inputs, grad)):
        torch.testing.assert_close(b, a, atol=atol, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 40),
    left=st.integers(0, 12),
    right=st.integers(0, 12),
    dilation=st.integers(1, 3),
    block=st.sampled_from([1, 3, 4, 8, 16]),
    causal=st.booleans(),
    padded=st.booleans(),
)
def test_banded_equals_dense_with_band_mask(length, left, right, dilation, block, causal, padded):
    q, k, v = _qkv(2, 3, length, length, 5)
    pattern = SlidingWindowPattern(left, right, dilation, block_size=block)
    mask = None
    if padded:  # the second sequence is shorter: padding keys, maybe whole empty rows
        mask = (torch.arange(length) < max(0, length - 3)).view(1, 1, 1, -1)
        mask = torch.cat([torch.ones_like(mask), mask])
    ref, got = _dense_and_sparse(q, k, v, pattern, "banded", mask=mask, causal=causal)
    _assert_same_with_grads(ref, got, (q, k, v))


@pytest.mark.parametrize("alignment", ["upper_left", "lower_right"])
@pytest.mark.parametrize("lq, lk", [(5, 13), (13, 5), (9, 9)])
def test_banded_with_unequal_lengths_and_bias(alignment, lq, lk):
    q, k, v = _qkv(2, 3, lq, lk, 4)
    bias = torch.randn(1, 3, lq, lk, dtype=torch.float64, requires_grad=True)
    pattern = SlidingWindowPattern(2, 1, alignment=alignment, block_size=4)
    ref, got = _dense_and_sparse(q, k, v, pattern, "banded", bias=bias)
    _assert_same_with_grads(ref, got, (q, k, v, bias))


def test_per_head_mask_and_global_tokens_take_every_path():
    q, k, v = _qkv(2, 3, 19, 19, 6)
    mask = torch.rand(2, 3, 19, 19, generator=torch.Generator().manual_seed(1)) > 0.3
    pattern = GlobalTokenWindow(2, (0, 11))
    ref, got = _dense_and_sparse(q, k, v, pattern, "block_sparse", mask=mask)
    _assert_same_with_grads(ref, got, (q, k, v))


def test_rows_with_nothing_to_attend_give_zeros_and_finite_grads():
    q, k, v = _qkv(1, 2, 10, 10, 4)
    mask = torch.ones(1, 1, 10, 10, dtype=torch.bool)
    mask[..., 3, :] = False  # query 3 sees nothing
    out = attention(q, k, v, mask=mask, pattern=sliding_window_pattern(1), backend="banded")
    assert torch.equal(out.output[:, :, 3], torch.zeros(1, 2, 4, dtype=torch.float64))
    out.output.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float32(dtype):
    q, k, v = (t.detach().to(dtype) for t in _qkv(1, 2, 33, 33, 8))
    pattern = sliding_window_pattern(4, causal=True, block_size=8)
    got = attention(q, k, v, pattern=pattern, backend="banded").output
    ref = attention(*(t.float() for t in (q, k, v)), pattern=pattern, backend="math").output
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, atol=2e-2, rtol=0)


def test_gradcheck_float64():
    q, k, v = _qkv(1, 1, 7, 7, 3)
    pattern = SlidingWindowPattern(1, 2, dilation=2, block_size=2)

    def run(q, k, v):
        return attention(q, k, v, pattern=pattern, backend="banded").output

    assert torch.autograd.gradcheck(run, (q, k, v))


def test_auto_engine_choice():
    q, k, v = (t.detach() for t in _qkv(1, 2, 1024, 1024, 8, dtype=torch.float32))
    assert attention(q, k, v, pattern=sliding_window_pattern(16)).engine == "banded"
    assert attention(q, k, v, pattern=GlobalTokenWindow(16, (0,))).engine == "block_sparse"
    # A window as wide as the sequence saves nothing: dense SDPA with the mask.
    assert attention(q, k, v, pattern=sliding_window_pattern(2000)).engine == "sdpa"
    res = attention(q, k, v, pattern=sliding_window_pattern(16), need_weights=True)
    assert res.engine == "math"
    assert not res.weights[..., 0, 17:].any() and res.weights[..., 0, :17].all()


def test_weights_from_a_forced_banded_engine_respect_the_pattern():
    q, k, v = _qkv(1, 2, 12, 12, 4)
    res = attention(q, k, v, pattern=sliding_window_pattern(1), backend="banded", need_weights=True)
    assert res.engine == "banded"
    assert torch.equal(res.weights[0, 0] > 0, sliding_window_pattern(1).mask(12))


def test_window_wider_than_the_sequence_is_full_attention():
    q, k, v = _qkv(2, 1, 6, 6, 4)
    wide = attention(q, k, v, pattern=sliding_window_pattern(50), backend="banded").output
    torch.testing.assert_close(wide, attention(q, k, v, backend="math").output)


def test_non_dot_scores_use_the_pattern_as_a_mask():
    q, k, v = _qkv(1, 2, 9, 9, 4)
    g = torch.Generator().manual_seed(3)
    score = additive(
        torch.randn(5, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    pattern = sliding_window_pattern(2)
    got = attention(q, k, v, score=score, pattern=pattern)
    ref = attention(q, k, v, score=score, mask=pattern.mask(9), backend="math")
    assert got.engine == "chunked"
    torch.testing.assert_close(got.output, ref.output)


def test_flex_forward_on_cpu_and_its_clear_error_for_training():
    q, k, v = (t.detach().float() for t in _qkv(1, 2, 40, 40, 8))
    pattern = sliding_window_pattern(3, causal=True)
    mask = torch.arange(40).view(1, 1, 1, -1) < 35
    with torch.no_grad():
        got = attention(q, k, v, pattern=pattern, mask=mask, backend="flex")
    ref = attention(q, k, v, pattern=pattern, mask=mask, backend="math")
    torch.testing.assert_close(got.output, ref.output, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot train on CPU"):
        attention(q.requires_grad_(), k, v, pattern=pattern, backend="flex")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "banded"}, "pass pattern="),
        ({"backend": "banded", "pattern": GlobalTokenWindow(1, (0,))}, "use 'block_sparse'"),
        ({"pattern": torch.ones(4, 4, dtype=torch.bool)}, "SparsePattern"),
    ],
)
def test_clear_errors(kwargs, match):
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        attention(q, q, q, **kwargs)


def test_bad_pattern_arguments():
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        SlidingWindowPattern(1, 1, dilation=0)
    with pytest.raises(ValueError, match="window"):
        sliding_window_pattern(-1)
    with pytest.raises(ValueError, match="causal=True needs a right window of 0"):
        sliding_window_pattern((2, 2), causal=True)


@pytest.mark.parametrize(
    "pattern",
    [
        longformer_pattern(3, (0, 17), block_size=8),
        longformer_pattern(2, (5,), causal=True, dilation=2, block_size=4),
        bigbird_pattern(4, window_blocks=3, global_blocks=1, random_blocks=2, seed=3),
        strided_pattern(5, part="local", block_size=8),
        strided_pattern(5, part="strided", block_size=4),
        strided_pattern(5, part="both", block_size=8),
        fixed_pattern(6, summary=2, block_size=8),
    ],
    ids=repr,
)
def test_every_pattern_on_the_blockwise_engine_equals_dense(pattern):
    q, k, v = _qkv(2, 3, 29, 29, 5)
    mask = torch.arange(29).view(1, 1, 1, -1) < torch.tensor([29, 23]).view(2, 1, 1, 1)
    ref, got = _dense_and_sparse(q, k, v, pattern, "block_sparse", mask=mask)
    _assert_same_with_grads(ref, got, (q, k, v))
