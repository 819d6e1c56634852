"""One conformance suite over every image block (attnlab.vision.IMAGE_BLOCKS).

A new block is one entry in IMAGE_BLOCKS and one ImageCase here. A test-only block
runs beside the registered ones, so the suite is exercised even while the registry
is empty.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.vision import (
    CBAM,
    IMAGE_BLOCKS,
    AttentionGate,
    ChannelAttention,
    NonLocalBlock,
    ResidualAttention,
    SpatialAttention,
    SqueezeExcite,
)

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


class GateBlock(nn.Module):
    """Test-only image block: a per-pixel sigmoid gate, then a strided 1x1 projection.

    ``y = conv_{1x1, stride 2}(x * sigmoid(conv_{1x1}(x)))``; the gate is its attention map.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C', ceil(H/2), ceil(W/2))``, weights ``(B, 1, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.gate = nn.Conv2d(channels, 1, 1, **factory)
        self.proj = nn.Conv2d(channels, out_channels, 1, stride=2, bias=False, **factory)

    def forward(self, x: Tensor) -> AttentionOutput:
        weights = torch.sigmoid(self.gate(x))
        return AttentionOutput(self.proj(x * weights), weights)


# Blocks that exist only to exercise the suite; never registered in IMAGE_BLOCKS.
TEST_ONLY = {"test-gate": ImageCase(GateBlock, {"channels": C, "out_channels": 4}, (4, 3, 4))}


def _gate_call(module: nn.Module, x: Tensor) -> AttentionOutput:
    """The gate's gating signal g: x max-pooled by 2 (floor mode), every other channel."""
    return module(x, F.max_pool2d(x, 2)[:, ::2])


# name -> how the suite builds and calls the IMAGE_BLOCKS entry of that name. C = 6, so
# reduction 2 gives 3 hidden units (the default 16 is refused for 6 channels).
CASES: dict[str, ImageCase] = {
    **TEST_ONLY,
    "squeeze-excite": ImageCase(SqueezeExcite, {"channels": C, "reduction": 2}),
    "cbam": ImageCase(CBAM, {"channels": C, "reduction": 2}),
    "cbam-channel": ImageCase(ChannelAttention, {"channels": C, "reduction": 2}),
    "cbam-spatial": ImageCase(SpatialAttention, {"kernel_size": 7}),
    "attention-gate": ImageCase(
        AttentionGate, {"x_channels": C, "g_channels": C // 2}, call=_gate_call
    ),
    "residual-attention": ImageCase(ResidualAttention, {"channels": C}),
    "non-local": ImageCase(NonLocalBlock, {"channels": C}),
}

NAMES = sorted(CASES)
DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def test_every_image_block_has_a_case_and_the_suite_is_never_empty():
    assert set(CASES) == set(IMAGE_BLOCKS) | set(TEST_ONLY)
    assert not set(TEST_ONLY) & set(IMAGE_BLOCKS)
    for name, block in IMAGE_BLOCKS.items():
        assert CASES[name].block is block, name
    assert len(NAMES) >= 1 + len(IMAGE_BLOCKS)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name):
    check_shape(CASES[name])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_device_and_dtype_kwargs(name, device, dtype):
    check_factory_kwargs(CASES[name], device, dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_no_nan_in_half_precision(name, dtype):
    check_finite(CASES[name], dtype)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_and_repr(name):
    check_state_dict_and_repr(CASES[name])


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_input_gives_the_same_output(name):
    check_channels_last(CASES[name])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    check_gradients(CASES[name])
