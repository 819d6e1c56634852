import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import functional as AF
from attnlab.functional import attention
from attnlab.functional.reference import reference_attention

from ._cases import DQ, make_cases

B, H, LQ, LK, DV = 2, 3, 5, 7, 13  # all distinct, so a transposition cannot hide
CASES = make_cases()
ENGINES_FOR = {
    name: ("math", "chunked")
    + (("sdpa",) if score.dot_scale(torch.zeros(1, DQ)) is not None else ())
    for name, (score, _) in CASES.items()
}


def _inputs(dtype=torch.float64, seed=1, lq=LQ, lk=LK):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, lq, DQ, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(B, H, lk, DQ, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(B, H, lk, DV, generator=g, dtype=dtype, requires_grad=True)
    mask = torch.rand(B, 1, lq, lk, generator=g) > 0.4
    mask[0, 0, 1] = False  # one query row with nothing to attend to
    bias = torch.randn(1, H, lq, lk, generator=g, dtype=dtype, requires_grad=True)
    return q, k, v, mask, bias


def test_golden_weights_by_hand():
    # q = [0, sqrt 2], k = I, scale 1/sqrt 2: logits [0, 1] -> weights [1, e] / (1 + e).
    q = torch.tensor([[[[0.0, math.sqrt(2.0)]]]])
    k = torch.eye(2)[None, None]
    v = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
    expected = torch.tensor([1.0, math.e]) / (1.0 + math.e)
    for backend in AF.ENGINES:
        out, w = attention(q, k, v, need_weights=True, backend=backend)
        torch.testing.assert_close(w[0, 0, 0], expected)
        torch.testing.assert_close(out[0, 0, 0], torch.tensor([expected[0], 0.0, expected[1]]))


def test_golden_mask_and_bias_by_hand():
    q = torch.zeros(1, 1, 1, 2)
    k = torch.zeros(1, 1, 3, 2)
    v = torch.tensor([[[[1.0], [2.0], [4.0]]]])
    bias = torch.tensor([math.log(1.0), math.log(3.0), 5.0]).view(1, 1, 1, 3)
    mask = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    for backend in AF.ENGINES:
        out, w = attention(q, k, v, mask=mask, bias=bias, need_weights=True, backend=backend)
        torch.testing.assert_close(w.flatten(), torch.tensor([0.25, 0.75, 0.0]))
        torch.testing.assert_close(out.flatten(), torch.tensor([0.25 + 1.5]))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("causal", [False, "upper_left", "lower_right"])
def test_every_engine_matches_reference(name, causal, small_blocks):
    score, ref_score = CASES[name]
    q, k, v, mask, bias = _inputs()
    full_mask = mask
    if causal:
        off = 0 if causal == "upper_left" else LK - LQ
        full_mask = mask & (torch.arange(LK)[None] <= torch.arange(LQ)[:, None] + off)
    ref_out, ref_w = reference_attention(q, k, v, ref_score, mask=full_mask, bias=bias)
    grads = {}
    for backend in ENGINES_FOR[name]:
        res = attention(
            q,
            k,
            v,
            score=score,
            mask=mask,
            bias=bias,
            causal=causal,
            need_weights=True,
            backend=backend,
        )
        assert res.engine == backend
        torch.testing.assert_close(res.output, ref_out)
        torch.testing.assert_close(res.weights, ref_w)
        leaves = [q, k, v, bias, *score.tensors()]
        grads[backend] = torch.autograd.grad(res.output.square().sum(), leaves, allow_unused=True)
    for backend, g in grads.items():
        for a, b in zip(grads["math"], g):
            if a is not None:
                torch.testing.assert_close(b, a)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_chunked(name, small_blocks):
    score, _ = CASES[name]
    q, k, v, mask, bias = _inputs(lq=3, lk=6)

    def f(q, k, v, bias):
        return attention(q, k, v, score=score, mask=mask, bias=bias, backend="chunked").output

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


def test_matches_torch_sdpa_outputs_and_gradients():
    q, k, v, mask, _ = _inputs(dtype=torch.float32)
    k2 = k.detach()[..., :DQ].clone().requires_grad_()
    ours = attention(q, k2, v, mask=mask, backend="chunked").output
    theirs = F.scaled_dot_product_attention(q, k2, v, attn_mask=mask)
    torch.testing.assert_close(ours, theirs)
    g1 = torch.autograd.grad(ours.sum(), [q, k2, v])
    g2 = torch.autograd.grad(theirs.sum(), [q, k2, v])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    e, heads, lq, lk = 12, 3, 5, 7
    mha = torch.nn.MultiheadAttention(e, heads, batch_first=True)
    x = torch.randn(2, lq, e, requires_grad=True)
    mem = torch.randn(2, lk, e, requires_grad=True)
    key_padding = torch.tensor([[False] * lk, [False] * 4 + [True] * 3])  # True = ignore
    theirs, their_w = mha(x, mem, mem, key_padding_mask=key_padding, average_attn_weights=False)
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)

    def heads_of(t):
        return t.unflatten(-1, (heads, e // heads)).transpose(1, 2)

    mask = (~key_padding)[:, None, None, :]
    for backend in AF.ENGINES:
        out, w = attention(
            heads_of(F.linear(x, wq, bq)),
            heads_of(F.linear(mem, wk, bk)),
            heads_of(F.linear(mem, wv, bv)),
            mask=mask,
            need_weights=True,
            backend=backend,
        )
        ours = mha.out_proj(out.transpose(1, 2).flatten(-2))
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(w, their_w)
        ga = torch.autograd.grad(ours.square().sum(), [x, mem])
        gb = torch.autograd.grad(theirs.square().sum(), [x, mem], retain_graph=True)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("backend", AF.ENGINES)
def test_fully_masked_rows_are_zero_with_finite_gradients(dtype, backend, small_blocks):
    q, k, v, _, bias = _inputs(dtype=dtype)
    mask = torch.ones(B, H, LQ, LK, dtype=torch.bool)
    mask[:, :, 2] = False
    mask[1] = False
    res = attention(q, k, v, mask=mask, bias=bias, need_weights=True, backend=backend)
    assert torch.isfinite(res.output).all()
    assert (res.output[:, :, 2] == 0).all() and (res.output[1] == 0).all()
    assert (res.weights[:, :, 2] == 0).all() and (res.weights[1] == 0).all()
    grads = torch.autograd.grad(res.output.float().sum(), [q, k, v, bias])
    assert all(torch.isfinite(g).all() for g in grads)
    assert (grads[0][:, :, 2] == 0).all()


@pytest.mark.parametrize("backend", AF.ENGINES)
def test_bfloat16_close_to_float32(backend):
    q, k, v, mask, bias = _inputs(dtype=torch.float32)
    ref = attention(q, k, v, mask=mask, bias=bias, backend="math").output
    low = attention(
        *(t.bfloat16() for t in (q, k, v)), mask=mask, bias=bias.bfloat16(), backend=backend
    )
    assert low.output.dtype == torch.bfloat16
    torch.testing.assert_close(low.output.float(), ref, atol=3e-2, rtol=3e-2)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    lq=st.integers(1, 9),
    lk=st.integers(1, 9),
    d=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    causal=st.sampled_from([False, True]),
    block=st.integers(1, 5),
)
def test_hypothesis_engines_equal_reference(b, h, lq, lk, d, seed, causal, block):
    import attnlab.functional.chunked as chunked

    old = chunked.DOT_BLOCK
    chunked.DOT_BLOCK = block
    try:
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for n in (lq, lk, lk))
        mask = torch.rand(b, 1, lq, lk, generator=g) > 0.3
        full = mask & (torch.arange(lk) <= torch.arange(lq)[:, None]) if causal else mask
        ref, ref_w = reference_attention(q, k, v, lambda qi, K: K @ qi / math.sqrt(d), mask=full)
        for backend in AF.ENGINES:
            out, w = attention(
                q, k, v, mask=mask, causal=causal, backend=backend, need_weights=True
            )
            torch.testing.assert_close(out, ref)
            torch.testing.assert_close(w, ref_w)
    finally:
        chunked.DOT_BLOCK = old


def test_engine_selection_and_reporting():
    q, k, v, mask, _ = _inputs(dtype=torch.float32)
    assert attention(q, k, v).engine == "sdpa"
    assert attention(q, k, v, need_weights=True).engine == "math"
    score = make_cases(torch.float32)["additive"][0]
    assert attention(q, k, v, score=score).engine == "chunked"
    assert attention(q, k, v, backend="chunked").engine == "chunked"
    assert attention(q, k, v).weights is None


def test_three_dim_inputs_have_no_head_dim():
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3)
    out, w = attention(q, k, v, need_weights=True)
    assert out.shape == (2, 5, 3) and w.shape == (2, 5, 7)


def test_chunked_dropout_is_unbiased_and_has_consistent_gradients(small_blocks):
    from attnlab.functional._problem import Problem
    from attnlab.functional.chunked import chunked_attention

    q, k, v, mask, bias = _inputs(lq=3, lk=6)
    plain = attention(q, k, v, mask=mask, bias=bias, backend="math").output

    def run(q, k, v, bias, seed=7, p=0.3):
        prob = Problem(q, k, v, AF.scaled_dot(), 1 / math.sqrt(DQ), mask, bias, None, p)
        return chunked_attention(prob, seed=seed)

    assert torch.autograd.gradcheck(run, (q, k, v, bias))
    assert not torch.equal(run(q, k, v, bias), plain)
    with torch.no_grad():
        samples = torch.stack([run(q, k, v, bias, seed=s) for s in range(400)])
    stderr = samples.std(0) / math.sqrt(len(samples))
    assert ((samples.mean(0) - plain).abs() <= 5 * stderr + 1e-9).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mask": torch.ones(2, 3, 5, 7)}, TypeError, "boolean"),
        ({"mask": torch.ones(2, 3, 5, 6, dtype=torch.bool)}, ValueError, "broadcast"),
        ({"bias": torch.ones(5, 7, dtype=torch.bool)}, TypeError, "floating"),
        ({"backend": "fast"}, ValueError, "backend"),
        ({"dropout_p": 1.5}, ValueError, "dropout_p"),
        ({"dropout_p": "0.1"}, TypeError, "dropout_p must be a number"),
        ({"dropout_p": float("nan")}, ValueError, "dropout_p"),
        ({"mask": [[True]]}, TypeError, "mask must be a torch.Tensor or None, got list"),
        ({"bias": 0.5}, TypeError, "bias must be a torch.Tensor or None, got float"),
        ({"causal": "left"}, ValueError, "causal"),
    ],
)
def test_bad_arguments_fail_with_one_clear_line(kwargs, error, words):
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    with pytest.raises(error, match=words) as info:
        attention(q, k, v, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_tensors_fail_with_one_clear_line():
    q = torch.randn(2, 3, 5, 4)
    with pytest.raises(TypeError, match="q must be a torch.Tensor, got list"):
        attention(q.tolist(), q, q)
    with pytest.raises(TypeError, match="v must be a torch.Tensor, got str"):
        attention(q, q, "v")
    with pytest.raises(ValueError, match="shapes do not match"):
        attention(q, torch.randn(2, 3, 7, 4), torch.randn(2, 3, 6, 4))
    with pytest.raises(TypeError, match="share a dtype"):
        attention(q, q.double(), q)
    with pytest.raises(TypeError, match="floating"):
        attention(q.long(), q.long(), q.long())
    with pytest.raises(ValueError, match="sdpa"):
        qa = torch.randn(2, 3, 5, DQ)
        attention(qa, qa, qa, score=make_cases(torch.float32)["additive"][0], backend="sdpa")
    with pytest.raises(ValueError, match="one size"):
        attention(q, torch.randn(2, 3, 5, 6), q)


def test_attention_output_is_a_pair_with_engine_and_named_extras():
    context, weights, log_prob = torch.ones(2, 3), torch.full((2, 4), 0.25), torch.zeros(2)
    out = AF.AttentionOutput(context, weights, "sdpa", log_prob=log_prob)
    assert len(out) == 2 and tuple(out) == (context, weights)
    assert out.context is out.output is context and out.weights is weights
    assert out.engine == "sdpa" and out.log_prob is log_prob
    assert out.extras == {"log_prob": log_prob} and out.get("entropy", 7) == 7
    with pytest.raises(AttributeError, match="no 'entropy'; its extras: log_prob"):
        out.entropy
    swapped = out.replace(weights=None, entropy=log_prob)
    assert swapped.weights is None and swapped.entropy is log_prob
    assert swapped.log_prob is log_prob and swapped.engine == "sdpa" and out.weights is weights
    with pytest.raises(ValueError, match="extras may not be named"):
        AF.AttentionOutput(context, None, "sdpa", output=weights)
    import copy
    import pickle

    again = pickle.loads(pickle.dumps(out))
    assert torch.equal(again.log_prob, log_prob) and again.engine == "sdpa"
    assert copy.copy(out).extras.keys() == {"log_prob"}
    assert "log_prob=" in repr(out)
