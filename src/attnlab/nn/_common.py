"""Input handling shared by the encoder-decoder attention modules."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Score, attention
from attnlab.nn._checks import check_input, check_tensor, parameter_dtype

DType = torch.dtype | None


def check_features(
    owner: nn.Module, name: str, t: Tensor, size: int, dims: tuple[int, ...], dtype: DType
) -> None:
    """One-line errors for a wrong type, rank, feature size or dtype at the module boundary.

    ``dtype`` is the parameters' (see :func:`~attnlab.nn._checks.check_input`).
    """
    check_tensor(name, t)
    if t.dim() not in dims:
        shapes = " or ".join({2: "(B, D)", 3: "(B, L, D)"}[d] for d in dims)
        raise ValueError(f"{name} must be {shapes}, got shape {tuple(t.shape)}")
    if t.shape[-1] != size:
        raise ValueError(f"{name} must have {size} features in its last dim, got {t.shape[-1]}")
    check_input(owner, name, t, dtype)


def module_mask(mask: Tensor | None) -> Tensor | None:
    """Accept a key mask ``(B, Lk)`` or a full mask ``(B, Lq, Lk)``; True = may attend."""
    if mask is None:
        return None
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean with True = may attend; got {mask.dtype}. Build one with "
            "attnlab.masks.lengths_to_mask, or convert torch's key_padding_mask (True = ignore) "
            "with attnlab.masks.from_key_padding_mask"
        )
    return mask.unsqueeze(1) if mask.dim() == 2 else mask


def attend(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    score: Score,
    *,
    mask: Tensor | None,
    need_weights: bool,
    keys_prepared: bool,
    backend: str = "auto",
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Run the core on batch-first inputs; a 2-D query ``(B, D)`` gives a 2-D context."""
    single = query.dim() == 2
    q = query.unsqueeze(1) if single else query
    res: AttentionOutput = attention(
        q,
        keys,
        values,
        score=score,
        mask=module_mask(mask),
        bias=bias,
        need_weights=need_weights,
        backend=backend,
        keys_prepared=keys_prepared,
    )
    context, weights = res
    if single:
        context = context.squeeze(1)
        weights = None if weights is None else weights.squeeze(1)
    return context, weights


def attend_source(
    owner: nn.Module,
    query: Tensor,
    keys: Tensor,
    values: Tensor | None,
    score: Score,
    *,
    query_size: int,
    key_size: int,
    mask: Tensor | None,
    need_weights: bool,
    keys_prepared: bool,
    projected_keys: bool,
) -> tuple[Tensor, Tensor | None]:
    """Forward of an encoder-decoder attention module: checks, default values, core.

    Args:
        owner: the module (its parameters' dtype is the inputs' dtype).
        query: ``(B, Lq, Dq)`` or ``(B, Dq)``.
        keys: ``(B, Lk, Dk)``, or the module's prepared keys.
        values: ``(B, Lk, Dv)``; None means the keys themselves.
        score: the module's score function.
        query_size: expected ``Dq``.
        key_size: expected ``Dk`` of raw keys.
        mask: ``(B, Lk)`` or ``(B, Lq, Lk)``, True = may attend.
        need_weights: also return the weights.
        keys_prepared: ``keys`` came from the module's ``prepare_keys``.
        projected_keys: prepared keys are projections (so they cannot double as values).
    """
    dtype = parameter_dtype(owner)
    check_features(owner, "query", query, query_size, (2, 3), dtype)
    if values is None:
        if keys_prepared and projected_keys:
            raise ValueError(
                "pass values= with keys_prepared=True: prepared keys are projections, "
                "not the source states to average"
            )
        values = keys
    else:
        check_input(owner, "values", values, dtype)
    if keys_prepared:
        check_input(owner, "keys", keys, dtype)
    else:
        check_features(owner, "keys", keys, key_size, (3,), dtype)
    return attend(
        query,
        keys,
        values,
        score,
        mask=mask,
        need_weights=need_weights,
        keys_prepared=keys_prepared,
    )


class SourceAttention(nn.Module):
    """Base of the encoder-decoder attention modules (a query attends over source states).

    Subclasses set ``query_size`` and ``key_size`` and implement :meth:`score`;
    ``projected_keys`` says whether prepared keys are projections (so they cannot
    double as values).
    """

    query_size: int
    key_size: int
    projected_keys: bool = True

    def score(self) -> Score:
        """The score function with this module's parameters."""
        raise NotImplementedError

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """Keys in the space the score compares, computed once per source sequence."""
        check_features(self, "keys", keys, self.key_size, (3,), parameter_dtype(self))
        return self.score().prepare_keys(keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
        keys_prepared: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` over ``keys``; returns ``(context, weights | None)``."""
        return attend_source(
            self,
            query,
            keys,
            values,
            self.score(),
            query_size=self.query_size,
            key_size=self.key_size,
            mask=mask,
            need_weights=need_weights,
            keys_prepared=keys_prepared,
            projected_keys=self.projected_keys,
        )
