import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks import (
    causal_mask,
    from_additive_mask,
    from_key_padding_mask,
    from_torch_attn_mask,
    key_padding_mask,
    split_additive_mask,
    to_additive_mask,
    to_key_padding_mask,
)

FAST = settings(max_examples=60, deadline=None)
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
B, H, LQ, LK, E = 2, 3, 4, 5, 6  # all distinct so no transposition hides


def random_mask(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random bool mask where every row (last dim) allows at least one key."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=gen) < 0.6
    mask[..., 0] = True
    return mask


# ---------------------------------------------------------------- key padding


def test_key_padding_round_trip() -> None:
    kpm = torch.tensor([[False, False, True], [False, True, True]])
    mask = from_key_padding_mask(kpm)
    assert mask.shape == (2, 1, 1, 3)
    assert torch.equal(mask, key_padding_mask(torch.tensor([2, 1]), 3))
    assert torch.equal(to_key_padding_mask(mask), kpm)
    assert torch.equal(to_key_padding_mask(mask[:, 0, 0]), kpm)


@FAST
@given(bits=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), max_size=4))
def test_key_padding_round_trip_property(bits) -> None:
    kpm = torch.tensor(bits, dtype=torch.bool).view(len(bits), 4)
    assert torch.equal(to_key_padding_mask(from_key_padding_mask(kpm)), kpm)


def test_key_padding_errors() -> None:
    with pytest.raises(TypeError, match="True = ignore"):
        from_key_padding_mask(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"2-D \(B, Lk\)"):
        from_key_padding_mask(torch.zeros(2, 1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="cannot vary over heads or queries"):
        to_key_padding_mask(torch.ones(2, 3, 1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        to_key_padding_mask(torch.ones(2, 4))


def mha_weights(**masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and per-head weights (B, H, Lq, Lk) of a fixed torch MultiheadAttention."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    q = torch.randn(B, LQ, E, dtype=torch.float64)
    kv = torch.randn(B, LK, E, dtype=torch.float64)
    out, weights = mha(q, kv, kv, need_weights=True, average_attn_weights=False, **masks)
    return out, weights


def test_from_key_padding_mask_matches_multihead_attention() -> None:
    kpm = ~random_mask(B, LK, seed=1)
    mask = from_key_padding_mask(kpm)
    out, weights = mha_weights(key_padding_mask=kpm)
    allowed = mask.expand(B, H, LQ, LK)
    assert bool((weights[~allowed] == 0).all()) and bool((weights[allowed] > 0).all())
    # The same mask handed back to torch as a float attn_mask gives the same result.
    additive = to_additive_mask(mask, torch.float64).expand(B, H, LQ, LK).reshape(B * H, LQ, LK)
    out_2, weights_2 = mha_weights(attn_mask=additive)
    torch.testing.assert_close(out_2, out)
    torch.testing.assert_close(weights_2, weights)


# ---------------------------------------------------------------- torch attn_mask


def test_from_torch_attn_mask_bool_2d_matches_multihead_attention() -> None:
    torch_mask = ~random_mask(LQ, LK, seed=2)  # True = NOT allowed
    mask, bias = from_torch_attn_mask(torch_mask)
    assert bias is None and mask.shape == (LQ, LK)
    _, weights = mha_weights(attn_mask=torch_mask)
    allowed = mask.expand(B, H, LQ, LK)
    assert bool((weights[~allowed] == 0).all()) and bool((weights[allowed] > 0).all())


def test_from_torch_attn_mask_bool_3d_unfolds_batch_and_heads() -> None:
    torch_mask = ~random_mask(B * H, LQ, LK, seed=3)
    mask, bias = from_torch_attn_mask(torch_mask, num_heads=H)
    assert bias is None and mask.shape == (B, H, LQ, LK)
    _, weights = mha_weights(attn_mask=torch_mask)
    assert bool((weights[~mask] == 0).all()) and bool((weights[mask] > 0).all())


def test_from_torch_attn_mask_float_splits_mask_and_bias() -> None:
    gen = torch.Generator().manual_seed(4)
    allowed = random_mask(B * H, LQ, LK, seed=4)
    float_mask = torch.randn(B * H, LQ, LK, generator=gen, dtype=torch.float64)
    float_mask = float_mask.masked_fill(~allowed, -math.inf)
    mask, bias = from_torch_attn_mask(float_mask, num_heads=H)
    assert mask.shape == bias.shape == (B, H, LQ, LK)
    assert torch.equal(mask, allowed.view(B, H, LQ, LK))
    # Reference: softmax(scores + bias) over allowed keys, against torch SDPA with the float mask.
    q, k, v = (torch.randn(B, H, n, 7, generator=gen, dtype=torch.float64) for n in (LQ, LK, LK))
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=float_mask.view(B, H, LQ, LK)
    )
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(7) + bias
    weights = scores.masked_fill(~mask, -math.inf).softmax(-1)
    torch.testing.assert_close(weights @ v, expected)


def test_from_torch_attn_mask_float_without_bias_returns_none() -> None:
    mask, bias = from_torch_attn_mask(to_additive_mask(causal_mask(LQ, LK)))
    assert bias is None
    assert torch.equal(mask, causal_mask(LQ, LK))


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: from_torch_attn_mask(torch.ones(2, 3, dtype=torch.long)), TypeError, "bool"),
        (lambda: from_torch_attn_mask(torch.zeros(6, 2, 3)), ValueError, "num_heads=H"),
        (lambda: from_torch_attn_mask(torch.zeros(6, 2, 3), num_heads=4), ValueError, "divisible"),
        (lambda: from_torch_attn_mask(torch.zeros(6, 2, 3), num_heads=0), ValueError, "divisible"),
        (lambda: from_torch_attn_mask(torch.zeros(1, 6, 2, 3)), ValueError, "(Lq, Lk)"),
    ],
)
def test_from_torch_attn_mask_errors(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- additive masks


@pytest.mark.parametrize("dtype", FLOATS)
def test_from_additive_mask_recognises_masked_fills(dtype: torch.dtype) -> None:
    fills = [0.0, -math.inf, -1e9, torch.finfo(dtype).min, -torch.finfo(dtype).max, 0.0]
    mask = from_additive_mask(torch.tensor(fills, dtype=dtype))
    assert mask.tolist() == [True, False, False, False, False, True]


@pytest.mark.parametrize("dtype", FLOATS)
def test_additive_round_trip(dtype: torch.dtype) -> None:
    mask = random_mask(B, 1, LQ, LK, seed=5)
    additive = to_additive_mask(mask, dtype)
    assert additive.dtype == dtype and additive.shape == mask.shape
    assert bool((additive[mask] == 0).all()) and bool(torch.isneginf(additive[~mask]).all())
    assert torch.equal(from_additive_mask(additive), mask)
    split_mask, bias = split_additive_mask(additive)
    assert torch.equal(split_mask, mask) and not bool(bias.any())


def test_from_additive_mask_rejects_biases() -> None:
    with pytest.raises(ValueError, match="split_additive_mask") as info:
        from_additive_mask(torch.tensor([0.0, 0.5, -math.inf]))
    assert "0.5" in str(info.value) and "bias=" in str(info.value)
    with pytest.raises(ValueError, match="bias"):  # -1e4 is a bias unless told otherwise
        from_additive_mask(torch.tensor([0.0, -1e4]))
    assert from_additive_mask(torch.tensor([0.0, -1e4]), threshold=-1e4).tolist() == [True, False]


def test_split_additive_mask_golden() -> None:
    float_mask = torch.tensor([[0.0, -1e9, 0.25], [-math.inf, -2.0, 0.0]])
    mask, bias = split_additive_mask(float_mask)
    assert mask.tolist() == [[True, False, True], [False, True, True]]
    assert bias.tolist() == [[0.0, 0.0, 0.25], [0.0, -2.0, 0.0]]
    assert bias.dtype == float_mask.dtype


@FAST
@given(values=st.lists(st.sampled_from([0.0, -math.inf, -1e9, 1.5, -3.0]), min_size=1, max_size=12))
def test_split_then_recombine_reproduces_the_float_mask(values) -> None:
    float_mask = torch.tensor(values, dtype=torch.float32)
    mask, bias = split_additive_mask(float_mask)
    recombined = to_additive_mask(mask) + bias
    masked = float_mask <= -1e9
    assert torch.equal(mask, ~masked)
    assert torch.equal(recombined[mask], float_mask[mask])
    assert bool(torch.isneginf(recombined[~mask]).all())


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: from_additive_mask(torch.tensor([True])), TypeError, "floating-point"),
        (lambda: from_additive_mask(torch.tensor([0, 1])), TypeError, "floating-point"),
        (lambda: split_additive_mask(torch.tensor([0.0, math.nan])), ValueError, "NaN"),
        (lambda: split_additive_mask(torch.tensor([math.inf])), ValueError, "+inf"),
        (lambda: to_additive_mask(torch.zeros(2)), TypeError, "boolean"),
        (
            lambda: to_additive_mask(torch.ones(2, dtype=torch.bool), torch.int32),
            TypeError,
            "dtype",
        ),
    ],
)
def test_additive_errors(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_to_additive_mask_keeps_device(device: str) -> None:
    mask = causal_mask(2, 3, device=device)
    assert to_additive_mask(mask).device.type == device
    assert from_additive_mask(to_additive_mask(mask)).device.type == device
