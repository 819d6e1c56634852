"""Position encodings, RoPE, ALiBi and T5 relative biases against formulas and transformers."""

import math

import pytest
import torch

from attnlab.functional import attention
from attnlab.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    relative_position_bucket,
)

B, H, LQ, LK, D = 2, 3, 5, 7, 8  # all distinct


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- sinusoidal ---------------------------------------------------------------------------


def test_sinusoidal_matches_the_formula_at_a_hand_checked_position():
    pe = SinusoidalPositionalEncoding(6)
    out = pe(torch.zeros(1, 2, 6), offset=2)  # row 1 is position 3
    expected = []
    for i in range(3):
        angle = 3 / 10000 ** (2 * i / 6)
        expected += [math.sin(angle), math.cos(angle)]
    torch.testing.assert_close(out[0, 1], torch.tensor(expected), rtol=0, atol=1e-6)
    assert out[0, 1, 0].item() == pytest.approx(math.sin(3.0), abs=1e-6)  # 0.1411


def test_sinusoidal_adds_to_input_is_not_saved_and_grows():
    x = torch.randn(B, LQ, D, generator=_gen())
    big = SinusoidalPositionalEncoding(D, max_len=64)
    small = SinusoidalPositionalEncoding(D, max_len=4)
    assert "pe" not in small.state_dict() and list(small.state_dict()) == []
    out = small(x, offset=9)  # 9 + 5 > 4: recomputed, not an error
    torch.testing.assert_close(out, x + big.pe[9 : 9 + LQ])
    assert small.pe.shape[0] >= 14
    torch.testing.assert_close(small(x), big(x))


def test_sinusoidal_dtype_and_dropout():
    pe = SinusoidalPositionalEncoding(D, dropout=0.5, dtype=torch.float64)
    assert pe.pe.dtype == torch.float64
    x = torch.zeros(B, LQ, D, dtype=torch.bfloat16)
    assert pe.eval()(x).dtype == torch.bfloat16
    pe.train()
    assert (pe(torch.ones(4, 50, D)) == 0).any()


# --- learned ------------------------------------------------------------------------------


def test_learned_adds_its_rows_and_rejects_too_long_inputs():
    pos = LearnedPositionalEmbedding(8, D, dtype=torch.float64)
    x = torch.randn(B, 3, D, dtype=torch.float64, generator=_gen())
    torch.testing.assert_close(pos(x, offset=5), x + pos.embedding.weight[5:8])
    assert "embedding.weight" in pos.state_dict()
    with pytest.raises(ValueError, match="max_len=8"):
        pos(x, offset=6)
    with pytest.raises(ValueError, match="max_len=8"):
        pos(torch.zeros(1, 9, D, dtype=torch.float64))


# --- rotary -------------------------------------------------------------------------------


def _rope_reference(x, positions, base=10000.0):
    """Complex-number RoPE on pairs (x_m, x_{m + D/2}), float64."""
    half = x.shape[-1] // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    z = z * torch.polar(torch.ones(()).double(), positions.double()[:, None] * theta)
    return torch.cat((z.real, z.imag), dim=-1)


def test_rope_matches_complex_rotation_reference():
    x = torch.randn(B, H, LQ, D, generator=_gen())
    rope = RotaryEmbedding(D)
    pos = torch.arange(11, 11 + LQ)
    torch.testing.assert_close(
        rope(x, offset=11).double(), _rope_reference(x, pos), rtol=1e-5, atol=1e-5
    )


def test_rope_matches_transformers_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=H * D, num_attention_heads=H, num_key_value_heads=H)
    x = torch.randn(B, H, LQ, D, generator=_gen())
    positions = torch.tensor([[0, 1, 2, 3, 4], [6, 7, 8, 9, 10]])
    cos, sin = llama.LlamaRotaryEmbedding(cfg)(x, positions)
    expected, _ = llama.apply_rotary_pos_emb(x, x, cos, sin)
    torch.testing.assert_close(RotaryEmbedding(D)(x, positions=positions), expected)


def test_rope_scores_depend_only_on_relative_position_and_norms_are_kept():
    g = _gen()
    q, k = torch.randn(B, H, LQ, D, generator=g), torch.randn(B, H, LQ, D, generator=g)
    rope = RotaryEmbedding(D)
    s0 = rope(q) @ rope(k).transpose(-1, -2)
    s1 = rope(q, offset=37) @ rope(k, offset=37).transpose(-1, -2)
    torch.testing.assert_close(s0, s1, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(s0, q @ k.transpose(-1, -2), atol=1e-2)
    torch.testing.assert_close(rope(q, offset=1000).norm(dim=-1), q.norm(dim=-1))


def test_rope_single_step_with_offset_equals_row_of_full_rotation():
    x = torch.randn(B, H, LK, D, generator=_gen())
    rope = RotaryEmbedding(D)
    full = rope(x)
    for t in range(LK):
        torch.testing.assert_close(rope(x[:, :, t : t + 1], offset=t), full[:, :, t : t + 1])


def test_rope_positions_argument():
    x = torch.randn(B, H, LQ, D, generator=_gen())
    rope = RotaryEmbedding(D)
    torch.testing.assert_close(rope(x, positions=torch.arange(4, 4 + LQ)), rope(x, offset=4))
    per_batch = torch.stack([torch.arange(LQ), torch.arange(20, 20 + LQ)])
    out = rope(x, positions=per_batch)
    torch.testing.assert_close(out[0], rope(x[:1])[0])
    torch.testing.assert_close(out[1], rope(x[1:], offset=20)[0])
    with pytest.raises(ValueError, match="not both"):
        rope(x, offset=1, positions=torch.arange(LQ))
    with pytest.raises(ValueError, match="positions must be"):
        rope(x, positions=torch.arange(LQ + 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rope_keeps_low_precision_dtype_and_angles_stay_float32(dtype):
    x = torch.randn(B, H, LQ, D, generator=_gen())
    rope = RotaryEmbedding(D)
    out = rope(x.to(dtype), offset=3000)
    assert out.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(out.float(), rope(x, offset=3000), rtol=tol, atol=tol)
    rope.to(dtype)  # a cast module must not lose the frequencies' precision
    torch.testing.assert_close(rope(x, offset=3000), RotaryEmbedding(D)(x, offset=3000))
    assert list(rope.state_dict()) == []


# --- ALiBi --------------------------------------------------------------------------------


def test_alibi_slopes_for_powers_of_two_and_the_papers_rule():
    torch.testing.assert_close(alibi_slopes(8), 1 / 2 ** torch.arange(1, 9).float())
    twelve = [2.0**-k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(4)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(twelve))
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    for n in [1, 2, 3, 5, 6, 7, 12, 16, 20, 24, 33]:
        torch.testing.assert_close(alibi_slopes(n), bloom._get_alibi_slopes(n, "cpu").float())
    alibi = ALiBi(12)
    torch.testing.assert_close(alibi.slopes, alibi_slopes(12))
    assert list(alibi.state_dict()) == []


def test_alibi_causal_tiny_case_and_lower_right_default():
    bias = ALiBi(2)(2, 3)  # slopes 1/16, 1/256; queries at positions 1, 2
    assert bias.shape == (1, 2, 2, 3) and bias.dtype == torch.float32
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    torch.testing.assert_close(bias[0, 0], expected / 16)
    torch.testing.assert_close(bias[0, 1], expected / 256)
    torch.testing.assert_close(ALiBi(2)(2, 3, offset=0)[0, 0], (expected + 1) / 16)
    sym = ALiBi(2, causal=False)(3, 3)
    torch.testing.assert_close(sym, sym.transpose(-1, -2))
    assert (sym <= 0).all() and (sym.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert ALiBi(4)(LQ, LK, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_alibi_equals_bloom_up_to_a_per_row_constant():
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    ref = bloom.build_alibi_tensor(torch.ones(1, LK), H, torch.float32).view(1, H, 1, LK)
    diff = ALiBi(H)(LK, LK) - ref  # softmax cannot see a constant per row
    torch.testing.assert_close(diff, diff[..., :1].expand_as(diff))


# --- T5 relative position bias -------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20), (10, 7)])
def test_buckets_equal_transformers_t5(bidirectional, num_buckets, max_distance):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    rel = torch.randint(-400, 400, (500,), generator=_gen())
    rel = torch.cat([rel, torch.arange(-40, 41)])
    kwargs = {"bidirectional": bidirectional, "num_buckets": num_buckets}
    ours = relative_position_bucket(rel, max_distance=max_distance, **kwargs)
    ref = t5.T5Attention._relative_position_bucket(rel, max_distance=max_distance, **kwargs)
    assert torch.equal(ours, ref)
    assert ours.min() >= 0 and ours.max() < num_buckets


def test_relative_position_bias_reads_the_bucket_of_each_pair():
    rpb = RelativePositionBias(H, num_buckets=8, max_distance=16, bidirectional=False)
    bias = rpb(LQ, LK)
    assert bias.shape == (1, H, LQ, LK)
    assert list(rpb.state_dict()) == ["embedding.weight"]
    w = rpb.embedding.weight
    for i, j in [(0, 0), (0, LK - 1), (LQ - 1, 0), (3, 6)]:
        bucket = relative_position_bucket(
            torch.tensor(j - (i + LK - LQ)), bidirectional=False, num_buckets=8, max_distance=16
        )
        torch.testing.assert_close(bias[0, :, i, j], w[bucket])
    torch.testing.assert_close(rpb(1, LK)[..., -1:, :], bias[..., -1:, :])  # decoding step
    torch.testing.assert_close(rpb(LQ, LK, offset=0)[0, :, 0, 0], w[0])


# --- biases through the attention core ----------------------------------------------------


def _qkv(dtype=torch.float32):
    g = _gen(1)
    return [torch.randn(B, H, n, D, generator=g, dtype=dtype) for n in (LQ, LK, LK)]


@pytest.mark.parametrize("kind", ["alibi", "alibi-bidirectional", "t5"])
def test_biases_agree_across_engines(kind):
    q, k, v = _qkv()
    if kind == "t5":
        bias = RelativePositionBias(H, num_buckets=8, max_distance=16)(LQ, LK)
    else:
        bias = ALiBi(H, causal=kind == "alibi")(LQ, LK)
    causal = "lower_right" if kind == "alibi" else False
    outs = {}
    for backend in ("math", "sdpa", "chunked"):
        outs[backend] = attention(q, k, v, bias=bias, causal=causal, backend=backend).output
    torch.testing.assert_close(outs["sdpa"], outs["math"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["chunked"], outs["math"], rtol=1e-5, atol=1e-5)


def test_learned_bias_gradients_agree_across_engines():
    q, k, v = _qkv()
    grads = []
    for backend in ("math", "chunked", "sdpa"):
        rpb = RelativePositionBias(H, num_buckets=8, max_distance=16)
        torch.nn.init.normal_(rpb.embedding.weight, generator=_gen(2))
        out = attention(q, k, v, bias=rpb(LQ, LK), backend=backend).output
        out.square().sum().backward()
        grads.append(rpb.embedding.weight.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[2], grads[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["math", "sdpa", "chunked"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fully_masked_rows_are_zero_with_a_bias(backend, dtype):
    q, k, v = _qkv(dtype)
    mask = torch.ones(B, 1, LQ, LK, dtype=torch.bool)
    mask[1, :, 2] = False
    bias = ALiBi(H)(LQ, LK, dtype=dtype)
    out = attention(q, k, v, bias=bias, mask=mask, causal="lower_right", backend=backend).output
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out[1, :, 2] == 0).all() and (out[0, :, 2] != 0).any()


# --- construction -------------------------------------------------------------------------


def test_bad_arguments_give_one_line_errors():
    cases = [
        (lambda: SinusoidalPositionalEncoding(7), "even"),
        (lambda: RotaryEmbedding(7), "even"),
        (lambda: ALiBi(0), "num_heads"),
        (lambda: alibi_slopes(-2), "num_heads"),
        (lambda: RelativePositionBias(0), "num_heads"),
        (lambda: RelativePositionBias(H, num_buckets=2), "num_buckets"),
        (lambda: LearnedPositionalEmbedding(0, D), "max_len"),
        (lambda: SinusoidalPositionalEncoding(D, dropout=1.0), "dropout"),
        (lambda: SinusoidalPositionalEncoding(D)(torch.zeros(1, 2, D + 2)), "x must be"),
        (lambda: RotaryEmbedding(D)(torch.zeros(1, 2, D), offset=-1), "offset"),
        (lambda: ALiBi(H)(-1, 3), "lq"),
    ]
    for build, words in cases:
        with pytest.raises(ValueError, match=words) as info:
            build()
        assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="integer"):
        relative_position_bucket(
            torch.zeros(3), bidirectional=True, num_buckets=32, max_distance=128
        )


def test_factory_kwargs_and_repr():
    f = {"device": "cpu", "dtype": torch.float64}
    assert RelativePositionBias(H, **f)(2, 3).dtype == torch.float64
    assert LearnedPositionalEmbedding(4, D, **f).embedding.weight.dtype == torch.float64
    assert ALiBi(H, **f).slopes.dtype == torch.float64
    assert RotaryEmbedding(D, **f).inv_freq.dtype == torch.float32  # always float32
    assert "num_buckets=32" in repr(RelativePositionBias(H))
    assert "causal=True" in repr(ALiBi(H))
