"""What a Config dataclass looks like from the command line: one flag per field.

The CLI builds its parser from :func:`config_fields` and the framework writes the
reproducing command with :func:`command_line`; both live here so that a flag and the
way a value is spelled for it can never drift apart. Supported field types: ``int``,
``float``, ``str``, ``bool``, ``pathlib.Path``, ``Literal[...]``, ``tuple[T, ...]`` and
fixed ``tuple[T, T]`` of those scalars, and ``X | None`` of a scalar (spelled ``none``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

__all__ = ["FieldFlag", "config_fields", "command_line", "flag_name", "flag_tokens"]

_SCALARS: tuple[type, ...] = (int, float, str, Path)
NONE_WORD = "none"


@dataclass(frozen=True)
class FieldFlag:
    """How one Config field appears as a command-line flag.

    Attributes:
        name: The dataclass field name (``learning_rate``).
        flag: The option string (``--learning-rate``).
        kind: ``"bool"``, ``"scalar"`` or ``"tuple"``.
        parse: Converts one command-line word to a value of the field's element type.
        default: The field's default, or ``dataclasses.MISSING`` when it has none.
        choices: The allowed values of a ``Literal`` field, else None.
        nargs: ``"+"`` for ``tuple[T, ...]``, the length of a fixed tuple, else None.
        help: The field's text from the Config's ``Attributes:`` docstring section.
    """

    name: str
    flag: str
    kind: Literal["bool", "scalar", "tuple"]
    parse: Callable[[str], Any]
    default: Any
    choices: tuple[Any, ...] | None
    nargs: str | int | None
    help: str

    @property
    def required(self) -> bool:
        """True when the field has no default, so the flag must be given."""
        return self.default is dataclasses.MISSING


def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` texts of a class and its bases; a subclass's wording wins.

    A Config that inherits shared settings (``TrainingSettings``) documents only the
    fields it words its own way.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs |= _own_attribute_docs(klass)
    return docs


def _own_attribute_docs(cls: type) -> dict[str, str]:
    """Read the Google-style ``Attributes:`` section of one class's own docstring."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    docs: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return docs
    header_indent = len(lines[start]) - len(lines[start].lstrip())
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= header_indent:
            break  # the next section (or prose) starts
        if entry_indent is None:
            entry_indent = indent
        match = re.match(r"(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line.strip())
        if indent == entry_indent and match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current is not None:
            docs[current] = f"{docs[current]} {line.strip()}".strip()
    return docs


def _literal_parser(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    by_word = {str(c): c for c in choices}

    def parse(word: str) -> Any:
        # An unknown word is returned unchanged so argparse reports "invalid choice".
        return by_word.get(word, word)

    return parse


def _optional_parser(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(word: str) -> Any:
        return None if word.lower() == NONE_WORD else inner(word)

    parse.__name__ = getattr(inner, "__name__", "value")  # argparse names it in errors
    return parse


def _scalar(tp: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None] | None:
    """Parser and choices for a scalar annotation, or None if it is not one."""
    if tp in _SCALARS:
        return tp, None
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        return _literal_parser(choices), choices
    return None


def flag_name(field: str) -> str:
    """The option string of a Config field: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + field.replace("_", "-")


def _describe(cls: type, f: dataclasses.Field, tp: Any, docs: dict[str, str]) -> FieldFlag:
    flag = flag_name(f.name)
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = dataclasses.MISSING
    common = {"name": f.name, "flag": flag, "default": default, "help": docs.get(f.name, "")}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return FieldFlag(kind="bool", parse=bool, choices=None, nargs=None, **common)
    if (scalar := _scalar(tp)) is not None:
        return FieldFlag(kind="scalar", parse=scalar[0], choices=scalar[1], nargs=None, **common)
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _scalar(next(a for a in args if a is not type(None)))
        if inner is not None:
            choices = None if inner[1] is None else (*inner[1], None)
            return FieldFlag(
                kind="scalar",
                parse=_optional_parser(inner[0]),
                choices=choices,
                nargs=None,
                **common,
            )
    if origin is tuple and args:
        variadic = len(args) == 2 and args[1] is Ellipsis
        elems = {args[0]} if variadic else set(args)
        inner = _scalar(args[0]) if len(elems) == 1 else None
        if inner is not None:
            return FieldFlag(
                kind="tuple",
                parse=inner[0],
                choices=inner[1],
                nargs="+" if variadic else len(args),
                **common,
            )
    raise TypeError(
        f"{cls.__name__}.{f.name} has type {tp!r}, which the command line cannot express; "
        "use int, float, str, bool, Path, Literal[...], tuple[T, ...] or T | None"
    )


def config_fields(config: type) -> list[FieldFlag]:
    """Describe every init field of a Config dataclass as a command-line flag.

    Args:
        config: A dataclass class (not an instance). ``from __future__ import
            annotations`` is fine: types are resolved with ``typing.get_type_hints``.

    Returns:
        One :class:`FieldFlag` per field, in declaration order.

    Raises:
        TypeError: If ``config`` is not a dataclass class or a field has a type the
            command line cannot express.
    """
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"expected a dataclass class as Config, got {config!r}")
    hints = typing.get_type_hints(config)
    docs = _attribute_docs(config)
    return [_describe(config, f, hints[f.name], docs) for f in dataclasses.fields(config) if f.init]


def _word(value: Any) -> str:
    return NONE_WORD if value is None else str(value)


def flag_tokens(field: FieldFlag, value: Any) -> list[str]:
    """The command-line words that set ``field`` to ``value``.

    Args:
        field: The field's flag description.
        value: The value to spell.

    Returns:
        For example ``["--no-shuffle"]``, ``["--seeds", "0", "1"]`` or ``["--lr", "0.001"]``.
    """
    if field.kind == "bool":
        return [field.flag if value else "--no-" + field.flag[2:]]
    if field.kind == "tuple":
        return [field.flag, *(_word(v) for v in value)]
    return [field.flag, _word(value)]


def command_line(experiment: str, config: Any) -> str:
    """The shell command that runs ``experiment`` with ``config`` again.

    Only fields that differ from their defaults are spelled out: the full config is
    recorded beside it in ``results.json`` together with the commit that fixes the defaults.

    Args:
        experiment: The registered experiment name.
        config: A Config dataclass instance.

    Returns:
        A shell-quoted command such as ``attnlab run sentiment --seeds 0 1``.
    """
    words = ["attnlab", "run", experiment]
    for field in config_fields(type(config)):
        value = getattr(config, field.name)
        if field.required or value != field.default:
            words += flag_tokens(field, value)
    return shlex.join(words)
