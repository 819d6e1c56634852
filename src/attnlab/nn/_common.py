"""What the attention modules share: input checks, masks, the core call, one forward.

:class:`SourceAttention` is the base of every encoder-decoder attention module (global,
local, hard): one ``forward`` signature for all of them, so a caller never passes an
argument conditionally on the mechanism.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Score, attention
from attnlab.functional._problem import check_layout, check_qkv
from attnlab.masks.check import check_mask
from attnlab.nn._checks import check_input, parameter_dtype

__all__ = [
    "SourceAttention",
    "attend_core",
    "check_batch_first",
    "check_sequence",
    "heads_mask",
]

# A module mask: a key mask, a per-query mask, or one per head.
MODULE_MASKS = "(B, Lk), (B, Lq, Lk) or (B, H, Lq, Lk), True = may attend"


def check_sequence(
    owner: nn.Module, name: str, t: object, dims: tuple[str, ...], width: int, *, prefix: str = ""
) -> Tensor:
    """``t`` laid out as ``dims`` with ``width`` features, of ``owner``'s parameters' dtype.

    Example:
        >>> import torch
        >>> check_sequence(nn.Linear(3, 1), "x", torch.zeros(2, 5, 3), ("B", "L", "D"), 3).shape
        torch.Size([2, 5, 3])
    """
    check_layout(name, t, dims, width, prefix=prefix)
    return check_input(owner, name, t, parameter_dtype(owner))


def check_batch_first(
    owner: nn.Module, query: object, key: object, value: object, widths: tuple[int, int, int]
) -> None:
    """The inputs of a multi-head module: ``(B, Lq, E)``, ``(B, Lk, kdim)``, ``(B, Lk, vdim)``.

    Of ``owner``'s parameters' dtype; one-line errors from the one shape check.
    """
    check_qkv(
        query,
        key,
        value,
        names=("query", "key", "value"),
        dims=("B", "L", "E"),
        widths=widths,
        prefix="batch-first ",
        dtype=parameter_dtype(owner),
        owner=type(owner).__name__,
    )


def heads_mask(mask: object, shape: tuple[int, int, int, int]) -> Tensor | None:
    """A module mask in the core's 4-D layout: ``(B, Lk)`` -> ``(B, 1, 1, Lk)``, ...

    ``mask`` is checked against ``shape`` = ``(B, H, Lq, Lk)`` in its own layout (a
    2-D mask against ``(B, Lk)``, a 3-D one against ``(B, Lq, Lk)``), so an error
    names the shape the caller passed; ``(B, Lq, Lk)`` then gains the head dim.

    Example:
        >>> import torch
        >>> heads_mask(torch.ones(2, 7, dtype=torch.bool), (2, 4, 3, 7)).shape
        torch.Size([2, 1, 1, 7])
    """
    if mask is None:
        return None
    b, _, lq, lk = shape
    layout = {2: (b, lk), 3: (b, lq, lk)}.get(mask.dim() if isinstance(mask, Tensor) else 4, shape)
    check_mask(mask, shape=layout, expected=MODULE_MASKS)
    if mask.dim() == 2:
        return mask[:, None, None, :]
    return mask.unsqueeze(1) if mask.dim() == 3 else mask


def attend_core(
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
) -> AttentionOutput:
    """Run the core on batch-first inputs; a 2-D query ``(B, D)`` gives a 2-D context."""
    single = query.dim() == 2
    q = query.unsqueeze(1) if single else query
    res = attention(
        q,
        keys,
        values,
        score=score,
        mask=heads_mask(mask, (q.shape[0], 1, q.shape[1], keys.shape[1])),
        bias=bias,
        need_weights=need_weights,
        backend=backend,
        keys_prepared=keys_prepared,
    )
    if not single:
        return res
    context, weights = res
    weights = None if weights is None else weights.squeeze(1)
    return AttentionOutput(context.squeeze(1), weights, res.engine)


class SourceAttention(nn.Module):
    """Base of the encoder-decoder attention modules (a query attends over source states).

    Every such module is called the same way (:meth:`forward`); subclasses set
    ``query_size`` and ``key_size``, implement :meth:`score` and, when they do more
    than global attention with that score, override :meth:`attend`.
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
        check_sequence(self, "keys", keys, ("B", "L", "D"), self.key_size)
        return self.score().prepare_keys(keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        steps: Tensor | int | None = None,
        need_weights: bool = False,
        keys_prepared: bool = False,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``keys``.

        Args:
            query: ``(B, Lq, Dq)`` or ``(B, Dq)`` (one decoder step).
            keys: ``(B, Lk, Dk)``, or the module's :meth:`prepare_keys` of them.
            values: ``(B, Lk, Dv)``; None means the keys themselves.
            mask: ``(B, Lk)`` or ``(B, Lq, Lk)``, True = may attend.
            steps: the target positions of the queries, for attention that depends on
                them (local-m); global attention ignores them.
            need_weights: also return the weights.
            keys_prepared: ``keys`` came from :meth:`prepare_keys`.

        Returns:
            :class:`~attnlab.functional.AttentionOutput` ``(context, weights | None)``.
        """
        if values is None:
            if keys_prepared and self.projected_keys:
                raise ValueError(
                    "pass values= with keys_prepared=True: prepared keys are projections, "
                    "not the source states to average"
                )
            values = keys
        check_qkv(
            query,
            keys,
            values,
            names=("query", "keys", "values"),
            dims=("B", "L", "D"),
            widths=(self.query_size, None if keys_prepared else self.key_size, None),
            single_query=True,
            dtype=parameter_dtype(self),
            owner=type(self).__name__,
        )
        return self.attend(
            query,
            keys,
            values,
            mask=mask,
            steps=steps,
            need_weights=need_weights,
            keys_prepared=keys_prepared,
        )

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
        """The attention itself, on inputs :meth:`forward` has checked (wrappers call it).

        Global attention: the core with this module's score (``steps`` unused).
        """
        return attend_core(
            query,
            keys,
            values,
            self.score(),
            mask=mask,
            need_weights=need_weights,
            keys_prepared=keys_prepared,
        )
