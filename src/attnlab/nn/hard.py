"""Hard (stochastic) attention around any soft attention module, and its REINFORCE baseline."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, Score
from attnlab.functional.hard import (
    gumbel_straight_through,
    log_prob_and_entropy,
    sample_one_hot,
)
from attnlab.nn._checks import check_tensor, positive_float, probability
from attnlab.nn._common import SourceAttention

HardEstimator = Literal["reinforce", "gumbel"]
HardEvaluation = Literal["argmax", "expectation"]

# Kept for code written against the four-field result: hard attention now returns the
# one AttentionOutput of every module, ``(context, weights)`` with extras ``log_prob``
# and ``entropy``.
HardAttentionOutput = AttentionOutput


class HardAttention(SourceAttention):
    r"""Stochastic hard attention (Xu et al. 2015, "Show, Attend and Tell", 4.1).

    The wrapped soft attention gives :math:`\alpha`; in training one position
    :math:`s \sim \mathrm{Cat}(\alpha)` is chosen and its value is the context.

    * ``estimator="reinforce"``: the sample carries no gradient; train the scores by
      adding :func:`attnlab.functional.hard.reinforce_loss` of ``log_prob`` (with a
      :class:`MovingAverageBaseline` and an entropy bonus) to the loss.
    * ``estimator="gumbel"``: Gumbel-max sample forward, Gumbel-softmax gradient
      backward (straight-through), temperature ``temperature``.

    In evaluation the context is the value at ``argmax alpha`` or, with
    ``evaluation="expectation"``, the soft average :math:`\sum_s \alpha_s v_s`.

    Called like every encoder-decoder attention module (see
    :class:`~attnlab.nn._common.SourceAttention`): ``(query, keys, values, mask=...,
    steps=..., need_weights=..., keys_prepared=...)``.

    Args:
        attention: the soft attention module whose distribution is sampled
            (:class:`~attnlab.nn.LuongAttention`, :class:`~attnlab.nn.AdditiveAttention`,
            :class:`~attnlab.nn.LocalAttention`, ...).
        estimator: ``"reinforce"`` or ``"gumbel"``.
        temperature: Gumbel-softmax temperature.
        evaluation: ``"argmax"`` or ``"expectation"``.

    Returns:
        :class:`~attnlab.functional.AttentionOutput` ``(context, weights | None)`` with
        extras ``log_prob`` (``log alpha`` of the chosen position, ``(B, [Lq])``, for
        REINFORCE) and ``entropy`` of the distribution (``(B, [Lq])``).

    Shapes:
        as the wrapped module; context ``(B, [Lq,] Dv)`` is the value at the chosen
        position(s).

    Example:
        >>> from attnlab.nn import LuongAttention
        >>> hard = HardAttention(LuongAttention(4, score="general"))
        >>> out = hard(torch.randn(2, 4), torch.randn(2, 6, 4))
        >>> out.context.shape, out.log_prob.shape
        (torch.Size([2, 4]), torch.Size([2]))
    """

    def __init__(
        self,
        attention: SourceAttention,
        *,
        estimator: HardEstimator = "reinforce",
        temperature: float = 1.0,
        evaluation: HardEvaluation = "argmax",
    ) -> None:
        super().__init__()
        if not isinstance(attention, SourceAttention):
            raise TypeError(
                f"attention must be a soft attention nn.Module (a SourceAttention such as "
                f"LuongAttention), got {type(attention).__name__}"
            )
        if estimator not in ("reinforce", "gumbel"):
            raise ValueError(f"estimator must be 'reinforce' or 'gumbel'; got {estimator!r}")
        if evaluation not in ("argmax", "expectation"):
            raise ValueError(f"evaluation must be 'argmax' or 'expectation'; got {evaluation!r}")
        self.attention, self.estimator = attention, estimator
        self.temperature = positive_float("temperature", temperature)
        self.evaluation = evaluation

    @property
    def query_size(self) -> int:  # type: ignore[override]
        """The wrapped module's query size."""
        return self.attention.query_size

    @property
    def key_size(self) -> int:  # type: ignore[override]
        """The wrapped module's key size."""
        return self.attention.key_size

    @property
    def projected_keys(self) -> bool:  # type: ignore[override]
        """Whether the wrapped module's prepared keys are projections."""
        return self.attention.projected_keys

    def score(self) -> Score:
        """The wrapped module's score."""
        return self.attention.score()

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """Delegates to the wrapped module."""
        return self.attention.prepare_keys(keys)

    def choose(self, weights: Tensor) -> Tensor:
        """The (one-hot, or soft in evaluation by expectation) selection over positions."""
        if self.training:
            if self.estimator == "gumbel":
                return gumbel_straight_through(weights, self.temperature)
            return sample_one_hot(weights)
        if self.evaluation == "expectation":
            return weights
        best = torch.zeros_like(weights).scatter_(-1, weights.argmax(-1, keepdim=True), 1.0)
        return best * (weights.sum(-1, keepdim=True) > 0)

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
        """Choose a source position per query; see the class docstring."""
        _, weights = self.attention.attend(
            query,
            keys,
            values,
            mask=mask,
            steps=steps,
            need_weights=True,
            keys_prepared=keys_prepared,
        )
        assert weights is not None
        selection = self.choose(weights)
        if selection.dim() == 2:
            context = (selection.unsqueeze(1) @ values).squeeze(1)
        else:
            context = selection @ values
        log_prob, entropy = log_prob_and_entropy(weights, selection)
        return AttentionOutput(
            context, weights if need_weights else None, log_prob=log_prob, entropy=entropy
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"estimator={self.estimator!r}, temperature={self.temperature}, "
            f"evaluation={self.evaluation!r}"
        )


class MovingAverageBaseline(nn.Module):
    """Exponential moving average of the reward, the REINFORCE baseline of Xu et al. 2015.

    ``b <- momentum * b + (1 - momentum) * mean(reward)``; the first update sets ``b``.
    Kept as buffers, so it is saved and restored with the model.

    Example:
        >>> b = MovingAverageBaseline(momentum=0.5)
        >>> b.update(torch.tensor([2.0])), b.update(torch.tensor([4.0]))
        (tensor(2.), tensor(3.))
    """

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = probability("momentum", momentum)
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, reward: Tensor) -> Tensor:
        """Fold in a batch of rewards and return the new baseline."""
        mean = check_tensor("reward", reward).detach().float().mean()
        if bool(self.started):
            self.value.mul_(self.momentum).add_((1 - self.momentum) * mean)
        else:
            self.value.copy_(mean)
            self.started.fill_(True)
        return self.value.clone()
