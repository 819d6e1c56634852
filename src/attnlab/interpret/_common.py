"""Input checks shared by the plotting and HTML helpers of :mod:`attnlab.interpret`.

Everything here turns user input (torch tensors, numpy arrays, lists) into plain
numpy arrays and rejects bad input with a one-line error before any drawing starts.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "TokenWeightsRow",
    "as_attention_layers",
    "as_weights",
    "check_indices",
    "check_tokens",
    "format_weight",
    "parse_token_rows",
    "single_item_layers",
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


def as_attention_layers(
    attentions: Sequence[Any], *, name: str = "attentions"
) -> tuple[torch.Tensor, bool]:
    """Check a model's per-layer attention weights and stack them into one tensor.

    Args:
        attentions: One entry per layer, bottom layer first: tensors or arrays of
            shape (B, H, L, L) or (H, L, L), all the same shape, rows = queries.
        name: How the argument is called in error messages.

    Returns:
        ``(stacked, batched)``: a float tensor of shape (n_layers, B, H, L, L) (B = 1
        for unbatched input; at least float32, on the first layer's device) and
        whether the input had a batch dimension.

    Raises:
        TypeError: If ``attentions`` is a single tensor or array, not a sequence.
        ValueError: If it is empty, ragged, of the wrong rank, not square in its last
            two dimensions, or holds negative, NaN or infinite values.

    Example:
        >>> stacked, batched = as_attention_layers([torch.eye(3).expand(2, 3, 3)] * 4)
        >>> tuple(stacked.shape), batched
        ((4, 1, 2, 3, 3), False)
    """
    if isinstance(attentions, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a sequence with one tensor per layer, got one tensor")
    if isinstance(attentions, (str, bytes)) or not isinstance(attentions, Sequence):
        raise TypeError(f"{name} must be a sequence of tensors, got {type(attentions).__name__}")
    if len(attentions) == 0:
        raise ValueError(f"{name} is empty; give one (B, H, L, L) or (H, L, L) tensor per layer")
    layers = [_as_tensor(a, f"{name}[{i}]") for i, a in enumerate(attentions)]
    first = tuple(layers[0].shape)
    for i, layer in enumerate(layers):
        shape = tuple(layer.shape)
        if layer.ndim not in (3, 4) or shape[-1] != shape[-2]:
            raise ValueError(f"{name}[{i}] must have shape (B, H, L, L) or (H, L, L), got {shape}")
        if shape != first:
            raise ValueError(f"{name}[{i}] has shape {shape} but {name}[0] has shape {first}")
    dtype = torch.promote_types(layers[0].dtype, torch.float32)
    if not (dtype.is_floating_point and dtype.itemsize >= 4):
        dtype = torch.float32  # integer or bool weights: compute in float32
    device = layers[0].device
    stacked = torch.stack([a.detach().to(device=device, dtype=dtype) for a in layers])
    if not bool(torch.isfinite(stacked).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    if bool((stacked < 0).any()):
        raise ValueError(f"{name} must be non-negative, got minimum {float(stacked.min()):.4g}")
    batched = len(first) == 4
    return (stacked if batched else stacked.unsqueeze(1)), batched


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
            arr = arr.astype(np.float64)  # lists, ints, bools, float16: widen
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric tensor or array") from exc
    return torch.as_tensor(arr)


def single_item_layers(attentions: Sequence[Any], *, name: str = "attentions") -> np.ndarray:
    """Check per-layer attention weights of one input and return them as numpy.

    Args:
        attentions: One (H, L, L) or (1, H, L, L) tensor or array per layer.
        name: How the argument is called in error messages.

    Returns:
        A float64 array of shape (n_layers, H, L, L).

    Raises:
        TypeError: See :func:`as_attention_layers`.
        ValueError: See :func:`as_attention_layers`; also when the batch holds more
            than one input, or L is 0.

    Example:
        >>> single_item_layers([np.full((2, 3, 3), 1 / 3)]).shape
        (1, 2, 3, 3)
    """
    stacked, _ = as_attention_layers(attentions, name=name)
    if stacked.shape[1] != 1:
        raise ValueError(
            f"{name} hold a batch of {stacked.shape[1]} inputs; pass one: [a[0] for a in {name}]"
        )
    if stacked.shape[-1] == 0:
        raise ValueError(f"{name} have no tokens (L = 0)")
    return stacked[:, 0].cpu().numpy().astype(np.float64)


def check_indices(values: Sequence[int] | None, size: int, name: str) -> tuple[int, ...]:
    """Check layer or head indices against their count; negative ones count from the end.

    Args:
        values: The indices, or None for all of ``range(size)``.
        size: How many layers (or heads) there are.
        name: The argument name, for error messages (e.g. ``"layers"``).

    Returns:
        The indices, non-negative, in the order given.

    Raises:
        TypeError: If ``values`` is not a sequence of integers.
        ValueError: If it is empty or an index is out of range.

    Example:
        >>> check_indices([0, -1], 12, "layers")
        (0, 11)
    """
    if values is None:
        return tuple(range(size))
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of integers, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name} is empty; give at least one index or None for all")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must hold integers, got {v!r}")
        if not -size <= v < size:
            raise ValueError(f"{name} index {v} is out of range for {size} {name}")
        out.append(int(v) % size)
    return tuple(out)


def html_page(title: str, css: str, body: str) -> str:
    """A self-contained HTML page: ``title`` (escaped) as its title and heading, ``css`` inline.

    Example:
        >>> html_page("a < b", "p {}", "<p>hi</p>").splitlines()[-4:]
        ['<h1>a &lt; b</h1>', '<p>hi</p>', '</body>', '</html>']
    """
    safe_title = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{safe_title}</title>\n<style>\n{css}\n</style>\n</head>\n<body>\n"
        f"<h1>{safe_title}</h1>\n{body}\n</body>\n</html>\n"
    )
