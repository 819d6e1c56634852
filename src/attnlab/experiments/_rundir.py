"""The output folder of one experiment run: fresh, resumed or overwriting, never lost.

A run is finished when its folder holds ``results.json``; that file is written last,
atomically, so its presence is the completion marker. An overwrite works in a hidden
sibling folder and swaps it into place only when the new run finishes, so a failed or
interrupted overwrite leaves the previous run exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "RESULTS", "REPORT", "MANIFEST", "write_atomic"]

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


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _default_out(experiment: str, *, resume: bool) -> Path:
    root = Path("runs") / experiment
    if resume:
        unfinished = sorted(p for p in root.glob("*") if _has_content(p) and not _is_finished(p))
        hint = f"; the latest unfinished run is {unfinished[-1]}" if unfinished else ""
        raise ValueError(f"--resume needs --out naming the unfinished run folder{hint}")
    out = root / timestamp()
    n = 1
    while out.exists():  # two runs started in the same second get distinct folders
        n += 1
        out = root / f"{timestamp()}-{n}"
    return out


class RunDir:
    """Where one run writes, and the rules that protect finished and unfinished runs.

    Create with :meth:`open`. The experiment writes into :attr:`path` (pictures,
    checkpoints under ``path / "checkpoints"``); :meth:`finish` writes the results and
    puts the folder at :attr:`final`.

    Attributes:
        path: The folder the experiment writes into now (a hidden sibling while overwriting).
        final: Where the finished run will be.
        resumed: True when continuing an unfinished run in place.
    """

    def __init__(self, path: Path, final: Path, *, resumed: bool) -> None:
        self.path = path
        self.final = final
        self.resumed = resumed
        self.finished = False

    @property
    def checkpoints(self) -> Path:
        """The folder for per-model/per-seed checkpoints that make a run resumable."""
        return self.path / "checkpoints"

    @property
    def overwriting(self) -> bool:
        """True when the run works aside and replaces an existing folder at :meth:`finish`."""
        return self.path != self.final

    @classmethod
    def open(
        cls, out: Path | str | None, experiment: str, *, resume: bool, overwrite: bool
    ) -> RunDir:
        """Prepare the output folder of a run.

        Args:
            out: The run folder; None means ``runs/<experiment>/<YYYYmmdd-HHMMSS>``.
            experiment: The experiment name (for the default folder).
            resume: Continue the unfinished run in ``out`` (a fresh run if it is empty).
            overwrite: Replace whatever ``out`` holds, but only once the new run finishes.

        Returns:
            The run folder, created.

        Raises:
            ValueError: If ``resume`` and ``overwrite`` are both set, or ``resume`` lacks ``out``.
            FileExistsError: If ``out`` holds a run that these flags do not allow touching,
                or is a file.
        """
        if resume and overwrite:
            raise ValueError(
                "--resume and --overwrite exclude each other: resume continues an "
                "unfinished run, overwrite starts afresh; pass one"
            )
        final = Path(out) if out is not None else _default_out(experiment, resume=resume)
        if final.exists() and not final.is_dir():
            raise FileExistsError(f"--out {final} is a file; pass a folder")
        if not _has_content(final):
            if resume:
                print(
                    f"attnlab: nothing to resume in {final}; starting a fresh run", file=sys.stderr
                )
            final.mkdir(parents=True, exist_ok=True)
            return cls(final, final, resumed=False)
        if overwrite:
            work = _sibling(final, "new")
            work.mkdir()
            return cls(work, final, resumed=False)
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
        return cls(final, final, resumed=True)

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
            before = json.loads(manifest.read_text(encoding="utf-8"))
            if before.get("experiment") != experiment:
                raise ValueError(
                    f"{self.final} holds a run of {before.get('experiment')!r}, "
                    f"not {experiment!r}; pass --out another folder"
                )
            old = before.get("config", {})
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
            # Two renames: until the second one the old run is intact (in `aside`).
            aside = _sibling(self.final, "old")
            os.replace(self.final, aside)
            os.replace(self.path, self.final)
            shutil.rmtree(aside, ignore_errors=True)
            self.path = self.final
        self.finished = True
        return self.final

    def abandon(self) -> None:
        """After a failure: drop the work folder of an overwrite; keep anything resumable.

        A run that failed before writing anything but its manifest (bad data, say)
        leaves nothing behind, so the same command can simply be run again.
        """
        if self.finished:
            return
        if self.overwriting:
            shutil.rmtree(self.path, ignore_errors=True)
        elif not self.resumed and self.path.is_dir():
            if {p.name for p in self.path.iterdir()} <= {MANIFEST}:
                (self.path / MANIFEST).unlink(missing_ok=True)
                self.path.rmdir()
