"""The argument parser every ``attnlab`` command uses: its errors fit on one line.

argparse prints the whole usage block before a bad flag's message; here the message
alone goes to stderr, ``PROG: error: MESSAGE (see PROG -h)``, with exit status 2, like
every other error of the command.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line.

    Example:
        >>> parser = OneLineParser(prog="attnlab demo")
        >>> _ = parser.add_argument("--epochs", type=int)
        >>> parser.parse_args(["--epochs", "x"])  # doctest: +SKIP
        attnlab demo: error: argument --epochs: invalid int value: 'x' (see attnlab demo -h)
    """

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line with a pointer to ``-h`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} -h)\n")
