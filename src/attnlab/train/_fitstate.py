"""Bookkeeping of the training loop: best-so-far tracking and per-epoch checkpoints.

Layout of a `checkpoint_dir` (the same for `fit`, `fit_budget` and `train_loop`):

- `last/`: model, optimizer, history, best-so-far, patience counter, optimizer steps,
  learning-rate scheduler states and RNG states after the latest finished epoch;
  everything needed to continue exactly (`_resume.py` reads it back).
- `best/`: the model weights of the best epoch (by the monitored validation metric,
  or as the run's improvement rule judges).

`last/` is always written before `best/`. So if an interruption falls between the two
writes, `last/` records the newer best epoch and is itself that epoch's weights;
resumption notices and rewrites `best/` from it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attnlab.train.checkpoint import save_checkpoint, unwrap_model
from attnlab.train.schedules import Scheduled
from attnlab.train.seeding import capture_rng_state

if TYPE_CHECKING:
    from attnlab.train.policies import Verdict

FIT_KIND = "attnlab.train.fit"
# Version of the `extra` record in `last/`; checkpoints without one come from `fit`
# before the one loop (no mode, steps, stop reason or scheduler states).
LAYOUT = 2
LAST, BEST = "last", "best"
MODES = ("min", "max")
# The metrics `fit` monitors and which way is better (all `fit` checkpoints before the
# one loop used one of them).
CLASSIFIER_MODES = {"accuracy": "max", "loss": "min"}


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


def better(value: float, best: float, mode: str) -> bool:
    """Whether `value` improves on `best`: NaN never does, and anything beats a NaN best.

    Args:
        value: The new metric.
        best: The best so far.
        mode: `"max"` when higher is better, `"min"` when lower is.

    Returns:
        True for a strict improvement.
    """
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if mode == "max" else value < best


@dataclasses.dataclass
class FitState:
    """Mutable progress of one training run, possibly spanning several processes.

    Attributes:
        monitor: Name of the monitored metric; each record holds it as `val_<monitor>`.
        mode: `"max"` when a higher metric is better, `"min"` when lower is.
        history: One record per finished epoch.
        best_epoch: 1-based epoch judged best so far (0 before any): by default the one
            with the best monitored metric (see `attnlab.train.policies.Improvement`).
        best_value: Its `val_<monitor>`.
        bad_epochs: Epochs in a row without improvement (as judged) since the last one.
        seconds: Training and validation time, over all sessions.
        steps: Optimizer steps taken, over all sessions.
        stopped_by: Reason of the stopping policy that ended the run, or None.
        best_state: The best epoch's weights (CPU copy).
        rng: RNG snapshot of a resumed run, until restored.
        rng_file: Where that snapshot came from, for the message.
    """

    monitor: str
    mode: str = "max"
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    bad_epochs: int = 0
    seconds: float = 0.0
    steps: int = 0
    stopped_by: str | None = None
    best_state: dict[str, torch.Tensor] | None = None
    rng: dict[str, Any] | None = None
    rng_file: Path | None = None

    def update(self, record: dict[str, float], model: nn.Module, verdict: Verdict) -> bool:
        """Record a finished epoch as judged; keep a copy of the weights if it is the best.

        Args:
            record: The epoch's metrics (with `epoch` and `val_<monitor>`).
            model: The model after that epoch.
            verdict: The improvement rule's judgement of the epoch (made before it joins
                the history): an improvement restarts the patience count.

        Returns:
            Whether the epoch is the new best.
        """
        self.history.append(record)
        if verdict.best:
            self.best_epoch, self.best_value = record["epoch"], record[f"val_{self.monitor}"]
            self.best_state = copy_state(model)
        self.bad_epochs = 0 if verdict.improved else self.bad_epochs + 1
        return verdict.best


def scheduler_states(schedules: Sequence[Scheduled]) -> list[dict[str, Any]]:
    """What `last/` records of each learning-rate scheduler.

    Args:
        schedules: The run's schedulers.

    Returns:
        Per scheduler its class name, interval and `state_dict()`.
    """
    return [
        {
            "class": type(s.scheduler).__name__,
            "interval": s.interval,
            "state": s.scheduler.state_dict(),
        }
        for s in schedules
    ]


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
    schedules: Sequence[Scheduled] = (),
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
        settings: The loop's arguments, recorded for reference (`epochs` bounds resume).
        schedules: The learning-rate schedulers, whose states are saved.
    """
    extra = {
        "kind": FIT_KIND,
        "layout": LAYOUT,
        "monitor": state.monitor,
        "mode": state.mode,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "bad_epochs": state.bad_epochs,
        "seconds": state.seconds,
        "steps": state.steps,
        "stopped_by": state.stopped_by,
        "settings": settings,
        "rng": capture_rng_state(generators),
        "schedulers": scheduler_states(schedules),
    }
    save_checkpoint(
        directory / LAST,
        model=model,
        optimizer=optimizer,
        epoch=len(state.history),
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
