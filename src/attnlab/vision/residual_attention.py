r"""The attention module of Residual Attention Network (Wang et al. 2017).

A trunk branch ``T`` processes features; a soft-mask branch ``M`` (bottom-up
down-sampling, top-down up-sampling, sigmoid) weighs them per channel and pixel;
"attention residual learning" adds the identity: ``(1 + M) * T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import as_positive, as_size, factory_kwargs
from attnlab.vision._checks import check_image

__all__ = ["ResidualAttention", "ResidualUnit"]


class ResidualUnit(nn.Module):
    r"""Pre-activation residual unit of He et al. 2016.

    From "Identity Mappings in Deep Residual Networks":

    .. math::
        y = x + \mathrm{conv}_{3\times3}(\mathrm{ReLU}(\mathrm{BN}(
            \mathrm{conv}_{3\times3}(\mathrm{ReLU}(\mathrm{BN}(x))))))

    The basic two-convolution form, same channels in and out (Wang et al. use the
    bottleneck form in their deep networks; this one keeps small models small).

    Args:
        channels: channels in and out.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``.

    Example:
        >>> ResidualUnit(3)(torch.randn(2, 3, 5, 4)).shape
        torch.Size([2, 3, 5, 4])
    """

    def __init__(
        self,
        channels: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        c = as_positive("channels", channels)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c, **factory),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False, **factory),
            nn.BatchNorm2d(c, **factory),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False, **factory),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x`` plus the residual."""
        return x + self.body(x)


class ResidualAttention(nn.Module):
    r"""Attention module of Wang et al. 2017, "Residual Attention Network for Image Classification".

    .. math::
        H_{i,c}(x) = (1 + M_{i,c}(x)) \cdot T_{i,c}(x) \quad (\texttt{residual=True}), \qquad
        H_{i,c}(x) = M_{i,c}(x) \cdot T_{i,c}(x) \quad (\texttt{residual=False})

    Trunk ``T``: ``trunk_units`` residual units. Soft mask ``M`` (``depth`` levels, one
    residual unit between adjacent poolings, the paper's r = 1):

    * bottom-up: ``depth`` times a 3x3 max-pooling with stride 2 then a unit; the
      innermost level gets a second unit;
    * skip connections: from each level but the innermost, through one unit, added to
      the top-down path at the same scale;
    * top-down: bilinear up-sampling to the size of the next finer level, plus the skip,
      then a unit; a last up-sampling back to the input size;
    * head: BN-ReLU-1x1 conv twice, then a sigmoid, so ``M`` is in (0, 1) per channel and
      pixel (the paper's mixed attention).

    Up-sampling goes to the exact size of the finer level, so any ``H, W >= 1`` work.
    ``residual=False`` is the paper's naive attention learning ablation (``M * T``),
    whose features fade when modules are stacked. The paper's ``p`` residual units
    before and after each module are left to the network that stacks the modules.

    Args:
        channels: channels in and out.
        depth: levels of down-sampling in the mask branch (>= 1).
        residual: ``(1 + M) * T`` (attention residual learning) or ``M * T``.
        trunk_units: residual units of the trunk branch (the paper's t = 2).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        ``(B, C, H, W)`` -> context ``(B, C, H, W)``, weights (M) ``(B, C, H, W)``.

    Example:
        >>> block = ResidualAttention(4, depth=2)
        >>> out = block(torch.randn(2, 4, 9, 7))
        >>> out.context.shape, bool(((out.weights > 0) & (out.weights < 1)).all())
        (torch.Size([2, 4, 9, 7]), True)
    """

    def __init__(
        self,
        channels: int,
        *,
        depth: int = 1,
        residual: bool = True,
        trunk_units: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.channels = c = as_positive("channels", channels)
        self.depth = depth = as_positive("depth", depth)
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be a bool, got {type(residual).__name__} {residual!r}")
        self.residual = residual
        trunk_units = as_size("trunk_units", trunk_units)
        self.trunk = nn.Sequential(*(ResidualUnit(c, **factory) for _ in range(trunk_units)))
        self.down = nn.ModuleList(ResidualUnit(c, **factory) for _ in range(depth))
        self.bottom = ResidualUnit(c, **factory)
        self.skips = nn.ModuleList(ResidualUnit(c, **factory) for _ in range(depth - 1))
        self.up = nn.ModuleList(ResidualUnit(c, **factory) for _ in range(depth - 1))
        self.head = nn.Sequential(
            nn.BatchNorm2d(c, **factory),
            nn.ReLU(),
            nn.Conv2d(c, c, 1, **factory),
            nn.BatchNorm2d(c, **factory),
            nn.ReLU(),
            nn.Conv2d(c, c, 1, **factory),
        )

    def mask(self, x: Tensor) -> Tensor:
        """The soft mask ``M(x)`` in (0, 1), ``(B, C, H, W)``."""
        sizes, skips = [], []
        h = x
        for level, down in enumerate(self.down):
            sizes.append(h.shape[2:])
            h = down(F.max_pool2d(h, 3, stride=2, padding=1))
            if level < self.depth - 1:
                skips.append(self.skips[level](h))
        h = self.bottom(h)
        for level in reversed(range(self.depth - 1)):
            h = self.up[level](_upsample(h, sizes[level + 1]) + skips[level])
        return torch.sigmoid(self.head(_upsample(h, sizes[0])))

    def forward(self, x: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``(1 + M) * T`` (or ``M * T``), with the mask ``M`` as the weights.

        Args:
            x: features ``(B, C, H, W)``.
            need_weights: return ``M`` (computed either way; False returns None, so
                :func:`attnlab.interpret.capture` can ask for it).
        """
        x = check_image(x, self.channels, owner=self)
        trunk, mask = self.trunk(x), self.mask(x)
        out = (1 + mask) * trunk if self.residual else mask * trunk
        return AttentionOutput(out, mask if need_weights else None)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"channels={self.channels}, depth={self.depth}, residual={self.residual}"


def _upsample(h: Tensor, size: torch.Size) -> Tensor:
    return F.interpolate(h, size=size, mode="bilinear", align_corners=False)
