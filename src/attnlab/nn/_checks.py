"""Argument checks shared by every module and model: one clear line, before any work.

Constructors check their sizes, probabilities, engine name, ``device`` and ``dtype``
here; forwards check that inputs are tensors of the parameters' dtype and that token
ids fit the vocabulary. Sizes, numbers and devices go through
the library-wide :mod:`attnlab._validate`, so one rule holds everywhere.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab._validate import (
    as_positive,
    as_size,
    device_problem,
    positive_float,
    probability,
    real,
)
from attnlab.functional._problem import check_dtype
from attnlab.functional.attention import ENGINES, PATTERN_ENGINES

__all__ = [
    "as_positive",
    "build_injected",
    "as_size",
    "check_backend",
    "check_heads",
    "check_ids",
    "check_input",
    "check_tensor",
    "check_token_id",
    "factory_kwargs",
    "optional_size",
    "parameter_dtype",
    "positive_float",
    "probability",
    "real",
]

BACKENDS = ("auto", *ENGINES, *PATTERN_ENGINES)


def optional_size(name: str, value: object) -> int | None:
    """``None``, or ``value`` as an int >= 1 (one-line error otherwise)."""
    return None if value is None else as_positive(name, value)


def check_heads(name: str, dim: object, num_heads: object) -> tuple[int, int]:
    """``(dim, num_heads)`` as ints >= 1, ``dim`` divisible by ``num_heads``."""
    dim, heads = as_positive(name, dim), as_positive("num_heads", num_heads)
    if dim % heads:
        raise ValueError(
            f"{name} {dim} does not divide into {heads} heads; choose num_heads among the "
            f"divisors of {name}"
        )
    return dim, heads


def check_backend(backend: object) -> str:
    """An engine name :func:`attnlab.functional.attention` knows, checked at construction."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend  # type: ignore[return-value]


def _check_dtype(dtype: object) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            f"dtype must be a floating torch.dtype (torch.float32, torch.bfloat16, ...) or "
            f"None, got {dtype!r}"
        )


def _check_device(device: object) -> None:
    if device is None:
        return
    problem = device_problem(device)
    if problem == "is not a device":
        raise ValueError(
            f"device {device!r} is not a device; pass a torch.device or a name such as "
            "'cpu' or 'cuda:0'"
        )
    if problem is not None:
        raise ValueError(f"device {device!r}: {problem}; use 'cpu'")


def factory_kwargs(device: object, dtype: object) -> dict[str, Any]:
    """Checked ``{"device": device, "dtype": dtype}`` for the parameters a module creates."""
    _check_dtype(dtype)
    _check_device(device)
    return {"device": device, "dtype": dtype}


def parameter_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first parameter (None when it has none)."""
    first = next(module.parameters(), None)
    return None if first is None else first.dtype


def check_tensor(name: str, value: object) -> Tensor:
    """``value`` itself when it is a tensor, else a TypeError naming the argument."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_input(owner: nn.Module, name: str, value: object, dtype: torch.dtype | None) -> Tensor:
    """A tensor of the parameters' ``dtype`` (None: any floating dtype), else one line.

    One comparison for a valid input; under ``torch.autocast`` another floating dtype
    is fine (the autocast ops cast it). See :func:`attnlab.functional._problem.check_dtype`.
    """
    t = check_tensor(name, value)
    if t.dtype != dtype:
        check_dtype(name, t, dtype, type(owner).__name__)
    return t


def check_ids(name: str, ids: object, vocab_size: int, *, dims: int, layout: str) -> Tensor:
    """Integer token ids of rank ``dims`` in ``[0, vocab_size)`` (one reduction, one sync).

    Embedding lookups fail later with torch's "index out of range in self"; this says
    which id was out of range and how large the vocabulary is.
    """
    t = check_tensor(name, ids)
    expected = f"{name} must be an integer tensor of token ids {layout}"
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{expected}, got {t.dtype}")
    if t.dim() != dims:
        raise ValueError(f"{expected}, got shape {tuple(t.shape)}")
    if t.numel():
        low, high = torch.stack(torch.aminmax(t)).tolist()
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} holds id {bad} (min {low}, max {high}) but the vocabulary has "
                f"{vocab_size} ids, 0..{vocab_size - 1}; map unknown tokens to <unk>"
            )
    return t


def check_token_id(name: str, value: object, vocab_size: int) -> int:
    """A special token id (padding, BOS, EOS) inside the vocabulary ``[0, vocab_size)``."""
    token = as_size(name, value)
    if token >= vocab_size:
        raise ValueError(
            f"{name} {token} is outside the vocabulary of {vocab_size} ids (0..{vocab_size - 1})"
        )
    return token


def build_injected(
    factory: object, *args: Any, name: str, expected: str, **kwargs: Any
) -> nn.Module:
    """Build a module passed in as a class or factory (timm's ``attn_layer=``), one line if not.

    Args:
        factory: What the caller passed (``attn_layer=``, ``pooling=``, ``conv=``).
        *args: Positional arguments of the build.
        name: The argument's name, for the message.
        expected: What it should be, for the message (``"a pooling class or factory"``).
        **kwargs: Keyword arguments of the build.

    Returns:
        ``factory(*args, **kwargs)``.

    Raises:
        TypeError: ``factory`` is not callable, is a module already built, or builds
            something that is not an ``nn.Module``.

    Example:
        >>> build_injected(nn.Linear, 2, 3, name="layer", expected="a layer class")
        Linear(in_features=2, out_features=3, bias=True)
    """
    if not callable(factory) or isinstance(factory, nn.Module):
        raise TypeError(f"{name} must be {expected}; got {type(factory).__name__} {factory!r}")
    module = factory(*args, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"{name} must build an nn.Module, got {type(module).__name__} from {factory!r}"
        )
    return module
