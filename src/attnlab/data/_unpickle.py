"""Unpickling that admits only a fixed list of globals, so reading a file runs no code.

A pickle can name any importable callable (``os.system``, ``builtins.eval``) and have
the loader call it. :func:`load_restricted` refuses every global outside an explicit
allow-list of ``(module, name)`` pairs before importing it, so a hostile file fails
with :class:`pickle.UnpicklingError` instead of running anything.
"""

from __future__ import annotations

import pickle
from collections.abc import Set
from pathlib import Path
from typing import IO, Any

__all__ = ["load_restricted"]


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only the listed globals."""

    def __init__(
        self,
        file: IO[bytes],
        *,
        allowed: Set[tuple[str, str]],
        kind: str,
        path: Path,
        encoding: str,
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = allowed
        self._kind = kind
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        # Checked on the names as written in the file (Python 2's ``__builtin__``
        # included), before anything is imported.
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"{self._kind} {self._path} names the global {module}.{name}, which a "
                f"{self._kind} never holds; refusing to load it"
            )
        return super().find_class(module, name)


def load_restricted(
    path: str | Path, allowed: Set[tuple[str, str]], *, kind: str, encoding: str = "ASCII"
) -> Any:
    r"""Unpickle ``path``, admitting only the globals in ``allowed``.

    Args:
        path: The pickle file.
        allowed: ``(module, name)`` pairs the file may name, spelled as in the file
            (e.g. ``("numpy.core.multiarray", "_reconstruct")``).
        kind: What the file is, for the error message (``"Planetoid file"``).
        encoding: How to decode Python 2 ``str`` objects (``"latin1"`` for numpy arrays).

    Returns:
        The unpickled object.

    Raises:
        pickle.UnpicklingError: The file names a global outside ``allowed`` (nothing
            it names has been imported or called), or is not a valid pickle.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +ELLIPSIS
        ...     path = os.path.join(tmp, "evil.pkl")
        ...     with open(path, "wb") as f:  # a pickle of os.system("touch pwned")
        ...         _ = f.write(b"cos\nsystem\n(S'touch pwned'\ntR.")
        ...     load_restricted(path, set(), kind="toy file")
        Traceback (most recent call last):
        ...
        _pickle.UnpicklingError: toy file .../evil.pkl names the global os.system, which a ...
    """
    path = Path(path)
    with open(path, "rb") as f:
        unpickler = _RestrictedUnpickler(
            f, allowed=allowed, kind=kind, path=path, encoding=encoding
        )
        return unpickler.load()
