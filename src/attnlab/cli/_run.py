"""``attnlab run NAME`` and ``attnlab list``: flags derived from each experiment's Config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attnlab.cli._parser import OneLineParser
from attnlab.experiments import ExperimentSpec, config_fields, get_experiment
from attnlab.experiments import run_experiment as _run_experiment
from attnlab.registry import REGISTRIES
from attnlab.train.checkpoint import CheckpointDamagedError

__all__ = ["experiment_parser", "parse_config", "run_command", "list_command"]

# The run's own flags; a Config field with one of these names would shadow it.
_OWN_FLAGS = ("out", "resume", "overwrite", "help")


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        value = " ".join(str(v) for v in value)
    elif value is None:
        value = "none"
    elif value == "":
        value = '""'
    return f"(default: {value})".replace("%", "%%")  # argparse %-formats help strings


def experiment_parser(spec: ExperimentSpec) -> argparse.ArgumentParser:
    """The parser of ``attnlab run NAME``: one flag per Config field, then the run flags.

    Args:
        spec: The experiment.

    Returns:
        A parser whose namespace holds every Config field (by field name) plus ``out``,
        ``resume`` and ``overwrite``.

    Raises:
        TypeError: If a Config field's type cannot be a flag or its name shadows a run flag.
    """
    parser = OneLineParser(prog=f"attnlab run {spec.name}", description=spec.description)
    settings = parser.add_argument_group(f"settings ({spec.config.__name__})")
    for field in config_fields(spec.config):
        if field.name in _OWN_FLAGS:
            raise TypeError(
                f"{spec.config.__name__}.{field.name} shadows the run's own "
                f"--{field.name} flag; rename the field"
            )
        text = field.help.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": field.name}
        if field.required:
            kwargs["required"] = True
            kwargs["help"] = f"{text} (required)".strip()
        else:
            kwargs["default"] = field.default
            # Bool flags get their default from argparse; a doc that names it needs no repeat.
            quiet = field.kind == "bool" or "(default" in text
            kwargs["help"] = text if quiet else f"{text} {_default_text(field.default)}".strip()
        if field.kind == "bool":
            action = settings.add_argument(
                field.flag, action=argparse.BooleanOptionalAction, **kwargs
            )
            if not field.required and "default" not in (action.help or ""):
                # Some Python versions add the default themselves; add it where they do not.
                action.help = f"{text} {_default_text(field.default)}".strip()
            continue
        kwargs["type"] = field.parse
        kwargs["metavar"] = getattr(field.parse, "__name__", "value").upper()  # INT, FLOAT, ...
        if field.choices is not None:
            kwargs["choices"] = field.choices
            kwargs["metavar"] = (
                "{" + ",".join("none" if c is None else str(c) for c in field.choices) + "}"
            )
        if field.nargs is not None:
            kwargs["nargs"] = field.nargs
        settings.add_argument(field.flag, **kwargs)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"run folder (default: runs/{spec.name}/<YYYYmmdd-HHMMSS>)",
    )
    output.add_argument(
        "--resume", action="store_true", help="continue the unfinished run in --out"
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (the old one is kept until the new one finishes)",
    )
    return parser


def parse_config(spec: ExperimentSpec, argv: list[str]) -> tuple[Any, argparse.Namespace]:
    """Parse ``attnlab run NAME`` arguments into a Config instance and the run flags.

    Args:
        spec: The experiment.
        argv: The words after ``NAME``.

    Returns:
        ``(config, namespace)``; the namespace also holds ``out``, ``resume``, ``overwrite``.
    """
    namespace = experiment_parser(spec).parse_args(argv)
    values = {}
    for field in config_fields(spec.config):
        value = getattr(namespace, field.name)
        values[field.name] = tuple(value) if field.kind == "tuple" else value
    return spec.config(**values), namespace


def run_command(args: argparse.Namespace) -> int:
    """Handle ``attnlab run NAME ...``."""
    spec = get_experiment(args.name)
    config, flags = parse_config(spec, args.args)
    try:
        path = _run_experiment(
            spec.name, config, out=flags.out, resume=flags.resume, overwrite=flags.overwrite
        )
    except CheckpointDamagedError as err:
        # Only a resumed run reads checkpoints; --overwrite is how a user trains it again.
        raise CheckpointDamagedError(
            f"{err} (to train again: the same command with --overwrite in place of --resume)"
        ) from None
    except KeyboardInterrupt:
        hint = ""  # an interrupted overwrite is discarded, so there is nothing to resume
        if not flags.overwrite:
            where = flags.out if flags.out is not None else f"runs/{spec.name}/<newest>"
            hint = f"; continue with the same flags plus --out {where} --resume"
        print(f"attnlab: interrupted{hint}", file=sys.stderr)
        return 130
    print(f"wrote {path}")
    return 0


def _section(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    lines = [title]
    lines += [f"  {name.ljust(width)}  {text}".rstrip() for name, text in rows] or ["  (none)"]
    return lines


def list_command(args: argparse.Namespace) -> int:
    """Handle ``attnlab list``: every table of :data:`attnlab.registry.REGISTRIES`.

    A table its module does not define is left out; an empty one shows ``(none)``.
    """
    sections = []
    for registry in REGISTRIES.values():
        rows = registry.rows()
        if rows is not None:
            sections.append("\n".join(_section(registry.heading, rows)))
    print("\n\n".join(sections))
    return 0
