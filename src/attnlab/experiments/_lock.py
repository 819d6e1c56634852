"""One process per run folder: an exclusive, non-blocking OS lock held for the whole run.

The lock is on ``.NAME.lock`` beside the run folder ``NAME``, not inside it, so that it
survives an overwrite's swap of the folder and two overwrites exclude each other too.
The operating system drops the lock when its holder exits, however it exits (a crash,
``kill -9``), so a stale lock never blocks the next run. The lock file is removed on
release; a process that opened it just before the removal notices that it locked a
file no longer at the path and tries again, so two processes never both hold it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["FileLock", "LockBusyError", "RunInUseError", "lock_run_folder"]


class RunInUseError(FileExistsError):
    """Another attnlab process is running in the folder."""


class LockBusyError(OSError):
    """Another process holds the lock.

    Attributes:
        pid: The holder's process id, or None where it could not be read.
    """

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by process {pid}")
        self.pid = pid


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except OSError:
        if fcntl is not None:
            raise  # not "held by another": a real failure, e.g. no locks on this file system
        return False  # msvcrt reports a held lock as a plain OSError
    return True


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode("ascii").strip())
    return None  # not yet written, or unreadable while locked (Windows)


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class FileLock:
    """An exclusive lock on ``path``, taken with :meth:`acquire`, dropped with :meth:`release`.

    Attributes:
        path: The lock file; it holds the holder's process id while locked.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> FileLock:
        """Lock ``path`` (created if missing) without waiting.

        Args:
            path: The lock file; its folder must exist.

        Returns:
            The held lock.

        Raises:
            LockBusyError: If another process (or another lock in this one) holds it.
            OSError: If the file cannot be created (e.g. PermissionError).
        """
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    raise LockBusyError(path, _holder(fd))
                if _still_at(fd, path):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
                    return cls(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # its holder removed this file as it released it: lock the new one

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if fcntl is not None:
            # Remove while still holding it, so no one can lock the file we remove.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            return
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
        with contextlib.suppress(OSError):  # Windows refuses while another process has it open
            os.unlink(self.path)


def lock_run_folder(final: Path) -> FileLock:
    """Lock the run folder ``final`` (which need not exist yet) for this process.

    Args:
        final: The run folder; its parent must exist.

    Returns:
        The held lock.

    Raises:
        RunInUseError: If another process holds it; the message gives that process's id.
        ValueError: If the lock file cannot be created in the parent folder.
    """
    try:
        return FileLock.acquire(final.parent / f".{final.name}.lock")
    except LockBusyError as err:
        pid = f"pid {err.pid}" if err.pid is not None else "pid unknown"
        raise RunInUseError(
            f"{final} is in use by another attnlab run ({pid}); "
            "wait for it or pass --out another folder"
        ) from None
    except PermissionError:  # the folder itself may be writable, its parent is not
        raise ValueError(
            f"cannot write to --out {final}: permission denied in {final.parent}, where its "
            "lock file goes; pass --out a folder inside one you can write"
        ) from None
