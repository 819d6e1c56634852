"""Checks a Config runs in ``__post_init__``, so a bad value stops a run before any work.

Every experiment's Config calls these helpers on itself; each raises one line naming
the flag as the user types it (``--word-dropout``), the value, and what is allowed:
``--word-dropout must be in [0, 1), got 2.0``. The CLI builds the Config before it
loads data or trains, so ``attnlab run`` exits with that line (status 2) at once.
:func:`config_from_dict` builds a Config from a recorded dict (``run.json``) through
the same checks.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Toy:
    ...     epochs: int = 3
    ...     dropout: float = 0.1
    ...     def __post_init__(self) -> None:
    ...         field_types(self)
    ...         at_least(self, 1, "epochs")
    ...         fraction(self, "dropout")
    >>> Toy(dropout=2.0)
    Traceback (most recent call last):
    ...
    ValueError: --dropout must be in [0, 1), got 2.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

from attnlab._validate import device_problem
from attnlab.experiments._fields import flag_name

__all__ = [
    "at_least",
    "between",
    "config_from_dict",
    "device",
    "field_types",
    "folder",
    "fraction",
    "multiple_of",
    "names",
    "positive",
]


def at_least(cfg: Any, low: float, *fields: str, or_zero: bool = False) -> None:
    """Each named field is a finite number ``>= low`` (or exactly 0 with ``or_zero``).

    Args:
        cfg: The Config (or any object holding the fields).
        low: The smallest allowed value.
        *fields: Field names.
        or_zero: Also allow 0, the value that means "all" or "none" for some fields.

    Raises:
        ValueError: ``--epochs must be at least 1, got 0``.
    """
    for name in fields:
        value = getattr(cfg, name)
        # isfinite also refuses NaN, which every comparison below would let through.
        if not (math.isfinite(value) and (value >= low or (or_zero and value == 0))):
            allowed = f"0 or at least {low}" if or_zero else f"at least {low}"
            raise ValueError(f"{flag_name(name)} must be {allowed}, got {value}")


def positive(cfg: Any, *fields: str) -> None:
    """Each named field is a finite number ``> 0`` (learning rates, budgets).

    Raises:
        ValueError: ``--lr must be > 0, got 0.0``.
    """
    for name in fields:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag_name(name)} must be > 0, got {value}")


def fraction(cfg: Any, *fields: str) -> None:
    """Each named field is a probability in ``[0, 1)`` (dropouts, warmup shares, smoothing).

    Raises:
        ValueError: ``--word-dropout must be in [0, 1), got 2.0``.
    """
    for name in fields:
        value = getattr(cfg, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{flag_name(name)} must be in [0, 1), got {value}")


def between(cfg: Any, name: str, low: int, high: int) -> None:
    """The named field lies in ``low..high`` (both included).

    Raises:
        ValueError: ``--max-len must be in 3..512, got 600``.
    """
    value = getattr(cfg, name)
    if not low <= value <= high:
        raise ValueError(f"{flag_name(name)} must be in {low}..{high}, got {value}")


def multiple_of(cfg: Any, name: str, step: int, why: str) -> None:
    """The named field is a multiple of ``step``; ``why`` says where ``step`` comes from.

    Raises:
        ValueError: ``--d-model must be a multiple of 4 (--heads), got 250``.
    """
    value = getattr(cfg, name)
    if value % step:
        raise ValueError(f"{flag_name(name)} must be a multiple of {step} ({why}), got {value}")


def names(cfg: Any, name: str, allowed: Sequence[str]) -> None:
    """A name field (or a tuple of names: non-empty, no repeats) holds only ``allowed`` names.

    Raises:
        ValueError: ``--models gru is unknown; choose from lstm, lstm-attention``.
    """
    value = getattr(cfg, name)
    picked = value if isinstance(value, tuple) else (value,)
    choose = f"choose from {', '.join(allowed)}"
    unknown = [v for v in picked if v not in allowed]
    if unknown:
        raise ValueError(f"{flag_name(name)} {unknown[0]} is unknown; {choose}")
    if not picked:
        raise ValueError(f"{flag_name(name)} is empty; {choose}")
    repeated = [v for i, v in enumerate(picked) if v in picked[:i]]
    if repeated:
        raise ValueError(f"{flag_name(name)} names {repeated[0]} twice; give each once")


def device(cfg: Any, *, auto: bool, name: str = "device") -> None:
    """The named field is a device this machine has: ``cpu``, ``cuda``, ``cuda:N`` (or ``auto``).

    Args:
        cfg: The Config.
        auto: Whether ``auto`` (CUDA when there is one, else the CPU) is allowed.
        name: The field name.

    Raises:
        ValueError: An unknown word (``gpu``), or CUDA on a machine without it.
    """
    value, flag = getattr(cfg, name), flag_name(name)
    if auto and value == "auto":
        return
    if re.fullmatch(r"cpu|cuda(?::\d+)?", value) is None:
        words = "cpu, cuda, cuda:N or auto" if auto else "cpu, cuda or cuda:N"
        raise ValueError(f"{flag} {value} is not a device; use {words}")
    problem = device_problem(value)
    if problem is not None:
        raise ValueError(f"{flag} {value}: {problem}; use {flag} cpu")


def folder(cfg: Any, name: str) -> None:
    """The named field is empty (use the default place) or an existing folder.

    Raises:
        ValueError: ``--data-dir /nowhere is not a folder; ...``.
    """
    value = getattr(cfg, name)
    if value and not Path(value).expanduser().is_dir():
        raise ValueError(
            f"{flag_name(name)} {value} is not a folder; fix the path or leave it out "
            "($ATTNLAB_DATA_DIR, then the cache)"
        )


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(value: Any, tp: Any) -> bool:
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp in (str, Path):
        return isinstance(value, tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_matches, value, args))
    return True  # other types cannot be Config fields: config_fields refuses them


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _expected(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _expected(a) for a in args)
    if origin is tuple:
        return f"a list, each {_expected(args[0])}"
    return _EXPECTED.get(tp, getattr(tp, "__name__", str(tp)))


def field_types(cfg: Any) -> None:
    """Every field of a Config dataclass holds a value of its annotated type.

    ``int`` is accepted where ``float`` is expected; ``bool`` is never an ``int``.

    Raises:
        TypeError: ``--seeds must be an integer, got '5'``.
        ValueError: A value outside a ``Literal``'s choices.
    """
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        if not _matches(value, hint):
            # A word outside a Literal's choices is a bad value, anything else a bad type.
            kind = ValueError if typing.get_origin(hint) is Literal else TypeError
            raise kind(f"{flag_name(f.name)} must be {_expected(hint)}, got {value!r}")


def config_from_dict(config: type, values: Any, *, source: str) -> Any:
    """Build a Config from a recorded dict (``run.json``'s ``"config"``), checked.

    JSON lists become tuples; keys the Config lacks are refused; keys the record lacks
    take their defaults (fields added after the run keep their old behaviour).

    Args:
        config: The Config dataclass class.
        values: The recorded settings.
        source: Where they come from (a file name), prefixed to every error.

    Returns:
        The Config instance.

    Raises:
        ValueError: ``values`` is not a dict, has unknown keys, or a value out of range.
        TypeError: A value of the wrong type.
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}: config must be an object, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(config) if f.init}
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        raise ValueError(
            f"{source}: config has unknown settings {', '.join(unknown)} for {config.__name__}"
        )
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return config(**settings)
    except (TypeError, ValueError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"{source}: {err}") from None
