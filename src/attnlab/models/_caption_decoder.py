"""Parts of the Show, Attend and Tell captioner, apart from the model itself.

The table of its attention variants (the no-attention one is
:class:`~attnlab.nn.MeanAttention`), its loss terms, memory and
decoder state, the doubly stochastic penalty, the input checks of its constructor, and
the adapter that lets :func:`~attnlab.models.search.beam_search` decode images.

:func:`~attnlab.models.search.beam_search` reads its source as ``(B, S)`` token ids (it
builds the target tokens with ``src.new_full`` and sizes the weight history by ``S``). An
image is no token sequence, so :class:`EncodedImages` presents the ``L = h * w`` grid cells
as the source positions: ``src`` is ``arange(L)`` per image and every encoder call returns
the images' memory, encoded once in evaluation mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from attnlab.models.convnet import ConvNet
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.nn.additive import AdditiveAttention
from attnlab.nn.hard import HardAttention
from attnlab.nn.mean import MeanAttention

if TYPE_CHECKING:  # the adapter only calls the model's methods
    from attnlab.models.show_attend_tell import ShowAttendTell

__all__ = [
    "CAPTION_ATTENTIONS",
    "CaptionLoss",
    "CaptionMemory",
    "CaptionState",
    "EncodedImages",
    "coverage_penalty",
]


Device = torch.device | str | None
CaptionAttentionFactory = Callable[..., nn.Module]
"""``factory(hidden_size, feature_size, attention_size, *, device, dtype) -> attention``."""


def soft_attention(
    hidden_size: int,
    feature_size: int,
    attention_size: int,
    *,
    device: Device = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Soft attention: the additive score of Bahdanau et al. (the paper's f_att)."""
    factory = factory_kwargs(device, dtype)
    return AdditiveAttention(hidden_size, feature_size, attention_size, **factory)


def _hard(estimator: str) -> CaptionAttentionFactory:
    def factory(
        hidden_size: int,
        feature_size: int,
        attention_size: int,
        *,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> nn.Module:
        soft = soft_attention(hidden_size, feature_size, attention_size, device=device, dtype=dtype)
        return HardAttention(soft, estimator=estimator)  # type: ignore[arg-type]

    factory.__doc__ = f"Hard attention: one sampled location, trained by {estimator}."
    return factory


def _none(
    hidden_size: int,
    feature_size: int,
    attention_size: int,
    *,
    device: Device = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """No attention: every word sees the mean-pooled grid (uniform weights)."""
    return MeanAttention(hidden_size, feature_size, device=device, dtype=dtype)


# The names people type (``--models soft,hard,none``) -> the attention module's factory.
CAPTION_ATTENTIONS: dict[str, CaptionAttentionFactory] = {
    "soft": soft_attention,
    "hard": _hard("reinforce"),
    "hard-gumbel": _hard("gumbel"),
    "none": _none,
}


@dataclass
class CaptionLoss:
    """The terms of the training loss, separately, so an experiment can log them.

    ``total = cross_entropy + doubly_stochastic + reinforce`` is what to backpropagate.
    """

    total: Tensor  # scalar
    cross_entropy: Tensor  # mean per real token (label-smoothed if asked)
    doubly_stochastic: Tensor  # lambda * mean over images of sum_i (1 - sum_t alpha_ti)^2
    reinforce: Tensor  # REINFORCE term with its entropy bonus; 0 without a sampling attention
    entropy: Tensor  # mean attention entropy over real steps (detached, for logging)
    nll: Tensor  # summed token NLL (detached)
    tokens: Tensor  # real-token count


def coverage_penalty(weights: Tensor, mask: Tensor) -> Tensor:
    r"""Xu et al. 2015's doubly stochastic penalty per image, over real steps only.

    .. math:: P = \sum_{i=1}^{L} \Big(1 - \sum_{t:\, m_t} \alpha_{ti}\Big)^2

    It asks every grid cell to receive, over the whole caption, a total attention of
    about one ("pay equal attention to every part of the image"). Padded steps (``m_t``
    False) are left out, so the padding of a batch does not change an image's penalty.

    Args:
        weights: ``(B, T, L)`` attention of each step over the ``L`` cells.
        mask: ``(B, T)`` boolean, True at real (non-padded) steps.

    Returns:
        ``(B,)`` penalties (multiply by ``lambda`` and average for the loss).

    Example:
        >>> w = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.3, 0.7]]])
        >>> coverage_penalty(w, torch.tensor([[True, True, False]]))
        tensor([0.5000])
    """
    if weights.dim() != 3 or mask.shape != weights.shape[:2]:
        raise ValueError(
            f"weights must be (B, T, L) with mask (B, T); got {tuple(weights.shape)} and "
            f"{tuple(mask.shape)}"
        )
    attended = (weights * mask.unsqueeze(-1).to(weights.dtype)).sum(1)
    return (1.0 - attended).pow(2).sum(-1)


@dataclass
class CaptionMemory:
    """The encoded images, reused at every decoding step (reordered by beam search)."""

    values: Tensor  # (B, L, D) annotation vectors a_i, the grid in row-major order
    keys: Tensor  # (B, L, *) the annotations as the attention prepared them
    mean: Tensor  # (B, D) mean annotation, which initialises the LSTM
    grid: tuple[int, int]  # (h, w) with h * w = L, to fold weights back into a map

    def select(self, index: Tensor) -> CaptionMemory:
        """The memory of the batch rows ``index`` (repeats allowed)."""
        return CaptionMemory(
            self.values.index_select(0, index),
            self.keys.index_select(0, index),
            self.mean.index_select(0, index),
            self.grid,
        )


@dataclass
class CaptionState:
    """The LSTM decoder's ``(h, c)``, each ``(B, hidden_size)``."""

    h: Tensor
    c: Tensor

    def select(self, index: Tensor) -> CaptionState:
        """The state of the batch rows ``index`` (beam search reorders hypotheses)."""
        return CaptionState(self.h.index_select(0, index), self.c.index_select(0, index))


class EncodedImages:
    """A captioner bound to encoded images, in the form beam search expects.

    Satisfies :class:`~attnlab.models.search.EncoderDecoder`: ``encode(src, src_lengths)``
    returns the images' memory, where ``src`` is the grid positions ``(B, L)`` that
    :meth:`ShowAttendTell.searchable` returns; the other methods are the model's.
    """

    def __init__(self, model: ShowAttendTell, memory: CaptionMemory) -> None:
        self.model, self.memory = model, memory

    @property
    def pad_id(self) -> int:
        """The model's padding id."""
        return self.model.pad_id

    @property
    def tgt_vocab(self) -> int:
        """The model's vocabulary size."""
        return self.model.tgt_vocab

    @property
    def training(self) -> bool:
        """The model's mode."""
        return self.model.training

    def encode(self, src: Tensor, src_lengths: Tensor) -> CaptionMemory:
        """The bound images' memory; ``src`` must be the grid positions it was made with."""
        rows, cells = self.memory.values.shape[:2]
        if tuple(src.shape) != (rows, cells):
            raise ValueError(
                f"src must be the (B, L) = ({rows}, {cells}) grid positions that searchable() "
                f"returned with these images; got {tuple(src.shape)}"
            )
        return self.memory

    def initial_state(self, memory: CaptionMemory) -> CaptionState:
        """See :meth:`ShowAttendTell.initial_state`."""
        return self.model.initial_state(memory)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`ShowAttendTell.step`."""
        return self.model.step(*args, **kwargs)

    def eval(self) -> EncodedImages:
        """Put the model in evaluation mode."""
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> EncodedImages:
        """Put the model in training mode (or not)."""
        self.model.train(mode)
        return self


def grid_positions(memory: CaptionMemory) -> tuple[Tensor, Tensor]:
    """``src`` ``(B, L)`` = ``arange(L)`` per image and ``src_lengths`` ``(B,)`` = ``L``."""
    rows, cells = memory.values.shape[:2]
    device = memory.values.device
    src = torch.arange(cells, device=device).expand(rows, cells).contiguous()
    return src, torch.full((rows,), cells, device=device, dtype=torch.long)


def default_trunk(in_channels: int, widths: tuple[int, ...], factory: dict) -> nn.Module:
    """The stages of :class:`~attnlab.models.ConvNet` without its pooling and head."""
    net = ConvNet(in_channels, 1, widths=widths, **factory)
    return nn.Sequential(*net.stages)


def image_size_of(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        return (as_positive("image_size", size),) * 2  # type: ignore[return-value]
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (as_positive("image_size[0]", size[0]), as_positive("image_size[1]", size[1]))
    raise TypeError(f"image_size must be None, an int or (H, W), got {size!r}")


def build_encoder(
    encoder: object, feature_size: int | None, widths: object, in_channels: int, factory: dict
) -> tuple[nn.Module, int, int]:
    """The encoder, its annotation size ``D`` and the least image side it accepts."""
    if encoder is None:
        if feature_size is not None:
            raise ValueError(
                "feature_size describes an injected encoder; the default trunk's is widths[-1]"
            )
        stages = (32, 64, 128) if widths is None else widths
        if isinstance(stages, (str, bytes)) or not isinstance(stages, (tuple, list)) or not stages:
            raise TypeError(f"widths must be a non-empty sequence of ints, got {widths!r}")
        stages = tuple(as_positive(f"widths[{i}]", s) for i, s in enumerate(stages))
        return default_trunk(in_channels, stages, factory), stages[-1], 2 ** (len(stages) - 1)
    if not isinstance(encoder, nn.Module):
        raise TypeError(
            f"encoder must be an nn.Module mapping (B, C, H, W) to (B, D, h, w), got "
            f"{type(encoder).__name__}"
        )
    if widths is not None:
        raise ValueError("widths builds the default trunk; with an encoder give feature_size")
    if feature_size is None:
        raise ValueError("give feature_size, the channels D of the injected encoder's grid")
    return encoder, as_positive("feature_size", feature_size), 1


def check_attention(attention: object, hidden_size: int, feature_size: int) -> None:
    if not isinstance(attention, nn.Module):
        raise TypeError(
            f"attention must be an attention module or None, got {type(attention).__name__}; "
            "names resolve through CAPTION_ATTENTIONS"
        )
    for side, size in (("query_size", hidden_size), ("key_size", feature_size)):
        got = getattr(attention, side, None)
        if isinstance(got, int) and got != size:
            whose = "hidden_size" if side == "query_size" else "feature_size"
            raise ValueError(
                f"the attention's {side} is {got} but the model's {whose} is {size}; build "
                f"it as CAPTION_ATTENTIONS[name](hidden_size, feature_size, attention_size)"
            )
