"""SqueezeExcite: golden case, invariance, conformance, bad input, and timm's SEModule."""

import math
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from attnlab.vision.squeeze_excite import SqueezeExcite, se_state_from_timm

from ._suite import (
    C,
    ImageCase,
    check_channels_last,
    check_factory_kwargs,
    check_finite,
    check_gradients,
    check_shape,
    check_state_dict_and_repr,
)

FIXTURE = Path(__file__).parent / "fixtures" / "se_cbam.pt"
CASE = ImageCase(SqueezeExcite, {"channels": C, "reduction": 2})


def load_fixture(name: str) -> dict:
    return torch.load(FIXTURE, weights_only=True)[name]


def run_on_timm_weights(module, convert, timm_tensors, x, grad_output):
    """Run ``module`` on ``convert(timm's tensors)``: (output, input grad, grads wrt timm's names).

    The conversion is differentiable, so the gradients land on timm's own tensors and
    compare one to one with timm's parameter gradients (a folded BatchNorm included).
    """
    leaves = {
        k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in timm_tensors.items()
    }
    params = convert(leaves)
    assert set(params) == set(module.state_dict())
    x = x.detach().clone().requires_grad_()
    out = functional_call(module, params, (x,))
    out.context.backward(grad_output)
    return out, x.grad, {k: v.grad for k, v in leaves.items()}


def assert_matches_record(module, convert, record):
    """Output, input gradient and every parameter gradient equal timm's recorded ones."""
    out, x_grad, grads = run_on_timm_weights(
        module, convert, record["state_dict"], record["input"], record["grad_output"]
    )
    torch.testing.assert_close(out.context, record["output"])
    torch.testing.assert_close(x_grad, record["input_grad"])
    assert record["param_grads"], "timm's module has parameters"
    for name, expected in record["param_grads"].items():
        torch.testing.assert_close(grads[name], expected, msg=name)


# --- what it computes ---


def test_golden_excitation():
    # z = (1, 3); hidden relu(z1 + z2) = 4; logits (4, -4): s = (sigmoid(4), sigmoid(-4)).
    se = SqueezeExcite(2, reduction=2).double()
    with torch.no_grad():
        se.mlp.reduce.weight.copy_(torch.tensor([1.0, 1.0]).view(1, 2, 1, 1))
        se.mlp.expand.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        se.mlp.reduce.bias.zero_()
        se.mlp.expand.bias.zero_()
    x = torch.stack([torch.ones(3, 4), torch.full((3, 4), 3.0)]).unsqueeze(0).double()
    y, s = se(x)
    sig = 1 / (1 + math.exp(-4))
    torch.testing.assert_close(s.flatten(), torch.tensor([sig, 1 - sig], dtype=torch.float64))
    torch.testing.assert_close(y, x * s)
    assert s.shape == (1, 2, 1, 1)


def test_zero_weights_halve_the_map():
    se = SqueezeExcite(4, reduction=2)
    for p in se.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(3, 4, 5, 7)
    y, s = se(x)
    torch.testing.assert_close(s, torch.full((3, 4, 1, 1), 0.5))
    torch.testing.assert_close(y, x / 2)


def test_hidden_width_is_channels_floor_divided_by_reduction():
    se = SqueezeExcite(10, reduction=3)
    assert se.mlp.reduce.weight.shape == (3, 10, 1, 1)
    assert se.mlp.expand.weight.shape == (10, 3, 1, 1)
    assert SqueezeExcite(10, reduction=10).mlp.reduce.out_channels == 1
    assert SqueezeExcite(6, bias=False, reduction=2).mlp.reduce.bias is None


def test_excitations_ignore_where_things_are():
    # Global average pooling: shuffling the pixels leaves s unchanged and shuffles y alike.
    torch.manual_seed(0)
    se = SqueezeExcite(C, reduction=2).double()
    x = torch.randn(2, C, 5, 7, dtype=torch.float64)
    perm = torch.randperm(35)
    shuffled = x.flatten(2)[..., perm].view_as(x)
    y, s = se(x)
    y2, s2 = se(shuffled)
    torch.testing.assert_close(s2, s)
    torch.testing.assert_close(y2, y.flatten(2)[..., perm].view_as(y))


# --- conformance (the same checks as tests/vision/test_conformance.py) ---


def test_conformance():
    check_shape(CASE)
    check_state_dict_and_repr(CASE)
    check_channels_last(CASE)
    check_gradients(CASE)
    for dtype in (torch.bfloat16, torch.float16):
        check_finite(CASE, dtype)
    for device in ("cpu", "meta"):
        check_factory_kwargs(CASE, device, torch.float64)


# --- bad input ---


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"channels": 4, "reduction": 8}, ValueError, "reduction 8 is larger than channels 4"),
        ({"channels": 4, "reduction": 0}, ValueError, "reduction must be >= 1"),
        ({"channels": 0}, ValueError, "channels must be >= 1"),
        ({"channels": 4, "reduction": 2.0}, TypeError, "reduction must be an int"),
        (
            {"channels": 4, "reduction": 2, "dtype": torch.int64},
            TypeError,
            "dtype must be a floating",
        ),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        SqueezeExcite(**kwargs)


@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.zeros(6, 5, 7), ValueError, r"x must be \(B, C, H, W\); got \(6, 5, 7\)"),
        (torch.zeros(2, 6, 5, 7, 1), ValueError, r"x must be \(B, C, H, W\)"),
        (torch.zeros(2, 5, 5, 7), ValueError, r"\(B, 6, H, W\).* 6 channels in dim 1; got"),
        (torch.zeros(2, 6, 5, 7, dtype=torch.float64), TypeError, "call module.to"),
        (torch.zeros(2, 6, 5, 7, dtype=torch.uint8), TypeError, "floating tensor"),
        ([[0.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input(x, error, words):
    with pytest.raises(error, match=words):
        SqueezeExcite(6, reduction=2)(x)


def test_from_timm_rejects_what_it_cannot_copy():
    good = {"fc1.weight": torch.zeros(3, 12, 1, 1), "fc2.weight": torch.zeros(12, 3, 1, 1)}
    with pytest.raises(ValueError, match=r"unexpected \['bn.weight'\]"):
        SqueezeExcite.from_timm({**good, "bn.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="no fc1.weight"):
        SqueezeExcite.from_timm({"fc2.weight": good["fc2.weight"]})
    with pytest.raises(ValueError, match="hidden width 5 is not channels // r"):
        SqueezeExcite.from_timm({"fc1.weight": torch.zeros(5, 12, 1, 1)})
    with pytest.raises(TypeError, match="timm module or its state_dict"):
        SqueezeExcite.from_timm([good])
    with pytest.raises(ValueError, match="holds GELU"):
        SqueezeExcite.from_timm(torch.nn.Sequential(torch.nn.GELU()))


# --- against timm ---


def test_equals_timm_se_module_from_fixture():
    record = load_fixture("se")
    ours = SqueezeExcite.from_timm(record["state_dict"])
    assert (ours.channels, ours.reduction) == (record["channels"], record["reduction"])
    assert ours.mlp.reduce.weight.dtype == torch.float64
    assert_matches_record(ours, se_state_from_timm, record)
    # from_timm loaded the same weights the functional run used
    torch.testing.assert_close(ours(record["input"]).context, record["output"])


@pytest.mark.timm
def test_equals_timm_live():
    timm_layers = pytest.importorskip("timm.layers")
    gen = torch.Generator().manual_seed(0)
    for channels, reduction, bias in [(8, 2, True), (13, 4, False), (6, 6, True)]:
        torch.manual_seed(channels)
        theirs = timm_layers.SEModule(channels, rd_channels=channels // reduction, bias=bias)
        theirs = theirs.double()
        x = torch.randn(3, channels, 4, 9, generator=gen, dtype=torch.float64)
        x_theirs = x.clone().requires_grad_()
        ref = theirs(x_theirs)
        grad_output = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
        ref.backward(grad_output)
        ours = SqueezeExcite.from_timm(theirs)
        assert (ours.reduction, ours.mlp.reduce.bias is not None) == (reduction, bias)
        state = dict(theirs.named_parameters())
        out, x_grad, grads = run_on_timm_weights(ours, se_state_from_timm, state, x, grad_output)
        torch.testing.assert_close(out.context, ref)
        torch.testing.assert_close(x_grad, x_theirs.grad)
        for name, p in theirs.named_parameters():
            torch.testing.assert_close(grads[name], p.grad, msg=name)
    # timm's default rounds C/16 up to a multiple of 8: SEModule(64) has 8 hidden units
    assert SqueezeExcite.from_timm(timm_layers.SEModule(64)).reduction == 8
    with pytest.raises(ValueError, match="add_maxpool=False"):
        SqueezeExcite.from_timm(timm_layers.SEModule(8, rd_channels=2, add_maxpool=True))
    with pytest.raises(ValueError, match="holds GELU"):
        SqueezeExcite.from_timm(timm_layers.SEModule(8, rd_channels=2, act_layer=torch.nn.GELU))
