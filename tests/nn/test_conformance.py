"""One conformance suite over every registered module (attnlab.nn.MECHANISMS)."""

import pytest
import torch

from attnlab.functional import AttentionOutput
from attnlab.nn import (
    MECHANISMS,
    AdditiveAttention,
    AttentionPooling,
    HardAttention,
    HierarchicalAttention,
    LinearAttention,
    LocalAttention,
    LuongAttention,
    MeanAttention,
    MultiHeadAttention,
    SequenceEncoder,
)

B, LQ, LK, DQ, DK = 2, 3, 7, 5, 6


def _decoder_query(m, k, mask, w):
    """Encoder-decoder attention: queries (B, Lq, Dq) over the keys."""
    return m(torch.randn(B, LQ, DQ, dtype=k.dtype), k, mask=mask, need_weights=w)


# name -> (constructor taking factory kwargs, call(module, keys, mask, need_weights)): each
# module called with its natural inputs; every one returns AttentionOutput(context, weights).
CASES = {
    "additive": (lambda **f: AdditiveAttention(DQ, DK, 8, **f), _decoder_query),
    "luong": (lambda **f: LuongAttention(DQ, DK, score="general", **f), _decoder_query),
    "local": (
        lambda **f: LocalAttention(DQ, DK, half_width=2, mode="monotonic", **f),
        _decoder_query,
    ),
    "hard": (
        lambda **f: HardAttention(LuongAttention(DQ, DK, score="general", **f), estimator="gumbel"),
        _decoder_query,
    ),
    # Documents of one sentence: (B, S=1, W, E); the weights are over the words, (B, 1, Lk).
    "hierarchical": (
        lambda **f: HierarchicalAttention(DK, 4, **f),
        lambda m, k, mask, w: m(
            k.unsqueeze(1), mask=None if mask is None else mask.unsqueeze(1), need_weights=w
        ),
    ),
    "sequence-encoder": (
        lambda **f: SequenceEncoder(DK, 4, **f),
        lambda m, k, mask, w: m(k, mask=mask, need_weights=w),
    ),
    # Without biases: a fully masked row's zero context would otherwise become out_proj.bias.
    "multihead": (
        lambda **f: MultiHeadAttention(8, 2, kdim=DK, vdim=DK, kv_heads=1, bias=False, **f),
        lambda m, k, mask, w: m(torch.randn(B, LQ, 8, dtype=k.dtype), k, mask=mask, need_weights=w),
    ),
    "attention-pooling": (
        lambda **f: AttentionPooling(DK, query=True, **f),
        lambda m, k, mask, w: m(k, mask=mask, need_weights=w),
    ),
    # Linear attention never forms weights: it is called without asking for them.
    "linear": (
        lambda **f: LinearAttention(DK, 2, feature_map="favor", num_features=8, bias=False, **f),
        lambda m, k, mask, w: m(torch.randn(B, LQ, DK, dtype=k.dtype), k, mask=mask),
    ),
    "mean": (lambda **f: MeanAttention(DQ, DK, **f), _decoder_query),
}
NO_WEIGHTS = {"linear"}


def test_every_mechanism_has_a_conformance_case():
    assert set(MECHANISMS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("need_weights", [False, True])
def test_every_module_returns_one_attention_output(name, need_weights):
    build, call = CASES[name]
    out = call(build(), torch.randn(B, LK, DK), _mask(), need_weights)
    assert isinstance(out, AttentionOutput) and len(out) == 2
    context, weights = out
    assert out.context is context and out.weights is weights
    assert (weights is not None) == (need_weights and name not in NO_WEIGHTS)


def _mask():
    mask = torch.ones(B, LK, dtype=torch.bool)
    mask[1, 3:] = False
    return mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_keys_get_zero_weight_and_do_not_matter(name):
    build, call = CASES[name]
    torch.manual_seed(0)
    module = build()
    k = torch.randn(B, LK, DK)
    mask = _mask()
    torch.manual_seed(1)
    ctx, w = call(module, k, mask, True)
    if name not in NO_WEIGHTS:
        assert w is not None and (w[1, ..., 3:] == 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    k2 = k.clone()
    k2[1, 3:] = 1e4
    torch.manual_seed(1)
    ctx2, _ = call(module, k2, mask, True)
    if name != "additive" and name != "luong":  # values are the keys here
        torch.testing.assert_close(ctx2, ctx)
    torch.manual_seed(1)
    fast, no_w = call(module, k, mask, False)
    assert no_w is None
    torch.testing.assert_close(fast, ctx)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dtype_kwargs_and_no_nan(name, dtype):
    build, call = CASES[name]
    module = build(dtype=dtype, device="cpu")
    assert all(p.dtype == dtype for p in module.parameters())
    mask = _mask()
    mask[0] = False  # a sequence with nothing to attend to
    ctx, w = call(module, torch.randn(B, LK, DK, dtype=dtype), mask, True)
    assert ctx.dtype == dtype and torch.isfinite(ctx).all()
    assert torch.isfinite(w).all() if name not in NO_WEIGHTS else w is None
    assert (ctx[0] == 0).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip_and_repr(name):
    build, call = CASES[name]
    torch.manual_seed(0)
    a = build()
    torch.manual_seed(1)
    b = build()
    b.load_state_dict(a.state_dict())
    k = torch.randn(B, LK, DK)
    torch.manual_seed(2)
    out_a = call(a, k, None, False)[0]
    torch.manual_seed(2)
    out_b = call(b, k, None, False)[0]
    torch.testing.assert_close(out_a, out_b)
    text = repr(a)
    assert type(a).__name__ in text and str(DK) in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_every_parameter_and_the_keys(name):
    build, call = CASES[name]
    module = build()
    keys = torch.randn(B, LK, DK, requires_grad=True)  # MeanAttention has no parameters
    ctx, _ = call(module, keys, _mask(), False)
    ctx.square().sum().backward()
    assert keys.grad is not None and torch.isfinite(keys.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
