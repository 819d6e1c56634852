"""The residual attention module (Wang et al. 2017): (1 + M) * T, its M * T ablation, its mask."""

import pytest
import torch
import torch.nn.functional as F

from attnlab.functional import AttentionOutput
from attnlab.vision.residual_attention import ResidualAttention, ResidualUnit

from . import _suite
from ._suite import ImageCase

CASES = {
    "depth-1": ImageCase(ResidualAttention, {"channels": _suite.C}),
    "depth-2-ablation": ImageCase(
        ResidualAttention, {"channels": _suite.C, "depth": 2, "residual": False}
    ),
}


def block(**kwargs):
    torch.manual_seed(0)
    module = ResidualAttention(3, dtype=torch.float64, **kwargs)
    with torch.no_grad():  # BN statistics and affine parameters away from 0 and 1
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3), m.running_var.uniform_(0.5, 2)
    return module.eval()


def image(*spatial, batch=2):
    torch.manual_seed(1)
    return torch.randn(batch, 3, *spatial, dtype=torch.float64)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_residual_output_is_one_plus_mask_times_trunk(depth):
    module, x = block(depth=depth), image(9, 7)
    out = module(x)
    assert isinstance(out, AttentionOutput)
    mask, trunk = module.mask(x), module.trunk(x)
    torch.testing.assert_close(out.weights, mask, rtol=0, atol=0)
    torch.testing.assert_close(out.context, (1 + mask) * trunk)


def test_the_ablation_is_mask_times_trunk_and_differs_by_the_trunk():
    with_residual, ablation = block(depth=2), block(depth=2, residual=False)
    ablation.load_state_dict(with_residual.state_dict())
    x = image(8, 11)
    a, b = with_residual(x), ablation(x)
    trunk = with_residual.trunk(x)
    torch.testing.assert_close(b.context, b.weights * trunk)
    torch.testing.assert_close(a.context - b.context, trunk)
    # M in (0, 1): M * T shrinks every feature, (1 + M) * T never does (the paper's point
    # that stacked M * T modules fade the features while residual ones keep them).
    assert (b.context.abs() <= trunk.abs()).all()
    assert (a.context.abs() >= trunk.abs()).all()


@pytest.mark.parametrize("spatial", [(1, 1), (2, 3), (5, 7), (16, 9)])
@pytest.mark.parametrize("depth", [1, 3])
def test_the_mask_is_in_the_open_unit_interval_for_any_size(spatial, depth):
    module, x = block(depth=depth), image(*spatial)
    out = module(x)
    assert out.context.shape == out.weights.shape == x.shape
    assert ((out.weights > 0) & (out.weights < 1)).all()


def test_the_mask_branch_written_out_for_depth_two():
    module, x = block(depth=2), image(11, 6)

    def pool(h):
        return F.max_pool2d(h, 3, stride=2, padding=1)

    def up(h, like):
        return F.interpolate(h, size=like.shape[2:], mode="bilinear", align_corners=False)

    level1 = module.down[0](pool(x))  # 6 x 3
    level2 = module.bottom(module.down[1](pool(level1)))  # 3 x 2
    top = module.up[0](up(level2, level1) + module.skips[0](level1))
    expected = torch.sigmoid(module.head(up(top, x)))
    assert level1.shape[2:] == (6, 3) and level2.shape[2:] == (3, 2)
    torch.testing.assert_close(module.mask(x), expected, rtol=0, atol=0)


def zero_last_convs(units):
    with torch.no_grad():
        for unit in units:
            unit.body[-1].weight.zero_()


def test_residual_units_start_as_identity_when_their_last_conv_is_zero():
    unit = ResidualUnit(3, dtype=torch.float64)
    x = image(4, 5)
    assert not torch.equal(unit(x), x)
    zero_last_convs([unit])
    torch.testing.assert_close(unit(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("residual, scale", [(True, 1.5), (False, 0.5)])
def test_an_identity_trunk_and_a_flat_mask_scale_the_input(residual, scale):
    # T = x when every trunk unit adds zero; M = sigmoid(0) = 1/2 when the head's last
    # convolution is zero: (1 + M) * T = 1.5 x, M * T = 0.5 x.
    module, x = block(residual=residual), image(6, 5)
    zero_last_convs(module.trunk)
    with torch.no_grad():
        module.head[-1].weight.zero_(), module.head[-1].bias.zero_()
    out = module(x)
    torch.testing.assert_close(out.weights, torch.full_like(x, 0.5))
    torch.testing.assert_close(out.context, scale * x)


def test_trunk_units_and_need_weights():
    module = ResidualAttention(3, trunk_units=0, dtype=torch.float64).eval()
    x = image(5, 4)
    torch.testing.assert_close(module.trunk(x), x)
    full, bare = module(x), module(x, need_weights=False)
    assert bare.weights is None
    torch.testing.assert_close(bare.context, full.context, rtol=0, atol=0)
    assert len(ResidualAttention(3).trunk) == 2  # the paper's t = 2


def test_structure_per_depth():
    module = ResidualAttention(4, depth=3)
    assert (len(module.down), len(module.skips), len(module.up)) == (3, 2, 2)
    assert "channels=4, depth=3, residual=True" in repr(module)


# The conformance checks of every image block.
@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name):
    case = CASES[name]
    _suite.check_shape(case)
    for device in ("cpu", "meta"):
        for dtype in (torch.float64, torch.bfloat16):
            _suite.check_factory_kwargs(case, device, dtype)
    for dtype in (torch.bfloat16, torch.float16):
        _suite.check_finite(case, dtype)
    _suite.check_state_dict_and_repr(case)
    _suite.check_channels_last(case)
    _suite.check_gradients(case)


# Bad input: one line each.
@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(3, 5, 4), ValueError, r"x must be \(B, C, H, W\); got \(3, 5, 4\)"),
        (
            torch.randn(2, 4, 5, 4),
            ValueError,
            r"x must be \(B, 3, H, W\), i.e.* got \(2, 4, 5, 4\)",
        ),
        (torch.randn(2, 3, 5, 4).double(), TypeError, "x is float64 but ResidualAttention's"),
        (torch.randint(0, 3, (2, 3, 5, 4)), TypeError, "x must be a floating tensor"),
    ],
)
def test_bad_input_is_one_clear_line(x, error, match):
    with pytest.raises(error, match=match) as info:
        ResidualAttention(3)(x)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"channels": 0}, ValueError, "channels must be >= 1; got 0"),
        ({"depth": 0}, ValueError, "depth must be >= 1; got 0"),
        ({"residual": "yes"}, TypeError, "residual must be a bool, got str 'yes'"),
        ({"trunk_units": -1}, ValueError, "trunk_units must be >= 0; got -1"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResidualAttention(**{"channels": 3, **kwargs})
