"""The ``attnlab`` command: ``run``, ``list``, ``bench`` and ``explain``.

Errors a user can fix (a bad flag value, an unknown name, a folder that holds a run)
print one line, ``attnlab: error: <message>``, and exit with status 2; ``--traceback``
shows the full traceback instead. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import attnlab
from attnlab.bench import SUITES
from attnlab.cli._bench import bench_command
from attnlab.cli._explain import add_explain_parser
from attnlab.cli._parser import OneLineParser
from attnlab.cli._run import list_command, run_command

__all__ = ["build_parser", "main"]

# What experiments raise for bad input; anything else is a bug worth a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; ``run`` hands everything after NAME to the experiment's parser.

    Returns:
        The parser; each subcommand sets ``handler`` in the namespace.
    """
    parser = OneLineParser(
        prog="attnlab", description="Attention mechanisms: experiments, benchmarks, pictures."
    )
    parser.add_argument("--version", action="version", version=f"attnlab {attnlab.__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full traceback of errors instead of one line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run an experiment (attnlab run NAME -h for its flags)",
        description="Run an experiment; its flags come from its Config.",
    )
    run.add_argument("name", metavar="NAME", help="the experiment (see `attnlab list`)")
    run.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="the experiment's flags, --out DIR, --resume, --overwrite",
    )
    run.set_defaults(handler=run_command)

    listing = sub.add_parser(
        "list", help="show every name you can type: experiments, mechanisms, model choices"
    )
    listing.set_defaults(handler=list_command)

    bench = sub.add_parser("bench", help="run a benchmark suite and write its results")
    bench.add_argument(
        "--suite",
        default="engines",
        help=f"which suite: {', '.join(SUITES)} (default: engines)",
    )
    bench.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    bench.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="a new folder (default: runs/bench/<YYYYmmdd-HHMMSS>)",
    )
    bench.set_defaults(handler=bench_command)
    add_explain_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the ``attnlab`` command.

    Args:
        argv: The arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 2 for usage errors, 130 when interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
        try:
            return args.handler(args)
        except USER_ERRORS as err:
            if args.traceback:
                raise
            print(f"attnlab: error: {_one_line(err)}", file=sys.stderr)
            return 2
    except SystemExit as exit_:
        # argparse exits for --help, --version and bad flags (also those of an experiment's
        # own parser, inside the handler); return its status so callers get an int.
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        print("attnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
