"""ConvNet: the stages it is made of, the blocks it is given, and its one-line errors."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.functional import AttentionOutput
from attnlab.interpret.explain_image import image_attention_maps
from attnlab.models.convnet import ConvNet
from attnlab.vision.cbam import CBAM
from attnlab.vision.non_local import NonLocalBlock
from attnlab.vision.residual_attention import ResidualAttention
from attnlab.vision.squeeze_excite import SqueezeExcite

B, C_IN, K, H, W = 5, 3, 7, 13, 11  # all distinct
WIDTHS = (4, 6, 10)


class Gate(nn.Module):
    """Test-only block: a learned sigmoid gate per channel, as an AttentionOutput."""

    def __init__(self, channels, *, device=None, dtype=None):
        super().__init__()
        self.logit = nn.Parameter(torch.randn(channels, device=device, dtype=dtype))

    def forward(self, x):
        weights = torch.sigmoid(self.logit)[None, :, None, None].expand(len(x), -1, 1, 1)
        return AttentionOutput(x * weights, weights)


class Zero(nn.Module):
    """Test-only block that wipes the map."""

    def __init__(self, channels, **factory):
        super().__init__()

    def forward(self, x):
        return AttentionOutput(torch.zeros_like(x), None)


def _images(dtype=torch.float32):
    return torch.randn(B, C_IN, H, W, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _reference(net, x):
    """The network written out: conv-BN-ReLU x2, block, 2x2 max-pool (not after the last)."""
    for i, stage in enumerate(net.stages):
        convs = [m for m in stage.convs if isinstance(m, nn.Conv2d)]
        norms = [m for m in stage.convs if isinstance(m, nn.BatchNorm2d)]
        for conv, bn in zip(convs, norms, strict=True):
            x = F.conv2d(x, conv.weight, padding=1)
            x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
            x = F.relu(x)
        if stage.block is not None:
            x = stage.block(x).context
        if i < len(net.stages) - 1:
            x = F.max_pool2d(x, 2)
    return F.linear(x.mean(dim=(2, 3)), net.head.weight, net.head.bias)


def test_shapes_with_every_dimension_distinct():
    net = ConvNet(C_IN, K, widths=WIDTHS)
    assert net(_images()).shape == (B, K)
    assert net.features(_images()).shape == (B, WIDTHS[-1], 3, 2)  # 13 -> 6 -> 3, 11 -> 5 -> 2
    assert net.blocks == [None, None, None]


def test_forward_equals_the_network_written_out_in_float64():
    torch.manual_seed(0)
    net = ConvNet(C_IN, K, widths=WIDTHS, block=Gate, dtype=torch.float64).eval()
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    x = _images(torch.float64)
    torch.testing.assert_close(net(x), _reference(net, x), rtol=1e-12, atol=1e-12)


def test_block_is_built_per_chosen_stage_with_its_width_and_factory_kwargs():
    calls = []

    def factory(channels, **kwargs):
        calls.append((channels, kwargs))
        return Gate(channels, **kwargs)

    net = ConvNet(C_IN, K, widths=WIDTHS, block=factory, dtype=torch.float64)
    assert calls == [(w, {"device": None, "dtype": torch.float64}) for w in WIDTHS]
    assert all(isinstance(b, Gate) for b in net.blocks)
    assert next(net.blocks[1].parameters()).dtype == torch.float64
    mid = ConvNet(C_IN, K, widths=WIDTHS, block=Gate, block_at=[1])
    assert [b is not None for b in mid.blocks] == [False, True, False]


def test_block_sees_the_stage_map_before_pooling_and_its_context_flows_on():
    seen = []
    net = ConvNet(C_IN, K, widths=WIDTHS, block=Gate)
    for block in net.blocks:
        block.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    net(_images())
    assert seen == [(B, 4, H, W), (B, 6, 6, 5), (B, 10, 3, 2)]
    wiped = ConvNet(C_IN, K, widths=WIDTHS, block=Zero, block_at=[2]).eval()
    expected = wiped.head.bias.expand(B, K)
    torch.testing.assert_close(wiped(_images()), expected)  # the last map was zeroed


def test_a_block_returning_a_tensor_works_like_no_block():
    torch.manual_seed(3)
    plain = ConvNet(C_IN, K, widths=WIDTHS).eval()
    torch.manual_seed(3)
    identity = ConvNet(C_IN, K, widths=WIDTHS, block=lambda c, **_: nn.Identity()).eval()
    identity.load_state_dict(plain.state_dict())
    torch.testing.assert_close(identity(_images()), plain(_images()))


def test_block_weights_are_read_from_outside():
    net = ConvNet(C_IN, K, widths=WIDTHS, block=Gate, block_at=[0, 2]).eval()
    _, maps = image_attention_maps(net, _images())
    assert {name: tuple(w.shape) for name, (w, _) in maps.items()} == {
        "stages.0.block": (B, 4, 1, 1),
        "stages.2.block": (B, 10, 1, 1),
    }


@pytest.mark.parametrize(
    "block, block_at",
    [
        (partial(SqueezeExcite, reduction=2), None),
        (partial(CBAM, reduction=2, kernel_size=3), None),
        (NonLocalBlock, [1]),
        (partial(ResidualAttention, trunk_units=0), None),
        (partial(ResidualAttention, residual=False, trunk_units=0), [0]),
    ],
)
def test_library_blocks_train_inside_and_accept_channels_last(block, block_at):
    torch.manual_seed(0)
    net = ConvNet(C_IN, K, widths=WIDTHS, block=block, block_at=block_at)
    logits = net(_images())
    F.cross_entropy(logits, torch.arange(B) % K).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    net.eval()
    x = _images()
    torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last)), net(x))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"widths": ()}, TypeError, "widths must be a non-empty sequence"),
        ({"widths": "abc"}, TypeError, "widths must be a non-empty sequence"),
        ({"widths": (4, 0)}, ValueError, "widths[1] must be >= 1"),
        ({"widths": (4, 2.0)}, TypeError, "widths[1] must be an int"),
        ({"block": Gate, "block_at": [3]}, ValueError, "block_at holds stage 3"),
        ({"block": Gate, "block_at": [-1]}, ValueError, "block_at[0] must be >= 0"),
        ({"block": Gate, "block_at": 1}, TypeError, "block_at must be None or a sequence"),
        ({"block": Gate(4)}, TypeError, "block must be an image block class or factory"),
        ({"block": lambda c, **_: 3}, TypeError, "block must build an nn.Module"),
        ({"dropout": 1.0}, ValueError, "dropout must be in [0, 1)"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),
    ],
)
def test_bad_construction_is_one_line(kwargs, error, words):
    with pytest.raises(error) as info:
        ConvNet(C_IN, K, **{"widths": WIDTHS, **kwargs})
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((0, K), ValueError, "in_channels must be >= 1"),
        ((C_IN, 0), ValueError, "num_classes must be >= 1"),
    ],
)
def test_bad_sizes_are_one_line(args, error, words):
    with pytest.raises(error, match=words):
        ConvNet(*args)


@pytest.mark.parametrize(
    "images, error, words",
    [
        (torch.randn(B, 1, H, W), ValueError, r"images must be \(B, 3, H, W\), got shape"),
        (torch.randn(C_IN, H, W), ValueError, r"images must be \(B, 3, H, W\)"),
        (torch.randn(B, C_IN, 3, W), ValueError, "too small for 3 stages.*at least 4x4"),
        (torch.randn(B, C_IN, H, W, dtype=torch.float64), TypeError, "float64"),
        ([[1.0]], TypeError, "images must be a torch.Tensor"),
    ],
)
def test_bad_images_are_one_line(images, error, words):
    with pytest.raises(error, match=words) as info:
        ConvNet(C_IN, K, widths=WIDTHS)(images)
    assert "\n" not in str(info.value)


def test_a_block_returning_something_else_is_named():
    net = ConvNet(C_IN, K, widths=WIDTHS, block=lambda c, **_: _Listy())
    with pytest.raises(TypeError, match="block _Listy must return a Tensor or an AttentionOutput"):
        net(_images())


class _Listy(nn.Module):
    def forward(self, x):
        return [x]
