"""Multiplicative (Luong) attention as a module: dot, general, concat, location."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from attnlab.functional import Additive, Dot, General, Location, Score
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size
from attnlab.nn._common import SourceAttention

LuongScore = Literal["dot", "general", "concat", "location"]
LUONG_SCORES = ("dot", "general", "concat", "location")


class LuongAttention(SourceAttention):
    r"""Multiplicative attention of Luong et al. 2015: dot, general, concat, location.

    From "Effective Approaches to Attention-based Neural Machine Translation".

    Global attention with the current decoder state :math:`h_t` over source states
    :math:`\bar h_s`:

    .. math::
        \mathrm{score}(h_t, \bar h_s) =
        \begin{cases}
        h_t^\top \bar h_s & \text{dot} \\
        h_t^\top W_a \bar h_s & \text{general} \\
        v_a^\top \tanh(W_a [h_t; \bar h_s]) & \text{concat}
        \end{cases}
        \qquad a_t = \mathrm{softmax}(W_a h_t) \ \text{(location)}

    Args:
        query_size: decoder state size.
        key_size: source state size (default ``query_size``; ``dot`` needs them equal).
        score: ``"dot"``, ``"general"``, ``"concat"`` or ``"location"``.
        hidden_size: ``concat`` only: size of ``v_a`` (default ``query_size``).
        max_source_len: ``location`` only: the number of source positions ``W_a`` scores.

    Shapes:
        query ``(B, Lq, Dq)`` or ``(B, Dq)``; keys ``(B, Lk, Dk)``; values ``(B, Lk, Dv)``
        (default: keys); mask ``(B, Lk)`` or ``(B, Lq, Lk)``, True = may attend ->
        context ``(B, Lq, Dv)`` or ``(B, Dv)``; weights alike with ``Lk`` last.

    Example:
        >>> attn = LuongAttention(6, score="general")
        >>> context, weights = attn(torch.randn(2, 3, 6), torch.randn(2, 5, 6), need_weights=True)
        >>> weights.shape
        torch.Size([2, 3, 5])
    """

    def __init__(
        self,
        query_size: int,
        key_size: int | None = None,
        *,
        score: LuongScore = "dot",
        hidden_size: int | None = None,
        max_source_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        query_size = as_positive("query_size", query_size)
        key_size = query_size if key_size is None else as_positive("key_size", key_size)
        hidden_size = optional_size("hidden_size", hidden_size)
        max_source_len = optional_size("max_source_len", max_source_len)
        if score not in LUONG_SCORES:
            raise ValueError(f"score must be one of {LUONG_SCORES}, got {score!r}")
        if score == "dot" and key_size != query_size:
            raise ValueError(
                f"score='dot' needs query_size == key_size, got {query_size} and "
                f"{key_size}; use score='general' to map between them"
            )
        if score == "location" and max_source_len is None:
            raise ValueError(
                "score='location' needs max_source_len: W_a scores each source position"
            )
        self.query_size, self.key_size, self.score_name = query_size, key_size, score
        self.hidden_size = hidden_size or query_size
        self.max_source_len = max_source_len
        if score == "general":
            self.weight = nn.Parameter(torch.empty(query_size, key_size, **factory))
            nn.init.xavier_uniform_(self.weight)
        elif score == "concat":
            self.query_proj = nn.Linear(query_size, self.hidden_size, bias=False, **factory)
            self.key_proj = nn.Linear(key_size, self.hidden_size, bias=True, **factory)
            self.v = nn.Parameter(torch.empty(self.hidden_size, **factory))
            nn.init.uniform_(self.v, -(self.hidden_size**-0.5), self.hidden_size**-0.5)
        elif score == "location":
            self.location = nn.Linear(query_size, max_source_len, **factory)

    def score(self) -> Score:
        """The score function with this module's parameters."""
        if self.score_name == "general":
            return General(self.weight)
        if self.score_name == "concat":
            return Additive(
                self.v, self.query_proj.weight, self.key_proj.weight, self.key_proj.bias
            )
        if self.score_name == "location":
            return Location(self.location.weight, self.location.bias)
        return Dot()

    @property
    def projected_keys(self) -> bool:
        """Only ``concat`` projects keys; other prepared keys are the states themselves."""
        return self.score_name == "concat"

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        extra = {
            "concat": f", hidden_size={self.hidden_size}",
            "location": f", max_source_len={self.max_source_len}",
        }.get(self.score_name, "")
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, "
            f"score={self.score_name!r}{extra}"
        )
