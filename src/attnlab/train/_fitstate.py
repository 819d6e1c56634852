"""Bookkeeping of `fit`: best-so-far tracking, per-epoch checkpoints and resumption.

Layout of a `checkpoint_dir`:

- `last/`: model, optimizer, history, best-so-far, patience counter and RNG states
  after the latest finished epoch; everything needed to continue exactly.
- `best/`: the model weights of the best epoch by the monitored validation metric.

`last/` is always written before `best/`. So if an interruption falls between the two
writes, `last/` records the newer best epoch and is itself that epoch's weights;
resumption notices and rewrites `best/` from it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.train._integrity import damaged, plain, require
from attnlab.train._storage import MANIFEST
from attnlab.train.checkpoint import (
    CheckpointInfo,
    apply_checkpoint,
    check_config,
    read_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from attnlab.train.seeding import capture_rng_state, restore_rng_state

FIT_KIND = "attnlab.train.fit"
LAST, BEST = "last", "best"


def copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy a model's `state_dict` to CPU, detached from the live parameters.

    Args:
        model: The model (wrappers are stripped).

    Returns:
        A new state dict the optimizer cannot modify.
    """
    state = unwrap_model(model).state_dict()
    return {name: t.detach().to("cpu", copy=True) for name, t in state.items()}


def loader_generators(loader: Any, prefix: str) -> dict[str, torch.Generator]:
    """Find the generators a DataLoader draws its shuffle order and worker seeds from.

    Where they are None the loader uses torch's global generator, which is saved anyway.

    Args:
        loader: A DataLoader or any iterable (which then has none).
        prefix: Name prefix, e.g. "train".

    Returns:
        The generators by stable dotted name.
    """
    candidates = {
        "generator": getattr(loader, "generator", None),
        "sampler.generator": getattr(getattr(loader, "sampler", None), "generator", None),
        "batch_sampler.sampler.generator": getattr(
            getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None
        ),
    }
    return {f"{prefix}.{k}": g for k, g in candidates.items() if isinstance(g, torch.Generator)}


def _better(value: float, best: float, monitor: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if monitor == "accuracy" else value < best


@dataclasses.dataclass
class FitState:
    """Mutable progress of one `fit` run, possibly spanning several processes."""

    monitor: str
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    bad_epochs: int = 0
    seconds: float = 0.0
    best_state: dict[str, torch.Tensor] | None = None
    rng: dict[str, Any] | None = None  # RNG snapshot of a resumed run, until restored
    rng_file: Path | None = None  # where that snapshot came from, for the message

    def update(self, record: dict[str, float], model: nn.Module) -> bool:
        """Record a finished epoch; keep a copy of the weights if it is the best so far.

        Args:
            record: The epoch's metrics (with `epoch` and `val_<monitor>`).
            model: The model after that epoch.

        Returns:
            Whether the epoch improved on the best so far.
        """
        self.history.append(record)
        value = record[f"val_{self.monitor}"]
        if self.best_value is None or _better(value, self.best_value, self.monitor):
            self.best_epoch, self.best_value, self.bad_epochs = record["epoch"], value, 0
            self.best_state = copy_state(model)
            return True
        self.bad_epochs += 1
        return False

    def finished(self, epochs: int, patience: int | None) -> bool:
        """Tell whether training is over: all epochs run or patience used up.

        Args:
            epochs: Total epochs asked for.
            patience: Epochs without improvement allowed, or None.

        Returns:
            True if no further epoch should run.
        """
        return len(self.history) >= epochs or (patience is not None and self.bad_epochs >= patience)


def save_epoch(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: FitState,
    config: dict[str, Any],
    improved: bool,
    generators: Mapping[str, torch.Generator],
    settings: dict[str, Any],
) -> None:
    """Write `last/` and, if the epoch improved, `best/` (in that order; see module doc).

    Args:
        directory: The run's checkpoint directory.
        model: The model after the epoch.
        optimizer: The optimizer after the epoch.
        state: The run's progress, including the finished epoch.
        config: The run's JSON config.
        improved: Whether the epoch is the new best.
        generators: DataLoader generators whose states must be resumed.
        settings: The fit arguments, recorded for reference.
    """
    epoch = len(state.history)
    extra = {
        "kind": FIT_KIND,
        "monitor": state.monitor,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "bad_epochs": state.bad_epochs,
        "seconds": state.seconds,
        "settings": settings,
        "rng": capture_rng_state(generators),
    }
    save_checkpoint(
        directory / LAST,
        model=model,
        optimizer=optimizer,
        epoch=epoch,
        config=config,
        history=state.history,
        extra=extra,
    )
    if improved:
        _save_best(directory, model=model, state=state, config=config)


def _save_best(
    directory: Path, *, model: nn.Module, state: FitState, config: dict[str, Any]
) -> None:
    extra = {"kind": f"{FIT_KIND}.best", "monitor": state.monitor, "value": state.best_value}
    save_checkpoint(
        directory / BEST,
        model=model,
        epoch=len(state.history),
        config=config,
        history=state.history,
        extra=extra,
    )


def _check_fit(path: Path, info: CheckpointInfo, monitor: str) -> None:
    """Insist on every field fit wrote into `last/`, so a tampered one fails with its name."""
    extra = info.extra
    epochs = require(path, require(path, extra, "settings", "an object"), "epochs", "an integer")
    require(path, {"epoch": info.epoch}, "epoch", "an integer", low=1, high=max(epochs, 1))
    if len(info.history) != info.epoch:
        raise damaged(
            path, f"'history' holds {len(info.history)} epoch(s), but 'epoch' is {info.epoch}"
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
    config: dict[str, Any],
) -> FitState:
    """Load `last/` into model and optimizer and rebuild the progress (RNG kept aside).

    Args:
        directory: The run's checkpoint directory.
        model: The model being trained.
        optimizer: Its optimizer.
        monitor: The monitored metric; must match the checkpoint's.
        config: The run's JSON config; if not empty it must match the checkpoint's, and
            `best/` must always match `last/`.

    Returns:
        The progress as of the last finished epoch, with the best weights in memory.

    Raises:
        ValueError: If the checkpoint belongs to a different kind of run.
        CheckpointMismatchError: If it was trained with another config or model.
        CheckpointDamagedError: If a file or field of it is damaged.
    """
    last = plain(directory / LAST)
    info, model_state, optimizer_state = read_checkpoint(last, model=model, optimizer=optimizer)
    extra = info.extra
    if extra.get("kind") != FIT_KIND:
        raise ValueError(
            f"checkpoint at {last} was not written by fit; choose another checkpoint_dir"
        )
    saved_monitor = require(last / MANIFEST, extra, "monitor", "a string")
    if saved_monitor != monitor:
        raise ValueError(
            f"checkpoint at {last} was trained with monitor={saved_monitor!r}, not {monitor!r}; "
            "resume with the same monitor or choose another checkpoint_dir"
        )
    if config:
        hint = "pass the same config or choose another checkpoint_dir"
        check_config(last, info.config, config, hint)
    _check_fit(last / MANIFEST, info, monitor)
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
    state = FitState(
        monitor=monitor,
        history=info.history,
        best_epoch=best_epoch,
        best_value=extra["best_value"],
        bad_epochs=extra["bad_epochs"],
        seconds=extra["seconds"],
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
