"""The four scores of Luong et al. 2015 as strategies for :class:`~attnlab.nn.LuongAttention`.

Each strategy is a small module that owns its parameters, builds its functional
:class:`~attnlab.functional.Score`, says whether prepared keys are projections, and
adds its options to ``repr``; each class gives its formula (dot, general, concat,
location; see :class:`~attnlab.nn.LuongAttention` for all four side by side).

:data:`LUONG_SCORES` is the one table from the names people type (``"general"``) to
the strategies; a new score is a subclass and one entry.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from attnlab.functional import Additive, Dot, General, Location, Score
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size

__all__ = [
    "LUONG_SCORES",
    "ConcatScore",
    "DotScore",
    "GeneralScore",
    "LocationScore",
    "LuongScore",
    "LuongScoreName",
]

LuongScoreName = Literal["dot", "general", "concat", "location"]


class LuongScore(nn.Module):
    """Base of the Luong score strategies: sizes, parameters, the functional score.

    Subclasses create their parameters in :meth:`_build` (which receives the options
    named in ``options``) and return their functional score from :meth:`score`.

    Args:
        query_size: decoder state size ``Dq``.
        key_size: source state size ``Dk``.
        device: where the parameters live.
        dtype: their dtype.
    """

    name: str = "score"
    projected_keys: bool = False  # prepared keys are projections, not the source states
    options: tuple[str, ...] = ()  # LuongAttention's options this score takes

    def __init__(
        self,
        query_size: int,
        key_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: int | None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.query_size = as_positive("query_size", query_size)
        self.key_size = as_positive("key_size", key_size)
        self._build(factory, **options)

    def _build(self, factory: dict) -> None:
        """Create the parameters (none by default)."""

    @classmethod
    def from_options(
        cls,
        query_size: int,
        key_size: int,
        *,
        hidden_size: int | None = None,
        max_source_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LuongScore:
        """Build from :class:`~attnlab.nn.LuongAttention`'s options (each takes its own)."""
        given = {"hidden_size": hidden_size, "max_source_len": max_source_len}
        mine = {name: given[name] for name in cls.options}
        return cls(query_size, key_size, device=device, dtype=dtype, **mine)

    def score(self) -> Score:
        """The functional score with this strategy's parameters."""
        raise NotImplementedError

    def options_repr(self) -> str:
        """Options shown in the owning module's ``repr`` (``", hidden_size=8"``)."""
        return "".join(f", {name}={getattr(self, name)}" for name in self.options)

    def extra_repr(self) -> str:
        """Sizes, shown by ``repr``."""
        return f"query_size={self.query_size}, key_size={self.key_size}{self.options_repr()}"


class DotScore(LuongScore):
    r"""Dot product of the decoder and source states; no parameters.

    :math:`h_t^\top \bar h_s`; needs ``query_size == key_size``.
    """

    name = "dot"

    def _build(self, factory: dict) -> None:
        if self.key_size != self.query_size:
            raise ValueError(
                f"score='dot' needs query_size == key_size, got {self.query_size} and "
                f"{self.key_size}; use score='general' to map between them"
            )

    def score(self) -> Score:
        """See :meth:`LuongScore.score`."""
        return Dot()


class GeneralScore(LuongScore):
    r"""Bilinear score through a learned matrix (Luong's general).

    :math:`h_t^\top W_a \bar h_s`, ``W_a`` of ``(Dq, Dk)``.
    """

    name = "general"

    def _build(self, factory: dict) -> None:
        self.weight = nn.Parameter(torch.empty(self.query_size, self.key_size, **factory))
        nn.init.xavier_uniform_(self.weight)

    def score(self) -> Score:
        """See :meth:`LuongScore.score`."""
        return General(self.weight)


class ConcatScore(LuongScore):
    r"""A one-layer network over both states (Luong's concat); projects the keys.

    :math:`v_a^\top \tanh(W_a [h_t; \bar h_s])`.

    Args:
        query_size: ``Dq``.
        key_size: ``Dk``.
        hidden_size: size of ``v_a`` (default ``query_size``).
        device: where the parameters live.
        dtype: their dtype.
    """

    name = "concat"
    projected_keys = True
    options = ("hidden_size",)

    def __init__(
        self,
        query_size: int,
        key_size: int,
        *,
        hidden_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(query_size, key_size, hidden_size=hidden_size, device=device, dtype=dtype)

    def _build(self, factory: dict, hidden_size: int | None = None) -> None:
        self.hidden_size = optional_size("hidden_size", hidden_size) or self.query_size
        self.query_proj = nn.Linear(self.query_size, self.hidden_size, bias=False, **factory)
        self.key_proj = nn.Linear(self.key_size, self.hidden_size, bias=True, **factory)
        self.v = nn.Parameter(torch.empty(self.hidden_size, **factory))
        nn.init.uniform_(self.v, -(self.hidden_size**-0.5), self.hidden_size**-0.5)

    def score(self) -> Score:
        """See :meth:`LuongScore.score`."""
        return Additive(self.v, self.query_proj.weight, self.key_proj.weight, self.key_proj.bias)


class LocationScore(LuongScore):
    r"""Weights from the decoder state alone, one logit per source position.

    :math:`a_t = \mathrm{softmax}(W_a h_t)` (Luong's location).

    Args:
        query_size: ``Dq``.
        key_size: ``Dk`` (unused by the score, kept for the values' size).
        max_source_len: the number of source positions ``W_a`` scores.
        device: where the parameters live.
        dtype: their dtype.
    """

    name = "location"
    options = ("max_source_len",)

    def __init__(
        self,
        query_size: int,
        key_size: int,
        *,
        max_source_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            query_size, key_size, max_source_len=max_source_len, device=device, dtype=dtype
        )

    def _build(self, factory: dict, max_source_len: int | None = None) -> None:
        self.max_source_len = optional_size("max_source_len", max_source_len)
        if self.max_source_len is None:
            raise ValueError(
                "score='location' needs max_source_len: W_a scores each source position"
            )
        self.location = nn.Linear(self.query_size, self.max_source_len, **factory)

    def score(self) -> Score:
        """See :meth:`LuongScore.score`."""
        return Location(self.location.weight, self.location.bias)


# The one table from score names (CLI flags, configs) to strategies.
LUONG_SCORES: dict[str, type[LuongScore]] = {
    "dot": DotScore,
    "general": GeneralScore,
    "concat": ConcatScore,
    "location": LocationScore,
}
