r"""Local attention of Luong et al. 2015: a window of source positions around ``p_t``.

From "Effective Approaches to Attention-based Neural Machine Translation", section 3.2.
At target step ``t`` the decoder looks only at the source positions
``[p_t - D, p_t + D]``:

* local-m (monotonic): ``p_t = t``;
* local-p (predictive): ``p_t = S * sigmoid(v_p^T tanh(W_p h_t))`` with ``S`` the
  sample's source length, and the window's softmax weights are multiplied by a
  Gaussian centred on ``p_t``:

.. math::
    a_t(s) = \mathrm{align}(h_t, \bar h_s) \exp\left(-\frac{(s - p_t)^2}{2\sigma^2}\right),
    \qquad \sigma = D / 2

These helpers build the window (a boolean mask for the core) and the Gaussian; the
scores, the softmax and the sum stay in :func:`attnlab.functional.attention`.

Positions are 0-based. The window is centred on ``round(p_t)`` and clipped at both
ends of the sequence and at padding; a window wider than the sequence is simply
clipped, so local-m with ``D >= S - 1`` is global attention.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["window_mask", "gaussian_window", "monotonic_centres", "check_half_width"]


def check_half_width(half_width: int, *, predictive: bool) -> None:
    """One-line error for a window half-width ``D`` that cannot work."""
    smallest = 1 if predictive else 0
    if isinstance(half_width, bool) or not isinstance(half_width, int) or half_width < smallest:
        need = "a positive int (sigma = D / 2 must be > 0)" if predictive else "an int >= 0"
        raise ValueError(f"window half-width D must be {need}; got {half_width!r}")


def monotonic_centres(steps: Tensor, lengths: Tensor) -> Tensor:
    """Local-m centres ``p_t = t``, kept inside each sample's source.

    A target longer than its source would otherwise slide its window off the end
    and attend to nothing; the centre stops at the last real source position.

    Args:
        steps: target positions ``t``, ``(B, Lq)`` or ``(Lq,)``, integers.
        lengths: source lengths ``S`` per sample, ``(B,)``.

    Returns:
        Float centres ``(B, Lq)``.

    Example:
        >>> monotonic_centres(torch.arange(4), torch.tensor([2, 4]))
        tensor([[0., 1., 1., 1.],
                [0., 1., 2., 3.]])
    """
    last = (lengths - 1).clamp(min=0).to(torch.float32).unsqueeze(-1)
    return torch.minimum(steps.to(torch.float32).expand(lengths.shape[0], -1), last)


def window_mask(centres: Tensor, key_length: int, half_width: int) -> Tensor:
    """Boolean mask of the window ``|s - round(p_t)| <= D``; True = may attend.

    Args:
        centres: ``p_t``, ``(B, Lq)``, float or integer.
        key_length: ``Lk``, the padded source length.
        half_width: ``D``.

    Returns:
        ``(B, Lq, Lk)`` boolean.

    Example:
        >>> window_mask(torch.tensor([[2.4]]), 6, 1).int()
        tensor([[[0, 1, 1, 1, 0, 0]]], dtype=torch.int32)
    """
    positions = torch.arange(key_length, device=centres.device)
    centre = torch.round(centres.to(torch.float32)).to(torch.long).unsqueeze(-1)
    return (positions - centre).abs() <= half_width


def gaussian_window(centres: Tensor, key_length: int, half_width: int) -> Tensor:
    """The local-p factor ``exp(-(s - p_t)^2 / (2 sigma^2))`` with ``sigma = D / 2``.

    Args:
        centres: ``p_t``, ``(B, Lq)``, float (gradients flow into them).
        key_length: ``Lk``.
        half_width: ``D``.

    Returns:
        ``(B, Lq, Lk)`` in the centres' dtype; 1 at ``s = p_t``.

    Example:
        >>> gaussian_window(torch.tensor([[1.0]]), 3, 2)
        tensor([[[0.6065, 1.0000, 0.6065]]])
    """
    sigma = half_width / 2
    positions = torch.arange(key_length, device=centres.device, dtype=centres.dtype)
    return torch.exp(-((positions - centres.unsqueeze(-1)) ** 2) / (2 * sigma**2))
