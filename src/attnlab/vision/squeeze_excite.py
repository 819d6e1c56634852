"""Squeeze-and-Excitation: rescale each channel by a gate computed from all channels.

Also the pieces CBAM's channel attention shares with it (:class:`ChannelMLP`, the
reading of timm's weights).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from attnlab._validate import as_positive
from attnlab.functional import AttentionOutput
from attnlab.nn._checks import factory_kwargs
from attnlab.vision._checks import check_image

__all__ = ["ChannelMLP", "SqueezeExcite", "se_state_from_timm"]

# Leaf modules of a timm SE/CBAM block that compute what ours do (BatchNorm: CBAM's
# spatial conv, folded in by from_timm); any other (GELU, hard sigmoid, ...) does not.
_TIMM_LEAVES = {"Conv2d", "ReLU", "Sigmoid", "Identity", "BatchNorm2d"}
_TIMM_FC = {"fc1": "mlp.reduce", "fc2": "mlp.expand"}


class ChannelMLP(nn.Module):
    """The bottleneck MLP over channel descriptors: ``W_2 relu(W_1 z + b_1) + b_2``.

    ``W_1`` maps ``C`` to ``C // reduction`` channels and ``W_2`` back; both are 1x1
    convolutions, so the descriptors stay ``(B, C, 1, 1)`` and timm's weights (also 1x1
    convolutions) load as they are. SE's excitation (Hu et al. 2018) and CBAM's shared
    channel MLP (Woo et al. 2018) are this MLP; the sigmoid is theirs.

    Args:
        channels: ``C``.
        reduction: ``r``; the hidden width is ``C // r``, so ``1 <= r <= C``.
        bias: whether the two layers add a bias.
        device: where the parameters are created.
        dtype: the parameters' dtype.

    Shapes:
        z ``(B, C, 1, 1)`` (or any ``(B, C, H, W)``) -> logits of the same shape.

    Example:
        >>> ChannelMLP(8, 4)(torch.randn(2, 8, 1, 1)).shape
        torch.Size([2, 8, 1, 1])
    """

    def __init__(
        self,
        channels: int,
        reduction: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = as_positive("channels", channels)
        reduction = as_positive("reduction", reduction)
        if reduction > channels:
            raise ValueError(
                f"reduction {reduction} is larger than channels {channels}, which leaves no "
                f"hidden units (channels // reduction); choose 1 <= reduction <= {channels}"
            )
        factory = factory_kwargs(device, dtype)
        hidden = channels // reduction
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=bias, **factory)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1, bias=bias, **factory)

    def forward(self, z: Tensor) -> Tensor:
        """Channel logits for the descriptors ``z``."""
        return self.expand(self.act(self.reduce(z)))


class SqueezeExcite(nn.Module):
    r"""Squeeze-and-Excitation block (Hu et al. 2018, "Squeeze-and-Excitation Networks").

    .. math::
        z_c = \frac{1}{HW} \sum_{i,j} x_{c,i,j}, \qquad
        s = \sigma\big(W_2\, \mathrm{relu}(W_1 z + b_1) + b_2\big), \qquad
        y_c = s_c\, x_c

    with ``W_1`` of shape ``(C / r, C)`` and ``W_2`` of ``(C, C / r)`` (1x1 convolutions,
    :class:`ChannelMLP`). The hidden width is ``C // r``.

    Against timm: equals ``timm.layers.SEModule(C, rd_channels=C // r)`` (bias on, ReLU,
    sigmoid, no max-pool, no norm). timm's default ``rd_ratio=1/16`` rounds ``C / 16`` to a
    multiple of 8 (``rd_divisor=8``), so its ``SEModule(64)`` has 8 hidden units where
    ``SqueezeExcite(64)`` has 4; :meth:`from_timm` reads the width from the weights.

    Args:
        channels: ``C``, the input's channel count.
        reduction: ``r``, with ``1 <= r <= C``.
        bias: whether the two FC layers add a bias (the paper's code and timm do).
        device: where the parameters are created.
        dtype: the parameters' dtype.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C, H, W)``, weights (the excitations ``s``)
        ``(B, C, 1, 1)``.

    Example:
        >>> se = SqueezeExcite(8, reduction=4)
        >>> y, s = se(torch.randn(2, 8, 5, 7))
        >>> y.shape, s.shape
        (torch.Size([2, 8, 5, 7]), torch.Size([2, 8, 1, 1]))
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.mlp = ChannelMLP(channels, reduction, bias=bias, device=device, dtype=dtype)
        self.channels, self.reduction = int(channels), int(reduction)

    def forward(self, x: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(x * s, s)`` (weights None when ``need_weights`` is False)."""
        check_image(x, self.channels, owner=self)
        s = torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)))
        return AttentionOutput(x * s, s if need_weights else None)

    def extra_repr(self) -> str:
        """Sizes, shown by ``repr``."""
        return f"channels={self.channels}, reduction={self.reduction}"

    @classmethod
    def from_timm(cls, source: nn.Module | Mapping[str, Tensor]) -> SqueezeExcite:
        """A copy of timm's ``SEModule`` (or of its ``state_dict()``), on its device and dtype.

        Raises:
            ValueError: timm's module has options this block lacks (a norm layer, max
                pooling, another activation or gate), or a hidden width that is not
                ``C // r`` for any integer ``r``.
        """
        state = se_state_from_timm(timm_state(source, cls.__name__))
        weight = timm_entry(state, "mlp.reduce.weight", "fc1.weight")
        channels, reduction = reduction_of(weight)
        ours = cls(
            channels,
            reduction,
            bias="mlp.reduce.bias" in state,
            device=weight.device,
            dtype=weight.dtype,
        )
        return load_converted(ours, state)


def se_state_from_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename timm's SE/CBAM MLP entries to ours: ``[p.]fc1.*`` -> ``[p.]mlp.reduce.*``.

    ``fc2`` becomes ``mlp.expand``; other entries pass unchanged. The tensors are not
    copied, so gradients flow through (used to compare parameter gradients).

    Example:
        >>> sorted(se_state_from_timm({"fc1.weight": torch.zeros(1), "fc2.bias": torch.zeros(1)}))
        ['mlp.expand.bias', 'mlp.reduce.weight']
    """
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        prefix, _, layer = head.rpartition(".")
        if layer in _TIMM_FC:
            key = ".".join(filter(None, (prefix, _TIMM_FC[layer], leaf)))
        out[key] = value
    return out


def timm_state(source: nn.Module | Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """The tensors of a timm module (its ``state_dict()``) or of a state dict.

    A module is also checked for what its state dict does not show: SE's ``add_maxpool``
    and activations or gates other than ReLU and sigmoid (one line each).
    """
    if isinstance(source, nn.Module):
        for sub in source.modules():
            if getattr(sub, "add_maxpool", False):
                raise ValueError(
                    f"from_timm: {what} averages only; build timm's module with add_maxpool=False"
                )
            kind = type(sub).__name__
            if next(sub.children(), None) is None and kind not in _TIMM_LEAVES:
                raise ValueError(
                    f"from_timm: timm's module holds {kind}, which {what} does not have "
                    "(ReLU and sigmoid only)"
                )
        return dict(source.state_dict())
    if isinstance(source, Mapping):
        return dict(source)
    raise TypeError(
        f"from_timm takes a timm module or its state_dict(), got {type(source).__name__}"
    )


def timm_entry(state: Mapping[str, Tensor], key: str, timm_key: str) -> Tensor:
    """``state[key]``, or one line naming timm's entry that should have given it."""
    if key not in state:
        raise ValueError(f"from_timm: timm's state dict has no {timm_key}; got {sorted(state)}")
    return state[key]


def reduction_of(reduce_weight: Tensor) -> tuple[int, int]:
    """``(C, r)`` of a ``(C // r, C, 1, 1)`` reduce weight, or one line when no ``r`` fits."""
    hidden, channels = reduce_weight.shape[:2]
    reduction = channels // hidden
    if channels // reduction != hidden:
        raise ValueError(
            f"from_timm: timm's hidden width {hidden} is not channels // r for any integer r "
            f"({channels} channels); build it with rd_channels={channels} // r"
        )
    return channels, reduction


def load_converted(module: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """``module`` with the converted timm ``state`` loaded; one line if the names differ."""
    ours = module.state_dict()
    extra, missing = sorted(set(state) - set(ours)), sorted(set(ours) - set(state))
    if extra or missing:
        raise ValueError(
            f"from_timm: timm's state dict does not fit {type(module).__name__} "
            f"(options it lacks?): unexpected {extra}, missing {missing}"
        )
    module.load_state_dict(state)
    return module
