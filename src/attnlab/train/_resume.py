"""Resuming the training loop from `last/`: every field checked, then state restored.

Everything `last/` records is checked before anything is loaded: a field that is
missing, of the wrong type or out of range raises one `CheckpointDamagedError` naming
it, a checkpoint of another run (model, optimizer, config, monitor, schedulers) one
`CheckpointMismatchError` or `ValueError`. Only then are the model, the optimizer and
the schedulers loaded; the RNG states are kept aside and restored by `restore_rng` just
before training goes on.

Checkpoints written by `fit` before the one loop (no `layout` field) resume as they
are. Those written by the old `fit_budget` (an `extra.result` record, no RNG state)
cannot resume exactly and are refused with one line; their weights still load with
`load_checkpoint`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.train._fitstate import (
    BEST,
    CLASSIFIER_MODES,
    FIT_KIND,
    LAST,
    MODES,
    FitState,
    _save_best,
)
from attnlab.train._integrity import damaged, plain, require
from attnlab.train._storage import MANIFEST
from attnlab.train.checkpoint import (
    CheckpointInfo,
    CheckpointMismatchError,
    apply_checkpoint,
    check_config,
    read_checkpoint,
)
from attnlab.train.schedules import Scheduled
from attnlab.train.seeding import restore_rng_state


def _layout(last: Path, extra: dict[str, Any]) -> int:
    """The version of the loop's record in `last/`: 1 for fit's before the one loop."""
    if extra.get("kind") == FIT_KIND:
        return 2 if "layout" in extra else 1
    if isinstance(extra.get("result"), dict):
        raise ValueError(
            f"checkpoint at {last} was written by fit_budget before it saved RNG and scheduler "
            "states, so it cannot resume exactly; train again in another checkpoint_dir (its "
            "weights still load with load_checkpoint)"
        )
    raise ValueError(
        f"checkpoint at {last} was not written by attnlab's training loop; "
        "choose another checkpoint_dir"
    )


def _check_monitor(last: Path, extra: dict[str, Any], layout: int, monitor: str, mode: str) -> None:
    path = last / MANIFEST
    saved = require(path, extra, "monitor", "a string")
    if layout == 1 and saved not in CLASSIFIER_MODES:
        raise damaged(path, f"'monitor' is {saved!r}, expected one of {tuple(CLASSIFIER_MODES)}")
    saved_mode = require(path, extra, "mode", "a string") if layout > 1 else CLASSIFIER_MODES[saved]
    if saved != monitor:
        raise ValueError(
            f"checkpoint at {last} was trained with monitor={saved!r}, not {monitor!r}; "
            "resume with the same monitor or choose another checkpoint_dir"
        )
    if saved_mode != mode:
        raise ValueError(
            f"checkpoint at {last} was trained with mode={saved_mode!r} for {monitor!r}, not "
            f"{mode!r}; resume with the same mode or choose another checkpoint_dir"
        )


def _check_record(
    path: Path, info: CheckpointInfo, monitor: str, layout: int, reasons: Sequence[str]
) -> None:
    """Insist on every field the loop wrote into `last/`, so a tampered one fails with its name."""
    extra = info.extra
    epochs = require(path, require(path, extra, "settings", "an object"), "epochs", "an integer")
    require(path, {"epoch": info.epoch}, "epoch", "an integer", low=1, high=max(epochs, 1))
    if len(info.history) != info.epoch:
        raise damaged(
            path,
            f"'history' holds {len(info.history)} epoch(s), but 'epoch' is {info.epoch}: epoch "
            f"{info.epoch} with {len(info.history)} epochs of history cannot be resumed",
        )
    for number, record in enumerate(info.history, 1):
        if record.get("epoch") != number:
            got = record.get("epoch")
            raise damaged(path, f"'history' entry {number} is for epoch {got!r}, not {number}")
        require(path, record, f"val_{monitor}", "a number")
    require(path, extra, "best_epoch", "an integer", low=1, high=info.epoch)
    require(path, extra, "best_value", "a number", nullable=True)
    require(path, extra, "bad_epochs", "an integer", low=0, high=info.epoch)
    require(path, extra, "seconds", "a number", low=0)
    require(path, require(path, extra, "rng", "an object"), "generators", "an object")
    if layout == 1:
        return
    if require(path, extra, "mode", "a string") not in MODES:
        raise damaged(path, f"'mode' is {extra['mode']!r}, expected one of {MODES}")
    require(path, extra, "steps", "an integer", low=0)
    stopped_by = require(path, extra, "stopped_by", "a string", nullable=True)
    if stopped_by is not None and stopped_by not in reasons:
        raise damaged(path, f"'stopped_by' is {stopped_by!r}, expected one of {tuple(reasons)}")
    for entry in require(path, extra, "schedulers", "a list of objects"):
        require(path, entry, "class", "a string")
        require(path, entry, "interval", "a string")
        require(path, entry, "state", "an object")


def _check_schedulers(
    last: Path, saved: list[dict[str, Any]], schedules: Sequence[Scheduled]
) -> None:
    """Refuse saved scheduler states that do not fit the schedulers of this run."""
    had = [(entry["class"], entry["interval"]) for entry in saved]
    has = [(type(s.scheduler).__name__, s.interval) for s in schedules]
    if had != has:
        raise CheckpointMismatchError(
            f"checkpoint at {last} was trained with learning-rate schedulers {had or 'none'}; "
            f"this run has {has or 'none'}; pass the schedulers it was trained with or choose "
            "another checkpoint_dir"
        )
    for number, (entry, s) in enumerate(zip(saved, schedules), 1):
        missing = sorted(set(s.scheduler.state_dict()) - set(entry["state"]))
        if missing:
            raise damaged(last / MANIFEST, f"the state of scheduler {number} lacks {missing[0]!r}")


def _load_schedulers(
    last: Path, saved: list[dict[str, Any]], schedules: Sequence[Scheduled]
) -> None:
    for number, (entry, s) in enumerate(zip(saved, schedules), 1):
        try:
            s.scheduler.load_state_dict(dict(entry["state"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            problem = f"the state of scheduler {number} does not load ({err})"
            raise damaged(last / MANIFEST, problem) from None


def _read_best(directory: Path, model: nn.Module, info: CheckpointInfo) -> Any:
    """The weights in `best/` if it holds the best epoch `last/` records, else None."""
    best = plain(directory / BEST)
    try:
        best_info, best_state, _ = read_checkpoint(best, model=model)
    except FileNotFoundError:
        return None
    hint = "it belongs to another run, so choose another checkpoint_dir"
    check_config(best, best_info.config, info.config, hint)
    return best_state if best_info.epoch == info.extra["best_epoch"] else None


def resume_fit(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    monitor: str,
    mode: str,
    config: dict[str, Any] | None,
    schedules: Sequence[Scheduled] = (),
    reasons: Sequence[str] = (),
) -> FitState:
    """Load `last/` into model, optimizer and schedulers; rebuild the progress (RNG kept aside).

    Args:
        directory: The run's checkpoint directory.
        model: The model being trained.
        optimizer: Its optimizer.
        monitor: The monitored metric; must match the checkpoint's.
        mode: `"min"` or `"max"`; must match the checkpoint's.
        config: The run's JSON config, compared with the checkpoint's unless None;
            `best/` must always match `last/`.
        schedules: The run's learning-rate schedulers; must match the saved ones.
        reasons: The stop reasons a checkpoint may record.

    Returns:
        The progress as of the last finished epoch, with the best weights in memory.

    Raises:
        ValueError: If the checkpoint belongs to a different kind of run.
        CheckpointMismatchError: If it was trained with another config, model or schedulers.
        CheckpointDamagedError: If a file or field of it is damaged.
    """
    last = plain(directory / LAST)
    info, model_state, optimizer_state = read_checkpoint(last, model=model, optimizer=optimizer)
    extra = info.extra
    layout = _layout(last, extra)
    _check_monitor(last, extra, layout, monitor, mode)
    if config is not None:
        hint = "pass the same config or choose another checkpoint_dir"
        check_config(last, info.config, config, hint)
    _check_record(last / MANIFEST, info, monitor, layout, reasons)
    saved_schedulers = extra["schedulers"] if layout > 1 else []
    _check_schedulers(last, saved_schedulers, schedules)
    best_epoch = extra["best_epoch"]
    best_state = _read_best(directory, model, info)
    best_on_disk = best_state is not None
    if best_epoch == info.epoch:
        best_state = model_state  # last/ is the best epoch itself
    elif not best_on_disk:
        raise damaged(
            directory / BEST,
            f"does not hold epoch {best_epoch}, the best one recorded in {last}",
        )
    apply_checkpoint(last, model, model_state, optimizer, optimizer_state)
    _load_schedulers(last, saved_schedulers, schedules)
    state = FitState(
        monitor=monitor,
        mode=mode,
        history=info.history,
        best_epoch=best_epoch,
        best_value=extra["best_value"],
        bad_epochs=extra["bad_epochs"],
        seconds=extra["seconds"],
        steps=extra.get("steps", 0),  # fit did not count them before the one loop
        stopped_by=extra.get("stopped_by"),
        best_state=best_state,
    )
    if not best_on_disk:  # the run was cut between writing last/ and best/
        _save_best(directory, model=model, state=state, config=info.config)
    state.rng, state.rng_file = extra["rng"], last / MANIFEST
    return state


def restore_rng(state: FitState, generators: Mapping[str, torch.Generator]) -> None:
    """Put every RNG back where the resumed run left it (call just before training).

    Args:
        state: Progress returned by `resume_fit`.
        generators: The current DataLoader generators, by `loader_generators` names.
    """
    if state.rng is None:
        return
    saved, given = set(state.rng["generators"]), set(generators)
    if saved != given:
        warnings.warn(
            f"DataLoader generators {sorted(given)} differ from the checkpoint's {sorted(saved)}; "
            "shuffling will not continue exactly as in an uninterrupted run",
            stacklevel=3,
        )
    try:
        restore_rng_state(state.rng, {n: g for n, g in generators.items() if n in saved})
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        where = state.rng_file or Path(LAST)
        raise damaged(where, f"its RNG state does not load ({err})") from None
