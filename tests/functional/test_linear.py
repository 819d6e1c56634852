"""Linear attention (elu + 1) and Performer FAVOR+ against materialising references."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.functional.linear import (
    draw_orthogonal_features,
    kernelized_attention,
    linear_attention,
)

from ._probes import LargestTensor

B, H, L, LQ, D, DV = 2, 3, 12, 9, 5, 7  # all distinct, so a transposition cannot hide


def naive(phi_q, phi_k, v, mask=None, causal=False):
    """phi(Q) phi(K)^T materialised, masked, row-normalised (0/0 -> 0), times V."""
    w = phi_q.double() @ phi_k.double().transpose(-1, -2)
    if mask is not None:
        w = w * mask[:, None, None, :].double()
    if causal:
        w = w.tril()
    den = w.sum(-1, keepdim=True)
    return w @ v.double() / torch.where(den > 0, den, torch.ones_like(den))


def naive_favor(x, w, is_query):
    """The textbook FAVOR+ features, without any stabilising shift."""
    x = x.double() * x.shape[-1] ** -0.25
    return torch.exp(x @ w.double().T - x.square().sum(-1, keepdim=True) / 2) / math.sqrt(
        w.shape[0]
    )


def elu1(x):
    return F.elu(x) + 1


def inputs(lq=L, lk=L, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    shapes = ((B, H, lq, D), (B, H, lk, D), (B, H, lk, DV))
    return tuple(torch.randn(*s, generator=g, dtype=dtype).requires_grad_(grad) for s in shapes)


def key_mask(lk=L):
    mask = torch.ones(B, lk, dtype=torch.bool)
    mask[1, 2] = mask[1, 7:] = False
    mask[0, 0] = False
    return mask


def projection(m=13, dtype=torch.float32, seed=1):
    return draw_orthogonal_features(
        m, D, generator=torch.Generator().manual_seed(seed), dtype=dtype
    )


CHUNKS = [3, 5, 64]  # divides L, does not divide L, longer than L


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("masked", [False, True])
def test_elu_matches_naive(causal, chunk, masked):
    q, k, v = inputs(lq=L if causal else LQ)
    mask = key_mask() if masked else None
    out = linear_attention(q, k, v, mask=mask, causal=causal, chunk_size=chunk)
    assert out.shape == (B, H, q.shape[2], DV) and out.dtype == torch.float32
    expected = naive(elu1(q), elu1(k), v, mask, causal)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [3, 5])
def test_elu_gradients_match_naive(causal, chunk):
    q, k, v = inputs(lq=L if causal else LQ, dtype=torch.float64, grad=True)
    mask = key_mask()
    dout = torch.randn(B, H, q.shape[2], DV, dtype=torch.float64)
    ours = torch.autograd.grad(
        linear_attention(q, k, v, mask=mask, causal=causal, chunk_size=chunk), (q, k, v), dout
    )
    theirs = torch.autograd.grad(naive(elu1(q), elu1(k), v, mask, causal), (q, k, v), dout)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [3, 5, 64])
@pytest.mark.parametrize("masked", [False, True])
def test_favor_matches_its_naive_reference(causal, chunk, masked):
    w = projection(dtype=torch.float64)
    q, k, v = inputs(lq=L if causal else LQ, dtype=torch.float64, grad=True)
    mask = key_mask() if masked else None
    out = linear_attention(
        q, k, v, feature_map="favor", projection=w, mask=mask, causal=causal, chunk_size=chunk
    )
    expected = naive(naive_favor(q, w, True), naive_favor(k, w, False), v, mask, causal)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    dout = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), dout)
    theirs = torch.autograd.grad(expected, (q, k, v), dout)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    # and in float32, to the float32 tolerance of the task
    q32, k32, v32 = (t.detach().float() for t in (q, k, v))
    out32 = linear_attention(
        q32, k32, v32, feature_map="favor", projection=w.float(), mask=mask, causal=causal
    )
    torch.testing.assert_close(out32.double(), expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_float64(feature_map, causal):
    g = torch.Generator().manual_seed(3)
    q, k, v = (
        torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
        for _ in range(3)
    )
    mask = torch.tensor([[True, False, True, True, True]])
    w = draw_orthogonal_features(4, 3, generator=g, dtype=torch.float64)

    def fn(q, k, v):
        return linear_attention(
            q, k, v, feature_map=feature_map, projection=w, mask=mask, causal=causal, chunk_size=2
        )

    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_favor_error_against_softmax_falls_with_more_features():
    # Inputs at std 0.5: the estimator's variance grows like exp(|q' + k'|^2), and with
    # N(0, 1) inputs small feature counts are far from the 1/sqrt(m) regime.
    def error(m):
        errs = []
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            q, k, v = (torch.randn(1, 2, 64, 16, generator=g) for _ in range(3))
            q, k = q / 2, k / 2
            w = draw_orthogonal_features(m, 16, generator=g)
            out = linear_attention(q, k, v, feature_map="favor", projection=w)
            exact = F.scaled_dot_product_attention(q, k, v)
            errs.append(((out - exact).norm() / exact.norm()).item())
        return sum(errs) / len(errs)

    e16, e64, e256 = error(16), error(64), error(256)
    assert e64 < 0.8 * e16 and e256 < 0.8 * e64, (e16, e64, e256)
    assert e256 < 0.5 * e16


def test_orthogonal_features_are_orthogonal_blocks_and_seeded():
    g = torch.Generator().manual_seed(0)
    w = draw_orthogonal_features(11, 4, generator=g, dtype=torch.float64)
    assert w.shape == (11, 4) and w.dtype == torch.float64
    for start in (0, 4, 8):
        block = w[start : start + 4]
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.diag(gram.diagonal()), atol=1e-12, rtol=0)
    again = draw_orthogonal_features(11, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, w.float())
    # Row norms follow chi(d), as for Gaussian rows: mean of |w|^2 is d.
    big = draw_orthogonal_features(4000, 4, generator=g)
    assert abs(big.square().sum(-1).mean().item() - 4) < 0.3


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_no_visible_key_gives_zeros_with_finite_gradients(feature_map, causal):
    q, k, v = inputs(grad=True)
    mask = key_mask()
    mask[0] = False  # no key at all in batch row 0
    mask[1, :4] = False  # left padding: the first causal queries of row 1 see nothing
    out = linear_attention(
        q, k, v, feature_map=feature_map, projection=projection(), mask=mask, causal=causal
    )
    assert torch.isfinite(out).all() and (out[0] == 0).all()
    if causal:
        assert (out[1, :, :4] == 0).all() and (out[1, :, 4:] != 0).any()
    out.square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_masked_and_future_keys_do_not_matter(feature_map, causal):
    q, k, v = inputs()
    mask, w = key_mask(), projection()
    out = linear_attention(
        q, k, v, feature_map=feature_map, projection=w, mask=mask, causal=causal, chunk_size=5
    )
    k2, v2 = k.clone(), v.clone()
    k2.transpose(1, 2)[~mask] = 1e4
    v2.transpose(1, 2)[~mask] = -1e4
    if causal:  # positions after 6 are the future of queries 0..6
        k2[:, :, 7:] = 3.0
        v2[:, :, 7:] = 5.0
    out2 = linear_attention(
        q, k2, v2, feature_map=feature_map, projection=w, mask=mask, causal=causal, chunk_size=5
    )
    rows = slice(0, 7) if causal else slice(None)
    torch.testing.assert_close(out2[:, :, rows], out[:, :, rows])


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite_and_close_to_float32(feature_map, dtype):
    q, k, v = inputs()
    mask, w = key_mask(), projection()
    mask[0] = False
    kwargs = {"feature_map": feature_map, "mask": mask, "causal": True, "chunk_size": 5}
    low = linear_attention(q.to(dtype), k.to(dtype), v.to(dtype), projection=w.to(dtype), **kwargs)
    ref = linear_attention(q, k, v, projection=w, **kwargs)
    assert low.dtype == dtype and torch.isfinite(low).all() and (low[0] == 0).all()
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(low.float(), ref, atol=tol, rtol=tol)


def test_kernelized_core_takes_any_feature_map():
    q, k, v = inputs()
    phi_q, phi_k = F.relu(q) + 0.1, F.relu(k) + 0.1
    mask = key_mask()
    out = kernelized_attention(phi_q, phi_k, v, mask=mask, causal=True, chunk_size=5)
    expected = naive(phi_q, phi_k, v, mask, True)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_four_dim_key_mask_per_head():
    q, k, v = inputs()
    mask = torch.rand(B, H, 1, L, generator=torch.Generator().manual_seed(0)) > 0.3
    out = linear_attention(q, k, v, mask=mask)
    w = elu1(q).double() @ elu1(k).double().transpose(-1, -2) * mask.double()
    expected = w @ v.double() / w.sum(-1, keepdim=True)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def _saved_numel(length, feature_map, chunk=16, d=16):
    """Largest tensor built and total size of what autograd saves, one forward+backward."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, length, d, generator=g, requires_grad=True) for _ in range(3))
    saved = []
    with LargestTensor() as mode:
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t
        ):
            out = linear_attention(
                q,
                k,
                v,
                feature_map=feature_map,
                projection=draw_orthogonal_features(d, d, generator=g),
                causal=True,
                chunk_size=chunk,
            )
        out.sum().backward()
    return mode.largest, sum(saved)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_causal_memory_is_linear_in_length(feature_map):
    d, n = 16, 512
    largest, saved = _saved_numel(n, feature_map, d=d)
    # never an (L, D, Dv) tensor, never an (L, L) one: the biggest is ~ L (D + 1) or L C
    assert largest < n * d * d / 8 and largest < n * n / 16
    _, saved_twice = _saved_numel(2 * n, feature_map, d=d)
    assert saved_twice < 2.05 * saved


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"q": torch.zeros(2, 3, 4)}, ValueError, r"q must be \(B, H, L, D\)"),
        ({"k": "keys"}, TypeError, "k must be a torch.Tensor"),
        ({"v": torch.zeros(B, H, L, DV, dtype=torch.long)}, TypeError, "floating"),
        ({"v": torch.zeros(B, H, L, DV, dtype=torch.float64)}, TypeError, "share a dtype"),
        ({"k": torch.zeros(B, H, L, D + 1)}, ValueError, "shapes do not match"),
        ({"v": torch.zeros(B, H, L + 1, DV)}, ValueError, "shapes do not match"),
        ({"feature_map": "relu"}, ValueError, "feature_map must be one of"),
        ({"feature_map": "favor"}, ValueError, "needs projection"),
        ({"feature_map": "favor", "projection": torch.zeros(4, D + 1)}, ValueError, "projection"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1"),
        ({"eps": 0.0}, ValueError, "eps must be > 0"),
        ({"mask": torch.ones(B, L)}, TypeError, "boolean"),
        ({"mask": torch.ones(B, L, L, dtype=torch.bool)}, ValueError, "key masks only"),
        ({"mask": torch.ones(B, H, 2, L, dtype=torch.bool)}, ValueError, "key masks only"),
        ({"q": torch.zeros(B, H, 4, D), "causal": True}, ValueError, "as many queries as keys"),
    ],
)
def test_clear_errors(kwargs, error, match):
    q, k, v = inputs()
    args = {"q": q, "k": k, "v": v, **kwargs}
    with pytest.raises(error, match=match):
        linear_attention(**args)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_orthogonal_features_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="num_features must be an int >= 1"):
        draw_orthogonal_features(bad, 4)
