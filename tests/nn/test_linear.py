"""LinearAttention: the module around functional.linear_attention."""

import pytest
import torch

from attnlab.functional.linear import linear_attention
from attnlab.nn.linear import LinearAttention, default_num_features
from attnlab.nn.multihead import MultiHeadAttention

B, LQ, LK, E, H = 2, 5, 7, 12, 3


def build(**kwargs):
    torch.manual_seed(0)
    return LinearAttention(E, H, **kwargs)


def key_mask():
    mask = torch.ones(B, LK, dtype=torch.bool)
    mask[1, 4:] = False
    return mask


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_shapes_and_equal_to_the_functional_on_its_projections(feature_map, causal):
    attn = build(feature_map=feature_map, causal=causal)
    x = torch.randn(B, LK, E)
    y = torch.randn(B, LQ if not causal else LK, E)
    mask = key_mask()
    out, weights = attn(y, x, mask=mask)
    assert out.shape == (B, y.shape[1], E) and weights is None

    def heads(t):
        return t.view(B, -1, H, E // H).transpose(1, 2)

    core = linear_attention(
        heads(attn.q_proj(y)),
        heads(attn.k_proj(x)),
        heads(attn.v_proj(x)),
        feature_map=feature_map,
        projection=attn.projection,
        mask=mask,
        causal=causal,
    )
    expected = attn.out_proj(core.transpose(1, 2).reshape(B, -1, E))
    torch.testing.assert_close(out, expected)


def test_self_attention_defaults_key_and_value_to_query():
    attn = build()
    x = torch.randn(B, LK, E)
    torch.testing.assert_close(attn(x).context, attn(x, x, x).context)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_masked_keys_do_not_matter_and_no_key_gives_zeros(feature_map):
    attn = build(feature_map=feature_map, bias=False)
    q, kv = torch.randn(B, LQ, E), torch.randn(B, LK, E)
    mask = key_mask()
    out = attn(q, kv, mask=mask).context
    kv2 = kv.clone()
    kv2[1, 4:] = 1e3
    torch.testing.assert_close(attn(q, kv2, mask=mask).context, out)
    mask[0] = False
    hidden = attn(q, kv, mask=mask).context
    assert torch.isfinite(hidden).all() and (hidden[0] == 0).all()
    torch.testing.assert_close(hidden[1], out[1])


def test_causal_output_ignores_the_future():
    attn = build(feature_map="favor", causal=True, chunk_size=3)
    x = torch.randn(B, LK, E)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(B, LK - 4, E)
    torch.testing.assert_close(attn(x2).context[:, :4], attn(x).context[:, :4])


def test_favor_approaches_softmax_multihead_attention_with_many_features():
    torch.manual_seed(0)
    mha = MultiHeadAttention(E, H, bias=False)
    x = torch.randn(B, LK, E) / 2

    def error(m):
        attn = LinearAttention(E, H, feature_map="favor", num_features=m, bias=False)
        attn.load_state_dict({**mha.state_dict(), "projection": attn.projection})
        attn.redraw_features(torch.Generator().manual_seed(m))
        exact, _ = mha(x)
        return ((attn(x).context - exact).norm() / exact.norm()).item()

    assert error(4096) < 0.05 < error(4)


def test_redraw_by_hand_keeps_the_buffer_and_follows_the_generator():
    attn = build(feature_map="favor", num_features=10)
    w = attn.projection
    before = w.clone()
    attn.redraw_features(torch.Generator().manual_seed(5))
    assert attn.projection is w and not torch.equal(w, before)
    first = w.clone()
    attn.redraw_features(torch.Generator().manual_seed(5))
    torch.testing.assert_close(w, first)
    with pytest.raises(ValueError, match="no random features"):
        build().redraw_features()


def test_redraw_interval_counts_training_calls_only():
    attn = build(feature_map="favor", redraw_interval=2)
    x = torch.randn(B, LK, E)
    draws = [attn.projection.clone()]
    for _ in range(5):
        attn(x)
        draws.append(attn.projection.clone())
    changed = [not torch.equal(a, b) for a, b in zip(draws, draws[1:])]
    assert changed == [False, False, True, False, True]  # calls 3 and 5 start a new draw
    attn.eval()
    frozen = attn.projection.clone()
    for _ in range(4):
        attn(x)
    assert torch.equal(attn.projection, frozen)
    fixed = build(feature_map="favor")
    w = fixed.projection.clone()
    for _ in range(3):
        fixed(x)
    assert torch.equal(fixed.projection, w)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_state_dict_round_trip(feature_map):
    a = build(feature_map=feature_map, causal=True)
    torch.manual_seed(1)
    b = LinearAttention(E, H, feature_map=feature_map, causal=True)
    assert ("projection" in a.state_dict()) == (feature_map == "favor")
    b.load_state_dict(a.state_dict())
    x = torch.randn(B, LK, E)
    torch.testing.assert_close(b(x).context, a(x).context)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_device_and_dtype_kwargs_and_no_nan(dtype):
    attn = LinearAttention(E, H, feature_map="favor", bias=False, device="cpu", dtype=dtype)
    assert all(t.dtype == dtype for t in (*attn.parameters(), attn.projection))
    mask = key_mask()
    mask[0] = False
    out, _ = attn(torch.randn(B, LQ, E, dtype=dtype), torch.randn(B, LK, E, dtype=dtype), mask=mask)
    assert out.dtype == dtype and torch.isfinite(out).all() and (out[0] == 0).all()
    meta = LinearAttention(E, H, feature_map="favor", device="meta")
    assert all(t.is_meta for t in (*meta.parameters(), meta.projection))


def test_gradients_reach_every_parameter_but_not_the_projection():
    attn = build(feature_map="favor", causal=True)
    attn(torch.randn(B, LK, E), mask=key_mask()).context.square().sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert not attn.projection.requires_grad


def test_repr_and_default_feature_count():
    text = repr(build(feature_map="favor", redraw_interval=4))
    assert "LinearAttention" in text and "feature_map='favor'" in text
    assert f"num_features={default_num_features(E // H)}" in text and "redraw_interval=4" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embed_dim": 10}, "does not divide"),
        ({"feature_map": "softmax"}, "feature_map must be one of"),
        ({"num_features": 8}, "FAVOR\\+ options"),
        ({"redraw_interval": 8}, "FAVOR\\+ options"),
        ({"feature_map": "favor", "num_features": 0}, "num_features must be >= 1"),
        ({"feature_map": "favor", "redraw_interval": 0}, "redraw_interval must be"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {"embed_dim": E, "num_heads": H, **kwargs}
    with pytest.raises(ValueError, match=match):
        LinearAttention(**args)


def test_call_errors():
    attn = build()
    x = torch.randn(B, LK, E)
    with pytest.raises(ValueError, match="never forms attention weights"):
        attn(x, need_weights=True)
    with pytest.raises(ValueError, match=r"batch-first \(B, L, 12\)"):
        attn(torch.randn(B, LK, E + 1))
    with pytest.raises(TypeError, match="torch.Tensor"):
        attn(x, "keys")
    with pytest.raises(TypeError, match="mask must be boolean"):
        attn(x, mask=torch.ones(B, LK))
    with pytest.raises(ValueError, match="boolean key mask"):
        attn(x, mask=torch.ones(B, LK, LK, dtype=torch.bool))
    with pytest.raises(ValueError, match="Lq must equal Lk"):
        build(causal=True)(torch.randn(B, LQ, E), x)
