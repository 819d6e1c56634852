"""The image-block suite catches what it is there to catch: each check fails on a faulty block.

Every faulty block below is GateBlock with one fault, so a check that fails here
fails because of that fault, not because the block is otherwise unusual.
"""

import pytest
import torch
from torch import Tensor

from attnlab.functional import AttentionOutput

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
from .test_conformance import TEST_ONLY, GateBlock

GOOD = TEST_ONLY["test-gate"]


def _faulty(block: type[GateBlock], **changes: object) -> ImageCase:
    fields = {"block": block, "kwargs": GOOD.kwargs, "out_shape": GOOD.out_shape, **changes}
    return ImageCase(**fields)


class IgnoresFactoryKwargs(GateBlock):
    """Creates its parameters in the default dtype, whatever it is given."""

    def __init__(self, channels: int, out_channels: int, **factory: object) -> None:
        super().__init__(channels, out_channels)


class AssumesContiguousMemory(GateBlock):
    """Reads the input's storage as if it were contiguous (a hand-written kernel's bug)."""

    def forward(self, x: Tensor) -> AttentionOutput:
        return super().forward(x.as_strided(x.shape, x.contiguous().stride()))


class OverflowsInHalf(GateBlock):
    """A softmax over pixels written without subtracting the maximum."""

    def forward(self, x: Tensor) -> AttentionOutput:
        e = (self.gate(x) * 100).exp()
        weights = e / e.sum(dim=(-2, -1), keepdim=True)
        return AttentionOutput(self.proj(x * weights), weights)


class HasUnusedParameter(GateBlock):
    """Owns a parameter its forward never reaches."""

    def __init__(self, channels: int, out_channels: int, **factory: object) -> None:
        super().__init__(channels, out_channels, **factory)
        self.unused = torch.nn.Parameter(torch.zeros(channels))


class KeepsStateOutsideTheStateDict(GateBlock):
    """Scales its output by a random buffer that the state dict leaves out."""

    def __init__(self, channels: int, out_channels: int, **factory: object) -> None:
        super().__init__(channels, out_channels, **factory)
        self.register_buffer("scale", torch.rand(()) + 0.5, persistent=False)

    def forward(self, x: Tensor) -> AttentionOutput:
        out = super().forward(x)
        return out.replace(context=out.context * self.scale)


class ReturnsAPlainTuple(GateBlock):
    """Returns ``(context, weights)`` as a bare tuple, not an AttentionOutput."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return tuple(super().forward(x))


class HidesItsChannels(GateBlock):
    """A repr that names no size."""

    def __repr__(self) -> str:
        return "HidesItsChannels()"


def test_the_test_only_block_passes_every_check():
    check_shape(GOOD)
    check_factory_kwargs(GOOD, "cpu", torch.float64)
    check_finite(GOOD, torch.float16)
    check_state_dict_and_repr(GOOD)
    check_channels_last(GOOD)
    check_gradients(GOOD)


@pytest.mark.parametrize(
    ("check", "case"),
    [
        (check_shape, _faulty(GateBlock, out_shape=(C, 3, 4))),  # declares the wrong C'
        (check_shape, _faulty(ReturnsAPlainTuple)),
        (
            lambda case: check_factory_kwargs(case, "meta", torch.float64),
            _faulty(IgnoresFactoryKwargs),
        ),
        (
            lambda case: check_factory_kwargs(case, "cpu", torch.bfloat16),
            _faulty(IgnoresFactoryKwargs),
        ),
        (check_channels_last, _faulty(AssumesContiguousMemory)),
        (lambda case: check_finite(case, torch.float16), _faulty(OverflowsInHalf)),
        (check_gradients, _faulty(HasUnusedParameter)),
        (check_state_dict_and_repr, _faulty(KeepsStateOutsideTheStateDict)),
        (check_state_dict_and_repr, _faulty(HidesItsChannels)),
    ],
    ids=[
        "wrong-shape",
        "plain-tuple",
        "ignores-device",
        "ignores-dtype",
        "channels-last",
        "fp16-overflow",
        "unused-parameter",
        "not-in-state-dict",
        "repr",
    ],
)
def test_each_check_catches_its_fault(check, case):
    with pytest.raises(AssertionError):
        check(case)
