"""The one training loop: any step function, any monitor, schedulers saved and resumed."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.train import (
    CheckpointMismatchError,
    Epochs,
    Patience,
    fit,
    seed_everything,
    train_loop,
)

from .conftest import adam, assert_same_weights, without_seconds


def regression(seed=0):
    torch.manual_seed(seed)
    x, y = torch.randn(48, 3), torch.randn(48)
    model = nn.Linear(3, 1)

    def step(batch):
        return F.mse_loss(model(batch[0]).squeeze(-1), batch[1])

    def batches(epoch):
        return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]

    return model, step, batches, x, y


def test_a_bare_loss_step_and_a_max_monitor(tmp_path):
    model, step, batches, x, y = regression()
    scores = iter([0.2, 0.5, 0.4, 0.5, 0.3, 0.9])  # higher is better; epoch 2 stays best
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_score": next(scores), "val_other": 1.0}

    state = train_loop(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        stop=(Epochs(6), Patience(3)),
        monitor="score",
        mode="max",
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert (state.stopped_by, len(state.history), state.best_epoch, state.steps) == (
        "patience",
        5,
        2,
        15,
    )
    assert list(state.history[0]) == ["epoch", "train_loss", "val_score", "val_other", "seconds"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[1][name]), name
    with pytest.raises(ValueError, match="trained with mode='max' for 'score', not 'min'"):
        train_loop(
            model,
            batches,
            step=step,
            validate=validate,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
            stop=[Epochs(6)],
            monitor="score",
            mode="min",
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_train_loss_is_the_mean_of_the_step_losses():
    model, step, batches, x, y = regression()
    seen = []

    def spying_step(batch):
        loss = step(batch)
        seen.append(loss.item())
        return loss

    state = train_loop(
        model,
        batches,
        step=spying_step,
        validate=lambda: {"val_loss": 1.0},
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        stop=[Epochs(1)],
        progress=False,
    )
    assert state.history[0]["train_loss"] == pytest.approx(sum(seen) / 3, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"validate": lambda: {"val_acc": 1.0}}, ValueError, r"returned \['val_acc'\]"),
        ({"step": lambda batch: 1.0}, TypeError, "step must return the loss"),
        ({"step": lambda batch: torch.ones(2)}, TypeError, "scalar loss tensor; got float32"),
        ({"mode": "up"}, ValueError, "mode must be one of"),
        ({"stop": [Patience(2)]}, ValueError, "exactly one Epochs"),
        ({"resume": True}, ValueError, "resume=True needs a checkpoint_dir"),
        ({"lr_scheduler": "warmup"}, TypeError, "lr_scheduler must be"),
    ],
)
def test_bad_arguments_fail_in_one_line(kwargs, error, words):
    model, step, batches, x, y = regression()
    arguments = {
        "step": step,
        "validate": lambda: {"val_loss": 1.0},
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "stop": [Epochs(1)],
        "progress": False,
    }
    with pytest.raises(error, match=words) as info:
        train_loop(model, batches, **{**arguments, **kwargs})
    assert "\n" not in str(info.value)


# -- fit with a learning-rate scheduler: stepped, saved, resumed ----------------------------
def plateau_fit(make_model, make_loaders, directory, epochs, *, seed=0, scheduler=True):
    seed_everything(seed)
    model = make_model(seed)
    train, val = make_loaders(seed)
    optimizer = adam(model)
    schedulers = [
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0),
        torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9),
    ]
    result = fit(
        model,
        train,
        val,
        optimizer=optimizer,
        epochs=epochs,
        checkpoint_dir=directory,
        resume=True,
        progress=False,
        lr_scheduler=schedulers if scheduler else None,
    )
    return model, optimizer, result


def test_fit_steps_the_schedulers_and_resumes_them_exactly(make_model, make_loaders, tmp_path):
    ref_model, ref_opt, ref = plateau_fit(make_model, make_loaders, tmp_path / "ref", 6)
    assert ref_opt.param_groups[0]["lr"] < 1e-2 * 0.9**6  # both schedulers stepped each epoch
    plateau_fit(make_model, make_loaders, tmp_path / "run", 3)
    model, optimizer, result = plateau_fit(make_model, make_loaders, tmp_path / "run", 6, seed=7)
    assert without_seconds(result.history) == without_seconds(ref.history)
    assert optimizer.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert_same_weights(model, ref_model)


def test_resume_refuses_other_schedulers(make_model, make_loaders, tmp_path):
    plateau_fit(make_model, make_loaders, tmp_path, 2)
    with pytest.raises(
        CheckpointMismatchError, match="ReduceLROnPlateau.*this run has none"
    ) as info:
        plateau_fit(make_model, make_loaders, tmp_path, 3, scheduler=False)
    assert "\n" not in str(info.value)


def test_a_scheduler_state_that_cannot_be_saved_fails_before_training(make_model, tmp_path):
    model = make_model()
    optimizer = adam(model)

    class Scale:  # a callable object: LambdaLR saves its __dict__, here not JSON
        def __init__(self):
            self.table = {1: object()}

        def __call__(self, epoch):
            return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Scale())
    never = [("not", "a batch")]  # would fail at once if fit tried to train
    with pytest.raises(TypeError, match="lr_scheduler state is not JSON-serialisable"):
        fit(
            model,
            never,
            never,
            optimizer=optimizer,
            epochs=1,
            checkpoint_dir=tmp_path,
            lr_scheduler=scheduler,
        )
