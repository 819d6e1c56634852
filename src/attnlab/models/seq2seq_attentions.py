"""The named attention variants of :class:`~attnlab.models.Seq2Seq`, in one table.

:class:`~attnlab.models.Seq2Seq` takes the attention module it runs and the few typed
arguments in which the papers' decoders differ (``attend_before``, ``input_feeding``,
``baseline``). The variants people name on the command line (``attnlab run translate
--attention luong-general``) are built here, each by one factory of
:data:`SEQ2SEQ_ATTENTIONS`::

    factory(hidden_size, options=Seq2SeqOptions(), *, device=None, dtype=None)
        -> Seq2SeqVariant(attention, attend_before, input_feeding, baseline)

so a new variant is one function and one entry. Example:

    >>> variant = SEQ2SEQ_ATTENTIONS["bahdanau"](8)
    >>> type(variant.attention).__name__, variant.attend_before
    ('AdditiveAttention', True)
    >>> from attnlab.models import Seq2Seq
    >>> model = Seq2Seq(11, 13, embedding_dim=4, hidden_size=8, **variant.as_kwargs())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import nn

from attnlab.nn import (
    AdditiveAttention,
    HardAttention,
    LocalAttention,
    LuongAttention,
    MovingAverageBaseline,
)
from attnlab.nn._checks import as_positive, factory_kwargs, positive_float
from attnlab.nn.hard import HardEstimator, HardEvaluation
from attnlab.nn.local import LocalMode
from attnlab.nn.luong_scores import LuongScoreName

__all__ = ["SEQ2SEQ_ATTENTIONS", "Seq2SeqAttentionFactory", "Seq2SeqOptions", "Seq2SeqVariant"]


@dataclass(frozen=True)
class Seq2SeqVariant:
    """Everything a variant plugs into :class:`~attnlab.models.Seq2Seq` (its keyword arguments).

    Attributes:
        attention: the attention module, or None (the encoder summary is the context).
        attend_before: Bahdanau's decoder (the previous state attends).
        input_feeding: Luong's input feeding.
        baseline: the REINFORCE baseline of a sampling attention, or None.
    """

    attention: nn.Module | None
    attend_before: bool = False
    input_feeding: bool = False
    baseline: nn.Module | None = None

    def as_kwargs(self) -> dict[str, object]:
        """The fields as keyword arguments of :class:`~attnlab.models.Seq2Seq`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Seq2SeqOptions:
    """The options of the variants; each factory reads the ones that concern it.

    Attributes:
        half_width: ``D`` of local attention (``local-m``, ``local-p``).
        max_source_len: source positions ``luong-location`` can score.
        hard_temperature: Gumbel-softmax temperature (``hard-gumbel``).
        hard_evaluation: hard attention at evaluation: ``"argmax"`` or ``"expectation"``.
        input_feeding: Luong's input feeding, for the variants with Luong's decoder
            (``luong-*``, ``local-*``, ``hard-*``); the others ignore it.
    """

    half_width: int = 5
    max_source_len: int = 64
    hard_temperature: float = 1.0
    hard_evaluation: HardEvaluation = "argmax"
    input_feeding: bool = False

    def __post_init__(self) -> None:
        as_positive("max_source_len", self.max_source_len)
        positive_float("hard_temperature", self.hard_temperature)


DEFAULT_OPTIONS = Seq2SeqOptions()


class Seq2SeqAttentionFactory(Protocol):
    """``factory(hidden_size, options, *, device, dtype) -> Seq2SeqVariant``."""

    def __call__(  # noqa: D102
        self,
        hidden_size: int,
        options: Seq2SeqOptions = DEFAULT_OPTIONS,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Seq2SeqVariant: ...


def _variant(doc: str) -> Callable[[Callable], Seq2SeqAttentionFactory]:
    """Give a generated factory its docstring (``attnlab list`` shows the first line)."""

    def decorate(factory: Callable) -> Seq2SeqAttentionFactory:
        factory.__doc__ = doc
        return factory

    return decorate


def _no_attention(
    hidden_size: int,
    options: Seq2SeqOptions = DEFAULT_OPTIONS,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Seq2SeqVariant:
    """Cho et al. 2014: no attention; the encoder summary is every step's context."""
    factory_kwargs(device, dtype)  # checked like every variant's
    return Seq2SeqVariant(None)


def _bahdanau(
    hidden_size: int,
    options: Seq2SeqOptions = DEFAULT_OPTIONS,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Seq2SeqVariant:
    """Bahdanau et al. 2015: the previous state attends (additive score), context into the RNN."""
    factory = factory_kwargs(device, dtype)
    attention = AdditiveAttention(hidden_size, hidden_size, hidden_size, **factory)
    return Seq2SeqVariant(attention, attend_before=True)


def _luong(score: LuongScoreName) -> Seq2SeqAttentionFactory:
    @_variant(f"Luong et al. 2015: global attention, {score} score; the new state attends.")
    def factory(
        hidden_size: int,
        options: Seq2SeqOptions = DEFAULT_OPTIONS,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Seq2SeqVariant:
        attention = LuongAttention(
            hidden_size,
            score=score,
            max_source_len=options.max_source_len,
            **factory_kwargs(device, dtype),
        )
        return Seq2SeqVariant(attention, input_feeding=options.input_feeding)

    return factory


def _local(mode: LocalMode) -> Seq2SeqAttentionFactory:
    @_variant(f"Luong et al. 2015: local attention, {mode} window of half-width D.")
    def factory(
        hidden_size: int,
        options: Seq2SeqOptions = DEFAULT_OPTIONS,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Seq2SeqVariant:
        attention = LocalAttention(
            hidden_size, half_width=options.half_width, mode=mode, **factory_kwargs(device, dtype)
        )
        return Seq2SeqVariant(attention, input_feeding=options.input_feeding)

    return factory


def _hard(estimator: HardEstimator, how: str) -> Seq2SeqAttentionFactory:
    @_variant(f"Xu et al. 2015: hard attention (Luong's general score), {how}.")
    def factory(
        hidden_size: int,
        options: Seq2SeqOptions = DEFAULT_OPTIONS,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Seq2SeqVariant:
        attention = HardAttention(
            LuongAttention(hidden_size, score="general", **factory_kwargs(device, dtype)),
            estimator=estimator,
            temperature=options.hard_temperature,
            evaluation=options.hard_evaluation,
        )
        baseline = MovingAverageBaseline() if estimator == "reinforce" else None
        return Seq2SeqVariant(attention, input_feeding=options.input_feeding, baseline=baseline)

    return factory


# The names people type (``--attention``, ``--variants``) -> the factory of the variant.
SEQ2SEQ_ATTENTIONS: dict[str, Seq2SeqAttentionFactory] = {
    "none": _no_attention,
    "bahdanau": _bahdanau,
    "luong-dot": _luong("dot"),
    "luong-general": _luong("general"),
    "luong-concat": _luong("concat"),
    "luong-location": _luong("location"),
    "local-m": _local("monotonic"),
    "local-p": _local("predictive"),
    "hard-reinforce": _hard("reinforce", "REINFORCE with a moving-average baseline"),
    "hard-gumbel": _hard("gumbel", "straight-through Gumbel-softmax"),
}
