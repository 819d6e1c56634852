"""CBAM and its two parts: golden cases, invariances, conformance, bad input, timm's CbamModule."""

import math
from functools import partial

import pytest
import torch

from attnlab.vision.cbam import CBAM, ChannelAttention, SpatialAttention, cbam_state_from_timm

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
from .test_squeeze_excite import assert_matches_record, load_fixture, run_on_timm_weights

CASES = {
    "cbam": ImageCase(CBAM, {"channels": C, "reduction": 2}),
    "cbam-channel": ImageCase(ChannelAttention, {"channels": C, "reduction": 2}),
    "cbam-spatial": ImageCase(SpatialAttention, {"kernel_size": 7}),
}


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# --- what they compute ---


def test_channel_attention_golden():
    # Channel 0 holds -4 and 2: mean -1, max 2. W_1 = [1, 0] reads channel 0, W_2 = [1, 2]:
    # MLP(avg) = W_2 relu(-1) = 0 and MLP(max) = W_2 relu(2) = (2, 4), so M_c = sigmoid(2, 4).
    # (One MLP on avg + max would give sigmoid(1, 2): the ReLU tells the two apart.)
    block = ChannelAttention(2, reduction=2).double()
    with torch.no_grad():
        block.mlp.reduce.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        block.mlp.expand.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    x = torch.tensor([[[[-4.0, 2.0]], [[5.0, 7.0]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    y, m = block(x)
    expected = torch.tensor([sigmoid(2), sigmoid(4)], dtype=torch.float64)
    torch.testing.assert_close(m.flatten(), expected)
    torch.testing.assert_close(y, x * m)
    assert block.mlp.reduce.bias is None  # the paper's MLP has no bias


def test_spatial_attention_golden():
    # k = 1: M_s = sigmoid(a * mean_c + b * max_c + bias); a = 1, b = -1, bias = 0.5.
    # A pixel holding (1, 2, 6): mean 3, max 6, so M_s = sigmoid(-2.5).
    block = SpatialAttention(kernel_size=1).double()
    with torch.no_grad():
        block.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
        block.conv.bias.fill_(0.5)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    x[0, :, 1, 2] = torch.tensor([1.0, 2.0, 6.0])
    y, m = block(x)
    assert m.shape == (2, 1, 4, 5)
    assert m[0, 0, 1, 2].item() == pytest.approx(sigmoid(-2.5))
    torch.testing.assert_close(m[:, 0], torch.sigmoid(x.mean(1) - x.amax(1) + 0.5))
    torch.testing.assert_close(y, x * m)


def test_spatial_kernel_is_centred():
    # A 3x3 kernel with its one tap at the centre, weight 1 on the max map: M_s reads each
    # pixel's own max, so the padding k // 2 neither shifts nor resizes the map.
    block = SpatialAttention(kernel_size=3).double()
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.weight[0, 1, 1, 1] = 1.0
        block.conv.bias.zero_()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(block(x).weights[:, 0], torch.sigmoid(x.amax(1)))


def test_cbam_is_channel_then_spatial():
    torch.manual_seed(0)
    block = CBAM(C, reduction=3, kernel_size=3).double()
    x = torch.randn(2, C, 5, 7, dtype=torch.float64)
    out = block(x)
    refined, channel_weights = block.channel(x)
    expected, spatial_weights = block.spatial(refined)
    torch.testing.assert_close(out.context, expected)
    torch.testing.assert_close(out.weights, spatial_weights)
    torch.testing.assert_close(out.channel_weights, channel_weights)
    assert out.channel_weights.shape == (2, C, 1, 1) and out.weights.shape == (2, 1, 5, 7)


def test_cbam_with_zero_weights_quarters_the_map():
    block = CBAM(4, reduction=2)
    for p in block.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 4, 5, 7)
    out = block(x)
    torch.testing.assert_close(out.context, x / 4)  # M_c = M_s = sigmoid(0) = 1/2
    torch.testing.assert_close(out.weights, torch.full((2, 1, 5, 7), 0.5))


def test_invariances():
    torch.manual_seed(0)
    x = torch.randn(2, C, 5, 7, dtype=torch.float64)
    # Channel attention pools globally: shuffling the pixels leaves M_c unchanged.
    channel = ChannelAttention(C, reduction=2).double()
    pixels = torch.randperm(35)
    shuffled = x.flatten(2)[..., pixels].view_as(x)
    torch.testing.assert_close(channel(shuffled).weights, channel(x).weights)
    # Spatial attention pools over channels: permuting them leaves M_s unchanged.
    spatial = SpatialAttention(kernel_size=3).double()
    channels = torch.randperm(C)
    y, m = spatial(x)
    y2, m2 = spatial(x[:, channels])
    torch.testing.assert_close(m2, m)
    torch.testing.assert_close(y2, y[:, channels])


def test_spatial_attention_takes_any_channel_count():
    block = SpatialAttention()
    for channels in (1, 11):
        assert block(torch.randn(2, channels, 6, 3)).weights.shape == (2, 1, 6, 3)


# --- conformance (the same checks as tests/vision/test_conformance.py) ---


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name):
    case = CASES[name]
    check_shape(case)
    check_channels_last(case)
    check_gradients(case)
    for dtype in (torch.bfloat16, torch.float16):
        check_finite(case, dtype)
    for device in ("cpu", "meta"):
        check_factory_kwargs(case, device, torch.float64)
    if "channels" in case.kwargs:
        check_state_dict_and_repr(case)


def test_spatial_attention_state_dict_round_trip_and_repr():
    # check_state_dict_and_repr also wants the channel count in the repr, which a block
    # that takes any channel count does not have; this is the rest of that check.
    torch.manual_seed(0)
    a = SpatialAttention(kernel_size=5)
    torch.manual_seed(1)
    b = SpatialAttention(kernel_size=5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(b(x).context, a(x).context)
    assert "SpatialAttention" in repr(a) and "kernel_size=(5, 5)" in repr(a)


# --- bad input ---


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: CBAM(4, reduction=8), ValueError, "reduction 8 is larger than channels 4"),
        (lambda: ChannelAttention(4), ValueError, "reduction 16 is larger than channels 4"),
        (lambda: CBAM(8, reduction=2, kernel_size=4), ValueError, "kernel_size must be odd"),
        (lambda: SpatialAttention(0), ValueError, "kernel_size must be >= 1"),
        (lambda: SpatialAttention(True), TypeError, "kernel_size must be an int"),
    ],
)
def test_bad_arguments(build, error, words):
    with pytest.raises(error, match=words):
        build()


@pytest.mark.parametrize("block", [CBAM(6, 2), ChannelAttention(6, 2), SpatialAttention()])
@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.zeros(6, 5, 7), ValueError, r"x must be \(B, C, H, W\); got \(6, 5, 7\)"),
        (torch.zeros(1, 2, 6, 5, 7), ValueError, r"x must be \(B, C, H, W\)"),
        (torch.zeros(2, 6, 5, 7, dtype=torch.float64), TypeError, "call module.to"),
        ("image", TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input(block, x, error, words):
    with pytest.raises(error, match=words):
        block(x)


@pytest.mark.parametrize("block", [CBAM(6, 2), ChannelAttention(6, 2)])
def test_wrong_channel_count(block):
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\).* 6 channels in dim 1; got \(2, 5, "):
        block(torch.zeros(2, 5, 4, 4))


def test_from_timm_needs_the_batch_norm():
    state = dict(load_fixture("cbam")["state_dict"])
    del state["spatial.conv.bn.running_var"]
    with pytest.raises(ValueError, match="no spatial.conv.bn.running_var"):
        CBAM.from_timm(state)


# --- against timm ---


@pytest.mark.parametrize("name", ["cbam", "cbam_bias"])
def test_equals_timm_cbam_module_from_fixture(name):
    record = load_fixture(name)
    ours = CBAM.from_timm(record["state_dict"])
    assert ours.channel.reduction == record["reduction"]
    assert ours.spatial.conv.kernel_size == (record["kernel_size"],) * 2
    assert (ours.channel.mlp.reduce.bias is not None) == record["bias"]
    convert = partial(cbam_state_from_timm, eps=record["eps"])
    assert_matches_record(ours, convert, record)
    torch.testing.assert_close(ours(record["input"]).context, record["output"])


def test_parts_from_timm_compose_to_the_fixture():
    record = load_fixture("cbam_bias")
    parts = {
        name: {
            k.removeprefix(f"{name}."): v
            for k, v in record["state_dict"].items()
            if k.startswith(f"{name}.")
        }
        for name in ("channel", "spatial")
    }
    channel = ChannelAttention.from_timm(parts["channel"])
    spatial = SpatialAttention.from_timm(parts["spatial"])
    out = spatial(channel(record["input"]).context).context
    torch.testing.assert_close(out, record["output"])


def _randomise_batch_norms(module: torch.nn.Module, gen: torch.Generator) -> None:
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        with torch.no_grad():
            for t, (low, high) in zip(
                (bn.weight, bn.bias, bn.running_mean, bn.running_var),
                ((0.5, 1.5), (-1, 1), (-1, 1), (0.5, 2.0)),
            ):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (high - low) + low)


@pytest.mark.timm
def test_equals_timm_live():
    cbam = pytest.importorskip("timm.layers.cbam")
    gen = torch.Generator().manual_seed(0)
    configs = [(8, 2, 7, False), (12, 3, 3, True), (5, 5, 5, False)]
    for channels, reduction, k, bias in configs:
        torch.manual_seed(channels)
        hidden = channels // reduction
        pairs = [
            (CBAM, cbam.CbamModule(channels, rd_channels=hidden, spatial_kernel_size=k,
                                   mlp_bias=bias)),
            (ChannelAttention, cbam.ChannelAttn(channels, rd_channels=hidden, mlp_bias=bias)),
            (SpatialAttention, cbam.SpatialAttn(k)),
        ]  # fmt: skip
        for cls, theirs in pairs:
            theirs = theirs.double()
            _randomise_batch_norms(theirs, gen)
            theirs.eval()
            x = torch.randn(2, channels, 6, 9, generator=gen, dtype=torch.float64)
            x_theirs = x.clone().requires_grad_()
            ref = theirs(x_theirs)
            grad_output = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
            ref.backward(grad_output)
            ours = cls.from_timm(theirs)
            state = theirs.state_dict()
            out, x_grad, grads = run_on_timm_weights(
                ours, cbam_state_from_timm, state, x, grad_output
            )
            torch.testing.assert_close(out.context, ref)
            torch.testing.assert_close(ours(x).context, ref)
            torch.testing.assert_close(x_grad, x_theirs.grad)
            for name, p in theirs.named_parameters():
                torch.testing.assert_close(grads[name], p.grad, msg=f"{cls.__name__} {name}")
    with pytest.raises(ValueError, match="holds Hardsigmoid"):
        CBAM.from_timm(cbam.CbamModule(8, rd_channels=2, gate_layer="hard_sigmoid"))
