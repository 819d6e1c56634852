r"""U-Net (Ronneberger et al. 2015) and Attention U-Net (Oktay et al. 2018) for segmentation.

One class: ``UNet(gate=None)`` is the plain U-Net; ``UNet(gate=AttentionGate)`` puts an
attention gate on every skip connection, the Attention U-Net of the same widths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.models.convnet import ConvStage
from attnlab.nn._checks import as_positive, build_injected, factory_kwargs
from attnlab.vision._checks import check_image

__all__ = ["GateFactory", "UNet"]

GateFactory = Callable[..., nn.Module]
"""``gate(x_channels, g_channels, *, device, dtype)``: a module called as ``gate(x, g)``."""


def _widths(widths: object) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise TypeError(
            f"widths must be a sequence of at least two ints (one per level), got {widths!r}"
        )
    return tuple(as_positive(f"widths[{i}]", w) for i, w in enumerate(widths))


class UNet(nn.Module):
    r"""U-Net with optional attention gates on its skip connections.

    Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
    Segmentation"; Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the
    Pancreas".

    Encoder level :math:`l` (width ``widths[l]``): :math:`e_l = \mathrm{CBR}^2(
    \mathrm{pool}(e_{l-1}))` (no pooling at level 0); the deepest level is the
    bottleneck. Decoder, from the bottom up: with :math:`d_{L-1} = e_{L-1}`,

    .. math::
        d_l = \mathrm{CBR}^2\big([\,\mathrm{gate}_l(e_l, d_{l+1}),\;
        \mathrm{up}(d_{l+1})\,]\big), \qquad \mathrm{logits} = W_{1\times1}\, d_0

    where CBR is conv3x3-BN-ReLU, pool a 2x2 max-pool (floor mode), ``up`` bilinear
    up-sampling to the exact size of :math:`e_l` and :math:`[\cdot,\cdot]` channel
    concatenation. Without a gate, :math:`\mathrm{gate}_l(e_l, \cdot) = e_l` (the plain
    U-Net); with one, the gating signal is the decoder's coarser map :math:`d_{l+1}`,
    on :math:`e_l`'s grid after a stride of 2, as
    :class:`~attnlab.vision.attention_gate.AttentionGate` expects. Up-sampling by
    interpolation (as the Attention U-Net code does) rather than a 2x2 up-convolution
    keeps every size exact, so odd sizes need no cropping.

    The gates' coefficients are read from outside with :func:`attnlab.interpret.capture`
    (modules ``gates.0`` (finest) ... ``gates.{L-2}``).

    Args:
        in_channels: image channels.
        out_channels: logits per pixel (1 for a binary mask, K for K classes).
        widths: channels of each level, finest first; one 2x2 pool between levels.
        gate: class or factory of the attention gate, called as ``gate(x_channels,
            g_channels, device=, dtype=)`` once per skip connection (``x_channels =
            widths[l]``, ``g_channels = widths[l + 1]``) and run as ``gate(x, g)``,
            returning the gated map or an AttentionOutput; None for the plain U-Net.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        images ``(B, in_channels, H, W)``, any ``H, W >= 2 ** (len(widths) - 1)`` (the
        bottleneck has at least one pixel) -> logits ``(B, out_channels, H, W)``.

    Example:
        >>> from attnlab.vision.attention_gate import AttentionGate
        >>> net = UNet(1, 2, widths=(4, 8, 16), gate=AttentionGate)
        >>> net(torch.randn(2, 1, 13, 10)).shape
        torch.Size([2, 2, 13, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        gate: GateFactory | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.in_channels = c_in = as_positive("in_channels", in_channels)
        self.out_channels = as_positive("out_channels", out_channels)
        self.widths = widths = _widths(widths)
        encoder = []
        for width in widths:
            encoder.append(ConvStage(c_in, width, None, pool=False, **factory))
            c_in = width
        self.encoder = nn.ModuleList(encoder)
        # decoder[l] and gates[l] produce level l from the skip e_l and d_{l+1}.
        pairs = list(zip(widths, widths[1:]))  # (skip, coarser) channels per level
        self.decoder = nn.ModuleList(
            ConvStage(fine + coarse, fine, None, pool=False, **factory) for fine, coarse in pairs
        )
        self.gates = None
        if gate is not None:
            self.gates = nn.ModuleList(
                build_injected(
                    gate,
                    fine,
                    coarse,
                    name="gate",
                    expected="an attention gate class or factory, called as "
                    "gate(x_channels, g_channels) (e.g. AttentionGate)",
                    **factory,
                )
                for fine, coarse in pairs
            )
        self.head = nn.Conv2d(widths[0], self.out_channels, 1, **factory)

    def _check(self, images: object) -> Tensor:
        x = check_image(images, self.in_channels, "images", owner=self)
        least = 2 ** (len(self.widths) - 1)
        if min(x.shape[2:]) < least:
            raise ValueError(
                f"images of {x.shape[2]}x{x.shape[3]} are too small for {len(self.widths)} "
                f"levels with a 2x2 pool between them; give at least {least}x{least} pixels "
                "or fewer widths"
            )
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Logits per pixel, ``(B, out_channels, H, W)``."""
        x = self._check(images)
        skips = []
        for level, stage in enumerate(self.encoder):
            x = stage(F.max_pool2d(x, 2) if level else x)
            skips.append(x)
        h = skips.pop()  # the bottleneck starts the decoder
        for level in reversed(range(len(self.decoder))):
            skip = skips[level]
            if self.gates is not None:
                skip = self._gated(level, skip, h)
            up = F.interpolate(h, size=skip.shape[2:], mode="bilinear", align_corners=False)
            h = self.decoder[level](torch.cat([skip, up], dim=1))
        return self.head(h)

    def _gated(self, level: int, skip: Tensor, g: Tensor) -> Tensor:
        gate = self.gates[level]
        out = gate(skip, g)
        gated = out.context if isinstance(out, AttentionOutput) else out
        if not isinstance(gated, Tensor):
            raise TypeError(
                f"gate {type(gate).__name__} must return a Tensor or an AttentionOutput, "
                f"got {type(out).__name__}"
            )
        return gated

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"widths={self.widths}, gated={self.gates is not None}"
        )
