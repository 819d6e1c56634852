"""NonLocalBlock: each pairwise function against its formula written out densely, the
identity at initialisation, linear memory without weights, timm's NonLocalAttn, bad input."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import attnlab.vision.non_local as non_local
from attnlab.vision.non_local import PAIRWISE, NonLocalBlock

from . import _suite
from ._suite import ImageCase

FIXTURE = Path(__file__).parent / "fixtures" / "non_local.pt"
CONFIGS = [(p, s) for p in PAIRWISE for s in (False, True)]
B, C, H, W = 2, 6, 5, 7  # all distinct; odd H, W so that subsampling floors


def dense_non_local(block: NonLocalBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, f / C(x))`` as Wang et al. 2018 write them: every (i, j) pair at once."""
    b, c, h, w = x.shape
    pool = (lambda t: F.max_pool2d(t, 2)) if block.subsample else (lambda t: t)

    def rows(t):  # (B, C, H, W) -> (B, HW, C)
        return t.reshape(b, t.shape[1], -1).permute(0, 2, 1)

    g = rows(pool(block.g(x)))
    if block.pairwise == "gaussian":
        theta, phi = rows(x), rows(pool(x))
    else:
        theta, phi = rows(block.theta(x)), rows(pool(block.phi(x)))
    n = phi.shape[1]
    pair = torch.einsum("bic,bjc->bij", theta, phi)
    if block.pairwise in ("embedded-gaussian", "gaussian"):
        f = torch.exp(pair)
        weights = f / f.sum(-1, keepdim=True)
    elif block.pairwise == "dot-product":
        weights = pair / n
    else:  # ReLU(w_f^T [theta_i; phi_j]) on the concatenated pairs
        lq = theta.shape[1]
        cat = torch.cat(
            (theta[:, :, None].expand(-1, -1, n, -1), phi[:, None].expand(-1, lq, -1, -1)), -1
        )
        weights = F.relu(cat @ block.w_f) / n
    y = torch.einsum("bij,bjc->bic", weights, g)
    y = y.permute(0, 2, 1).reshape(b, -1, h, w)
    return block.norm(block.proj(y)) + x, weights


def trained_block(pairwise: str, subsample: bool, dtype=torch.float64, seed=0) -> NonLocalBlock:
    """A block whose BatchNorm gamma is not zero, so that every path is exercised."""
    torch.manual_seed(seed)
    block = NonLocalBlock(C, 4, pairwise=pairwise, subsample=subsample, dtype=dtype)
    with torch.no_grad():
        block.norm.weight.normal_()
        block.norm.bias.normal_()
    return block


def grads(out: torch.Tensor, x: torch.Tensor, block: torch.nn.Module, upstream: torch.Tensor):
    params = [x, *block.parameters()]
    return torch.autograd.grad(out, params, upstream)


@pytest.mark.parametrize(("pairwise", "subsample"), CONFIGS)
def test_each_pairwise_function_equals_its_dense_formula(pairwise, subsample):
    block = trained_block(pairwise, subsample)
    x = (0.5 * torch.randn(B, C, H, W, dtype=torch.float64)).requires_grad_()
    upstream = torch.randn(B, C, H, W, dtype=torch.float64)
    z, weights = block(x, need_weights=True)
    z_ref, weights_ref = dense_non_local(block, x)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, weights_ref, rtol=1e-10, atol=1e-10)
    z_fast, none = block(x)  # the path without weights (fast engines) is the same function
    assert none is None
    for ours, ref in zip(grads(z_fast, x, block, upstream), grads(z_ref, x, block, upstream)):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    ("pairwise", "subsample"), [("embedded-gaussian", True), ("gaussian", False)]
)
@pytest.mark.parametrize(
    ("threads", "height", "width", "groups"), [(4, 6, 4, 4), (3, 5, 4, 2), (2, 5, 3, 1)]
)
def test_queries_split_into_groups_for_threads_give_the_same_function(
    pairwise, subsample, threads, height, width, groups, monkeypatch
):
    # SDPA's CPU backward runs one thread per (batch, head), so a lone image is split
    # into query groups, one per thread where that divides HW: 24 / 4; 20 / 3 does not,
    # so 2 groups; 15 / 2 neither, so none.
    monkeypatch.setattr(non_local, "_threads", lambda: threads)
    block = trained_block(pairwise, subsample)
    x = (0.5 * torch.randn(1, C, height, width, dtype=torch.float64)).requires_grad_()
    query = torch.zeros(1, height * width, 2, requires_grad=True)
    assert non_local._query_groups(query, query, query) == groups
    upstream = torch.randn(1, C, height, width, dtype=torch.float64)
    z_ref, _ = dense_non_local(block, x)
    z, _ = block(x)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    for ours, ref in zip(grads(z, x, block, upstream), grads(z_ref, x, block, upstream)):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        assert non_local._query_groups(query, query, query) == 1  # no backward, no split
    assert non_local._query_groups(query.detach(), query.detach(), query.detach()) == 1


@pytest.mark.parametrize(("pairwise", "subsample"), CONFIGS)
def test_weights_shape_and_softmax_rows_sum_to_one(pairwise, subsample):
    block = trained_block(pairwise, subsample, dtype=torch.float32)
    _, weights = block(torch.randn(B, C, H, W), need_weights=True)
    keys = (H // 2) * (W // 2) if subsample else H * W
    assert weights.shape == (B, H * W, keys)
    if pairwise in ("embedded-gaussian", "gaussian"):
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, H * W))
        assert (weights >= 0).all()


@pytest.mark.parametrize(("pairwise", "subsample"), CONFIGS)
def test_a_new_block_is_the_identity(pairwise, subsample):
    torch.manual_seed(0)
    block = NonLocalBlock(C, pairwise=pairwise, subsample=subsample)
    assert (block.norm.weight == 0).all()
    x = torch.randn(B, C, H, W)
    assert torch.equal(block(x).context, x)
    block.eval()
    assert torch.equal(block(x).context, x)


def test_concatenation_counts_a_zero_pair_as_relu_zero_with_its_gradient():
    # Hand-made ties: a_1 + b_0 = -2 + 2 = 0. ReLU(a + b) = [[3, 0, 1], [0, 0, 0]], N = 3.
    a = torch.tensor([[1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[2.0, -1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    g.requires_grad_(True)
    y, weights = non_local._concatenation(a, b, g, need_weights=True)
    expected = torch.tensor([[[3.0, 0.0, 1.0], [0.0, 0.0, 0.0]]], dtype=torch.float64) / 3
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(y, torch.tensor([[[4.0, 1.0], [0.0, 0.0]]]).double() / 3)
    dense = (F.relu(a[..., None] + b[:, None]) / 3) @ g
    upstream = torch.randn_like(y)
    for ours, ref in zip(
        torch.autograd.grad(y, (a, b, g), upstream), torch.autograd.grad(dense, (a, b, g), upstream)
    ):
        torch.testing.assert_close(ours, ref)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(("pairwise", "subsample"), CONFIGS)
@pytest.mark.parametrize("threads", [1, 2])
def test_no_pairwise_matrix_unless_weights_are_asked_for(pairwise, subsample, threads, monkeypatch):
    monkeypatch.setattr(non_local, "_threads", lambda: threads)
    block = trained_block(pairwise, subsample, dtype=torch.float32)
    x = torch.randn(1, C, 24, 24, requires_grad=True)  # HW = 576 positions
    pairs = 576 * (144 if subsample else 576)
    with LargestTensor() as seen:
        block(x).context.sum().backward()
    assert seen.largest < pairs / 8, (seen.largest, pairs)
    with LargestTensor() as seen:
        block(x, need_weights=True)
    assert seen.largest >= pairs


@pytest.mark.parametrize("pairwise", ["embedded-gaussian", "gaussian"])
def test_softmax_forms_run_on_a_fast_engine_and_math_only_for_weights(pairwise, monkeypatch):
    engines, original = [], non_local.attention

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        engines.append(out.engine)
        return out

    monkeypatch.setattr(non_local, "attention", recording)
    block = trained_block(pairwise, False, dtype=torch.float32)
    block(torch.randn(B, C, H, W))
    block(torch.randn(B, C, H, W), need_weights=True)
    assert engines[0] in ("sdpa", "chunked") and engines[1] == "math"


@pytest.mark.parametrize(("pairwise", "subsample"), CONFIGS)
def test_conformance_checks_for_every_configuration(pairwise, subsample):
    case = ImageCase(
        NonLocalBlock, {"channels": _suite.C, "pairwise": pairwise, "subsample": subsample}
    )
    _suite.check_shape(case)
    _suite.check_factory_kwargs(case, "meta", torch.bfloat16)
    _suite.check_factory_kwargs(case, "cpu", torch.float64)
    for dtype in (torch.bfloat16, torch.float16):
        _suite.check_finite(case, dtype)
    _suite.check_state_dict_and_repr(case)
    _suite.check_channels_last(case)
    _suite.check_gradients(case)


def test_channels_last_input_with_weights_and_trained_norm():
    block = trained_block("concatenation", True, dtype=torch.float64)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    z, w = block(x, need_weights=True)
    z_last, w_last = block(x.contiguous(memory_format=torch.channels_last), need_weights=True)
    torch.testing.assert_close(z_last, z)
    torch.testing.assert_close(w_last, w)
    assert z_last.is_contiguous(memory_format=torch.channels_last)


def test_repr_and_default_width():
    block = NonLocalBlock(7)
    assert block.inter_channels == 3 and NonLocalBlock(1).inter_channels == 1
    assert "pairwise='embedded-gaussian'" in repr(block) and "subsample=False" in repr(block)
    assert not hasattr(NonLocalBlock(4, pairwise="gaussian"), "theta")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: NonLocalBlock(6, pairwise="softmax"),
            ValueError,
            "unknown pairwise function 'softmax'; known: concatenation, dot-product",
        ),
        (lambda: NonLocalBlock(0), ValueError, "channels must be >= 1; got 0"),
        (lambda: NonLocalBlock(6.0), TypeError, "channels must be an int"),
        (lambda: NonLocalBlock(6, 0), ValueError, "inter_channels must be >= 1; got 0"),
        (
            lambda: NonLocalBlock(6, subsample=1),
            TypeError,
            "subsample must be True or False, got 1",
        ),
        (lambda: NonLocalBlock(6, dtype=torch.int64), TypeError, "dtype must be a floating"),
        (lambda: NonLocalBlock.from_timm(3), TypeError, "source must be a timm NonLocalAttn"),
        (
            lambda: NonLocalBlock.from_timm({"t.weight": torch.ones(1)}),
            ValueError,
            "not a NonLocalAttn state_dict: no g.weight",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (
            torch.randn(C, H, W),
            ValueError,
            r"x must be \(B, C, H, W\); got \(6, 5, 7\)",
        ),
        (
            torch.randn(B, C, H, W, 1),
            ValueError,
            r"x must be \(B, C, H, W\); got \(2, 6, 5, 7, 1\)",
        ),
        (
            torch.randn(B, 4, H, W),
            ValueError,
            r"x must be \(B, 6, H, W\), i.e. \(B, C, H, W\) with 6 channels in dim 1; got "
            r"\(2, 4, 5, 7\)",
        ),
        (
            torch.randn(B, C, 1, W),
            ValueError,
            r"subsample=True max-pools 2x2, so it needs H, W >= 2; got \(1, 7\)",
        ),
        (
            torch.randn(B, C, H, W, dtype=torch.float64),
            TypeError,
            "x is float64 but NonLocalBlock's parameters are float32",
        ),
        (torch.ones(B, C, H, W, dtype=torch.int64), TypeError, "x must be a floating tensor"),
        ([[1.0]], TypeError, "x must be a torch.Tensor, got list"),
    ],
)
def test_bad_input_is_a_one_line_error(x, error, match):
    with pytest.raises(error, match=match):
        NonLocalBlock(C, subsample=True)(x)


def _timm_names(name: str) -> str:
    ours = {"theta": "t", "phi": "p", "g": "g", "proj": "z", "norm": "norm"}
    head, rest = name.split(".", 1)
    return f"{ours[head]}.{rest}"


def check_against_timm(block, scale, x, upstream, output, input_grad, param_grads):
    """Our block loaded from timm's state computes timm's output and gradients."""
    x = x.clone().requires_grad_()
    z, _ = block(x)
    torch.testing.assert_close(z, output, rtol=1e-10, atol=1e-10)
    z.backward(upstream)
    torch.testing.assert_close(x.grad, input_grad, rtol=1e-10, atol=1e-10)
    for name, p in block.named_parameters():
        # theta holds timm's t times s, so d/d(theta) is d/d(t) / s.
        factor = scale if name.startswith("theta") else 1.0
        torch.testing.assert_close(p.grad * factor, param_grads[_timm_names(name)])


def test_equals_timm_nonlocalattn_saved_outputs_and_gradients():
    data = torch.load(FIXTURE, weights_only=True)
    block = NonLocalBlock.from_timm(data["state_dict"], use_scale=data["use_scale"])
    assert block.inter_channels == data["rd_channels"] and block.g.weight.dtype == torch.float64
    scale = data["in_channels"] ** -0.5
    check_against_timm(
        block,
        scale,
        data["input"],
        data["upstream"],
        data["output"],
        data["input_grad"],
        data["param_grads"],
    )
    block = NonLocalBlock.from_timm(data["state_dict"], use_scale=data["use_scale"]).eval()
    torch.testing.assert_close(block(data["input"]).context, data["eval_output"])


@pytest.mark.timm
@pytest.mark.parametrize(
    ("channels", "rd_channels", "use_scale", "height", "width"),
    [(8, 4, True, 6, 5), (5, 3, False, 4, 7), (16, 8, True, 3, 3)],
)
def test_equals_live_timm_nonlocalattn(channels, rd_channels, use_scale, height, width):
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(channels)
    theirs = timm_layers.NonLocalAttn(channels, use_scale=use_scale, rd_channels=rd_channels)
    theirs = theirs.double()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.endswith("bias") or name.startswith("norm"):
                p.normal_(0.0, 0.5)
    block = NonLocalBlock.from_timm(theirs)
    x = torch.randn(3, channels, height, width, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn_like(x)
    out = theirs(x)
    out.backward(upstream)
    grads_theirs = {n: p.grad for n, p in theirs.named_parameters()}
    check_against_timm(
        block, theirs.scale, x.detach(), upstream, out.detach(), x.grad, grads_theirs
    )
