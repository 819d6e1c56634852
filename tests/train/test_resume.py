"""Checkpoints written before the one loop: fit's resume exactly, fit_budget's are refused."""

import json

import pytest
import torch
from torch import nn

from attnlab.train import fit, fit_budget, seed_everything

from .conftest import adam, assert_same_weights, toy_loaders, toy_model, without_seconds

# What the one loop adds to the record fit wrote into `last/` before it.
NEW_FIELDS = ("layout", "mode", "steps", "stopped_by", "schedulers")


def fit_run(directory, epochs, *, seed=0, **kwargs):
    seed_everything(seed)
    model = toy_model(seed)
    train, val = toy_loaders(seed)
    result = fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=epochs,
        checkpoint_dir=directory,
        progress=False,
        config={"lr": 1e-2},
        **kwargs,
    )
    return model, result


def as_before_the_one_loop(directory):
    """Rewrite `last/` as fit wrote it before (its tensors are the same)."""
    path = directory / "last" / "checkpoint.json"
    doc = json.loads(path.read_text())
    for key in NEW_FIELDS:
        del doc["extra"][key]
    doc["extra"]["settings"] = {
        "epochs": 3,
        "patience": None,
        "monitor": "accuracy",
        "grad_clip": None,
    }
    path.write_text(json.dumps(doc))


def test_a_fit_checkpoint_from_before_resumes_exactly(tmp_path):
    ref_model, ref = fit_run(tmp_path / "ref", 6)
    fit_run(tmp_path / "run", 3)
    as_before_the_one_loop(tmp_path / "run")
    model, result = fit_run(tmp_path / "run", 6, seed=9, resume=True)
    assert without_seconds(result.history) == without_seconds(ref.history)
    assert_same_weights(model, ref_model)
    extra = json.loads((tmp_path / "run" / "last" / "checkpoint.json").read_text())["extra"]
    assert extra["layout"] == 2 and extra["mode"] == "max"  # written anew in the new layout


def test_a_fit_checkpoint_from_before_with_another_monitor_is_damaged(tmp_path):
    fit_run(tmp_path, 3)
    as_before_the_one_loop(tmp_path)
    path = tmp_path / "last" / "checkpoint.json"
    doc = json.loads(path.read_text())
    doc["extra"]["monitor"] = "f1"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'monitor' is 'f1', expected one of"):
        fit_run(tmp_path, 4, resume=True)


def test_a_fit_budget_checkpoint_from_before_is_refused_in_one_line(tmp_path):
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"budget_seconds": 60, "progress": False, "checkpoint_dir": tmp_path}

    def step(batch):
        err = (model(batch[0]).squeeze(-1) - batch[1]) ** 2
        return err.mean(), err.sum().detach(), torch.tensor(4)

    data = lambda epoch: [(torch.randn(4, 3), torch.randn(4))]  # noqa: E731
    run = {"step": step, "validate": lambda: 1.0, "optimizer": optimizer}
    fit_budget(model, data, max_epochs=2, **run, **kwargs)
    path = tmp_path / "last" / "checkpoint.json"
    doc = json.loads(path.read_text())
    history = doc["history"]
    result = {"best_epoch": 1, "best_metric": 1.0, "history": history, "seconds": 0.1}
    doc["extra"] = {"result": {**result, "stopped_by": "epochs", "steps": 2}}  # as it wrote
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="written by fit_budget before it saved RNG") as info:
        fit_budget(model, data, max_epochs=3, **run, **kwargs)
    assert str(tmp_path / "last") in str(info.value) and "\n" not in str(info.value)
