"""The attention gate (Oktay et al. 2018) equals its formula written out, in 2-D and 3-D."""

import pytest
import torch
import torch.nn.functional as F

from attnlab.functional import AttentionOutput
from attnlab.vision.attention_gate import AttentionGate

from . import _suite
from ._suite import ImageCase


def gate_call(module, x):
    """The suite's one-input call: g is x max-pooled by 2 (floor), every other channel."""
    return module(x, F.max_pool2d(x, 2)[:, ::2])


CASE = ImageCase(AttentionGate, {"x_channels": _suite.C, "g_channels": 3}, call=gate_call)


def resample_matrix(n_out, n_in):
    """1-D linear interpolation ``(n_out, n_in)`` of align_corners=False, written out."""
    r = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(src), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        r[i, lo] += 1 - (src - lo)
        r[i, hi] += src - lo
    return r


def gate_formula(gate, x, g):
    """alpha = resample(sigmoid(psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi)); x * alpha."""
    s, dims = gate.stride, gate.dims
    grid = [n // s for n in x.shape[2:]]
    # Patches of x, one per cell of g's grid: (B, C, *grid, *kernel); a trailing row or
    # column that the stride does not cover is dropped, as a stride-s convolution does.
    crop = x[(..., *[slice(0, k * s) for k in grid])]
    if dims == 2:
        b, c = x.shape[:2]
        patches = crop.reshape(b, c, grid[0], s, grid[1], s).permute(0, 1, 2, 4, 3, 5)
        wx = torch.einsum("bcijuv,kcuv->bkij", patches, gate.x_proj.weight)
    else:
        b, c = x.shape[:2]
        patches = crop.reshape(b, c, grid[0], s, grid[1], s, grid[2], s)
        patches = patches.permute(0, 1, 2, 4, 6, 3, 5, 7)
        wx = torch.einsum("bcijlstu,kcstu->bkijl", patches, gate.x_proj.weight)
    flat = (slice(None), slice(None)) + (0,) * dims  # 1x1 kernels as matrices
    wg = torch.einsum("bc...,kc->bk...", g, gate.g_proj.weight[flat])
    wg = wg + gate.g_proj.bias.view(1, -1, *[1] * dims)
    q = torch.einsum("bk...,k->b...", torch.relu(wx + wg), gate.psi.weight[flat][0])
    coarse = torch.sigmoid(q + gate.psi.bias)
    mats = [resample_matrix(n, k) for n, k in zip(x.shape[2:], grid)]
    if dims == 2:
        alpha = torch.einsum("hi,bij,wj->bhw", mats[0], coarse, mats[1])
    else:
        alpha = torch.einsum("di,hj,wk,bijk->bdhw", *mats, coarse)
    alpha = alpha.unsqueeze(1)
    return x * alpha, alpha


def random_gate(*args, **kwargs):
    torch.manual_seed(0)
    gate = AttentionGate(*args, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in gate.parameters():  # biases too, so that b_g and b_psi matter
            p.normal_(0, 0.5)
    return gate


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_the_2d_gate_equals_its_formula(stride):
    gate = random_gate(5, 3, 4, stride=stride)
    x = torch.randn(2, 5, 11, 7, dtype=torch.float64)
    g = torch.randn(2, 3, 11 // stride, 7 // stride, dtype=torch.float64)
    out = gate(x, g)
    want, alpha = gate_formula(gate, x, g)
    assert isinstance(out, AttentionOutput)
    torch.testing.assert_close(out.weights, alpha, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.context, want, rtol=1e-12, atol=1e-12)


def test_the_3d_gate_equals_its_formula():
    gate = random_gate(3, 4, 2, dims=3)
    x = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64)
    g = torch.randn(2, 4, 2, 3, 3, dtype=torch.float64)
    out = gate(x, g)
    want, alpha = gate_formula(gate, x, g)
    assert out.context.shape == (2, 3, 5, 6, 7) and out.weights.shape == (2, 1, 5, 6, 7)
    torch.testing.assert_close(out.weights, alpha, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.context, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims", [2, 3])
def test_alpha_is_in_the_open_unit_interval_and_scales_every_channel_alike(dims):
    gate = random_gate(4, 6, dims=dims)
    spatial = (9, 5, 6)[:dims]
    x = torch.rand(3, 4, *spatial, dtype=torch.float64) + 0.5  # no zeros: divide below
    g = 3 * torch.randn(3, 6, *[n // 2 for n in spatial], dtype=torch.float64)
    out = gate(x, g)
    assert out.weights.shape == (3, 1, *spatial)
    assert ((out.weights > 0) & (out.weights < 1)).all()
    ratio = out.context / x
    torch.testing.assert_close(ratio, out.weights.expand_as(ratio))


def test_a_constant_score_gates_every_pixel_by_its_sigmoid():
    # psi = 0: q = b_psi everywhere, so alpha = sigmoid(b_psi) whatever x and g are.
    gate = random_gate(4, 2)
    with torch.no_grad():
        gate.psi.weight.zero_()
        gate.psi.bias.fill_(0.7)
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    out = gate(x, torch.randn(2, 2, 3, 4, dtype=torch.float64))
    expected = torch.sigmoid(torch.tensor(0.7, dtype=torch.float64))
    torch.testing.assert_close(out.weights, expected.expand(2, 1, 6, 8))
    torch.testing.assert_close(out.context, x * expected)


def test_with_stride_one_alpha_is_not_resampled():
    gate = random_gate(3, 3, stride=1)
    x, g = torch.randn(2, 2, 3, 5, 4, dtype=torch.float64)
    alpha = gate(x, g).weights
    q = gate.psi(torch.relu(gate.x_proj(x) + gate.g_proj(g)))
    torch.testing.assert_close(alpha, torch.sigmoid(q), rtol=0, atol=0)


def test_the_projection_of_the_reference_code_follows_the_gating():
    gate = random_gate(4, 2, project=True).eval()
    x, g = (
        torch.randn(2, 4, 6, 5, dtype=torch.float64),
        torch.randn(2, 2, 3, 2, dtype=torch.float64),
    )
    out = gate(x, g)
    gated, alpha = gate_formula(gate, x, g)
    torch.testing.assert_close(out.weights, alpha)
    torch.testing.assert_close(out.context, gate.out_proj(gated))
    assert "project=True" in repr(gate)


def test_need_weights_false_gives_the_same_context_without_weights():
    gate = random_gate(4, 2)
    x, g = (
        torch.randn(2, 4, 6, 5, dtype=torch.float64),
        torch.randn(2, 2, 3, 2, dtype=torch.float64),
    )
    full, bare = gate(x, g), gate(x, g, need_weights=False)
    assert bare.weights is None
    torch.testing.assert_close(bare.context, full.context, rtol=0, atol=0)


def test_gradcheck_in_float64():
    gate = random_gate(2, 3, 2)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g: gate(x, g).context, (x, g))


def test_default_inter_channels_are_half_the_skip_channels():
    assert AttentionGate(6, 3).inter_channels == 3
    assert AttentionGate(1, 3).inter_channels == 1
    assert AttentionGate(6, 3, 5).psi.in_channels == 5


# The conformance checks of every image block, with g built from x by gate_call.
def test_conformance_shape():
    _suite.check_shape(CASE)
    out, weights = CASE.run(CASE.build(), _suite.image())
    assert weights.shape == (_suite.B, 1, _suite.H, _suite.W)


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_conformance_factory_kwargs(device, dtype):
    _suite.check_factory_kwargs(CASE, device, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_conformance_half_precision(dtype):
    _suite.check_finite(CASE, dtype)


def test_conformance_state_dict_channels_last_and_gradients():
    _suite.check_state_dict_and_repr(CASE)
    _suite.check_channels_last(CASE)
    _suite.check_gradients(CASE)


# Bad input: one line each.
X, G = torch.randn(2, 4, 6, 5), torch.randn(2, 3, 3, 2)


@pytest.mark.parametrize(
    "x, g, error, match",
    [
        (X[0], G, ValueError, r"x must be \(B, C, H, W\); got \(4, 6, 5\)"),
        (X[..., None], G, ValueError, r"x must be \(B, C, H, W\); got \(2, 4, 6, 5, 1\)"),
        (X[:, :3], G, ValueError, r"x must be \(B, 4, H, W\), i.e.* got \(2, 3, 6, 5\)"),
        (X, G[:, :2], ValueError, r"g must be \(B, 3, H, W\), i.e.* got \(2, 2, 3, 2\)"),
        (X, G[:1], ValueError, "g has batch 1 but x has 2; pass one g per x"),
        (
            X,
            F.max_pool2d(X[:, :3], 2, ceil_mode=True),
            ValueError,
            r"g has spatial size \(3, 3\) "
            r"but must be on x's grid after the stride: \(3, 2\) = floor\(\(6, 5\) / 2\)",
        ),
        (X, X[:, :3], ValueError, r"g has spatial size \(6, 5\) but must be"),
        (
            X[..., :1],
            G[..., :0],
            ValueError,
            r"x of spatial size \(6, 1\) is smaller than the "
            "stride 2",
        ),
        (
            X.double(),
            G.double(),
            TypeError,
            "x is float64 but AttentionGate's parameters are float32",
        ),
        (X.tolist(), G, TypeError, "x must be a torch.Tensor, got list"),
    ],
    ids=[
        "3d",
        "5d",
        "x-channels",
        "g-channels",
        "batch",
        "ceil-grid",
        "same-grid",
        "tiny",
        "dtype",
        "list",
    ],
)
def test_bad_input_is_one_clear_line(x, g, error, match):
    with pytest.raises(error, match=match) as info:
        AttentionGate(4, 3)(x, g)
    assert "\n" not in str(info.value)


def test_a_3d_gate_wants_volumes():
    with pytest.raises(ValueError, match=r"x must be \(B, C, D, H, W\); got \(2, 4, 6, 5\)"):
        AttentionGate(4, 3, dims=3)(X, G)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x_channels": 0}, ValueError, "x_channels must be >= 1; got 0"),
        ({"g_channels": 2.0}, TypeError, "g_channels must be an int; got float 2.0"),
        ({"inter_channels": 0}, ValueError, "inter_channels must be >= 1; got 0"),
        ({"stride": 0}, ValueError, "stride must be >= 1; got 0"),
        ({"dims": 1}, ValueError, r"dims must be 2 \(images\) or 3 \(volumes\), got 1"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        AttentionGate(**{"x_channels": 4, "g_channels": 3, **kwargs})
