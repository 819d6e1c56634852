r"""Hard (stochastic) attention: pick one source position instead of averaging them all.

From Xu et al. 2015, "Show, Attend and Tell", section 4.1. The attention weights
:math:`\alpha` are a categorical distribution over positions; the context is the value
at one sampled position :math:`s \sim \mathrm{Cat}(\alpha)`. Sampling is not
differentiable, so two estimators train the scores:

* REINFORCE (Williams 1992), as in the paper: the loss gets
  :math:`-\lambda_r (r - b) \log \alpha_s - \lambda_e H(\alpha)` with a reward
  :math:`r`, a moving-average baseline :math:`b` and an entropy bonus;
* Gumbel-softmax straight-through (Jang et al. 2017): the forward pass uses the
  one-hot sample of :math:`\mathrm{argmax}(\log\alpha + g)`, the backward pass the
  gradient of :math:`\mathrm{softmax}((\log\alpha + g) / \tau)`.

Rows whose weights are all zero (nothing to attend to) give an all-zero sample, so
their context is zero, as for soft attention.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_one_hot", "gumbel_straight_through", "log_prob_and_entropy", "reinforce_loss"]


def _valid_rows(weights: Tensor) -> Tensor:
    return weights.sum(-1, keepdim=True) > 0


def sample_one_hot(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one position per row from the distribution ``weights`` (no gradient).

    Args:
        weights: ``(..., Lk)``, non-negative rows summing to 1 (or all zero).
        generator: optional random generator.

    Returns:
        One-hot samples, same shape and dtype; all-zero rows stay zero.

    Example:
        >>> sample_one_hot(torch.tensor([[0.0, 1.0, 0.0]]))
        tensor([[0., 1., 0.]])
    """
    if weights.shape[-1] == 0:  # no positions to draw from: nothing is sampled
        return torch.zeros_like(weights)
    valid = _valid_rows(weights)
    probs = torch.where(valid, weights, torch.ones_like(weights)).detach().float()
    flat = probs.reshape(-1, probs.shape[-1])
    index = torch.multinomial(flat, 1, generator=generator).reshape(*weights.shape[:-1], 1)
    one_hot = torch.zeros_like(weights).scatter_(-1, index, 1.0)
    return one_hot * valid


def gumbel_straight_through(
    weights: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """One-hot Gumbel-max sample forward, Gumbel-softmax gradient backward.

    Args:
        weights: ``(..., Lk)`` attention probabilities (with gradients).
        temperature: ``tau`` of the relaxed softmax; lower is closer to the hard sample.
        generator: optional random generator.

    Returns:
        Tensor of the shape of ``weights``: the one-hot sample in value, differentiable
        through the relaxation.

    Example:
        >>> w = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
        >>> gumbel_straight_through(w).detach()
        tensor([[0., 1., 0.]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    if weights.shape[-1] == 0:  # no positions to draw from
        return weights * 0
    valid = _valid_rows(weights)
    tiny = torch.finfo(weights.dtype).tiny
    # -inf, not log(tiny), at zero weights: in fp16 log(tiny) is only -9.7 and the Gumbel
    # noise could lift a masked position over a real one.
    logits = torch.log(weights.clamp(min=tiny)).masked_fill((weights <= 0) & valid, float("-inf"))
    uniform = torch.rand(weights.shape, generator=generator, device=weights.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-10)).to(weights.dtype))
    soft = torch.softmax((logits + gumbel) / temperature, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, (logits + gumbel).argmax(-1, keepdim=True), 1.0)
    return (hard - soft.detach() + soft) * valid


def log_prob_and_entropy(weights: Tensor, sample: Tensor) -> tuple[Tensor, Tensor]:
    """``log alpha_s`` of the sampled position and the entropy ``H(alpha)``, per row.

    Args:
        weights: ``(..., Lk)`` probabilities.
        sample: ``(..., Lk)`` one-hot samples.

    Returns:
        ``(log_prob, entropy)``, each ``(...)``; zero for rows with nothing to attend to.
    """
    log_w = torch.log(weights.clamp(min=torch.finfo(weights.dtype).tiny))
    log_prob = (sample.detach() * log_w).sum(-1)
    entropy = -(weights * log_w).sum(-1)
    return log_prob, entropy


def reinforce_loss(
    log_prob: Tensor,
    reward: Tensor,
    baseline: Tensor | float,
    entropy: Tensor,
    mask: Tensor,
    *,
    reward_weight: float = 1.0,
    entropy_weight: float = 0.0,
) -> Tensor:
    r"""Score-function loss for the sampling decisions, averaged over real tokens.

    .. math:: -\frac{1}{N}\sum_{t} m_t\,[\lambda_r (r_t - b) \log\alpha_{s_t}
              + \lambda_e H(\alpha_t)]

    Args:
        log_prob: ``(B, T)`` log-probability of each step's sample.
        reward: ``(B, T)`` reward of each step (no gradient is taken through it).
        baseline: scalar baseline ``b``.
        entropy: ``(B, T)`` entropy of each step's distribution.
        mask: ``(B, T)`` boolean, True at real target tokens.
        reward_weight: :math:`\lambda_r`.
        entropy_weight: :math:`\lambda_e`.

    Returns:
        A scalar loss to add to the likelihood loss.

    Example:
        >>> lp = torch.log(torch.tensor([[0.5]]))
        >>> m = torch.tensor([[True]])
        >>> reinforce_loss(lp, torch.tensor([[2.0]]), 1.0, torch.zeros(1, 1), m)
        tensor(0.6931)
    """
    advantage = (reward - baseline).detach()
    per_step = reward_weight * advantage * log_prob + entropy_weight * entropy
    m = mask.to(per_step.dtype)
    return -(per_step * m).sum() / m.sum().clamp(min=1)
