"""MultiHeadAttention against torch.nn.MultiheadAttention, a per-head loop, and itself cached."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks import from_key_padding_mask, from_torch_attn_mask
from attnlab.nn.multihead import KVCache, MultiHeadAttention

E, H = 24, 4


def _inputs(b=3, lq=5, lk=7, kdim=E, vdim=E, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, lq, E, generator=g),
        torch.randn(b, lk, kdim, generator=g),
        torch.randn(b, lk, vdim, generator=g),
    )


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kv_dims", [(E, E), (10, 14)])
def test_loads_torch_state_dict_and_matches_with_masks(batch_first, bias, kv_dims):
    torch.manual_seed(0)
    kdim, vdim = kv_dims
    theirs = torch.nn.MultiheadAttention(
        E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first
    ).eval()
    ours = MultiHeadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias).eval()
    ours.load_torch_state_dict(theirs.state_dict())
    q, k, v = _inputs(kdim=kdim, vdim=vdim)
    key_padding = torch.zeros(3, 7, dtype=torch.bool)
    key_padding[1, 4:] = True
    attn_mask = torch.triu(torch.ones(5, 7, dtype=torch.bool), diagonal=3)  # True = blocked
    t = (lambda x: x) if batch_first else (lambda x: x.transpose(0, 1))
    ref, ref_w = theirs(
        t(q),
        t(k),
        t(v),
        key_padding_mask=key_padding,
        attn_mask=attn_mask,
        average_attn_weights=False,
    )
    allowed, _ = from_torch_attn_mask(attn_mask)
    mask = from_key_padding_mask(key_padding) & allowed  # (B, 1, 1, Lk) & (Lq, Lk)
    out, w = ours(q, k, v, mask=mask, need_weights=True)
    fast, _ = ours(q, k, v, mask=mask)
    assert (out - t(ref)).abs().max() < 1e-5
    assert (fast - t(ref)).abs().max() < 1e-5
    assert (w - ref_w).abs().max() < 1e-5


def test_float_attn_mask_becomes_mask_plus_bias():
    torch.manual_seed(7)
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs).eval()
    q, k, v = _inputs()
    float_mask = torch.randn(5, 7)
    float_mask[:, 5:] = float("-inf")
    ref, _ = theirs(q, k, v, attn_mask=float_mask, need_weights=False)
    mask, bias = from_torch_attn_mask(float_mask)
    out, _ = ours(q, k, v, mask=mask[None], bias=bias)  # (Lq, Lk) -> (1, Lq, Lk)
    assert (out - ref).abs().max() < 1e-5


@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_round_trip(bias):
    torch.manual_seed(1)
    ours = MultiHeadAttention(E, H, bias=bias).eval()
    theirs = ours.to_torch(batch_first=True).eval()
    q, k, v = _inputs()
    ref, _ = theirs(q, k, v, need_weights=False)
    assert (ours(q, k, v)[0] - ref).abs().max() < 1e-5
    back = MultiHeadAttention.from_torch(theirs)
    assert (back(q, k, v)[0] - ref).abs().max() < 1e-5


def test_gradients_match_torch():
    torch.manual_seed(2)
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    q, k, v = _inputs()
    theirs(q, k, v, need_weights=False)[0].square().sum().backward()
    ours(q, k, v)[0].square().sum().backward()
    assert (ours.q_proj.weight.grad - theirs.in_proj_weight.grad[:E]).abs().max() < 1e-4
    assert (ours.out_proj.weight.grad - theirs.out_proj.weight.grad).abs().max() < 1e-4


def _per_head_reference(m: MultiHeadAttention, q, k, v, mask):
    """A slow loop over heads, with explicit group sharing of keys and values."""
    b, lq, _ = q.shape
    d = m.head_dim
    qs = m.q_proj(q).view(b, lq, m.num_heads, d)
    ks = m.k_proj(k).view(b, k.shape[1], m.kv_heads, d)
    vs = m.v_proj(v).view(b, v.shape[1], m.kv_heads, d)
    group = m.num_heads // m.kv_heads
    heads = []
    for h in range(m.num_heads):
        s = qs[:, :, h] @ ks[:, :, h // group].transpose(1, 2) / d**0.5
        s = s.masked_fill(~mask[:, None, :], float("-inf"))
        heads.append(torch.softmax(s, -1) @ vs[:, :, h // group])
    return m.out_proj(torch.cat(heads, -1))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_and_multi_query_heads_match_a_per_head_loop(kv_heads):
    torch.manual_seed(3)
    m = MultiHeadAttention(E, H, kv_heads=kv_heads).eval()
    q, k, v = _inputs()
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 2:] = False
    ref = _per_head_reference(m, q, k, v, mask)
    assert (m(q, k, v, mask=mask)[0] - ref).abs().max() < 1e-5
    assert m.k_proj.out_features == kv_heads * (E // H)


@settings(max_examples=15, deadline=None)
@given(
    kv_heads=st.sampled_from([1, 2, 4]),
    prompt=st.integers(1, 4),
    steps=st.integers(1, 4),
    rotary=st.booleans(),
)
def test_kv_cache_decoding_equals_full_recomputation(kv_heads, prompt, steps, rotary):
    from attnlab.nn.positional import RotaryEmbedding

    torch.manual_seed(4)
    m = MultiHeadAttention(
        E, H, kv_heads=kv_heads, rotary=RotaryEmbedding(E // H) if rotary else None
    ).eval()
    x = torch.randn(2, prompt + steps, E)
    full, _ = m(x, causal=True)
    cache = KVCache()
    parts = [m(x[:, :prompt], causal=True, cache=cache)[0]]
    parts += [
        m(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(prompt, prompt + steps)
    ]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
    assert cache.length == prompt + steps


def test_static_cache_projects_the_memory_once():
    torch.manual_seed(5)
    m = MultiHeadAttention(E, H).eval()
    q, k, v = _inputs()
    cache = KVCache(static=True)
    first = m(q[:, :1], k, v, cache=cache)[0]
    again = m(q[:, 1:2], torch.zeros_like(k), cache=cache)[0]  # memory ignored now
    assert (first - m(q[:, :1], k, v)[0]).abs().max() < 1e-6
    assert (again - m(q[:, 1:2], k, v)[0]).abs().max() < 1e-6
    assert cache.select(torch.tensor([2, 2])).key.shape[0] == 2


def test_weights_are_pre_dropout_probabilities_and_can_be_averaged():
    torch.manual_seed(6)
    m = MultiHeadAttention(E, H, dropout=0.5).train()
    q, k, v = _inputs()
    _, w = m(q, k, v, need_weights=True)
    assert w.shape == (3, H, 5, 7)
    assert torch.allclose(w.sum(-1), torch.ones(3, H, 5))
    _, avg = m(q, k, v, need_weights=True, average_weights=True)
    assert torch.allclose(avg, w.mean(1), atol=1e-6)


def test_fully_masked_rows_give_zeros_without_nan():
    m = MultiHeadAttention(E, H, bias=False)
    q, k, v = _inputs()
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0] = False
    q.requires_grad_(True)
    out, w = m(q, k, v, mask=mask, need_weights=True)
    out.sum().backward()
    assert (out[0] == 0).all() and (w[0] == 0).all() and torch.isfinite(q.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embed_dim": 10, "num_heads": 4}, "does not divide into 4 heads"),
        ({"embed_dim": 24, "num_heads": 4, "kv_heads": 3}, "kv_heads 3"),
        ({"embed_dim": 24, "num_heads": 0}, "num_heads must be >= 1"),
    ],
)
def test_bad_sizes_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


def test_cache_of_the_wrong_batch_size_is_one_clear_error():
    m = MultiHeadAttention(E, H)
    cache = KVCache()
    m(torch.randn(2, 3, E), causal=True, cache=cache)
    with pytest.raises(ValueError, match="KV cache holds a batch of 2 but the query has 3"):
        m(torch.randn(3, 1, E), causal=True, cache=cache)


def test_bad_inputs_and_masks():
    m = MultiHeadAttention(E, H)
    with pytest.raises(ValueError, match=r"batch-first \(B, L, 24\)"):
        m(torch.randn(5, E))
    with pytest.raises(TypeError, match="True = may attend"):
        m(torch.randn(2, 3, E), mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="grouped-query"):
        MultiHeadAttention(E, H, kv_heads=2).to_torch()


def test_a_sparsity_pattern_equals_the_dense_mask_and_decodes_with_a_cache():
    from attnlab.masks import sliding_window_pattern

    torch.manual_seed(5)
    pattern = sliding_window_pattern(3, causal=True, alignment="lower_right", block_size=4)
    banded = MultiHeadAttention(E, H, pattern=pattern, backend="banded").eval()
    x = torch.randn(2, 11, E)
    keys = torch.arange(11) < torch.tensor([[11], [8]])
    out, _ = banded(x, mask=keys)
    reference = MultiHeadAttention(E, H, backend="math").eval()
    reference.load_state_dict(banded.state_dict())
    dense, _ = reference(x, mask=keys[:, None, :] & pattern.mask(11))
    torch.testing.assert_close(out, dense, atol=1e-6, rtol=0)
    assert "pattern=SlidingWindowPattern" in repr(banded)
    banded.backend = "auto"
    cache = KVCache()
    parts = [banded(x[:, :4], causal=True, cache=cache)[0]]
    parts += [banded(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(4, 11)]
    full, _ = banded(x, causal=True)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
