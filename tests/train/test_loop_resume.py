"""fit with checkpoints: interruption, exact resumption, and the guards around it."""

import pytest
from torch import nn

import attnlab.train._fitstate as fitstate
from attnlab.train import CheckpointMismatchError, fit, load_checkpoint, seed_everything

from .conftest import adam, assert_same_weights, toy_loaders, toy_model, without_seconds


def run_with_interrupt(make_model, make_loaders, directory, *, epoch: int, batch: int) -> None:
    seed_everything(0)
    model = make_model()
    train, val = make_loaders()
    calls = {"n": 0}

    def interrupt(module, args):
        if module.training:
            calls["n"] += 1
            if calls["n"] == (epoch - 1) * len(train) + batch:
                raise KeyboardInterrupt

    model.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            train,
            val,
            optimizer=adam(model),
            epochs=6,
            checkpoint_dir=directory,
            progress=False,
            config={"lr": 1e-2},
        )


def resume_in_fresh_state(make_model, make_loaders, directory, epochs: int = 6):
    """Resume as a new process would: other seeds, other initial weights, new loaders."""
    seed_everything(12345)
    model = make_model(99)
    train, val = make_loaders(777)
    result = fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=epochs,
        checkpoint_dir=directory,
        resume=True,
        progress=False,
        config={"lr": 1e-2},
    )
    return model, result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-epoch run with checkpoints; shared, so tests must not modify it."""
    directory = tmp_path_factory.mktemp("reference")
    seed_everything(0)
    model = toy_model()
    train, val = toy_loaders()
    result = fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=6,
        progress=False,
        checkpoint_dir=directory,
        config={"lr": 1e-2},
    )
    return model, result, directory


def test_interrupted_run_resumes_exactly(make_model, make_loaders, tmp_path, reference):
    ref_model, ref_result, ref_dir = reference
    run_with_interrupt(make_model, make_loaders, tmp_path / "run", epoch=4, batch=3)
    probe = make_model()
    assert load_checkpoint(tmp_path / "run" / "last", model=probe).epoch == 3

    model, result = resume_in_fresh_state(make_model, make_loaders, tmp_path / "run")
    assert result.epochs_run == 6 and result.best_epoch == ref_result.best_epoch
    assert without_seconds(result.history) == without_seconds(ref_result.history)
    assert_same_weights(model, ref_model)
    for name in ("last", "best"):  # the on-disk weights agree too
        a, b = make_model(), make_model()
        assert (
            load_checkpoint(tmp_path / "run" / name, model=a).epoch
            == load_checkpoint(ref_dir / name, model=b).epoch
        )
        assert_same_weights(a, b)


def test_three_epochs_then_resume_to_six_matches_uninterrupted(
    make_model, make_loaders, tmp_path, reference
):
    ref_model, ref_result, _ = reference
    seed_everything(0)
    model = make_model()
    train, val = make_loaders()
    first = fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=3,
        progress=False,
        checkpoint_dir=tmp_path / "run",
        config={"lr": 1e-2},
    )
    assert first.epochs_run == 3
    model, result = resume_in_fresh_state(make_model, make_loaders, tmp_path / "run")
    assert without_seconds(result.history) == without_seconds(ref_result.history)
    assert_same_weights(model, ref_model)


def test_interruption_between_last_and_best_is_repaired(
    make_model, make_loaders, tmp_path, reference, monkeypatch
):
    ref_model, ref_result, _ = reference
    real_save_best = fitstate._save_best

    def interrupted_save_best(directory, *, model, state, config):
        if len(state.history) == ref_result.best_epoch:
            raise KeyboardInterrupt
        real_save_best(directory, model=model, state=state, config=config)

    monkeypatch.setattr(fitstate, "_save_best", interrupted_save_best)
    seed_everything(0)
    model = make_model()
    train, val = make_loaders()
    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            train,
            val,
            optimizer=adam(model),
            epochs=6,
            progress=False,
            checkpoint_dir=tmp_path / "run",
            config={"lr": 1e-2},
        )
    monkeypatch.undo()

    model, result = resume_in_fresh_state(make_model, make_loaders, tmp_path / "run")
    assert without_seconds(result.history) == without_seconds(ref_result.history)
    assert_same_weights(model, ref_model)
    best = make_model()
    assert load_checkpoint(tmp_path / "run" / "best", model=best).epoch == ref_result.best_epoch
    assert_same_weights(best, ref_model)


def test_finished_run_is_returned_without_training(make_model, make_loaders, reference):
    ref_model, ref_result, ref_dir = reference
    model = make_model(5)
    _, val = make_loaders()
    never = [("not", "a batch")]  # would fail at once if fit tried to train
    result = fit(
        model,
        never,
        val,
        optimizer=adam(model),
        epochs=6,
        checkpoint_dir=ref_dir,
        resume=True,
        progress=False,
    )
    assert result == ref_result
    assert_same_weights(model, ref_model)


def test_existing_checkpoint_is_never_overwritten(make_model, make_loaders, reference):
    _, _, ref_dir = reference
    model = make_model()
    train, val = make_loaders()
    with pytest.raises(FileExistsError) as err:
        fit(
            model,
            train,
            val,
            optimizer=adam(model),
            epochs=1,
            checkpoint_dir=ref_dir,
            progress=False,
        )
    assert "\n" not in str(err.value) and "pass resume=True" in str(err.value)


def test_resume_guards(make_model, make_loaders, reference, tmp_path):
    _, _, ref_dir = reference
    model = make_model()
    train, val = make_loaders()
    kwargs = {"optimizer": adam(model), "epochs": 6, "resume": True, "progress": False}
    with pytest.raises(ValueError, match="trained with monitor='accuracy', not 'loss'"):
        fit(model, train, val, checkpoint_dir=ref_dir, monitor="loss", **kwargs)
    with pytest.raises(ValueError, match=r"different config \('lr': 0.01 vs 0.5\)"):
        fit(model, train, val, checkpoint_dir=ref_dir, config={"lr": 0.5}, **kwargs)
    with pytest.raises(CheckpointMismatchError, match="this model is Linear"):
        fit(nn.Linear(8, 2), train, val, checkpoint_dir=ref_dir, **kwargs)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_dir"):
        fit(model, train, val, **kwargs)
    # resume=True with nothing to resume starts fresh
    result = fit(model, train, val, checkpoint_dir=tmp_path / "fresh", **{**kwargs, "epochs": 1})
    assert result.epochs_run == 1
