"""Run folders lose nothing and mix nothing: the run marker, the lock, leftovers, bad --out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attnlab.experiments._rundir as rundir
from attnlab.experiments import RunDir, run_experiment
from attnlab.experiments._rundir import RunInUseError

from .test_framework import (  # _toy: the autouse fixture that registers the toy experiment
    COMPUTED,
    FAIL_AFTER_SEED,
    ToyConfig,
    _toy,  # noqa: F401
    read_results,
    siblings,
)


def open_run(out: Path | str, *, resume: bool = False, overwrite: bool = False) -> RunDir:
    return RunDir.open(out, "toy", resume=resume, overwrite=overwrite)


def user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    return path


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    notes = user_folder(tmp_path / "notes")
    with pytest.raises(FileExistsError) as err:
        run_experiment("toy", out=notes, overwrite=True)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"{notes} holds files that are not an attnlab run (no run.json); "
        "pass --out an empty or new folder"
    )
    assert (notes / "notes.txt").read_text() == "my notes" and COMPUTED == []
    assert siblings(notes) == ["notes"]  # no work folder, no lock file left


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not an attnlab run record"),
        ('{"experiment": 1, "config": {}}', "not an attnlab run record"),
        ('{"experiment": "toy"}', "not an attnlab run record"),
    ],
)
def test_a_run_json_that_is_no_run_record_marks_no_run(tmp_path, text, why):
    folder = user_folder(tmp_path / "notes")
    (folder / "run.json").write_text(text)
    for flags in ({"overwrite": True}, {}):
        with pytest.raises(FileExistsError, match=f"not an attnlab run \\(.*run.json is {why}"):
            open_run(folder, **flags)
    with pytest.raises(ValueError, match=f"cannot resume {folder}: .*run.json is {why}"):
        open_run(folder, resume=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "run.json"]


def test_resume_without_run_json_is_refused(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "seed0.json").write_text('{"accuracy": 0.9}')
    with pytest.raises(ValueError) as err:
        run_experiment("toy", out=out, resume=True)
    assert str(err.value) == (
        f"cannot resume {out}: no run.json (the record of the run's experiment and "
        "config); pass --out another folder"
    )
    assert COMPUTED == []


def test_out_dot_with_overwrite_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(user_folder(tmp_path / "home"))
    with pytest.raises(FileExistsError, match="holds files that are not an attnlab run"):
        run_experiment("toy", out=".", overwrite=True)
    assert COMPUTED == [] and sorted(os.listdir()) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["home"]


def test_overwriting_the_current_folder_is_refused(tmp_path, monkeypatch):
    out = run_experiment("toy", out=tmp_path / "run")
    COMPUTED.clear()
    monkeypatch.chdir(out)
    for where in (".", "../run", str(out)):
        with pytest.raises(ValueError, match="is the current folder or holds it"):
            run_experiment("toy", out=where, overwrite=True)
    monkeypatch.chdir(out / "checkpoints")
    with pytest.raises(ValueError, match="is the current folder or holds it"):
        run_experiment("toy", out="..", overwrite=True)
    assert COMPUTED == [] and siblings(out) == ["run"]


def test_out_inside_a_file_is_refused(tmp_path):
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(FileExistsError) as err:
        open_run(tmp_path / "somefile" / "run")
    message = str(err.value)
    assert message == (
        f"--out {tmp_path / 'somefile' / 'run'} is inside {tmp_path / 'somefile'}, "
        "which is a file; pass a folder"
    )


def test_unwritable_out_is_one_line(tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(ValueError) as err:
        open_run(tmp_path / "locked" / "run")
    assert str(err.value) == (
        f"cannot write to --out {tmp_path / 'locked' / 'run'}: permission denied; "
        "pass --out a folder you can write"
    )


def test_a_parent_that_cannot_hold_the_lock_file_is_one_line(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rundir.FileLock, "acquire", denied)
    with pytest.raises(ValueError) as err:
        open_run(tmp_path / "run")
    assert str(err.value) == (
        f"cannot write to --out {tmp_path / 'run'}: permission denied in {tmp_path}, where its "
        "lock file goes; pass --out a folder inside one you can write"
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_out_inside_a_read_only_folder_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out in (locked / "run", locked / "deeper" / "run"):
            with pytest.raises(ValueError, match=f"cannot write to --out {out}: permission denied"):
                run_experiment("toy", out=out)
    finally:
        locked.chmod(0o700)
    assert COMPUTED == []


def test_a_second_open_waits_for_nobody_and_says_who_holds_the_folder(tmp_path):
    first = open_run(tmp_path / "run")
    assert first.locked and (tmp_path / ".run.lock").is_file()
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(RunInUseError) as err:
            open_run(tmp_path / "run", **flags)
        assert str(err.value) == (
            f"{tmp_path / 'run'} is in use by another attnlab run (pid {os.getpid()}); "
            "wait for it or pass --out another folder"
        )
    first.abandon()
    assert not first.locked and siblings(tmp_path / "run") == []
    open_run(tmp_path / "run").abandon()


def test_two_overwrites_of_one_folder_exclude_each_other(tmp_path):
    out = run_experiment("toy", out=tmp_path / "run")
    first = open_run(out, overwrite=True)
    with pytest.raises(RunInUseError):
        open_run(out, overwrite=True)
    first.abandon()
    assert siblings(out) == ["run"]


def test_the_lock_is_released_after_finish_failure_and_refusal(tmp_path):
    out = tmp_path / "run"
    FAIL_AFTER_SEED.append(1)
    with pytest.raises(RuntimeError, match="simulated"):
        run_experiment("toy", out=out)
    FAIL_AFTER_SEED.clear()
    with pytest.raises(FileExistsError, match="unfinished run"):  # refused: lock released too
        run_experiment("toy", out=out)
    run_experiment("toy", out=out, resume=True)
    run_experiment("toy", ToyConfig(steps=7), out=out, overwrite=True)
    assert read_results(out)["config"]["steps"] == 7
    assert siblings(out) == ["run"]  # no lock file, work or old folder left


CONTENDER = """
import sys, time
from pathlib import Path
from attnlab.experiments import RunDir
out, go, release = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.01)
try:
    run = RunDir.open(out, "toy", resume=False, overwrite=False)
except FileExistsError as err:
    sys.exit(f"lost: {err}")
print("won", flush=True)
while not Path(release).exists():
    time.sleep(0.01)
run.begin("toy", {})
run.finish({}, "")
"""


def test_processes_started_at_once_on_one_folder_one_proceeds(tmp_path):
    out, go, release = tmp_path / "runs" / "run", tmp_path / "go", tmp_path / "release"
    args = [sys.executable, "-c", CONTENDER, str(out), str(go), str(release)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(args, **pipes) for _ in range(3)]
    go.touch()
    try:
        # The winner holds the folder until `release`, so every other one must lose.
        deadline = time.monotonic() + 120
        while sum(p.poll() is not None for p in procs) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        release.touch()
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    winners = [p for p, (code, _, _) in zip(procs, results) if code == 0]
    assert len(winners) == 1, results
    for code, stdout, stderr in results:
        if code != 0:
            assert stdout == "" and stderr.count("\n") == 1, stderr
            assert f"is in use by another attnlab run (pid {winners[0].pid})" in stderr
    assert (out / "results.json").is_file() and siblings(out) == ["run"]


def test_leftovers_of_a_killed_overwrite_are_removed_and_reported(tmp_path, capsys):
    out = run_experiment("toy", out=tmp_path / "run")
    before = (out / "results.json").read_text()
    killed = open_run(out, overwrite=True)  # then the process dies: no finish, no abandon
    (killed.path / "checkpoints").mkdir()
    killed.release()  # the OS drops the lock of a dead process
    (tmp_path / ".run.old-0123abcd").mkdir()
    capsys.readouterr()
    with pytest.raises(FileExistsError, match="finished run"):
        open_run(out)
    err = capsys.readouterr().err
    assert err == (f"attnlab: removed 2 folder(s) an interrupted --overwrite left beside {out}\n")
    assert siblings(out) == ["run"] and (out / "results.json").read_text() == before


def test_an_overwrite_killed_between_its_renames_is_completed(tmp_path, capsys):
    out = run_experiment("toy", out=tmp_path / "run")
    new = run_experiment("toy", ToyConfig(steps=9), out=tmp_path / "new")
    os.replace(out, tmp_path / ".run.old-0123abcd")  # finish(): first rename done ...
    os.replace(new, tmp_path / ".run.new-4567cdef")  # ... second one never happened
    capsys.readouterr()
    with pytest.raises(FileExistsError, match="finished run"):
        open_run(out)
    assert capsys.readouterr().err == (
        f"attnlab: completed the interrupted --overwrite of {out} (its new run had finished); "
        f"removed 1 folder(s) an interrupted --overwrite left beside {out}\n"
    )
    assert read_results(out)["config"]["steps"] == 9 and siblings(out) == ["run"]


def test_an_error_between_the_renames_puts_the_old_run_back(tmp_path, monkeypatch):
    out = run_experiment("toy", out=tmp_path / "run")
    before = (out / "results.json").read_text()
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".run.new-" in Path(src).name:  # the work folder moving into place
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(rundir.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        run_experiment("toy", ToyConfig(steps=9), out=out, overwrite=True)
    monkeypatch.undo()
    assert (out / "results.json").read_text() == before and siblings(out) == ["run"]


def test_a_resumed_run_keeps_its_manifest(tmp_path):
    out = tmp_path / "run"
    FAIL_AFTER_SEED.append(0)
    with pytest.raises(RuntimeError):
        run_experiment("toy", out=out)
    FAIL_AFTER_SEED.clear()
    manifest = json.loads((out / "run.json").read_text())
    run_experiment("toy", out=out, resume=True)
    assert json.loads((out / "run.json").read_text()) == manifest


def test_a_run_moved_aside_by_a_killed_overwrite_is_put_back(tmp_path, capsys):
    out = run_experiment("toy", out=tmp_path / "run")
    before = (out / "results.json").read_text()
    os.replace(out, tmp_path / ".run.old-0123abcd")
    capsys.readouterr()
    with pytest.raises(FileExistsError, match="finished run"):
        open_run(out)
    assert capsys.readouterr().err == (
        f"attnlab: put back {out}, which an interrupted --overwrite had moved aside\n"
    )
    assert (out / "results.json").read_text() == before and siblings(out) == ["run"]
