r"""CBAM: channel attention, then spatial attention (Woo et al. 2018).

"CBAM: Convolutional Block Attention Module", ECCV 2018. For a feature map ``F``:

.. math::
    M_c(F) = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(F)) + \mathrm{MLP}(\mathrm{MaxPool}(F))\big),
    \qquad F' = M_c(F) \otimes F

.. math::
    M_s(F') = \sigma\big(f^{k \times k}([\mathrm{mean}_c(F');\, \max_c(F')])\big),
    \qquad F'' = M_s(F') \otimes F'

The MLP is SE's bottleneck (:class:`~attnlab.vision.squeeze_excite.ChannelMLP`), shared
by both descriptors; ``f`` is a ``k x k`` convolution from the two maps (mean first) to
one, padded by ``k // 2`` so the map keeps its size. Each part is a block of its own.

Against timm (``timm.layers.cbam``): ``ChannelAttn``, ``SpatialAttn`` and ``CbamModule``
compute these, with one difference: timm (like the paper's code) follows the spatial
convolution by a BatchNorm, where ours has a bias. In eval mode that BatchNorm is an
affine map, and :meth:`CBAM.from_timm` folds it into our convolution, so the two agree;
in training mode timm's normalises with batch statistics and they do not. timm's
``rd_ratio`` rounds ``C * rd_ratio`` to the nearest integer where ours takes
``C // reduction``: pass timm ``rd_channels=C // r`` (:meth:`from_timm` reads the width).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from attnlab._validate import as_positive
from attnlab.functional import AttentionOutput
from attnlab.nn._checks import factory_kwargs
from attnlab.vision._checks import check_image
from attnlab.vision.squeeze_excite import (
    ChannelMLP,
    load_converted,
    reduction_of,
    se_state_from_timm,
    timm_entry,
    timm_state,
)

__all__ = ["CBAM", "ChannelAttention", "SpatialAttention", "cbam_state_from_timm"]


class ChannelAttention(nn.Module):
    r"""CBAM's channel attention: ``M_c = sigmoid(MLP(avg_pool(x)) + MLP(max_pool(x)))``.

    Args:
        channels: ``C``, the input's channel count.
        reduction: ``r`` of the shared MLP (hidden width ``C // r``), ``1 <= r <= C``.
        bias: whether the MLP's layers add a bias (the paper's formula and timm's
            default have none).
        device: where the parameters are created.
        dtype: the parameters' dtype.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C, H, W)``, weights ``M_c`` ``(B, C, 1, 1)``.

    Example:
        >>> y, m = ChannelAttention(8, reduction=4)(torch.randn(2, 8, 5, 7))
        >>> y.shape, m.shape
        (torch.Size([2, 8, 5, 7]), torch.Size([2, 8, 1, 1]))
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.mlp = ChannelMLP(channels, reduction, bias=bias, device=device, dtype=dtype)
        self.channels, self.reduction = int(channels), int(reduction)

    def forward(self, x: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(x * M_c, M_c)`` (weights None when ``need_weights`` is False)."""
        check_image(x, self.channels, owner=self)
        pooled = torch.cat((x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)))
        avg, top = self.mlp(pooled).chunk(2)  # one MLP call for both descriptors
        weights = torch.sigmoid(avg + top)
        return AttentionOutput(x * weights, weights if need_weights else None)

    def extra_repr(self) -> str:
        """Sizes, shown by ``repr``."""
        return f"channels={self.channels}, reduction={self.reduction}"

    @classmethod
    def from_timm(cls, source: nn.Module | Mapping[str, Tensor]) -> ChannelAttention:
        """A copy of timm's ``ChannelAttn`` (or its ``state_dict()``), on its device and dtype."""
        return _from_timm(cls, source, lambda state: _channel_config(state, ""))


class SpatialAttention(nn.Module):
    r"""CBAM's spatial attention: ``M_s = sigmoid(conv_k([mean_c(x); max_c(x)]))``.

    The convolution maps the channel-wise mean and max maps (in that order) to one
    map, with a bias and padding ``k // 2``; any channel count goes in.

    Args:
        kernel_size: ``k``, odd (the paper uses 7; 3 in its ablation).
        device: where the parameters are created.
        dtype: the parameters' dtype.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C, H, W)``, weights ``M_s`` ``(B, 1, H, W)``.

    Example:
        >>> y, m = SpatialAttention()(torch.randn(2, 8, 5, 7))
        >>> y.shape, m.shape
        (torch.Size([2, 8, 5, 7]), torch.Size([2, 1, 5, 7]))
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        k = as_positive("kernel_size", kernel_size)
        if k % 2 == 0:  # padding k // 2 keeps the size only for odd k
            raise ValueError(f"kernel_size must be odd so the map keeps its size; got {k}")
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, **factory_kwargs(device, dtype))

    def forward(self, x: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(x * M_s, M_s)`` (weights None when ``need_weights`` is False)."""
        check_image(x, None, owner=self)
        maps = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        weights = torch.sigmoid(self.conv(maps))
        return AttentionOutput(x * weights, weights if need_weights else None)

    @classmethod
    def from_timm(cls, source: nn.Module | Mapping[str, Tensor]) -> SpatialAttention:
        """A copy of timm's ``SpatialAttn`` in eval mode (its BatchNorm folded in)."""
        return _from_timm(cls, source, lambda state: _spatial_config(state, ""))


class CBAM(nn.Module):
    r"""Convolutional Block Attention Module: channel attention, then spatial attention.

    See the module docstring for the formulas; ``F'' = M_s(F') * F'`` with
    ``F' = M_c(F) * F``.

    Args:
        channels: ``C``, the input's channel count.
        reduction: ``r`` of the channel MLP, ``1 <= r <= C``.
        kernel_size: the spatial convolution's ``k``, odd.
        bias: whether the channel MLP's layers add a bias.
        device: where the parameters are created.
        dtype: the parameters' dtype.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C, H, W)``, weights (the spatial map ``M_s``)
        ``(B, 1, H, W)``, extra ``channel_weights`` (``M_c``) ``(B, C, 1, 1)``.

    Example:
        >>> out = CBAM(8, reduction=4)(torch.randn(2, 8, 5, 7))
        >>> out.context.shape, out.weights.shape, out.channel_weights.shape
        (torch.Size([2, 8, 5, 7]), torch.Size([2, 1, 5, 7]), torch.Size([2, 8, 1, 1]))
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.channel = ChannelAttention(channels, reduction, bias=bias, **factory)
        self.spatial = SpatialAttention(kernel_size, **factory)

    def forward(self, x: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(F'', M_s, channel_weights=M_c)`` (both None without weights)."""
        refined, channel_weights = self.channel(x, need_weights=need_weights)
        out, spatial_weights = self.spatial(refined, need_weights=need_weights)
        return AttentionOutput(out, spatial_weights, channel_weights=channel_weights)

    @classmethod
    def from_timm(cls, source: nn.Module | Mapping[str, Tensor]) -> CBAM:
        """A copy of timm's ``CbamModule`` in eval mode (its BatchNorm folded in).

        Raises:
            ValueError: timm's module has options this block lacks (another activation
                or gate), or a hidden width that is not ``C // r`` for any integer ``r``.
        """

        def config(state: Mapping[str, Tensor]) -> tuple[dict[str, object], Tensor]:
            channel, weight = _channel_config(state, "channel.")
            spatial, _ = _spatial_config(state, "spatial.")
            return {**channel, **spatial}, weight

        return _from_timm(cls, source, config)


def cbam_state_from_timm(state: Mapping[str, Tensor], *, eps: float = 1e-5) -> dict[str, Tensor]:
    """The state dict of a timm CBAM block (any of the three) in our names, BatchNorm folded.

    ``fc1``/``fc2`` become ``mlp.reduce``/``mlp.expand``; each ``conv.conv.weight`` with
    its ``conv.bn.*`` becomes ``conv.weight`` and ``conv.bias``:
    ``W' = W g / sqrt(v + eps)``, ``b' = beta - m g / sqrt(v + eps)`` (BatchNorm's
    eval-mode map, ``eps`` its epsilon). Differentiable in the tensors given.

    Example:
        >>> one = torch.ones(1)
        >>> bn = {f"conv.bn.{n}": one for n in ("weight", "bias", "running_mean", "running_var")}
        >>> sorted(cbam_state_from_timm({"conv.conv.weight": torch.ones(1, 2, 3, 3), **bn}))
        ['conv.bias', 'conv.weight']
    """
    out = se_state_from_timm(state)
    for key in [k for k in out if k == "conv.conv.weight" or k.endswith(".conv.conv.weight")]:
        prefix = key.removesuffix("conv.conv.weight")
        bn = {
            name: timm_entry(out, f"{prefix}conv.bn.{name}", f"{prefix}conv.bn.{name}")
            for name in ("weight", "bias", "running_mean", "running_var")
        }
        scale = bn["weight"] / torch.sqrt(bn["running_var"] + eps)
        weight = out.pop(key)
        out[f"{prefix}conv.weight"] = weight * scale.view(-1, 1, 1, 1)
        out[f"{prefix}conv.bias"] = bn["bias"] - bn["running_mean"] * scale
        for name in (*bn, "num_batches_tracked"):
            out.pop(f"{prefix}conv.bn.{name}", None)
    return out


def _channel_config(state: Mapping[str, Tensor], prefix: str) -> tuple[dict[str, object], Tensor]:
    weight = timm_entry(state, f"{prefix}mlp.reduce.weight", f"{prefix}fc1.weight")
    channels, reduction = reduction_of(weight)
    bias = f"{prefix}mlp.reduce.bias" in state
    return {"channels": channels, "reduction": reduction, "bias": bias}, weight


def _spatial_config(state: Mapping[str, Tensor], prefix: str) -> tuple[dict[str, object], Tensor]:
    weight = timm_entry(state, f"{prefix}conv.weight", f"{prefix}conv.conv.weight")
    return {"kernel_size": weight.shape[-1]}, weight


def _from_timm(
    cls: type[nn.Module],
    source: nn.Module | Mapping[str, Tensor],
    config: Callable[[Mapping[str, Tensor]], tuple[dict[str, object], Tensor]],
) -> nn.Module:
    """``cls`` built from the shapes of timm's converted weights, with them loaded."""
    eps = 1e-5  # timm's BatchNorm default, for a bare state dict
    if isinstance(source, nn.Module):
        eps = next((m.eps for m in source.modules() if isinstance(m, nn.BatchNorm2d)), eps)
    state = cbam_state_from_timm(timm_state(source, cls.__name__), eps=eps)
    kwargs, weight = config(state)
    ours = cls(**kwargs, device=weight.device, dtype=weight.dtype)
    return load_converted(ours, {k: v.detach() for k, v in state.items()})
