"""Multiplicative (Luong) attention as a module: dot, general, concat, location."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.functional import Score
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.nn._common import SourceAttention
from attnlab.nn.luong_scores import LUONG_SCORES, LuongScore, LuongScoreName

__all__ = ["LUONG_SCORES", "LuongAttention", "LuongScoreName"]


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

    The score is a strategy (:mod:`attnlab.nn.luong_scores`) that owns its parameters;
    a name is resolved once through :data:`~attnlab.nn.luong_scores.LUONG_SCORES`, or a
    strategy instance is used as given. Its parameters read as the module's own
    (``attn.weight`` for ``general``).

    Args:
        query_size: decoder state size.
        key_size: source state size (default ``query_size``; ``dot`` needs them equal).
        score: ``"dot"``, ``"general"``, ``"concat"``, ``"location"``, or a
            :class:`~attnlab.nn.luong_scores.LuongScore` built for these sizes.
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
        score: LuongScoreName | LuongScore = "dot",
        hidden_size: int | None = None,
        max_source_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        query_size = as_positive("query_size", query_size)
        key_size = query_size if key_size is None else as_positive("key_size", key_size)
        self.query_size, self.key_size = query_size, key_size
        self.scorer = self._resolve(score, hidden_size, max_source_len, factory)

    def _resolve(
        self, score: object, hidden_size: int | None, max_source_len: int | None, factory: dict
    ) -> LuongScore:
        if isinstance(score, LuongScore):
            if (score.query_size, score.key_size) != (self.query_size, self.key_size):
                raise ValueError(
                    f"the {score.name} score was built for query_size={score.query_size}, "
                    f"key_size={score.key_size} but the attention has {self.query_size} and "
                    f"{self.key_size}; build them with the same sizes"
                )
            return score
        if not isinstance(score, str) or score not in LUONG_SCORES:
            raise ValueError(
                f"score must be one of {tuple(LUONG_SCORES)} or a LuongScore, got {score!r}"
            )
        return LUONG_SCORES[score].from_options(
            self.query_size,
            self.key_size,
            hidden_size=hidden_size,
            max_source_len=max_source_len,
            **factory,
        )

    @property
    def score_name(self) -> str:
        """The score's name (``"general"``, ...)."""
        return self.scorer.name

    def score(self) -> Score:
        """The score function with this module's parameters."""
        return self.scorer.score()

    @property
    def projected_keys(self) -> bool:  # type: ignore[override]
        """Only ``concat`` projects keys; other prepared keys are the states themselves."""
        return self.scorer.projected_keys

    def __getattr__(self, name: str) -> Tensor | nn.Module:
        # The score's parameters and layers read as the module's own (attn.weight,
        # attn.query_proj, ...), as they did when LuongAttention held them itself.
        try:
            return super().__getattr__(name)
        except AttributeError:
            scorer = self._modules.get("scorer")
            if scorer is None or name.startswith("_"):
                raise
            if name in scorer._parameters or name in scorer._modules:
                return getattr(scorer, name)
            raise

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Checkpoints written before the score became a submodule hold "weight", not
        # "scorer.weight": map them so they still load.
        for key in self.scorer.state_dict():
            old, new = prefix + key, f"{prefix}scorer.{key}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, "
            f"score={self.score_name!r}{self.scorer.options_repr()}"
        )
