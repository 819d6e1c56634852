"""A small VGG-style convolutional network with an injected image attention block per stage.

The trunk the image experiments share: the plain CNN and the same CNN with
Squeeze-and-Excitation (Hu et al. 2018), CBAM (Woo et al. 2018), a non-local block
(Wang et al. 2018) or residual attention modules (Wang et al. 2017) differ only in the
``block`` they are given, as the papers insert their blocks into an existing network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import (
    as_positive,
    as_size,
    build_injected,
    check_input,
    factory_kwargs,
    parameter_dtype,
    probability,
)

__all__ = ["BlockFactory", "ConvNet"]

BlockFactory = Callable[[int], nn.Module]
"""``block(channels)``: an image block over ``(B, channels, H, W)`` maps (same shape out)."""


def _widths(widths: object) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise TypeError(f"widths must be a non-empty sequence of ints, got {widths!r}")
    return tuple(as_positive(f"widths[{i}]", w) for i, w in enumerate(widths))


def _stages(block_at: object, count: int) -> frozenset[int]:
    if block_at is None:
        return frozenset(range(count))
    if isinstance(block_at, (str, bytes)) or not isinstance(block_at, Sequence):
        raise TypeError(f"block_at must be None or a sequence of stage indices, got {block_at!r}")
    stages = frozenset(as_size(f"block_at[{j}]", i) for j, i in enumerate(block_at))
    outside = sorted(i for i in stages if i >= count)
    if outside:
        raise ValueError(
            f"block_at holds stage {outside[0]}, but the network has {count} stages "
            f"(0..{count - 1}); give indices below len(widths)"
        )
    return stages


class ConvStage(nn.Module):
    """Two conv3x3-BN-ReLU layers, the stage's attention block (if any), then 2x2 max-pool.

    Args:
        in_channels: Input channels.
        channels: Output channels of both convolutions.
        block: The attention block over the stage's ``(B, channels, H, W)`` map, or None.
        pool: Whether a 2x2 max-pool ends the stage.
        device: Where to create the parameters.
        dtype: Their dtype.

    Shapes:
        x: ``(B, in_channels, H, W)``; output ``(B, channels, H // 2, W // 2)`` with
        ``pool``, else ``(B, channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        block: nn.Module | None,
        *,
        pool: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        for c_in in (in_channels, channels):
            # No conv bias: BatchNorm's shift replaces it.
            layers += [
                nn.Conv2d(c_in, channels, 3, padding=1, bias=False, **factory),
                nn.BatchNorm2d(channels, **factory),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.block = block
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """The stage's output map."""
        x = self.convs(x)
        if self.block is not None:
            out = self.block(x)
            x = out.context if isinstance(out, AttentionOutput) else out
            if not isinstance(x, Tensor):
                raise TypeError(
                    f"block {type(self.block).__name__} must return a Tensor or an "
                    f"AttentionOutput, got {type(out).__name__}"
                )
        return F.max_pool2d(x, 2) if self.pool else x


class ConvNet(nn.Module):
    r"""Stages of conv3x3-BN-ReLU x2 + attention block + 2x2 max-pool, then GAP and a linear head.

    Stage :math:`s` maps :math:`x \mapsto \mathrm{pool}(A_s(\mathrm{CBR}(\mathrm{CBR}(x))))`
    with :math:`A_s` the injected block (identity without one); the last stage goes
    straight to global average pooling (a 2x2 pool before it would only drop the odd
    row and column), then dropout and the linear classifier. ``block(channels)`` builds
    one block per stage listed in ``block_at``: SE (Hu et al. 2018, "Squeeze-and-Excitation
    Networks") and CBAM (Woo et al. 2018) after each stage's convolutions, as the papers
    do in every residual block; a non-local block (Wang et al. 2018) at one mid stage;
    residual attention modules (Wang et al. 2017) between stages. A block returns its
    output map or an :class:`~attnlab.functional.AttentionOutput` whose context is that
    map; its attention maps are read from outside with :func:`attnlab.interpret.capture`
    (or forward hooks on :attr:`blocks`).

    Args:
        in_channels: Image channels (1 for grey, 3 for RGB).
        num_classes: Output classes.
        widths: Channels of each stage; one 2x2 max-pool between consecutive stages.
        block: Class or factory ``block(channels)`` of the attention block, or None for
            the plain network.
        block_at: Stages (0-based) that get a block; None means every stage.
        dropout: Dropout before the linear head.
        device: Where to create the parameters.
        dtype: Their dtype.

    Shapes:
        images: ``(B, in_channels, H, W)`` with ``H, W >= 2 ** (len(widths) - 1)``;
        output: ``(B, num_classes)`` logits.

    Example:
        >>> net = ConvNet(1, 10, widths=(8, 16))
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> gated = ConvNet(1, 10, widths=(8, 16), block=nn.Identity, block_at=[1])
        >>> [b is not None for b in gated.blocks]
        [False, True]
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        widths: Sequence[int] = (32, 64, 128),
        block: BlockFactory | None = None,
        block_at: Sequence[int] | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.in_channels = as_positive("in_channels", in_channels)
        num_classes = as_positive("num_classes", num_classes)
        self.widths = _widths(widths)
        with_block = _stages(block_at, len(self.widths)) if block is not None else frozenset()
        stages, c_in = [], self.in_channels
        for i, width in enumerate(self.widths):
            attention = None
            if i in with_block:
                attention = build_injected(
                    block,
                    width,
                    name="block",
                    expected="an image block class or factory, called as block(channels)",
                    **factory,
                )
            last = i == len(self.widths) - 1
            stages.append(ConvStage(c_in, width, attention, pool=not last, **factory))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(probability("dropout", dropout))
        self.head = nn.Linear(c_in, num_classes, **factory)

    @property
    def blocks(self) -> list[nn.Module | None]:
        """Each stage's attention block, None where a stage has none."""
        return [stage.block for stage in self.stages]

    def _check(self, images: object) -> Tensor:
        x = check_input(self, "images", images, parameter_dtype(self))
        least = 2 ** (len(self.widths) - 1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"images must be (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < least:
            raise ValueError(
                f"images of {x.shape[-2]}x{x.shape[-1]} are too small for {len(self.widths)} "
                f"stages with a 2x2 pool between them; give at least {least}x{least} pixels"
            )
        return x

    def features(self, images: Tensor) -> Tensor:
        """The last stage's map ``(B, widths[-1], H', W')``, before pooling and the head."""
        x = self._check(images)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        pooled = self.features(images).mean(dim=(-2, -1))
        return self.head(self.dropout(pooled))
