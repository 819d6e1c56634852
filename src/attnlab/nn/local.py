"""Local attention of Luong et al. 2015 (local-m and local-p) as a module."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Score
from attnlab.functional.local import (
    check_half_width,
    gaussian_window,
    monotonic_centres,
    window_mask,
)
from attnlab.masks.check import check_mask
from attnlab.nn._checks import factory_kwargs, optional_size
from attnlab.nn._common import SourceAttention, attend_core
from attnlab.nn.luong import LuongAttention
from attnlab.nn.luong_scores import LuongScore

LocalMode = Literal["monotonic", "predictive"]
_KEY_MASK = "a boolean key mask (B, Lk), True = real source token"


class LocalAttention(SourceAttention):
    r"""Luong et al. 2015 local attention: a window ``[p_t - D, p_t + D]`` of the source.

    From "Effective Approaches to Attention-based Neural Machine Translation", 3.2.

    * ``mode="monotonic"`` (local-m): ``p_t = t``, the target position.
    * ``mode="predictive"`` (local-p): ``p_t = S \cdot \sigma(v_p^\top \tanh(W_p h_t))``
      with ``S`` the sample's source length; the window's weights are multiplied by
      :math:`\exp(-(s - p_t)^2 / (2\sigma^2))`, :math:`\sigma = D/2` (not renormalised,
      as in the paper), so ``p_t`` is trained through the Gaussian.

    Inside the window, a Luong score (``dot``, ``general`` or ``concat``) and the core's
    masked softmax; the window is clipped at the sequence ends and at padding, and a
    ``D`` wider than the source is clipped too (local-m then equals global attention).
    See :mod:`attnlab.functional.local` for the positions convention.

    Args:
        query_size: decoder state size.
        key_size: source state size (default ``query_size``).
        half_width: ``D``; local-p needs ``D >= 1``.
        mode: ``"monotonic"`` or ``"predictive"``.
        score: the content score inside the window: ``"dot"``, ``"general"``,
            ``"concat"``, or a :class:`~attnlab.nn.luong_scores.LuongScore`.
        position_hidden: size of ``W_p`` (local-p; default ``query_size``).

    Shapes:
        query ``(B, Lq, Dq)`` or ``(B, Dq)``; keys ``(B, Lk, Dk)``; values ``(B, Lk, Dv)``
        (default: keys); mask ``(B, Lk)``, True = real source token; steps (local-m)
        ``(Lq,)``, ``(B, Lq)``, ``(B,)`` or an int for a 2-D query, default
        ``0..Lq-1`` -> context ``(B, Lq, Dv)`` or ``(B, Dv)``; weights alike with ``Lk``.

    Example:
        >>> attn = LocalAttention(4, half_width=1, mode="monotonic")
        >>> _, w = attn(torch.randn(1, 3, 4), torch.randn(1, 5, 4), need_weights=True)
        >>> (w[0] > 0).int()
        tensor([[1, 1, 0, 0, 0],
                [1, 1, 1, 0, 0],
                [0, 1, 1, 1, 0]], dtype=torch.int32)
    """

    def __init__(
        self,
        query_size: int,
        key_size: int | None = None,
        *,
        half_width: int,
        mode: LocalMode = "predictive",
        score: Literal["dot", "general", "concat"] | LuongScore = "general",
        position_hidden: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        position_hidden = optional_size("position_hidden", position_hidden)
        if mode not in ("monotonic", "predictive"):
            raise ValueError(f"mode must be 'monotonic' or 'predictive'; got {mode!r}")
        if not isinstance(score, LuongScore) and score not in ("dot", "general", "concat"):
            raise ValueError(f"score must be 'dot', 'general' or 'concat'; got {score!r}")
        check_half_width(half_width, predictive=mode == "predictive")
        self.half_width, self.mode = half_width, mode
        self.content = LuongAttention(query_size, key_size, score=score, **factory)
        self.query_size, self.key_size = query_size, self.content.key_size
        self.position: nn.Sequential | None = None
        if mode == "predictive":
            hidden = position_hidden or query_size
            self.position = nn.Sequential(
                nn.Linear(query_size, hidden, bias=False, **factory),
                nn.Tanh(),
                nn.Linear(hidden, 1, bias=False, **factory),
            )

    def score(self) -> Score:
        """The content score inside the window."""
        return self.content.score()

    @property
    def projected_keys(self) -> bool:  # type: ignore[override]
        """Whether the content score's prepared keys are projections."""
        return self.content.projected_keys

    def centres(self, query: Tensor, lengths: Tensor, steps: Tensor | int | None) -> Tensor:
        """The window centres ``p_t``, ``(B, Lq)`` for a 3-D query."""
        if self.position is not None:
            # At least float32 (fp16 centres are too coarse), float64 kept for gradcheck.
            dtype = torch.promote_types(query.dtype, torch.float32)
            gate = torch.sigmoid(self.position(query).squeeze(-1).to(dtype))
            return lengths.to(gate.dtype).unsqueeze(-1) * gate
        batch, lq = query.shape[:2]
        if steps is None:
            steps = torch.arange(lq, device=query.device)
        elif isinstance(steps, int):
            steps = torch.full((batch, lq), steps, device=query.device)
        elif steps.dim() == 1 and steps.shape[0] == batch and lq == 1:
            steps = steps.unsqueeze(-1)
        if steps.shape[-1] != lq or (steps.dim() == 2 and steps.shape[0] not in (1, batch)):
            raise ValueError(
                f"steps must give one target position per query ({lq}); got "
                f"shape {tuple(steps.shape)}"
            )
        return monotonic_centres(steps, lengths)

    def attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        *,
        mask: Tensor | None,
        steps: Tensor | int | None,
        need_weights: bool,
        keys_prepared: bool,
    ) -> AttentionOutput:
        """Attend from ``query`` over the window of ``keys`` (inputs checked by ``forward``)."""
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query
        batch, lk = keys.shape[0], keys.shape[1]
        if mask is not None:
            check_mask(mask, ndim_max=2, shape=(batch, lk), expected=_KEY_MASK)
            mask = mask.expand(batch, lk)
        lengths = mask.sum(-1) if mask is not None else torch.full((batch,), lk, device=keys.device)
        centres = self.centres(q, lengths, steps)
        allowed = window_mask(centres, lk, self.half_width)
        if mask is not None:
            allowed = allowed & mask.unsqueeze(1)
        predictive = self.position is not None
        context, weights = attend_core(
            q,
            keys,
            values,
            self.score(),
            mask=allowed,
            need_weights=need_weights or predictive,
            keys_prepared=keys_prepared,
        )
        if predictive:
            assert weights is not None
            gauss = gaussian_window(centres, lk, self.half_width)
            weights = weights * gauss.to(weights.dtype)
            context = weights @ values
        if single:
            context = context.squeeze(1)
            weights = None if weights is None else weights.squeeze(1)
        return AttentionOutput(context, weights if need_weights else None)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"half_width={self.half_width}, mode={self.mode!r}"
