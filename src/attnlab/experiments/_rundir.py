"""The output folder of one experiment run: fresh, resumed or overwriting; nothing lost or mixed.

A folder is an attnlab run when it holds ``run.json`` (the experiment and config that
started it); the run is finished when it also holds ``results.json``, written last and
atomically. An overwrite works in a hidden sibling folder and swaps it into place only
when the new run finishes, so a failed or interrupted overwrite leaves the previous run
exactly as it was; what a killed one leaves beside it is put right by the next call.
One process at a time: a run holds an OS lock on ``.NAME.lock`` beside its folder from
:meth:`RunDir.open` until it finishes or is abandoned.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnlab.experiments._lock import FileLock, RunInUseError, lock_run_folder

__all__ = [
    "MANIFEST",
    "REPORT",
    "RESULTS",
    "RunDir",
    "RunInUseError",
    "read_manifest",
    "write_atomic",
]

RESULTS, REPORT, MANIFEST = "results.json", "report.md", "run.json"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Args:
        path: The destination file.
        text: Its full contents.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def timestamp() -> str:
    """Local time as ``YYYYmmdd-HHMMSS``, the name of a default output folder."""
    return time.strftime("%Y%m%d-%H%M%S")


def _is_finished(path: Path) -> bool:
    return (path / RESULTS).is_file()


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def read_manifest(folder: Path) -> dict[str, Any]:
    """The run record ``run.json`` of ``folder``: the experiment name and its config.

    Args:
        folder: A run folder.

    Returns:
        ``{"experiment": str, "config": dict, ...}`` as written by :meth:`RunDir.begin`.

    Raises:
        FileNotFoundError: ``folder`` has no ``run.json``.
        ValueError: It is not JSON, or not an object with an ``"experiment"`` name and a
            ``"config"`` object; the message names the file and what is wrong.
    """
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError included
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    record = isinstance(doc, dict) and isinstance(doc.get("experiment"), str)
    if not (record and isinstance(doc.get("config"), dict)):
        raise ValueError(
            f'{path} is not an attnlab run record: it needs an "experiment" name (a string) '
            'and a "config" (an object)'
        )
    return doc


def _not_a_run(path: Path) -> str | None:
    """Why ``path`` is not an attnlab run folder, in a few words; None if it is one."""
    try:
        read_manifest(path)
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except ValueError as err:
        return str(err)
    return None


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _check_path(out: Path | str) -> Path:
    """The run folder ``out`` names, refused up front if it or a parent is a file."""
    final = Path(out)
    if final.name in ("", ".."):  # "." and "..": siblings and the lock need a real name
        final = Path(os.path.abspath(final))
    if not final.name:
        raise ValueError(f"--out {out} is the root of the file system; pass a folder below it")
    for folder in (final, *final.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == final else f"is inside {folder}, which is a file"
                raise FileExistsError(f"--out {final} {where}; pass a folder")
            break
    return final


@contextlib.contextmanager
def _writable(final: Path) -> Iterator[None]:
    """Turn the OS's refusal to write into one line about ``--out``."""
    try:
        yield
    except OSError as err:
        if not isinstance(err, PermissionError) and err.errno != errno.EROFS:
            raise
        reason = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        raise ValueError(
            f"cannot write to --out {final}: {reason}; pass --out a folder you can write"
        ) from None


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", str(folder))


def _holds_cwd(path: Path) -> bool:
    cwd, target = Path.cwd().resolve(), path.resolve()
    return cwd == target or target in cwd.parents


def _default_out(experiment: str, *, resume: bool) -> Path:
    root = Path("runs") / experiment
    if resume:
        unfinished = sorted(p for p in root.glob("*") if _has_content(p) and not _is_finished(p))
        hint = f"; the latest unfinished run is {unfinished[-1]}" if unfinished else ""
        raise ValueError(f"--resume needs --out naming the unfinished run folder{hint}")
    out = _check_path(root / timestamp())
    with _writable(out):
        root.mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            try:
                out.mkdir()  # claims the name: runs started in the same second get distinct ones
                return out
            except FileExistsError:
                n += 1
                out = root / f"{timestamp()}-{n}"


def _tidy(final: Path) -> None:
    """Put right what an overwrite killed half-way left beside ``final`` (call locked).

    Killed between the two renames of :meth:`RunDir.finish`, the new run had finished: it
    is moved into place (or, failing that, the old one back). Every other work (``new``)
    or set-aside (``old``) folder is removed; one line on stderr says what was done.
    """
    prefix = f".{final.name}."
    left = sorted(
        p
        for p in final.parent.iterdir()
        if p.name.startswith(prefix)
        and re.fullmatch(r"(new|old)-[0-9a-f]{8}", p.name[len(prefix) :])
    )
    if not left:
        return
    notes = []
    if not final.exists():
        done = [p for p in left if ".new-" in p.name and _is_finished(p)]
        before = [p for p in left if ".old-" in p.name]
        back = (done or before or [None])[0]
        if back is not None:
            os.replace(back, final)
            left.remove(back)
            notes.append(
                f"completed the interrupted --overwrite of {final} (its new run had finished)"
                if done
                else f"put back {final}, which an interrupted --overwrite had moved aside"
            )
    for path in left:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
    if left:
        notes.append(
            f"removed {len(left)} folder(s) an interrupted --overwrite left beside {final}"
        )
    print(f"attnlab: {'; '.join(notes)}", file=sys.stderr)


class RunDir:
    """Where one run writes, and the rules that protect finished and unfinished runs.

    Create with :meth:`open`. The experiment writes into :attr:`path` (pictures,
    checkpoints under ``path / "checkpoints"``); :meth:`finish` writes the results and
    puts the folder at :attr:`final`; :meth:`abandon` cleans up after a failure. Both
    release the lock that :meth:`open` took.

    Attributes:
        path: The folder the experiment writes into now (a hidden sibling while overwriting).
        final: Where the finished run will be.
        resumed: True when continuing an unfinished run in place.
    """

    def __init__(
        self, path: Path, final: Path, *, resumed: bool, lock: FileLock | None = None
    ) -> None:
        self.path = path
        self.final = final
        self.resumed = resumed
        self.finished = False
        self._lock = lock

    @property
    def checkpoints(self) -> Path:
        """The folder for per-model/per-seed checkpoints that make a run resumable."""
        return self.path / "checkpoints"

    @property
    def overwriting(self) -> bool:
        """True when the run works aside and replaces an existing folder at :meth:`finish`."""
        return self.path != self.final

    @property
    def locked(self) -> bool:
        """True while this run holds the lock on its folder."""
        return self._lock is not None and self._lock.held

    @classmethod
    def open(
        cls, out: Path | str | None, experiment: str, *, resume: bool, overwrite: bool
    ) -> RunDir:
        """Lock and prepare the output folder of a run, refusing any problem before work starts.

        Args:
            out: The run folder; None means ``runs/<experiment>/<YYYYmmdd-HHMMSS>``.
            experiment: The experiment name (for the default folder).
            resume: Continue the unfinished run in ``out`` (a fresh run if it is empty).
            overwrite: Replace the run in ``out``, but only once the new run finishes.

        Returns:
            The run folder, created and locked until :meth:`finish` or :meth:`abandon`.

        Raises:
            ValueError: If ``resume`` and ``overwrite`` are both set, ``resume`` lacks
                ``out`` or finds no ``run.json`` there, ``out`` cannot be written, or an
                overwrite would replace the current folder.
            FileExistsError: If ``out`` is (inside) a file, holds files that are not a run,
                or holds a run that these flags do not allow touching.
            RunInUseError: If another attnlab process is running in ``out``.
        """
        if resume and overwrite:
            raise ValueError(
                "--resume and --overwrite exclude each other: resume continues an "
                "unfinished run, overwrite starts afresh; pass one"
            )
        if out is None:
            final = _default_out(experiment, resume=resume)
        else:
            final = _check_path(out)
        with _writable(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = lock_run_folder(final)
            try:
                _tidy(final)
                return cls._prepare(final, lock, resume=resume, overwrite=overwrite)
            except BaseException:
                lock.release()
                raise

    @classmethod
    def _prepare(cls, final: Path, lock: FileLock, *, resume: bool, overwrite: bool) -> RunDir:
        if not _has_content(final):
            if resume:
                print(
                    f"attnlab: nothing to resume in {final}; starting a fresh run", file=sys.stderr
                )
            final.mkdir(exist_ok=True)
            _check_writable(final)
            return cls(final, final, resumed=False, lock=lock)
        problem = _not_a_run(final)
        if problem is not None and resume:
            raise ValueError(
                f"cannot resume {final}: {problem} (the record of the run's experiment and "
                "config); pass --out another folder"
            )
        if problem is not None:
            raise FileExistsError(
                f"{final} holds files that are not an attnlab run ({problem}); "
                "pass --out an empty or new folder"
            )
        if overwrite:
            if _holds_cwd(final):
                raise ValueError(
                    f"--out {final} is the current folder or holds it, which --overwrite "
                    "would replace; run from another folder or pass --out another folder"
                )
            work = _sibling(final, "new")
            work.mkdir()
            return cls(work, final, resumed=False, lock=lock)
        if _is_finished(final):
            raise FileExistsError(
                f"{final} holds a finished run; pass --overwrite to replace "
                "it or --out another folder"
            )
        if not resume:
            raise FileExistsError(
                f"{final} holds an unfinished run; pass --resume to continue "
                "it, --overwrite to start afresh, or --out another folder"
            )
        _check_writable(final)
        return cls(final, final, resumed=True, lock=lock)

    def begin(self, experiment: str, config: dict[str, Any]) -> None:
        """Record what this run is, or, when resuming, check it is the same run.

        Args:
            experiment: The experiment name.
            config: The Config as a JSON-ready dict.

        Raises:
            ValueError: If a resumed run was started by another experiment or config.
        """
        manifest = self.path / MANIFEST
        now = json.loads(json.dumps({"experiment": experiment, "config": config}, default=str))
        if self.resumed and manifest.is_file():
            before = read_manifest(self.path)  # open() checked it; read once more, the same way
            if before.get("experiment") != experiment:
                raise ValueError(
                    f"{self.final} holds a run of {before.get('experiment')!r}, "
                    f"not {experiment!r}; pass --out another folder"
                )
            old = before["config"]
            changed = sorted(
                k for k in old.keys() | config.keys() if old.get(k) != now["config"].get(k)
            )
            if changed:
                diffs = ", ".join(
                    f"{k}: {old.get(k)!r} -> {now['config'].get(k)!r}" for k in changed
                )
                raise ValueError(
                    f"{self.final} was started with another config ({diffs}); "
                    "resume with the same flags or pass --overwrite"
                )
            return
        write_atomic(manifest, json.dumps(now, indent=2) + "\n")

    def finish(self, results_json: dict[str, Any], report_md: str) -> Path:
        """Write ``report.md`` then ``results.json`` and put the run at :attr:`final`.

        Args:
            results_json: The results document.
            report_md: The markdown report.

        Returns:
            The final run folder.
        """
        write_atomic(self.path / REPORT, report_md)
        write_atomic(self.path / RESULTS, json.dumps(results_json, indent=2, default=str) + "\n")
        if self.overwriting:
            # Two renames: until the second one the old run is intact (in `aside`); a kill
            # between them is completed by the next open (see `_tidy`), an error undone here.
            aside = _sibling(self.final, "old")
            os.replace(self.final, aside)
            try:
                os.replace(self.path, self.final)
            except BaseException:
                os.replace(aside, self.final)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            self.path = self.final
        self.finished = True
        self.release()
        return self.final

    def abandon(self) -> None:
        """After a failure: drop the work folder of an overwrite; keep anything resumable.

        A run that failed before writing anything but its manifest (bad data, say)
        leaves nothing behind, so the same command can simply be run again.
        """
        try:
            if self.finished:
                return
            if self.overwriting:
                shutil.rmtree(self.path, ignore_errors=True)
            elif not self.resumed and self.path.is_dir():
                if {p.name for p in self.path.iterdir()} <= {MANIFEST}:
                    (self.path / MANIFEST).unlink(missing_ok=True)
                    self.path.rmdir()
        finally:
            self.release()

    def release(self) -> None:
        """Release the lock on the folder (:meth:`finish` and :meth:`abandon` do)."""
        if self._lock is not None:
            self._lock.release()
