import time

import pytest
import torch
from torch import nn

from attnlab.train.budget import fit_budget


def _problem(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)

    def step(batch):
        xb, yb = batch
        err = (model(xb).squeeze(-1) - yb) ** 2
        return err.mean(), err.sum().detach(), torch.tensor(len(yb))

    def validate():
        with torch.no_grad():
            return float(((model(x).squeeze(-1) - y) ** 2).mean())

    batches = lambda epoch: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]  # noqa: E731
    return model, step, validate, batches


def test_trains_and_keeps_the_best_epoch():
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = fit_budget(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=opt,
        budget_seconds=60,
        max_epochs=5,
        progress=False,
    )
    assert res.stopped_by == "epochs" and len(res.history) == 5
    assert validate() == pytest.approx(res.best_metric)
    assert res.history[-1]["val_metric"] < res.history[0]["val_metric"]


def test_budget_stops_inside_an_epoch():
    model, step, validate, batches = _problem()

    def slow_step(batch):
        time.sleep(0.05)
        return step(batch)

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = fit_budget(
        model,
        batches,
        step=slow_step,
        validate=validate,
        optimizer=opt,
        budget_seconds=0.12,
        max_epochs=100,
        progress=False,
    )
    assert res.stopped_by == "budget" and len(res.history) == 1


def test_plateau_halves_the_learning_rate_and_patience_stops():
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # never improves after epoch 1
    res = fit_budget(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=opt,
        budget_seconds=60,
        max_epochs=10,
        patience=2,
        progress=False,
    )
    assert res.stopped_by == "patience" and len(res.history) == 3


def test_resume_continues_from_the_checkpoint(tmp_path):
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit_budget(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=opt,
        budget_seconds=60,
        max_epochs=2,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    model2, step2, validate2, batches2 = _problem(seed=0)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    res = fit_budget(
        model2,
        batches2,
        step=step2,
        validate=validate2,
        optimizer=opt2,
        budget_seconds=60,
        max_epochs=4,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]


def test_bad_arguments():
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="budget_seconds"):
        fit_budget(
            model,
            batches,
            step=step,
            validate=validate,
            optimizer=opt,
            budget_seconds=0,
            max_epochs=1,
        )


def test_warmup_ramps_the_learning_rate_and_resumes_its_count(tmp_path):
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    # A pre-hook, not a replaced opt.step: the warm-up is a torch scheduler, which wraps step.
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(o.param_groups[0]["lr"]))
    kwargs = dict(step=step, validate=validate, optimizer=opt, budget_seconds=60, progress=False)
    res = fit_budget(
        model, batches, max_epochs=1, warmup_steps=6, checkpoint_dir=tmp_path, **kwargs
    )
    assert seen == pytest.approx([0.1 * n / 6 for n in range(1, 5)])
    assert res.steps == 4
    fit_budget(model, batches, max_epochs=2, warmup_steps=6, checkpoint_dir=tmp_path, **kwargs)
    assert seen[4:] == pytest.approx([0.1 * 5 / 6, 0.1, 0.1, 0.1])  # resumed at step 5


# -- resuming refuses checkpoints of another run or with a garbled record -------------------
def _budget_run(tmp_path, config, epochs=2):
    model, step, validate, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"step": step, "validate": validate, "optimizer": opt, "budget_seconds": 60}
    return fit_budget(
        model,
        batches,
        max_epochs=epochs,
        checkpoint_dir=tmp_path,
        config=config,
        progress=False,
        **kwargs,
    )


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    from attnlab.train import CheckpointMismatchError

    _budget_run(tmp_path, {"lr": 0.1, "variant": "a"})
    assert len(_budget_run(tmp_path, {"lr": 0.1, "variant": "a"}, epochs=3).history) == 3
    with pytest.raises(CheckpointMismatchError, match="'variant': 'a' vs 'b'") as info:
        _budget_run(tmp_path, {"lr": 0.1, "variant": "b"}, epochs=4)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("stopped_by", "tired", "'stopped_by' is 'tired'"),
        ("best_epoch", "abc", "'best_epoch' is 'abc', expected an integer"),
        ("best_epoch", 7, "'best_epoch' is 7, expected an integer in"),
        ("history", [], "epoch 2 with 0 epochs of history"),
        ("history", "x", "'history' is 'x', expected a list"),
        ("seconds", -1.0, "'seconds' is -1"),
        ("steps", None, "'steps' is None"),
    ],
)
def test_resume_names_a_garbled_budget_record(tmp_path, field, value, words):
    import json

    from attnlab.train import CheckpointDamagedError

    _budget_run(tmp_path, {"lr": 0.1})
    manifest = tmp_path / "last" / "checkpoint.json"
    doc = json.loads(manifest.read_text())
    # One loop, one layout: the record sits in `extra` as fit's does, the history at the top.
    (doc if field == "history" else doc["extra"])[field] = value
    manifest.write_text(json.dumps(doc))
    with pytest.raises(CheckpointDamagedError, match=words) as info:
        _budget_run(tmp_path, {"lr": 0.1}, epochs=3)
    assert str(manifest) in str(info.value) and "\n" not in str(info.value)
