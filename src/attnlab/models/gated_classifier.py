r"""Attention-gated image classification (Jetley et al. 2018; Schlemper et al. 2019).

A convolutional trunk whose intermediate maps are weighed, pixel by pixel, by attention
gates driven by the global feature of the deepest stage; the classifier sees only the
attention-weighted descriptors, so the gates must find what the class depends on, and
their coefficients show where it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.models.convnet import ConvStage
from attnlab.nn._checks import as_positive, as_size, build_injected, factory_kwargs, probability
from attnlab.vision._checks import check_image
from attnlab.vision.attention_gate import AttentionGate

__all__ = ["GateFactory", "GatedClassifier"]

GateFactory = Callable[..., nn.Module]
"""``gate(x_channels, g_channels, *, device, dtype)``: run as ``gate(x, g)``, returns alpha."""

# The default gate: W_x a 1x1 convolution, so alpha is computed at every pixel of x.
_PIXEL_GATE = functools.partial(AttentionGate, stride=1)


def _widths(widths: object) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise TypeError(f"widths must be a non-empty sequence of ints, got {widths!r}")
    return tuple(as_positive(f"widths[{i}]", w) for i, w in enumerate(widths))


def _gate_at(gate_at: object, count: int) -> tuple[int, ...]:
    if gate_at is None:  # the last two stages (the one stage of a one-stage trunk)
        return tuple(range(max(0, count - 2), count))
    if isinstance(gate_at, (str, bytes)) or not isinstance(gate_at, Sequence) or not gate_at:
        raise TypeError(f"gate_at must be None or a non-empty sequence of stages, got {gate_at!r}")
    stages = sorted({as_size(f"gate_at[{j}]", i) for j, i in enumerate(gate_at)})
    if stages[-1] >= count:
        raise ValueError(
            f"gate_at holds stage {stages[-1]}, but the network has {count} stages "
            f"(0..{count - 1}); give indices below len(widths)"
        )
    return tuple(stages)


class GatedClassifier(nn.Module):
    r"""Classifier that pools attention-gated stage maps (Jetley et al. 2018).

    Jetley, Lord, Lee & Torr 2018, "Learn to Pay Attention" (ICLR): the local features
    :math:`x^s` of several stages (the last convolutional one included) are scored
    against a global feature :math:`g` computed from the last, and the classifier reads
    only their attention-weighted sums.
    Schlemper et al. 2019, "Attention gated networks: Learning to leverage salient
    regions in medical images" (MedIA): the scores come from the additive attention
    gate of Oktay et al. 2018 (:class:`~attnlab.vision.attention_gate.AttentionGate`),
    with a sigmoid, and the sum is normalised by the coefficients.

    The trunk is :class:`~attnlab.models.convnet.ConvNet`'s: stages of conv3x3-BN-ReLU
    x2 and a 2x2 max-pool (none after the last). With :math:`x^s_i` the output of stage
    :math:`s` at pixel :math:`i` and :math:`g = \mathrm{GAP}(x^L)` the last stage's
    global average (taken before any gate):

    .. math::
        \alpha^s_i = \sigma\big(\psi_s^\top \mathrm{ReLU}(W_{x,s}^\top x^s_i +
        W_{g,s}^\top g + b_{g,s}) + b_{\psi,s}\big), \qquad
        \hat g^s = \frac{\sum_i \alpha^s_i\, x^s_i}{\sum_i \alpha^s_i}, \qquad
        y = W [\hat g^{s_1}; \hat g^{s_2}] + b

    The gating signal is global, so it has no grid: it is tiled (a broadcast view) onto
    the grid the gate expects, ``x``'s grid after the gate's ``stride``. The default
    gate has ``stride=1``: :math:`W_x` is a 1x1 convolution and every pixel of
    :math:`x^s` gets its own coefficient, which is Jetley et al.'s additive
    compatibility function :math:`\langle u, x_i + g\rangle` with a hidden ReLU layer
    and a sigmoid in place of their softmax. A gate with ``stride=2`` (the
    Attention U-Net's) scores 2x2 cells and resamples alpha bilinearly. Like Jetley et
    al., :math:`g` itself does not reach the head: the classifier must use what the
    gates let through (the plain :class:`~attnlab.models.convnet.ConvNet` is the case
    of one gate on the last stage with a constant alpha). The coefficients
    :math:`\alpha^s` are the model's spatial attention, for localisation;
    :math:`\alpha^s_i / \sum_j \alpha^s_j` is exactly the weight of pixel :math:`i` in
    :math:`\hat g^s`.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        widths: channels of each stage; the last stage gives :math:`g`.
        gate_at: stages (0-based) whose outputs are gated; None gates the last two.
        gate: class or factory of the attention gate, called as ``gate(x_channels,
            g_channels, device=, dtype=)`` per gated stage and run as ``gate(x, g)``; it
            returns an :class:`~attnlab.functional.AttentionOutput` with ``x * alpha``
            and ``alpha`` ``(B, 1, H, W)``. Its ``stride`` attribute (1 when it has
            none) sets the grid ``g`` is tiled on. Default: ``AttentionGate`` with
            ``stride=1``.
        dropout: dropout before the linear head.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        images ``(B, in_channels, H, W)`` with ``H, W >= 2 ** (len(widths) - 1)`` ->
        logits ``(B, num_classes)``; alpha of stage ``s``: ``(B, 1, h_s, w_s)``, the
        grid of that stage's output: ``H / 2^(s+1)`` (floor) below the last stage,
        which keeps the grid of the one before it.

    Example:
        >>> net = GatedClassifier(1, 10, widths=(4, 8, 16))
        >>> logits, alphas = net.forward_with_weights(torch.randn(2, 1, 32, 32))
        >>> logits.shape, [tuple(a.shape) for a in alphas]
        (torch.Size([2, 10]), [(2, 1, 8, 8), (2, 1, 8, 8)])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        widths: Sequence[int] = (32, 64, 128),
        gate_at: Sequence[int] | None = None,
        gate: GateFactory = _PIXEL_GATE,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.in_channels = c_in = as_positive("in_channels", in_channels)
        num_classes = as_positive("num_classes", num_classes)
        self.widths = widths = _widths(widths)
        self.gate_at = _gate_at(gate_at, len(widths))
        stages = []
        for i, width in enumerate(widths):
            stages.append(ConvStage(c_in, width, None, pool=i < len(widths) - 1, **factory))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.gates = nn.ModuleList(
            build_injected(
                gate,
                widths[s],
                widths[-1],
                name="gate",
                expected="an attention gate class or factory, called as "
                "gate(x_channels, g_channels) (e.g. AttentionGate)",
                **factory,
            )
            for s in self.gate_at
        )
        self.dropout = nn.Dropout(probability("dropout", dropout))
        self.head = nn.Linear(sum(widths[s] for s in self.gate_at), num_classes, **factory)

    def _check(self, images: object) -> Tensor:
        x = check_image(images, self.in_channels, "images", owner=self)
        least = 2 ** (len(self.widths) - 1)
        if min(x.shape[2:]) < least:
            raise ValueError(
                f"images of {x.shape[2]}x{x.shape[3]} are too small for {len(self.widths)} "
                f"stages with a 2x2 pool between them; give at least {least}x{least} pixels"
            )
        return x

    def forward_with_weights(self, images: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Class logits ``(B, num_classes)`` and each gate's alpha ``(B, 1, h_s, w_s)``."""
        x = self._check(images)
        local = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.gate_at:
                local.append(x)
        g = x.mean(dim=(-2, -1))[..., None, None]  # (B, Cg, 1, 1)
        pooled, alphas = [], []
        for gate, features in zip(self.gates, local):
            stride = getattr(gate, "stride", 1)
            grid = [max(1, s // stride) for s in features.shape[2:]]
            out = gate(features, g.expand(-1, -1, *grid))
            if not isinstance(out, AttentionOutput) or out.weights is None:
                raise TypeError(
                    f"gate {type(gate).__name__} must return an AttentionOutput with its "
                    f"coefficients alpha as weights, got {type(out).__name__}"
                )
            alpha = out.weights
            mass = alpha.sum(dim=(-2, -1)).clamp_min(torch.finfo(alpha.dtype).tiny)
            pooled.append(out.context.sum(dim=(-2, -1)) / mass)
            alphas.append(alpha)
        return self.head(self.dropout(torch.cat(pooled, dim=1))), tuple(alphas)

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.forward_with_weights(images)[0]

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"in_channels={self.in_channels}, widths={self.widths}, gate_at={self.gate_at}"
