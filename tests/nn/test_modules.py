"""Each module against the paper's formula, written out by hand."""

import pytest
import torch

from attnlab.nn import AdditiveAttention, AttentionPooling, LuongAttention

B, LQ, LK, DQ, DK, DV, HID = 2, 3, 7, 5, 6, 4, 9  # all distinct


def _softmax_masked(e, mask):
    e = e.masked_fill(~mask, float("-inf"))
    return torch.softmax(e, -1).nan_to_num(0.0)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, LQ, DQ, generator=g, dtype=torch.float64)
    k = torch.randn(B, LK, DK, generator=g, dtype=torch.float64)
    v = torch.randn(B, LK, DV, generator=g, dtype=torch.float64)
    mask = torch.ones(B, LK, dtype=torch.bool)
    mask[1, 4:] = False
    return q, k, v, mask


def test_additive_matches_bahdanau_formula(data):
    q, k, v, mask = data
    attn = AdditiveAttention(DQ, DK, HID, dtype=torch.float64)
    e = (
        torch.tanh(
            (q @ attn.query_proj.weight.T)[:, :, None]
            + (k @ attn.key_proj.weight.T + attn.key_proj.bias)[:, None]
        )
        @ attn.v
    )
    w = _softmax_masked(e, mask[:, None])
    ctx, weights = attn(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(ctx, w @ v)


def test_additive_prepared_keys_equal_fresh_keys_at_every_step(data):
    q, k, v, mask = data
    attn = AdditiveAttention(DQ, DK, HID, dtype=torch.float64)
    prepared = attn.prepare_keys(k)
    for t in range(LQ):  # one decoder step at a time, as in Bahdanau's decoder
        fresh = attn(q[:, t], k, v, mask=mask)[0]
        reused = attn(q[:, t], prepared, v, mask=mask, keys_prepared=True)[0]
        torch.testing.assert_close(reused, fresh)
        assert fresh.shape == (B, DV)


def test_additive_gradients_equal_between_engines(data):
    q, k, v, mask = data
    attn = AdditiveAttention(DQ, DK, HID, dtype=torch.float64)
    ctx = attn(q, k, v, mask=mask)[0]  # chunked engine
    grads = torch.autograd.grad(ctx.square().sum(), list(attn.parameters()))
    ctx_w = attn(q, k, v, mask=mask, need_weights=True)[0]  # math engine
    grads_w = torch.autograd.grad(ctx_w.square().sum(), list(attn.parameters()))
    for a, b in zip(grads, grads_w):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("score", ["dot", "general", "concat", "location"])
def test_luong_matches_formula(score, data):
    q, k, v, mask = data
    key_size = DQ if score == "dot" else DK
    k = k[..., :key_size] if score == "dot" else k
    attn = LuongAttention(
        DQ, key_size, score=score, hidden_size=HID, max_source_len=LK + 2, dtype=torch.float64
    )
    if score == "dot":
        e = q @ k.transpose(1, 2)
    elif score == "general":
        e = q @ attn.weight @ k.transpose(1, 2)
    elif score == "concat":
        w_full = torch.cat([attn.query_proj.weight, attn.key_proj.weight], dim=1)
        pairs = torch.cat(
            [q[:, :, None].expand(-1, -1, LK, -1), k[:, None].expand(-1, LQ, -1, -1)], -1
        )
        e = torch.tanh(pairs @ w_full.T + attn.key_proj.bias) @ attn.v
    else:
        e = (q @ attn.location.weight.T + attn.location.bias)[..., :LK]
    w = _softmax_masked(e, mask[:, None])
    ctx, weights = attn(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(ctx, w @ v)
    torch.testing.assert_close(attn(q, k, v, mask=mask)[0], ctx)  # fast engine agrees


def test_luong_bad_configurations_fail_clearly():
    with pytest.raises(ValueError, match="query_size == key_size"):
        LuongAttention(4, 5, score="dot")
    with pytest.raises(ValueError, match="max_source_len"):
        LuongAttention(4, score="location")
    with pytest.raises(ValueError, match="score must be one of"):
        LuongAttention(4, score="cosine")
    attn = LuongAttention(4, score="location", max_source_len=3)
    with pytest.raises(ValueError, match="at most 3 source positions"):
        attn(torch.randn(1, 4), torch.randn(1, 5, 4))


def test_pooling_matches_tutorial_layer(data):
    _, k, _, mask = data
    pool = AttentionPooling(DK, dtype=torch.float64)
    e = torch.tanh(k @ pool.proj.weight.T + pool.proj.bias).squeeze(-1)
    w = _softmax_masked(e, mask)
    ctx, weights = pool(k, mask=mask, need_weights=True)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(ctx, (w[..., None] * k).sum(1))
    assert (weights[1, 4:] == 0).all()


def test_pooling_with_learned_query_matches_han_formula(data):
    _, k, _, mask = data
    pool = AttentionPooling(DK, query=True, hidden_size=HID, dtype=torch.float64)
    e = torch.tanh(k @ pool.proj.weight.T + pool.proj.bias) @ pool.context
    w = _softmax_masked(e, mask)
    torch.testing.assert_close(pool(k, mask=mask, need_weights=True)[1], w)


def test_padding_does_not_change_the_result():
    """The tutorial's layer attends to padding; ours must not."""
    torch.manual_seed(0)
    pool = AttentionPooling(DK)
    x = torch.randn(1, 4, DK)
    padded = torch.cat([x, torch.randn(1, 3, DK) * 100], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    torch.testing.assert_close(pool(padded, mask=mask)[0], pool(x)[0])


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda a: a(torch.randn(2, DQ + 1), torch.randn(2, LK, DK)), ValueError, "features"),
        (lambda a: a(torch.randn(DQ), torch.randn(2, LK, DK)), ValueError, r"\(B, D\)"),
        (
            lambda a: a(torch.randn(2, DQ), torch.randn(2, LK, DK), mask=torch.ones(2, LK)),
            TypeError,
            "boolean",
        ),
        (lambda a: a(torch.randn(2, DQ).long(), torch.randn(2, LK, DK)), TypeError, "floating"),
    ],
)
def test_bad_inputs_fail_with_one_line(call, error, words):
    with pytest.raises(error, match=words) as info:
        call(AdditiveAttention(DQ, DK, HID))
    assert "\n" not in str(info.value)
