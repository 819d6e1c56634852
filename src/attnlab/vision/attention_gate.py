r"""The additive attention gate of Attention U-Net (Oktay et al. 2018), in 2-D and 3-D.

A gating signal ``g`` from a coarser scale decides, per pixel (voxel), how much of the
skip features ``x`` pass: ``x_hat = x * alpha`` with ``alpha`` in (0, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size
from attnlab.vision._checks import check_image

__all__ = ["AttentionGate"]

# Per dims: the convolution, batch norm and the interpolation mode that resamples alpha.
_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MODE = {2: "bilinear", 3: "trilinear"}


class AttentionGate(nn.Module):
    r"""Additive attention gate of Oktay et al. 2018, "Attention U-Net: Learning Where to Look".

    .. math::
        q = \psi^\top \mathrm{ReLU}(W_x^\top x + W_g^\top g + b_g) + b_\psi, \quad
        \alpha = \mathrm{resample}_{x}(\sigma(q)), \quad \hat x = x \cdot \alpha

    ``W_x`` is a convolution with kernel = stride = ``stride`` and no bias, which brings
    ``x`` to the grid of the coarser ``g`` (the paper's strided ``W_x``); ``W_g`` (with
    ``b_g``) and ``psi`` (one output channel, with ``b_psi``) are 1x1 convolutions.
    ``alpha`` is computed on ``g``'s grid and resampled to ``x``'s by bilinear
    (trilinear for ``dims=3``) interpolation (``align_corners=False``), which keeps it in
    (0, 1). One coefficient per pixel multiplies every channel of ``x``.

    ``g`` must lie on ``x``'s grid after the stride: ``g.shape[2:] == floor(x.shape[2:] /
    stride)``, which is what a floor-mode pooling by ``stride`` gives. The authors' code
    instead resamples ``W_g g`` to that grid whatever its size; here a gating signal from
    another scale is a one-line error rather than silently stretched. With ``stride=1``
    ``g`` is on ``x``'s own grid.

    The output is ``x * alpha`` as in the paper (eq. 2); ``project=True`` follows it by a
    1x1 convolution and batch norm as the reference implementation does.

    Args:
        x_channels: channels of the skip features ``x``.
        g_channels: channels of the gating signal ``g``.
        inter_channels: channels of the intermediate map (``F_int``); default
            ``max(1, x_channels // 2)`` as in the reference implementation.
        dims: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
        stride: down-sampling factor between ``x`` and ``g`` (kernel and stride of ``W_x``).
        project: follow ``x * alpha`` with a 1x1 convolution and batch norm.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        x ``(B, Cx, H, W)``, g ``(B, Cg, H // stride, W // stride)`` -> context
        ``(B, Cx, H, W)``, weights (alpha) ``(B, 1, H, W)``; with ``dims=3`` one more
        spatial dimension ``D`` everywhere.

    Example:
        >>> gate = AttentionGate(4, 8)
        >>> out = gate(torch.randn(2, 4, 6, 5), torch.randn(2, 8, 3, 2))
        >>> out.context.shape, out.weights.shape
        (torch.Size([2, 4, 6, 5]), torch.Size([2, 1, 6, 5]))
    """

    def __init__(
        self,
        x_channels: int,
        g_channels: int,
        inter_channels: int | None = None,
        *,
        dims: int = 2,
        stride: int = 2,
        project: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.dims = dims = as_positive("dims", dims)
        if dims not in _CONV:
            raise ValueError(f"dims must be 2 (images) or 3 (volumes), got {dims}")
        self.x_channels = x = as_positive("x_channels", x_channels)
        self.g_channels = g = as_positive("g_channels", g_channels)
        inter = optional_size("inter_channels", inter_channels)
        self.inter_channels = inter = max(1, x // 2) if inter is None else inter
        self.stride = stride = as_positive("stride", stride)
        conv = _CONV[dims]
        self.x_proj = conv(x, inter, stride, stride=stride, bias=False, **factory)  # W_x
        self.g_proj = conv(g, inter, 1, **factory)  # W_g, b_g
        self.psi = conv(inter, 1, 1, **factory)  # psi, b_psi
        self.out_proj = (
            nn.Sequential(conv(x, x, 1, **factory), _NORM[dims](x, **factory)) if project else None
        )

    def forward(self, x: Tensor, g: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """Gate ``x`` by the coefficients ``g`` gives; the coefficients are the weights.

        Args:
            x: skip features ``(B, Cx, *spatial)``.
            g: gating signal ``(B, Cg, *spatial // stride)``.
            need_weights: return alpha (computed either way; False returns None, as the
                other attention modules do, so :func:`attnlab.interpret.capture` can ask).

        Returns:
            ``AttentionOutput(x * alpha (projected if project), alpha or None)``.
        """
        x = check_image(x, self.x_channels, "x", self.dims, owner=self)
        g = check_image(g, self.g_channels, "g", self.dims, owner=self)
        self._check_grid(x, g)
        q = self.psi(F.relu(self.x_proj(x) + self.g_proj(g)))
        # Sigmoid before resampling (as the authors do): interpolation is a convex
        # combination, so alpha stays in (0, 1) on x's grid.
        alpha = F.interpolate(
            torch.sigmoid(q), size=x.shape[2:], mode=_MODE[self.dims], align_corners=False
        )
        out = x * alpha
        if self.out_proj is not None:
            out = self.out_proj(out)
        return AttentionOutput(out, alpha if need_weights else None)

    def _check_grid(self, x: Tensor, g: Tensor) -> None:
        spatial = tuple(x.shape[2:])
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"g has batch {g.shape[0]} but x has {x.shape[0]}; pass one g per x")
        if min(spatial) < self.stride:
            raise ValueError(
                f"x of spatial size {spatial} is smaller than the stride {self.stride}; "
                "pass larger maps or a smaller stride"
            )
        grid = tuple(s // self.stride for s in spatial)
        if tuple(g.shape[2:]) != grid:
            raise ValueError(
                f"g has spatial size {tuple(g.shape[2:])} but must be on x's grid after the "
                f"stride: {grid} = floor({spatial} / {self.stride}); pass g from the scale "
                "that floor-mode pooling of x gives, or build the gate with that stride"
            )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"x_channels={self.x_channels}, g_channels={self.g_channels}, "
            f"inter_channels={self.inter_channels}, dims={self.dims}, stride={self.stride}, "
            f"project={self.out_proj is not None}"
        )
