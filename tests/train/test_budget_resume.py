"""fit_budget resumes exactly: RNG, warm-up and plateau decay continue as if never stopped."""

import itertools
import math

import pytest
import torch
from torch import nn

import attnlab.train.engine as engine
from attnlab.train import fit_budget, seed_everything

from .conftest import assert_same_weights, without_seconds

EPOCHS = 8
# Warm-up over 24 steps (6 epochs of 4): plateaus fall inside it and after it.
SETTINGS = {"budget_seconds": 600, "warmup_steps": 24, "decay": 0.5, "progress": False}


def problem():
    """Dropout and a shuffle from torch's global generator: both need the RNG restored."""
    torch.manual_seed(0)
    x = torch.randn(96, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(96)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

    def step(batch):
        xb, yb = batch
        err = (model(xb).squeeze(-1) - yb) ** 2
        return err.mean(), err.sum().detach(), torch.tensor(len(yb))

    def batches(epoch):
        perm = torch.randperm(64)
        return [(x[perm[i : i + 16]], y[perm[i : i + 16]]) for i in range(0, 64, 16)]

    def validate():
        model.eval()
        with torch.no_grad():
            value = float(((model(x[64:]).squeeze(-1) - y[64:]) ** 2).mean())
        model.train()
        return value

    return model, step, validate, batches


def run(directory, max_epochs, *, interrupt_at=None):
    """Train in a fresh state (as a new process would); `interrupt_at` = (epoch, batch)."""
    model, step, validate, batches = problem()
    seed_everything(12345)  # a resumed run must not depend on the caller's RNG
    calls = {"n": 0}

    def interrupt(module, args):
        if module.training and interrupt_at is not None:
            calls["n"] += 1
            if calls["n"] == (interrupt_at[0] - 1) * 4 + interrupt_at[1]:
                raise KeyboardInterrupt

    model.register_forward_pre_hook(interrupt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    result = fit_budget(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=optimizer,
        max_epochs=max_epochs,
        checkpoint_dir=directory,
        **SETTINGS,
    )
    return model, result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("reference"), EPOCHS)


def expected_rates(history, peak=0.3, warmup=24, steps_per_epoch=4, decay=0.5):
    """The rate of each epoch's last step, from the metrics: halved on every plateau."""
    rates, best = [], math.inf
    for record in history:
        n = record["epoch"] * steps_per_epoch
        rates.append(peak * (n / warmup if n <= warmup else 1.0))
        if record["val_metric"] < best:
            best = record["val_metric"]
        else:
            peak *= decay
    return rates


def test_the_reference_decays_during_and_after_the_warmup(reference):
    _, result = reference
    assert [record["lr"] for record in result.history] == expected_rates(result.history)
    best = list(itertools.accumulate((r["val_metric"] for r in result.history), min))
    plateaus = [
        e for e in range(2, EPOCHS + 1) if result.history[e - 1]["val_metric"] >= best[e - 2]
    ]
    assert min(plateaus) * 4 < 24 < max(plateaus) * 4  # inside the warm-up and after it
    assert result.steps == 4 * EPOCHS and result.stopped_by == "epochs"


def test_stopped_after_five_epochs_then_resumed_matches_uninterrupted(tmp_path, reference):
    ref_model, ref = reference
    assert len(run(tmp_path, 5)[1].history) == 5  # its last epoch was a plateau: decay saved
    model, result = run(tmp_path, EPOCHS)
    assert without_seconds(result.history) == without_seconds(ref.history)
    assert (result.best_epoch, result.best_metric, result.steps) == (
        ref.best_epoch,
        ref.best_metric,
        ref.steps,
    )
    assert_same_weights(model, ref_model)


def test_interrupted_inside_an_epoch_then_resumed_matches_uninterrupted(tmp_path, reference):
    ref_model, ref = reference
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, EPOCHS, interrupt_at=(6, 2))  # mid-warm-up, after a decay
    model, result = run(tmp_path, EPOCHS)
    assert without_seconds(result.history) == without_seconds(ref.history)
    assert_same_weights(model, ref_model)


def test_without_the_rng_restored_the_resumed_run_differs(tmp_path, reference, monkeypatch):
    """The check above has teeth: the same resume, RNG left alone, trains differently."""
    ref_model, _ = reference
    run(tmp_path, 3)
    monkeypatch.setattr(engine, "restore_rng", lambda state, generators: None)
    model, _ = run(tmp_path, EPOCHS)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), ref_model.parameters()))
