"""The conformance checks every image block passes, and how a case describes a block.

Each check takes an :class:`ImageCase` and asserts one property of the block; the
suite (test_conformance.py) runs them over every case, and test_suite_faults.py shows
that each check fails on a block with the fault it is there to catch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput

# Input sizes, all distinct so that a transposed dimension cannot hide.
B, C, H, W = 2, 6, 5, 7


def _plain_call(module: nn.Module, x: Tensor) -> Tensor | AttentionOutput:
    return module(x)


@dataclass(frozen=True)
class ImageCase:
    """How the suite builds and calls one image block.

    Attributes:
        block: the block's class (the IMAGE_BLOCKS entry of the same name).
        kwargs: constructor arguments besides ``device`` and ``dtype``; C input channels.
        out_shape: the output ``(C', H', W')`` the block gives for a ``(B, C, H, W)`` input.
        call: ``call(module, x)``: the block's result for the map ``x``; a block with
            more inputs (an attention gate's gating signal) builds them from ``x`` here.
    """

    block: type[nn.Module]
    kwargs: Mapping[str, object] = field(default_factory=dict)
    out_shape: tuple[int, int, int] = (C, H, W)
    call: Callable[[nn.Module, Tensor], Tensor | AttentionOutput] = _plain_call

    def build(self, **factory: object) -> nn.Module:
        """The block, with factory kwargs (``device=``, ``dtype=``) if given."""
        return self.block(**self.kwargs, **factory)

    def run(self, module: nn.Module, x: Tensor, seed: int = 0) -> tuple[Tensor, Tensor | None]:
        """``(output map, attention map or None)`` of ``module`` on ``x``, seeded for dropout."""
        torch.manual_seed(seed)
        out = self.call(module, x)
        if isinstance(out, AttentionOutput):
            return out.context, out.weights
        assert isinstance(out, Tensor), (
            f"a block returns a Tensor or an AttentionOutput, got {out!r}"
        )
        return out, None


def image(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Tensor:
    """A random ``(B, C, H, W)`` map."""
    return torch.randn(B, C, H, W, dtype=dtype, device=device)


def check_shape(case: ImageCase) -> None:
    """The output is ``(B, C', H', W')`` as the case declares, in the input's dtype."""
    out, weights = case.run(case.build(), image())
    assert out.shape == (B, *case.out_shape), f"output {tuple(out.shape)}"
    assert out.dtype == torch.float32
    assert weights is None or weights.shape[0] == B


def check_factory_kwargs(case: ImageCase, device: str, dtype: torch.dtype) -> None:
    """``device=`` and ``dtype=`` place every parameter and floating buffer there."""
    module = case.build(device=device, dtype=dtype)
    for t in [*module.parameters(), *module.buffers()]:
        assert t.device.type == torch.device(device).type, f"{t.device} for {device}"
        assert t.dtype == dtype or not t.is_floating_point(), f"{t.dtype} for {dtype}"
    if device != "meta":  # a meta tensor has no values to run on
        out, _ = case.run(module, image(dtype, device))
        assert out.device.type == torch.device(device).type and out.dtype == dtype


def check_finite(case: ImageCase, dtype: torch.dtype) -> None:
    """Half-precision blocks give finite outputs (and weights), also on an all-zero map."""
    torch.manual_seed(0)
    module = case.build(dtype=dtype)
    for x in (image(dtype), torch.zeros(B, C, H, W, dtype=dtype)):
        out, weights = case.run(module, x)
        assert out.dtype == dtype and torch.isfinite(out).all(), "non-finite output"
        assert weights is None or torch.isfinite(weights).all(), "non-finite weights"


def check_state_dict_and_repr(case: ImageCase) -> None:
    """Another instance loaded from the state dict computes the same; repr names the block."""
    torch.manual_seed(0)
    a = case.build()
    torch.manual_seed(1)
    b = case.build()
    b.load_state_dict(a.state_dict())
    x = image()
    torch.testing.assert_close(case.run(b, x)[0], case.run(a, x)[0])
    text = repr(a)
    assert case.block.__name__ in text, text
    assert str(C) in text or C not in case.kwargs.values(), text  # a block given C shows it


def check_channels_last(case: ImageCase) -> None:
    """A ``channels_last`` input gives the output of the same contiguous input."""
    torch.manual_seed(0)
    module = case.build()
    x = image()
    x_last = x.contiguous(memory_format=torch.channels_last)
    assert not x_last.is_contiguous()  # C, H, W > 1: the layouts differ
    torch.testing.assert_close(case.run(module, x_last)[0], case.run(module, x)[0])


def check_gradients(case: ImageCase) -> None:
    """A loss on the output gives a finite gradient to the input and to every parameter."""
    module = case.build()
    x = image().requires_grad_()
    out, _ = case.run(module, x)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), "input"
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
