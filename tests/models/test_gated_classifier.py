"""GatedClassifier: shapes, the normalised gated pooling, injected gates, capture, errors."""

import functools

import pytest
import torch
from torch import nn

from attnlab.functional import AttentionOutput
from attnlab.interpret.capture import attention_modules, capture
from attnlab.models.convnet import ConvNet
from attnlab.models.gated_classifier import GatedClassifier
from attnlab.vision.attention_gate import AttentionGate

WIDTHS = (4, 6, 8)


def net(**kwargs):
    torch.manual_seed(0)
    return GatedClassifier(2, 5, widths=kwargs.pop("widths", WIDTHS), **kwargs)


@pytest.mark.parametrize(
    "kwargs, size, alpha_grids",
    [
        ({}, (13, 10), [(3, 2), (3, 2)]),  # the last keeps the grid of the one before
        ({"gate_at": [0, 1, 2]}, (13, 10), [(6, 5), (3, 2), (3, 2)]),  # floor mode
        ({"gate_at": [1]}, (16, 16), [(4, 4)]),
        ({"widths": (4, 8)}, (7, 9), [(3, 4), (3, 4)]),
        ({"widths": (5,)}, (7, 9), [(7, 9)]),  # one stage: it gives g and is gated
        ({"widths": (3, 4, 5, 6)}, (32, 24), [(4, 3), (4, 3)]),
        ({"gate": functools.partial(AttentionGate, stride=2)}, (16, 12), [(4, 3), (4, 3)]),
    ],
)
def test_logits_and_one_alpha_per_gated_stage(kwargs, size, alpha_grids):
    model = net(**kwargs)
    logits, alphas = model.forward_with_weights(torch.randn(3, 2, *size))
    assert logits.shape == (3, 5)
    assert [tuple(a.shape) for a in alphas] == [(3, 1, *grid) for grid in alpha_grids]
    for alpha in alphas:
        assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(model(torch.ones(1, 2, *size)), model(torch.ones(1, 2, *size)))


def test_the_head_reads_the_alpha_normalised_sums_of_the_gated_maps():
    model = net().double().eval()
    images = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    local, x = [], images
    for i, stage in enumerate(model.stages):
        x = stage(x)
        local.append(x)
    g = x.mean(dim=(2, 3))
    pooled = []
    for gate, s in zip(model.gates, model.gate_at):
        features = local[s]
        tiled = g[:, :, None, None].expand(-1, -1, *features.shape[2:]).contiguous()
        # alpha by the gate's formula, written out: 1x1 convolutions at every pixel
        inner = torch.relu(gate.x_proj(features) + gate.g_proj(tiled))
        alpha = torch.sigmoid(gate.psi(inner))
        pooled.append((alpha * features).sum((2, 3)) / alpha.sum((2, 3)))
    expected = model.head(torch.cat(pooled, 1))
    logits, alphas = model.forward_with_weights(images)
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)
    assert model.gate_at == (1, 2)
    assert [(g.x_channels, g.g_channels, g.stride) for g in model.gates] == [(6, 8, 1), (8, 8, 1)]


def test_with_one_constant_gate_on_the_last_stage_it_is_the_plain_convnet():
    class Constant(nn.Module):
        def __init__(self, x_channels, g_channels, *, device=None, dtype=None):
            super().__init__()

        def forward(self, x, g):
            alpha = torch.full_like(x[:, :1], 0.3)
            return AttentionOutput(x * alpha, alpha)

    gated = net(gate=Constant, gate_at=[2]).eval()
    torch.manual_seed(1)
    plain = ConvNet(2, 5, widths=WIDTHS).eval()
    plain.load_state_dict(gated.state_dict())
    images = torch.randn(2, 2, 12, 12)
    torch.testing.assert_close(gated(images), plain(images))


def test_the_global_feature_does_not_reach_the_head_past_the_gates():
    # With gates that pass nothing but a single pixel, the descriptor is that pixel.
    class OnePixel(nn.Module):
        stride = 1

        def __init__(self, x_channels, g_channels, *, device=None, dtype=None):
            super().__init__()

        def forward(self, x, g):
            alpha = torch.zeros_like(x[:, :1])
            alpha[..., 0, 0] = 0.5
            return AttentionOutput(x * alpha, alpha)

    model = net(gate=OnePixel, gate_at=[0]).eval()
    images = torch.randn(2, 2, 8, 8)
    first = model.stages[0](images)[..., 0, 0]
    torch.testing.assert_close(model(images), model.head(first))
    assert model.head.in_features == WIDTHS[0]


def test_gates_are_captured_and_the_model_runs_unchanged():
    model = net().eval()
    images = torch.randn(2, 2, 12, 12)
    expected = model(images)
    assert [name for name, _ in attention_modules(model)] == ["gates.0", "gates.1"]
    with capture(model) as seen:
        logits = model(images)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    _, alphas = model.forward_with_weights(images)
    torch.testing.assert_close(seen["gates.1"], alphas[1], rtol=0, atol=0)


def test_it_learns_where_the_class_is():
    # Class = which of two textures the bright square carries; the rest is noise.
    torch.manual_seed(0)
    images = 0.1 * torch.randn(32, 1, 16, 16)
    labels = torch.arange(32) % 2
    for k in range(32):
        r, c = torch.randint(0, 12, (2,)).tolist()
        patch = torch.ones(4, 4) if labels[k] else torch.tensor([[1.0, 0.0] * 2] * 4)
        images[k, 0, r : r + 4, c : c + 4] += patch
    model = GatedClassifier(1, 2, widths=(4, 8))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(30):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.2


def test_device_dtype_and_channels_last():
    model = GatedClassifier(1, 3, widths=(4, 8), dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    images = torch.randn(2, 1, 9, 6, dtype=torch.float64)
    torch.testing.assert_close(
        model(images.contiguous(memory_format=torch.channels_last)), model(images)
    )
    meta = GatedClassifier(1, 3, widths=(4, 8), device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    assert "gate_at=(0, 1)" in repr(meta) and "widths=(4, 8)" in repr(meta)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"widths": ()}, TypeError, "widths must be a non-empty sequence of ints"),
        ({"widths": "ab"}, TypeError, "widths must be a non-empty sequence of ints"),
        ({"widths": (4, 0)}, ValueError, r"widths\[1\] must be >= 1; got 0"),
        ({"gate_at": [1, 3]}, ValueError, r"gate_at holds stage 3, but the network has 3 stages"),
        ({"gate_at": []}, TypeError, "gate_at must be None or a non-empty sequence"),
        ({"gate_at": [-1]}, ValueError, r"gate_at\[0\] must be >= 0"),
        ({"gate": AttentionGate(4, 8)}, TypeError, "gate must be an attention gate class"),
        ({"gate": lambda x, g, **_: "gate"}, TypeError, "gate must build an nn.Module, got str"),
        ({"dropout": 1.5}, ValueError, "dropout"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        net(**kwargs)


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.randn(2, 8, 8), ValueError, r"images must be \(B, C, H, W\); got \(2, 8, 8\)"),
        (torch.randn(2, 1, 8, 8), ValueError, r"images must be \(B, 2, H, W\), i.e.* got"),
        (torch.randn(2, 2, 8, 8).double(), TypeError, "images is float64 but GatedClassifier"),
        (torch.randn(2, 2, 3, 8), ValueError, "images of 3x8 are too small for 3 stages"),
    ],
)
def test_bad_images_are_one_clear_line(images, error, match):
    with pytest.raises(error, match=match):
        net()(images)


def test_a_gate_without_coefficients_is_one_line():
    class NoAlpha(nn.Module):
        def __init__(self, x_channels, g_channels, *, device=None, dtype=None):
            super().__init__()

        def forward(self, x, g):
            return x

    with pytest.raises(TypeError, match="gate NoAlpha must return an AttentionOutput with"):
        net(gate=NoAlpha)(torch.randn(2, 2, 8, 8))
