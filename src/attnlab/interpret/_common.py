"""Input checks shared by the plotting and HTML helpers of :mod:`attnlab.interpret`.

Everything here turns user input (torch tensors, numpy arrays, lists) into plain
numpy arrays and rejects bad input with a one-line error before any drawing starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "TokenWeightsRow",
    "as_weights",
    "check_tokens",
    "format_weight",
    "parse_token_rows",
    "truncation_note",
]

TokenWeightsRow = tuple[Sequence[str], Any, str]
"""One sentence of a classifier picture: (tokens, weights of shape (L,), caption)."""


def as_weights(
    weights: Any, *, ndim: int, name: str = "weights", allow_negative: bool = True
) -> np.ndarray:
    """Convert attention weights to a finite float64 numpy array of a given rank.

    Args:
        weights: A ``torch.Tensor`` (any dtype or device), a numpy array or a
            nested sequence of numbers.
        ndim: The number of dimensions the weights must have.
        name: How the weights are called in error messages.
        allow_negative: Whether negative values are accepted.

    Returns:
        The weights as a float64 numpy array (a copy when converted from torch).

    Raises:
        ValueError: If the rank is wrong, or a value is NaN, infinite, or negative
            while ``allow_negative`` is False.

    Example:
        >>> as_weights(torch.tensor([0.25, 0.75]), ndim=1).tolist()
        [0.25, 0.75]
    """
    if isinstance(weights, torch.Tensor):
        # .float() first: numpy has no bfloat16, and fp16 loses nothing by widening.
        arr = weights.detach().float().cpu().numpy().astype(np.float64)
    else:
        try:
            arr = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric, got {type(weights).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} NaN or infinite value(s)")
    if not allow_negative and arr.size and float(arr.min()) < 0.0:
        raise ValueError(f"{name} must be non-negative, got minimum {float(arr.min()):.4g}")
    return arr


def check_tokens(tokens: Sequence[str], expected: int, *, name: str, axis: str) -> list[str]:
    """Check that a token list matches the weights along one axis.

    Args:
        tokens: The tokens (one string each).
        expected: The length of the weights along the matching axis.
        name: The argument name used in error messages (e.g. ``"x_tokens"``).
        axis: What the axis is, for error messages (e.g. ``"key columns"``).

    Returns:
        The tokens as a list of ``str``.

    Raises:
        TypeError: If ``tokens`` is a single string rather than a list of strings.
        ValueError: If the number of tokens differs from ``expected``.
    """
    # A bare string is a sequence too; iterating it would silently split it into letters.
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, got a single {type(tokens).__name__}")
    out = [str(t) for t in tokens]
    if len(out) != expected:
        raise ValueError(f"{name} has {len(out)} tokens but the weights have {expected} {axis}")
    return out


def parse_token_rows(rows: Sequence[TokenWeightsRow]) -> list[tuple[list[str], np.ndarray, str]]:
    """Check ``(tokens, weights, caption)`` rows and convert their weights to numpy.

    Args:
        rows: One tuple per sentence; weights of shape (L,) with ``len(tokens) == L``.

    Returns:
        The rows as ``(list of str, float64 array, str)``.

    Raises:
        ValueError: On no rows, a malformed row, an empty sentence, a token count that
            does not match its weights, or weights that are negative, NaN or infinite.
    """
    if len(rows) == 0:
        raise ValueError("rows must contain at least one (tokens, weights, caption) tuple")
    parsed = []
    for i, row in enumerate(rows):
        if isinstance(row, str) or len(row) != 3:
            raise ValueError(f"rows[{i}] must be a (tokens, weights, caption) tuple")
        tokens, weights, caption = row
        w = as_weights(weights, ndim=1, name=f"rows[{i}] weights", allow_negative=False)
        if w.size == 0:
            raise ValueError(f"rows[{i}] has no tokens")
        toks = check_tokens(tokens, w.size, name=f"rows[{i}] tokens", axis="positions")
        parsed.append((toks, w, str(caption)))
    return parsed


def truncation_note(shown: int, total: int) -> str:
    """Describe a truncation, e.g. ``"first 80 of 312 tokens shown"``.

    Args:
        shown: How many tokens are drawn.
        total: How many tokens there are.

    Returns:
        The note, or ``""`` when nothing was cut.
    """
    return "" if shown >= total else f"first {shown} of {total} tokens shown"


def format_weight(value: float) -> str:
    """Format one weight for a label or tooltip: three decimals, scientific when tiny.

    Args:
        value: The weight.

    Returns:
        E.g. ``"0.231"`` or ``"4.2e-05"``.
    """
    # Three decimals would print a tiny but non-zero weight as "0.000", which reads as "masked".
    if value != 0.0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}"
