import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnlab.train.loop as loop
from attnlab.train import (
    FitResult,
    evaluate,
    fit,
    seed_everything,
)

from .conftest import adam

KEYS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]


def test_fit_learns_separable_problem(make_model, make_loaders):
    seed_everything(0)
    model = make_model()
    train, val = make_loaders()
    result = fit(model, train, val, optimizer=adam(model), epochs=8, progress=False)
    assert isinstance(result, FitResult)
    assert result.epochs_run == len(result.history) == 8 and not result.stopped_early
    assert all(list(record) == KEYS for record in result.history)
    assert result.best_metrics == result.history[result.best_epoch - 1]
    assert result.best_metrics["val_accuracy"] > 0.9
    assert evaluate(model, val)["accuracy"] == result.best_metrics["val_accuracy"]
    assert all(0.0 <= r["train_accuracy"] <= 1.0 for r in result.history)
    assert result.seconds > 0


def test_evaluate_matches_manual_computation_and_restores_mode(make_model, make_loaders):
    model = make_model()
    _, val = make_loaders()
    x, y = val.dataset.tensors
    model.train()
    metrics = evaluate(model, val)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert metrics["accuracy"] == (logits.argmax(-1) == y).float().mean().item()


def scripted_evaluate(monkeypatch, values: list[float], monitor: str) -> list[dict]:
    """Make validation report `values` for the monitored metric, snapshotting the weights."""
    seen: list[dict] = []
    real = loop.evaluate

    def fake(model, loader, *, loss_fn=F.cross_entropy):
        metrics = real(model, loader, loss_fn=loss_fn)
        metrics[monitor] = values[len(seen)]
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return metrics

    monkeypatch.setattr(loop, "evaluate", fake)
    return seen


@pytest.mark.parametrize(
    ("monitor", "values"),
    [("accuracy", [0.5, 0.8, 0.7, 0.8, 0.9, 1.0]), ("loss", [0.9, 0.4, 0.6, 0.4, 0.3, 0.1])],
)
def test_early_stopping_restores_best_weights(
    monkeypatch, make_model, make_loaders, monitor, values
):
    snapshots = scripted_evaluate(monkeypatch, values, monitor)
    model = make_model()
    train, val = make_loaders()
    result = fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=6,
        patience=2,
        monitor=monitor,
        progress=False,
    )
    # Epoch 2 is best; 3 is worse and 4 only ties, so patience runs out after epoch 4.
    assert result.stopped_early and result.epochs_run == 4 and result.best_epoch == 2
    assert [r[f"val_{monitor}"] for r in result.history] == values[:4]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[1][name]), name
    assert not torch.equal(model.state_dict()["0.weight"], snapshots[3]["0.weight"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int"),
        ({"patience": 0}, ValueError, "patience must be a positive int"),
        ({"monitor": "f1"}, ValueError, "monitor must be one of"),
        ({"grad_clip": -1.0}, ValueError, "grad_clip must be a positive"),
    ],
)
def test_bad_arguments(make_model, make_loaders, kwargs, error, match):
    model = make_model()
    train, val = make_loaders()
    with pytest.raises(error, match=match):
        fit(model, train, val, optimizer=adam(model), **{"epochs": 1, **kwargs})


def test_bad_batches_and_outputs(make_model):
    model = make_model()
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 1, 0])
    with pytest.raises(TypeError, match=r"tuple or list \(inputs..., target\).*got float32 tensor"):
        evaluate(model, [x])
    with pytest.raises(TypeError, match="integer class-index tensor.*got float32 tensor"):
        evaluate(model, [(x, y.float())])
    with pytest.raises(ValueError, match=r"logits of shape \(B, C\) with B = 4.*\(4, 3, 2\)"):
        evaluate(lambda_module(lambda t: t.new_zeros(4, 3, 2)), [(x, y)])
    with pytest.raises(ValueError, match="yielded no batches"):
        evaluate(model, [])


def lambda_module(fn) -> nn.Module:
    class Wrapped(nn.Module):
        def forward(self, x):
            return fn(x)

    return Wrapped()


def test_grad_clip_and_progress_bar_run(make_model, make_loaders, capsys):
    seed_everything(0)
    model = make_model()
    train, val = make_loaders()
    result = fit(
        model, train, val, optimizer=adam(model), epochs=1, grad_clip=0.5, progress=True, desc="toy"
    )
    assert result.epochs_run == 1
    assert "toy epoch 1/1" in capsys.readouterr().err


def test_diverging_loss_raises(make_model, make_loaders):
    model = make_model()
    train, val = make_loaders()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="training loss became nan in epoch 1"):
        fit(model, train, val, optimizer=adam(model), epochs=1, progress=False)
