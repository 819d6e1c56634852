"""Scalar argument checks shared by every layer of the library: one clear line per error.

The functional core, the mask builders, the modules and the experiment Configs all
check sizes, probabilities and devices through these, so one rule (and one wording)
holds everywhere: bools are not ints, ``2.0`` is not a size, NaN is not a probability.

Example:
    >>> probability("dropout", 0.1)
    0.1
    >>> as_positive("num_heads", 2.0)
    Traceback (most recent call last):
    ...
    TypeError: num_heads must be an int; got float 2.0
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Mapping
from typing import TypeVar

import torch

T = TypeVar("T")

__all__ = [
    "as_positive",
    "as_size",
    "describe",
    "device_problem",
    "dtype_name",
    "lookup",
    "positive_float",
    "probability",
    "real",
]


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int; got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}") from None


def as_size(name: str, value: object) -> int:
    """Return ``value`` as a Python int ``>= 0``, or raise a one-line error."""
    size = _as_int(name, value)
    if size < 0:
        raise ValueError(f"{name} must be >= 0; got {size}")
    return size


def as_positive(name: str, value: object) -> int:
    """Return ``value`` as a Python int ``>= 1``, or raise a one-line error."""
    size = _as_int(name, value)
    if size < 1:
        raise ValueError(f"{name} must be >= 1; got {size}")
    return size


def _number(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number {allowed}, got {type(value).__name__} {value!r}")
    return float(value)


def real(name: str, value: object) -> float:
    """``value`` as a finite float; bools, strings, NaN and infinities are one-line errors."""
    x = _number(name, value, "(finite)")
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value}")
    return x


def probability(name: str, value: object, *, allow_one: bool = False) -> float:
    """A dropout-like probability in ``[0, 1)`` (``[0, 1]`` with ``allow_one``), as a float."""
    allowed = "in [0, 1]" if allow_one else "in [0, 1)"
    p = _number(name, value, allowed)
    if not (0.0 <= p < 1.0 or (allow_one and p == 1.0)):  # NaN fails too
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return p


def positive_float(name: str, value: object) -> float:
    """A finite float ``> 0`` (temperatures, epsilons)."""
    x = _number(name, value, "> 0")
    if not 0.0 < x < math.inf:
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return x


def device_problem(device: object) -> str | None:
    """What stops ``device`` being used on this machine, as words, or None when it can be.

    The caller names the argument (a module's ``device=``, a Config's ``--device``) and
    says what to do; this says what is wrong: ``"is not a device"``, ``"this machine has
    no CUDA device"`` or ``"this machine has 1 CUDA device(s), cuda:0..cuda:0"``.

    Example:
        >>> device_problem("cpu") is None, device_problem("gpu")
        (True, 'is not a device')
    """
    try:
        where = torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError):
        return "is not a device"
    if where.type in ("cpu", "meta"):
        return None
    kind = where.type
    backend = getattr(torch, kind, None)
    available = getattr(backend, "is_available", None) or getattr(
        getattr(torch.backends, kind, None), "is_available", None
    )
    if available is None or not available():
        return f"this machine has no {kind.upper()} device"
    count = getattr(backend, "device_count", None)
    n = count() if count is not None else None
    if where.index is not None and n is not None and where.index >= n:
        return f"this machine has {n} {kind.upper()} device(s), {kind}:0..{kind}:{n - 1}"
    return None


def lookup(table: Mapping[str, T], name: object, what: str) -> T:
    """``table[name]``: the one way a name people type is resolved, with one line if unknown.

    Args:
        table: Name to value (a loader, a class, a factory).
        name: The name given.
        what: What the names are, for the message (``"sentiment dataset"``).

    Returns:
        The value registered under ``name``.

    Raises:
        ValueError: ``name`` is not in ``table``; the message lists the known names.

    Example:
        >>> lookup({"uci": 1}, "yelp", "sentiment dataset")
        Traceback (most recent call last):
        ...
        ValueError: unknown sentiment dataset 'yelp'; known: uci
    """
    if isinstance(name, str) and name in table:
        return table[name]
    raise ValueError(f"unknown {what} {name!r}; known: {_names(table)}")


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` for ``torch.float32``: how messages and manifests name a dtype."""
    return str(dtype).removeprefix("torch.")


def describe(value: object) -> str:
    """What a value is, for a message: ``"float32 tensor of shape (4, 3)"`` or ``"dict"``.

    Example:
        >>> describe(torch.zeros(4, 3)), describe({})
        ('float32 tensor of shape (4, 3)', 'dict')
    """
    if isinstance(value, torch.Tensor):
        return f"{dtype_name(value.dtype)} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
