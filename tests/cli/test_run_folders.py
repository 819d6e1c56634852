"""``attnlab run`` refuses bad run folders and damaged checkpoints in one line, before training.

A small experiment trains a real classifier through ``fit`` (checkpoints, ``best/``,
resume), so ``--resume`` meets every damage of ``tests/train/_tamper.py``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnlab.cli.main import main
from attnlab.experiments import EXPERIMENTS, ExperimentSpec, ModelResult, RunDir
from attnlab.experiments._classify import fit_and_score
from attnlab.experiments._settings import TrainingSettings
from attnlab.train import make_generator, seed_everything
from attnlab.train.checkpoint import CheckpointDamagedError
from train._tamper import TAMPERINGS, Tampering  # tests/ is on sys.path (rootdir packages)


@dataclass(frozen=True)
class FitToyConfig(TrainingSettings):
    """A small classifier trained with fit, checkpoints and all.

    Attributes:
        epochs: epochs per seed.
        lr: Adam learning rate.
    """

    epochs: int = 3
    lr: float = 1e-2


# Test hooks, outside the config so that a resumed run has the same config.
INTERRUPT_AT: list[int] = []  # the training batch (counted from 1) that raises KeyboardInterrupt
TRAINED: list[FitToyConfig] = []


def fit_toy(cfg: FitToyConfig, run: RunDir) -> list[ModelResult]:
    TRAINED.append(cfg)
    seed_everything(0)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x.sum(1) > 0).long())
    train = DataLoader(data, batch_size=16, shuffle=True, generator=make_generator(0))
    val = DataLoader(data, batch_size=64)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    batches = [0]

    def interrupt(module: nn.Module, args: tuple) -> None:
        batches[0] += module.training
        if INTERRUPT_AT and batches[0] == INTERRUPT_AT[0]:
            raise KeyboardInterrupt

    model.register_forward_pre_hook(interrupt)
    result = fit_and_score(model, (train, val, val), cfg, model_name="mlp", seed=0, run=run)
    accuracy, seconds = result.metrics["test_accuracy"], float(result.seconds or 0.0)
    return [ModelResult("mlp", {"test_accuracy": [accuracy]}, parameters=58, seconds=seconds)]


SPEC = ExperimentSpec("fittoy", "fit with checkpoints", FitToyConfig, fit_toy, lambda cfg: "toy")


@pytest.fixture(autouse=True)
def _fittoy(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "fittoy", SPEC)
    TRAINED.clear()
    INTERRUPT_AT.clear()


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnlab: error: "), err
    return err.removeprefix("attnlab: error: ").rstrip("\n")


def run(*args: str | Path) -> int:
    return main(["run", "fittoy", *map(str, args)])


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A run stopped in its third epoch: last/ holds epoch 2, best/ the best one so far."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EXPERIMENTS, "fittoy", SPEC)
        INTERRUPT_AT[:] = [9]  # 4 batches per epoch
        try:
            assert run("--out", out) == 130
        finally:
            INTERRUPT_AT.clear()
    assert (out / "checkpoints" / "mlp" / "seed0" / "last" / "checkpoint.json").is_file()
    return out


def copy_of(interrupted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    return out


def test_the_interrupted_run_resumes(interrupted, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    assert run("--out", out, "--resume") == 0
    assert (out / "results.json").is_file() and len(TRAINED) == 1


@pytest.mark.parametrize("case", TAMPERINGS, ids=lambda c: c.name)
def test_resume_of_a_damaged_checkpoint_is_one_line(case: Tampering, interrupted, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    folder = out / "checkpoints" / "mlp" / "seed0"
    case.damage(folder, tmp_path / "outside")
    capsys.readouterr()
    assert run("--out", out, "--resume") == 2
    message = error_line(capsys)
    assert re.search(case.words, message) and case.named_in(message, folder), message
    if issubclass(case.error, CheckpointDamagedError):
        assert message.endswith(
            "(to train again: the same command with --overwrite in place of --resume)"
        )
    assert not (out / "results.json").exists()


def test_a_damaged_run_can_be_trained_again_with_overwrite(interrupted, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    (out / "checkpoints" / "mlp" / "seed0" / "last" / "model.safetensors").write_bytes(b"")
    assert run("--out", out, "--resume") == 2
    assert run("--out", out, "--overwrite") == 0
    assert (out / "results.json").is_file() and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_resume_without_run_json_is_one_line(interrupted, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    (out / "run.json").unlink()
    capsys.readouterr()
    assert run("--out", out, "--resume") == 2
    assert error_line(capsys) == (
        f"cannot resume {out}: no run.json (the record of the run's experiment and "
        "config); pass --out another folder"
    )
    assert TRAINED == []


def test_out_under_a_file(tmp_path, capsys):
    (tmp_path / "somefile").write_text("x")
    assert run("--out", tmp_path / "somefile" / "run") == 2
    assert "which is a file; pass a folder" in error_line(capsys)
    assert TRAINED == []


def test_out_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert run("--out", tmp_path / "locked" / "run") == 2
    assert error_line(capsys) == (
        f"cannot write to --out {tmp_path / 'locked' / 'run'}: permission denied; "
        "pass --out a folder you can write"
    )
    assert TRAINED == []


def test_overwrite_of_the_users_own_folder_is_refused(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    assert run("--out", notes, "--overwrite") == 2
    assert "holds files that are not an attnlab run (no run.json)" in error_line(capsys)
    monkeypatch.chdir(notes)
    assert run("--out", ".", "--overwrite") == 2  # refused up front, not after training
    assert "holds files that are not an attnlab run (no run.json)" in error_line(capsys)
    assert TRAINED == [] and os.listdir(notes) == ["notes.txt"]
    assert (notes / "notes.txt").read_text() == "mine"


def test_out_in_use_by_another_run(tmp_path, capsys):
    holder = RunDir.open(tmp_path / "run", "fittoy", resume=False, overwrite=False)
    try:
        for flags in ([], ["--resume"], ["--overwrite"]):
            assert run("--out", tmp_path / "run", *flags) == 2
            assert error_line(capsys) == (
                f"{tmp_path / 'run'} is in use by another attnlab run (pid {os.getpid()}); "
                "wait for it or pass --out another folder"
            )
    finally:
        holder.abandon()
    assert TRAINED == []
