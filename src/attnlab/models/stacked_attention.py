r"""Stacked Attention Networks for visual questions (Yang et al. 2016) and their baselines.

"Stacked Attention Networks for Image Question Answering" (CVPR 2016). A CNN turns the
image into a grid of region vectors, an LSTM turns the question into one vector, and
``K`` attention layers ("hops") each attend over the grid with the current query and add
what they found to it, so a later hop can look where an earlier one pointed it:

.. math::
    v_I = \tanh(W_I f_I + b_I), \quad u^0 = v_Q, \\
    h_A^k = \tanh(W_{I,A}^k v_I \oplus (W_{Q,A}^k u^{k-1} + b_A^k)), \quad
    p_I^k = \mathrm{softmax}(W_P^k h_A^k), \\
    u^k = u^{k-1} + \textstyle\sum_i p_i^k v_i, \quad
    p_{ans} = \mathrm{softmax}(W_u u^K + b_u).

Each hop is additive attention with query :math:`u^{k-1}` and keys :math:`v_I`
(:class:`~attnlab.nn.AdditiveAttention`, one per hop; the paper's :math:`b_P` adds the
same number to every region's score, so softmax drops it). The baselines of the paper's
comparison are the same class: ``hops=0`` is "CNN + LSTM" without attention
(:math:`u = v_Q + \mathrm{mean}_i\, v_i`), ``image_encoder=None`` the question-only LSTM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from attnlab.functional import AttentionOutput
from attnlab.models.convnet import ConvStage
from attnlab.nn._checks import (
    as_positive,
    as_size,
    build_injected,
    check_ids,
    check_tensor,
    factory_kwargs,
    probability,
)
from attnlab.nn.additive import AdditiveAttention
from attnlab.vision._checks import check_image

__all__ = [
    "ConvGridEncoder",
    "HopFactory",
    "ImageEncoderFactory",
    "QuestionEncoder",
    "StackedAttentionNetwork",
]

ImageEncoderFactory = Callable[..., nn.Module]
"""``image_encoder(in_channels, device=, dtype=)``: a module mapping ``(B, C, H, W)`` images
to ``(B, D, h, w)`` grid features, with an ``out_channels`` attribute (``D``)."""

HopFactory = Callable[..., nn.Module]
"""``attention(query_size, key_size, hidden_size, device=, dtype=)``: one hop's attention,
called as ``attention(u (B, d), v_I (B, N, d), need_weights=)`` -> ``(context, weights)``."""


class ConvGridEncoder(nn.Module):
    """The default image encoder: conv3x3-BN-ReLU x2 + 2x2 max-pool per stage, no head.

    The stages of :class:`~attnlab.models.ConvNet`, each ending in a pool, so the last
    map is a grid of ``H / 2**len(widths)`` by ``W / 2**len(widths)`` region vectors (the
    paper takes VGG's last pooling layer, 14 x 14 regions of a 448 x 448 image).

    Args:
        in_channels: image channels.
        widths: channels of each stage.
        pool_last: also pool after the last stage; False: the stages of
            :class:`~attnlab.models.ConvNet` (a pool between stages only).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        images ``(B, in_channels, H, W)`` with ``H, W >= r`` ->
        ``(B, widths[-1], H // r, W // r)``, ``r = 2**len(widths)`` (``pool_last=False``:
        ``2**(len(widths) - 1)``), the ``reduction`` attribute.

    Example:
        >>> ConvGridEncoder(3, widths=(4, 8))(torch.randn(2, 3, 16, 12)).shape
        torch.Size([2, 8, 4, 3])
        >>> ConvGridEncoder(3, widths=(4, 8), pool_last=False)(torch.randn(2, 3, 16, 12)).shape
        torch.Size([2, 8, 8, 6])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        pool_last: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.in_channels = c_in = as_positive("in_channels", in_channels)
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise TypeError(f"widths must be a non-empty sequence of ints, got {widths!r}")
        stages = []
        for i, width in enumerate(widths):
            width = as_positive(f"widths[{i}]", width)
            last = i == len(widths) - 1
            stages.append(ConvStage(c_in, width, None, pool=pool_last or not last, **factory))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = c_in
        self.reduction = 2 ** (len(stages) - (0 if pool_last else 1))

    def forward(self, images: Tensor) -> Tensor:
        """The grid features ``(B, out_channels, h, w)``."""
        check_image(images, self.in_channels, "images", owner=self)
        if min(images.shape[-2:]) < self.reduction:
            raise ValueError(
                f"images of {images.shape[-2]}x{images.shape[-1]} are too small for "
                f"{len(self.stages)} pooling stages; give at least "
                f"{self.reduction}x{self.reduction} pixels"
            )
        return self.stages(images)


class QuestionEncoder(nn.Module):
    """Word embeddings (id 0 = padding) -> LSTM; the last state of each question is ``v_Q``.

    Questions are packed by their lengths, so what stands after a question's end (its
    padding) never reaches ``v_Q``.

    Args:
        vocab_size: number of token ids (0 is padding).
        embedding_dim: word embedding size.
        hidden_size: LSTM state size, the ``d`` of the model.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        ids ``(B, L)`` long, lengths ``(B,)`` in ``[1, L]`` -> ``(B, hidden_size)``.

    Example:
        >>> enc = QuestionEncoder(10, 4, 6)
        >>> enc(torch.tensor([[3, 4, 0], [5, 6, 7]]), torch.tensor([2, 3])).shape
        torch.Size([2, 6])
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.vocab_size = as_positive("vocab_size", vocab_size)
        embedding_dim = as_positive("embedding_dim", embedding_dim)
        self.hidden_size = as_positive("hidden_size", hidden_size)
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim, padding_idx=0, **factory)
        self.lstm = nn.LSTM(embedding_dim, self.hidden_size, batch_first=True, **factory)

    def check(self, ids: object, lengths: object) -> None:
        """One-line errors for ids outside the vocabulary or lengths that do not fit ``ids``."""
        ids = check_ids("questions", ids, self.vocab_size, dims=2, layout="(B, L)")
        lengths = check_tensor("lengths", lengths)
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must be an integer tensor (B,), got {lengths.dtype}")
        if lengths.shape != ids.shape[:1]:
            raise ValueError(
                f"lengths must be (B,) = ({ids.shape[0]},) to match questions "
                f"{tuple(ids.shape)}, got shape {tuple(lengths.shape)}"
            )
        if lengths.numel():
            low, high = torch.stack(torch.aminmax(lengths)).tolist()
            if low < 1 or high > ids.shape[1]:
                raise ValueError(
                    f"lengths must lie in 1..{ids.shape[1]} (the padded question length), got "
                    f"min {low}, max {high}; count each question's real tokens"
                )

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """``v_Q`` ``(B, hidden_size)``: the LSTM state after each question's last token."""
        self.check(ids, lengths)
        return self.encode(ids, lengths)

    def encode(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """:meth:`forward` on inputs already checked with :meth:`check`."""
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        return h_n[-1]


def _build_image_encoder(factory: ImageEncoderFactory, in_channels: int, **kw: object) -> nn.Module:
    encoder = build_injected(
        factory,
        in_channels,
        name="image_encoder",
        expected="an image encoder class or factory, called as image_encoder(in_channels)",
        **kw,
    )
    width = getattr(encoder, "out_channels", None)
    if not isinstance(width, int) or width < 1:
        raise TypeError(
            f"image_encoder {type(encoder).__name__} must have an int out_channels (the "
            f"width D of its (B, D, h, w) grid), got {width!r}"
        )
    return encoder


class StackedAttentionNetwork(nn.Module):
    r"""SAN (Yang et al. 2016): ``hops`` additive attention layers over CNN grid features.

    See the module docstring for the formula. The grid features ``(B, D, h, w)`` of the
    image encoder become ``N = h * w`` regions, projected to the question size ``d``
    (:math:`v_I = \tanh(W_I f_I + b_I)`); the question is the LSTM's last state
    (:class:`QuestionEncoder`). Every model of the paper's comparison is this class, with
    one forward for all, so an experiment loops over them:

    * ``hops=2`` (the paper's best) or ``hops=1``: SAN;
    * ``hops=0``: CNN + LSTM without attention, :math:`u = v_Q + \frac{1}{N}\sum_i v_i`;
    * ``image_encoder=None`` (``hops=0``): the question-only LSTM; images are ignored.

    Args:
        vocab_size: number of question token ids (0 is padding).
        num_answers: answer classes.
        in_channels: image channels.
        hops: attention layers ``K`` (0 for the baselines).
        embedding_dim: word embedding size.
        hidden_size: ``d``, the LSTM state and region vector size.
        attention_size: ``k``, the size of each hop's tanh layer :math:`h_A`.
        image_encoder: class or factory of the image encoder (:data:`ImageEncoderFactory`),
            default :class:`ConvGridEncoder`; None for the question-only model.
        attention: class or factory of each hop's attention (:data:`HopFactory`), default
            :class:`~attnlab.nn.AdditiveAttention`; one is built per hop.
        image_size: when given, images must be exactly this ``H x W`` (an int for square).
        dropout: dropout on ``u^K`` before the answer layer.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        images ``(B, in_channels, H, W)``, questions ``(B, L)`` long, lengths ``(B,)`` in
        ``[1, L]`` -> logits ``(B, num_answers)``; from :meth:`forward_with_weights`, the
        attention map of every hop ``(B, K, h, w)`` (None for the question-only model).

    Example:
        >>> from functools import partial
        >>> san = StackedAttentionNetwork(20, 5, hops=2, hidden_size=8, attention_size=6,
        ...                               image_encoder=partial(ConvGridEncoder, widths=(4, 8)))
        >>> images, questions = torch.randn(3, 3, 16, 16), torch.tensor([[4, 5, 0]] * 3)
        >>> logits, maps = san.forward_with_weights(images, questions, torch.tensor([2] * 3))
        >>> logits.shape, maps.shape, maps.sum(dim=(-2, -1)).allclose(torch.ones(3, 2))
        (torch.Size([3, 5]), torch.Size([3, 2, 4, 4]), True)
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        in_channels: int = 3,
        hops: int = 2,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        attention_size: int = 64,
        image_encoder: ImageEncoderFactory | None = ConvGridEncoder,
        attention: HopFactory = AdditiveAttention,
        image_size: int | tuple[int, int] | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.num_answers = as_positive("num_answers", num_answers)
        self.in_channels = as_positive("in_channels", in_channels)
        self.hops = as_size("hops", hops)
        d = as_positive("hidden_size", hidden_size)
        attention_size = as_positive("attention_size", attention_size)
        self.image_size = _image_size(image_size)
        if image_encoder is None and self.hops:
            raise ValueError(
                f"hops={self.hops} needs an image to attend over; with image_encoder=None "
                "(the question-only model) give hops=0"
            )
        self.question_encoder = QuestionEncoder(vocab_size, embedding_dim, d, **factory)
        self.image_encoder = self.image_proj = None
        if image_encoder is not None:
            self.image_encoder = _build_image_encoder(image_encoder, self.in_channels, **factory)
            self.image_proj = nn.Linear(self.image_encoder.out_channels, d, **factory)
        expected = "an attention class or factory, called as attention(d, d, attention_size)"
        self.attentions = nn.ModuleList(
            build_injected(
                attention, d, d, attention_size, name="attention", expected=expected, **factory
            )
            for _ in range(self.hops)
        )
        self.dropout = nn.Dropout(probability("dropout", dropout))
        self.classifier = nn.Linear(d, self.num_answers, **factory)

    def check_images(self, images: object, batch: int | None = None) -> Tensor:
        """``images`` when they fit the model (channels, dtype, ``image_size``, ``batch``)."""
        t = check_image(images, self.in_channels, "images", owner=self)
        if self.image_size is not None and tuple(t.shape[-2:]) != self.image_size:
            want = "x".join(map(str, self.image_size))
            raise ValueError(
                f"images must be {want} pixels (image_size), got "
                f"{t.shape[-2]}x{t.shape[-1]}; resize them or build with that size"
            )
        if batch is not None and t.shape[0] != batch:
            raise ValueError(
                f"images and questions must hold the same batch, got {t.shape[0]} images "
                f"and {batch} questions"
            )
        return t

    def encode_image(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """The region vectors ``v_I`` ``(B, N, d)`` and the grid ``(h, w)``, ``N = h * w``."""
        if self.image_encoder is None or self.image_proj is None:
            raise ValueError("this model has no image encoder (image_encoder=None)")
        self.check_images(images)
        grid = self.image_encoder(images)
        h, w = grid.shape[-2:]
        # (B, D, h, w) -> (B, h*w, D): regions in row-major order, as the maps are reshaped.
        regions = grid.flatten(2).transpose(1, 2)
        return torch.tanh(self.image_proj(regions)), (h, w)

    def forward_with_weights(
        self,
        images: Tensor | None,
        questions: Tensor,
        lengths: Tensor,
        *,
        need_weights: bool = True,
    ) -> AttentionOutput:
        """``(logits (B, num_answers), maps (B, K, h, w) | None)``.

        ``maps[:, k]`` is hop ``k``'s distribution over the grid (each sums to 1); None
        when ``need_weights`` is False or the model has no image encoder.
        """
        # Every check before any work; the question-only model ignores the images.
        self.question_encoder.check(questions, lengths)
        if self.image_encoder is not None:
            self.check_images(images, questions.shape[0])
        u = self.question_encoder.encode(questions, lengths)
        if self.image_encoder is None:
            return AttentionOutput(self.classifier(self.dropout(u)), None)
        v, (h, w) = self.encode_image(images)
        maps = []
        if not self.hops:
            u = u + v.mean(dim=1)
        for attention in self.attentions:
            context, weights = attention(u, v, need_weights=need_weights)
            u = u + context  # u^k = u^{k-1} + sum_i p_i^k v_i
            maps.append(weights)
        logits = self.classifier(self.dropout(u))
        if not need_weights:
            return AttentionOutput(logits, None)
        stacked = torch.stack(maps, dim=1) if maps else v.new_zeros(v.shape[0], 0, h * w)
        return AttentionOutput(logits, stacked.unflatten(-1, (h, w)))

    def forward(self, images: Tensor | None, questions: Tensor, lengths: Tensor) -> Tensor:
        """Answer logits ``(B, num_answers)`` (what :func:`attnlab.train.fit` calls)."""
        return self.forward_with_weights(images, questions, lengths, need_weights=False)[0]

    def extra_repr(self) -> str:
        """The hop count and the image size constraint."""
        return f"hops={self.hops}, image_size={self.image_size}"


def _image_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, tuple) and len(size) == 2):
        raise TypeError(f"image_size must be None, an int or a pair (H, W), got {size!r}")
    return (as_positive("image_size[0]", size[0]), as_positive("image_size[1]", size[1]))
