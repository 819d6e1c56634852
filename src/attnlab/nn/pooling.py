"""Attention pooling: one learned distribution over a sequence, for classifiers.

:class:`AttentionPooling` pools any sequence. The :class:`StatePooling` modules are what
a recurrent classifier (:class:`~attnlab.models.TextClassifier`) or a hierarchical
level (:class:`~attnlab.nn.SequenceEncoder`) plugs in: its states and final state in, one
vector and the weights out, all built and called alike (:func:`build_pooling`), so a
new pooling is one class (and one entry in :data:`attnlab.models.POOLINGS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Zero
from attnlab.nn._checks import as_positive, build_injected, factory_kwargs, optional_size
from attnlab.nn._common import attend_core, check_sequence
from attnlab.nn.additive import AdditiveAttention
from attnlab.nn.luong import LuongAttention

# ``factory(width, *, hidden_size=64, device=None, dtype=None) -> StatePooling``.
PoolingFactory = Callable[..., nn.Module]


def build_pooling(pooling: PoolingFactory, width: int, *, owner: str, **kwargs: Any) -> nn.Module:
    """Build an injected pooling: ``pooling(width, **kwargs)``, with one-line errors.

    Args:
        pooling: A :class:`StatePooling` class or factory.
        width: The width of the states it pools.
        owner: Whose states they are, for the message (``"the LSTM"``).
        **kwargs: ``hidden_size``, ``device``, ``dtype``.

    Returns:
        The pooling module.

    Raises:
        TypeError: If ``pooling`` is not a class or factory, or builds no ``nn.Module``.

    Example:
        >>> build_pooling(LastStatePooling, 4, owner="the GRU")
        LastStatePooling(width=4)
    """
    expected = (
        f"a pooling class or factory, built here with {owner}'s width "
        "(e.g. LastStatePooling, or POOLINGS['additive'] of attnlab.models)"
    )
    module = build_injected(pooling, width, name="pooling", expected=expected, **kwargs)
    return module


def adopt_legacy_keys(state_dict: dict[str, Any], prefix: str, names: Sequence[str]) -> None:
    """Move a checkpoint's pooling parameters, held by the owner before, under ``pooling.``.

    Called from an owner's ``_load_from_state_dict``: ``{prefix}attention.proj.weight``
    becomes ``{prefix}pooling.attention.proj.weight`` for ``names=("attention",)``;
    a key already present in the new form wins.

    Args:
        state_dict: The state dict being loaded (changed in place).
        prefix: The owner's prefix in it.
        names: The first components of the keys that now belong to the pooling.
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix) :].split(".", 1)[0] in names:
            new = f"{prefix}pooling.{key[len(prefix) :]}"
            if new not in state_dict:
                state_dict[new] = state_dict.pop(key)


class AttentionPooling(nn.Module):
    r"""Pool a sequence into one vector with learned attention.

    Without a query vector this is the layer of the Keras sentiment tutorial the
    project grew from (Raffel and Ellis 2016, "feed-forward attention"):

    .. math:: e_t = \tanh(w^\top h_t + b), \quad \alpha = \mathrm{softmax}(e),
              \quad c = \sum_t \alpha_t h_t

    With ``query=True`` it is the word/sentence attention of Yang et al. 2016
    (hierarchical attention networks), with a learned context vector :math:`u`:

    .. math:: e_t = u^\top \tanh(W h_t + b)

    Unlike the tutorial's layer, padding is masked (it gets zero weight), and the
    bias is one scalar rather than one per position, so any length works.

    Args:
        input_size: ``D``, the size of each ``h_t``.
        query: learn a context vector ``u`` (and ``W`` of size ``hidden_size``).
        hidden_size: size of ``W h_t`` when ``query=True`` (default ``input_size``).

    Shapes:
        inputs ``(B, L, D)``, mask ``(B, L)`` True = real token -> context ``(B, D)``,
        weights ``(B, L)``.

    Example:
        >>> pool = AttentionPooling(8)
        >>> mask = torch.tensor([[True, True, False]])
        >>> context, weights = pool(torch.randn(1, 3, 8), mask=mask, need_weights=True)
        >>> context.shape, weights[0, 2].item()
        (torch.Size([1, 8]), 0.0)
    """

    def __init__(
        self,
        input_size: int,
        *,
        query: bool = False,
        hidden_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.input_size = input_size = as_positive("input_size", input_size)
        hidden_size = optional_size("hidden_size", hidden_size)
        self.query = query
        self.hidden_size = (hidden_size or input_size) if query else 1
        self.proj = nn.Linear(input_size, self.hidden_size, **factory)
        self.context = nn.Parameter(torch.empty(self.hidden_size, **factory)) if query else None
        if self.context is not None:
            nn.init.normal_(self.context, std=self.hidden_size**-0.5)

    def logits(self, inputs: Tensor) -> Tensor:
        """Unnormalised scores ``e_t``, ``(B, L)``."""
        hidden = torch.tanh(self.proj(inputs))
        return hidden.squeeze(-1) if self.context is None else hidden @ self.context

    def forward(
        self, inputs: Tensor, *, mask: Tensor | None = None, need_weights: bool = False
    ) -> AttentionOutput:
        """Pool ``inputs``; returns ``(context, weights | None)``."""
        check_sequence(self, "inputs", inputs, ("B", "L", "D"), self.input_size)
        # The scores depend on each position alone: they enter the core as a bias
        # with no content term, so masking and empty rows follow the core's rules.
        bias = self.logits(inputs).unsqueeze(1)
        query = inputs.new_zeros(inputs.shape[0], 1)
        keys = inputs.new_zeros(inputs.shape[0], inputs.shape[1], 1)
        return attend_core(
            query,
            keys,
            inputs,
            Zero(),
            mask=mask,
            need_weights=need_weights,
            keys_prepared=True,
            bias=bias,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        extra = f", hidden_size={self.hidden_size}" if self.query else ""
        return f"input_size={self.input_size}, query={self.query}{extra}"


class StatePooling(nn.Module):
    """Base of the poolings a classifier takes: recurrent states -> one vector.

    Every pooling is built as ``pooling(width, *, hidden_size=64, device=None,
    dtype=None)`` (a classifier calls it with its state width) and called as
    ``pool(states, last, *, mask=None, need_weights=False)``, returning
    :class:`~attnlab.functional.AttentionOutput` ``(vector, weights | None)``.
    ``hidden_size`` is the tanh layer of the poolings that have one; the others accept
    it so that every pooling is built the same way.

    Shapes:
        states ``(B, L, width)``, last ``(B, width)`` (the encoder's final state), mask
        ``(B, L)`` True = real token -> vector ``(B, width)``, weights ``(B, L)``.
    """

    def __init__(
        self,
        width: int,
        *,
        hidden_size: int = 64,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.width = as_positive("width", width)
        self.hidden_size = as_positive("hidden_size", hidden_size)
        self._build(factory_kwargs(device, dtype))

    def _build(self, factory: dict) -> None:
        """Create the parameters (none by default)."""

    def forward(
        self,
        states: Tensor,
        last: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """Pool ``states`` (``last`` is the encoder's final state); see the class docstring."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"width={self.width}"


class LastStatePooling(StatePooling):
    """The encoder's final state, no attention (the summary of Cho et al. 2014).

    Example:
        >>> pool = LastStatePooling(4)
        >>> vector, weights = pool(torch.randn(2, 3, 4), torch.ones(2, 4))
        >>> vector.tolist()[0], weights
        ([1.0, 1.0, 1.0, 1.0], None)
    """

    def forward(  # noqa: D102
        self,
        states: Tensor,
        last: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        return AttentionOutput(last, None)


class FeedForwardPooling(StatePooling):
    r"""Feed-forward attention over the states (Raffel & Ellis 2016), the tutorial's layer.

    :class:`AttentionPooling` with the classifier's call:
    :math:`\alpha = \mathrm{softmax}_t(\tanh(w^\top h_t + b))`, :math:`v = \sum_t
    \alpha_t h_t`; with ``query=True``, Yang et al. 2016's learned context vector,
    :math:`e_t = u^\top \tanh(W h_t + b)` (``W`` of ``hidden_size`` rows).

    Example:
        >>> pool = FeedForwardPooling(4)
        >>> mask = torch.tensor([[True, True, False]])
        >>> vector, weights = pool(torch.randn(1, 3, 4), torch.randn(1, 4), mask=mask,
        ...                        need_weights=True)
        >>> vector.shape, weights[0, 2].item()
        (torch.Size([1, 4]), 0.0)
    """

    def __init__(
        self,
        width: int,
        *,
        hidden_size: int = 64,
        query: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(width, hidden_size=hidden_size, device=device, dtype=dtype)
        self.query = query
        self.attention = AttentionPooling(
            self.width, query=query, hidden_size=self.hidden_size, device=device, dtype=dtype
        )

    def forward(  # noqa: D102
        self,
        states: Tensor,
        last: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        return self.attention(states, mask=mask, need_weights=need_weights)


class AdditivePooling(StatePooling):
    r"""Additive attention (Bahdanau et al. 2015) from a learned query vector.

    With the learned query :math:`q`, :math:`e_t = v^\top \tanh(W_q q + W_k h_t + b)`,
    :math:`v = \sum_t \mathrm{softmax}_t(e)_t h_t`, with
    :class:`~attnlab.nn.AdditiveAttention` (tanh layer of ``hidden_size``).

    Example:
        >>> pool = AdditivePooling(4, hidden_size=3)
        >>> pool(torch.randn(2, 5, 4), torch.randn(2, 4)).context.shape
        torch.Size([2, 4])
    """

    def _build(self, factory: dict) -> None:
        width = self.width
        self.attention = AdditiveAttention(width, width, self.hidden_size, **factory)
        self.query = nn.Parameter(torch.randn(width, **factory) * width**-0.5)

    def forward(  # noqa: D102
        self,
        states: Tensor,
        last: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        query = self.query.expand(states.shape[0], -1)
        return self.attention(query, states, mask=mask, need_weights=need_weights)


class LuongPooling(StatePooling):
    r"""Luong attention (``general`` score) from the final state, kept beside its context.

    The last state :math:`h_T` attends, :math:`c = \sum_t \mathrm{softmax}_t(h_T^\top
    W_a h_t) h_t`, and the vector is Luong et al. 2015's attentional state
    :math:`\tanh(W_c [c; h_T])`, so the context adds to the last state instead of
    replacing it.

    Example:
        >>> pool = LuongPooling(4)
        >>> pool(torch.randn(2, 5, 4), torch.randn(2, 4)).context.shape
        torch.Size([2, 4])
    """

    def _build(self, factory: dict) -> None:
        self.attention = LuongAttention(self.width, score="general", **factory)
        self.combine = nn.Linear(2 * self.width, self.width, **factory)

    def forward(  # noqa: D102
        self,
        states: Tensor,
        last: Tensor,
        *,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        context, weights = self.attention(last, states, mask=mask, need_weights=need_weights)
        return AttentionOutput(
            torch.tanh(self.combine(torch.cat([context, last], dim=-1))), weights
        )
