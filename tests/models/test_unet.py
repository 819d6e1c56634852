"""U-Net and Attention U-Net: shapes for any size, gates on the skips, capture, a quick fit."""

import functools

import pytest
import torch
from torch import nn

from attnlab.functional import AttentionOutput
from attnlab.interpret.capture import attention_modules, capture
from attnlab.models.unet import UNet
from attnlab.vision.attention_gate import AttentionGate

WIDTHS = (4, 8, 16)


def net(gate=None, **kwargs):
    torch.manual_seed(0)
    return UNet(2, 3, widths=kwargs.pop("widths", WIDTHS), gate=gate, **kwargs)


@pytest.mark.parametrize("gate", [None, AttentionGate], ids=["plain", "attention"])
@pytest.mark.parametrize("size", [(4, 4), (5, 7), (13, 10), (16, 16), (33, 6)])
def test_logits_per_pixel_for_any_size_from_the_smallest(gate, size):
    images = torch.randn(2, 2, *size)
    assert net(gate)(images).shape == (2, 3, *size)


@pytest.mark.parametrize("gate", [None, AttentionGate], ids=["plain", "attention"])
def test_images_smaller_than_the_levels_allow_are_one_line(gate):
    with pytest.raises(
        ValueError,
        match="images of 3x7 are too small for 3 levels with a 2x2 "
        "pool between them; give at least 4x4 pixels or fewer widths",
    ):
        net(gate)(torch.randn(2, 2, 3, 7))
    assert net(gate, widths=(4, 8))(torch.randn(2, 2, 3, 2)).shape == (2, 3, 3, 2)


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.randn(2, 8, 8), ValueError, r"images must be \(B, C, H, W\); got \(2, 8, 8\)"),
        (torch.randn(2, 1, 8, 8), ValueError, r"images must be \(B, 2, H, W\), i.e.* got"),
        (torch.randn(2, 2, 8, 8).double(), TypeError, "images is float64 but UNet's parameters"),
    ],
)
def test_bad_images_are_one_clear_line(images, error, match):
    with pytest.raises(error, match=match):
        net(AttentionGate)(images)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"widths": (8,)}, TypeError, "widths must be a sequence of at least two ints"),
        ({"widths": "abc"}, TypeError, "widths must be a sequence of at least two ints"),
        ({"widths": (4, 0)}, ValueError, r"widths\[1\] must be >= 1; got 0"),
        (
            {"gate": AttentionGate(4, 8)},
            TypeError,
            "gate must be an attention gate class or "
            "factory, called as gate\\(x_channels, g_channels\\)",
        ),
        ({"gate": lambda x, g, **_: "gate"}, TypeError, "gate must build an nn.Module, got str"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        net(**kwargs)


def test_a_gate_that_does_not_fit_the_scales_says_so():
    model = net(functools.partial(AttentionGate, stride=4))
    with pytest.raises(ValueError, match=r"g has spatial size \(4, 4\) but must be on x's grid"):
        model(torch.randn(2, 2, 16, 16))


def test_one_gate_per_skip_takes_the_skip_and_the_coarser_decoder_channels():
    model = net(functools.partial(AttentionGate, inter_channels=2))
    assert [(g.x_channels, g.g_channels, g.inter_channels) for g in model.gates] == [
        (4, 8, 2),
        (8, 16, 2),
    ]
    assert net().gates is None
    assert "gated=True" in repr(model) and "widths=(4, 8, 16)" in repr(model)


def test_the_attention_unet_is_the_plain_unet_of_the_same_widths_plus_its_gates():
    plain, gated = net(), net(AttentionGate)
    shapes = {k: v.shape for k, v in gated.state_dict().items() if not k.startswith("gates.")}
    assert shapes == {k: v.shape for k, v in plain.state_dict().items()}
    extra = sum(p.numel() for p in gated.gates.parameters())
    assert sum(p.numel() for p in gated.parameters()) == (
        sum(p.numel() for p in plain.parameters()) + extra
    )


class PassGate(nn.Module):
    """A gate that lets everything through (alpha = 1)."""

    def __init__(self, x_channels, g_channels, *, device=None, dtype=None):
        super().__init__()

    def forward(self, x, g):
        return AttentionOutput(x, torch.ones_like(x[:, :1]))


def test_with_gates_that_pass_everything_it_is_the_plain_unet():
    plain, passing = net(), net(PassGate)
    passing.load_state_dict(plain.state_dict())
    images = torch.randn(2, 2, 11, 9)
    torch.testing.assert_close(passing(images), plain(images), rtol=0, atol=0)


def test_a_gate_returning_something_else_is_one_line():
    class Broken(PassGate):
        def forward(self, x, g):
            return [x]

    with pytest.raises(TypeError, match="gate Broken must return a Tensor or an AttentionOutput"):
        net(Broken)(torch.randn(2, 2, 8, 8))


def test_gate_coefficients_are_captured_per_scale():
    model = net(AttentionGate).eval()
    images = torch.randn(2, 2, 13, 10)
    expected = model(images)
    assert [name for name, _ in attention_modules(model)] == ["gates.0", "gates.1"]
    with capture(model) as seen:
        logits = model(images)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert seen["gates.0"].shape == (2, 1, 13, 10) and seen["gates.1"].shape == (2, 1, 6, 5)
    for alpha in seen.attentions:
        assert ((alpha > 0) & (alpha < 1)).all()
    with pytest.raises(ValueError, match="UNet has no attention module"):
        with capture(net()):
            pass


def test_device_dtype_and_channels_last():
    model = UNet(1, 2, widths=(4, 8), gate=AttentionGate, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    images = torch.randn(2, 1, 9, 6, dtype=torch.float64)
    torch.testing.assert_close(
        model(images.contiguous(memory_format=torch.channels_last)), model(images)
    )
    meta = UNet(1, 2, widths=(4, 8), gate=AttentionGate, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}


def disk_and_square(size=16):
    """One image with a bright disk (the target) and a dark square (a distractor)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (yy - 5) ** 2 + (xx - 10) ** 2 <= 9
    square = (yy >= 9) & (yy < 14) & (xx >= 2) & (xx < 7)
    torch.manual_seed(0)
    image = 0.2 * torch.randn(size, size) + disk.float() - square.float()
    return image[None, None], disk[None, None].float()


@pytest.mark.parametrize("gate", [None, AttentionGate], ids=["plain", "attention"])
def test_the_unet_learns_one_mask_quickly(gate):
    image, mask = disk_and_square()
    torch.manual_seed(0)
    model = UNet(1, 1, widths=(8, 16), gate=gate)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    loss_fn = nn.BCEWithLogitsLoss()
    with torch.no_grad():
        first = loss_fn(model(image), mask).item()
    for _ in range(40):
        optimiser.zero_grad()
        loss = loss_fn(model(image), mask)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = model(image) > 0
    dice = 2 * (predicted & mask.bool()).sum() / (predicted.sum() + mask.sum())
    assert loss.item() < 0.2 * first
    assert dice > 0.95, f"Dice {dice:.3f}"
