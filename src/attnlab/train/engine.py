"""The one training loop: epochs of optimizer steps, validation, best weights, resume.

`train_loop` is generic over a step function and stopping policies; `fit` (classifiers)
and `fit_budget` (models that compute their own loss, under a wall-clock budget) are
thin entry points over it. Per epoch it:

1. calls `step(batch)` for every batch of `batches(epoch)`, backpropagates the loss,
   clips the gradient norm, steps the optimizer and the per-step schedulers, and asks
   the policies whether the epoch in progress must end (a wall-clock budget);
2. validates, has the improvement rule judge the epoch (by default: did the monitored
   metric improve), keeps a copy of the weights of a new best epoch, steps the per-epoch
   schedulers, asks the policies whether the run is over;
3. with `checkpoint_dir`, writes `last/` (everything needed to continue, RNG and
   scheduler states included) and, on improvement, `best/`.

An interrupted run resumes exactly (same shuffles, dropout masks, rates and weights)
with `resume=True`, given batches built the same way. At the end the model holds the
best epoch's weights.

Example:
    >>> from attnlab.train import Epochs, Patience, seed_everything
    >>> _ = seed_everything(0)
    >>> x, y = torch.randn(64, 2), torch.randn(64)
    >>> model = torch.nn.Linear(2, 1)
    >>> def step(batch):
    ...     xb, yb = batch
    ...     return torch.nn.functional.mse_loss(model(xb).squeeze(-1), yb)
    >>> def validate():
    ...     with torch.no_grad():
    ...         return {"val_loss": float(torch.nn.functional.mse_loss(model(x).squeeze(-1), y))}
    >>> state = train_loop(model, lambda epoch: [(x[:32], y[:32]), (x[32:], y[32:])],
    ...     step=step, validate=validate, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    ...     stop=(Epochs(5), Patience(2)), progress=False)
    >>> len(state.history), state.stopped_by
    (5, 'epochs')
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attnlab._validate import describe
from attnlab.train._batch import Sums, accumulate
from attnlab.train._fitstate import BEST, LAST, MODES, FitState, save_epoch, scheduler_states
from attnlab.train._resume import restore_rng, resume_fit
from attnlab.train._storage import has_checkpoint, to_json
from attnlab.train.checkpoint import normalize_config, unwrap_model
from attnlab.train.policies import (
    REASONS,
    Improvement,
    StopPolicy,
    check_policies,
    most_epochs,
    stop_reason,
)
from attnlab.train.schedules import Scheduled, SchedulerArg, as_schedules

__all__ = ["StepFn", "train_loop"]

logger = logging.getLogger(__name__)

StepFn = Callable[[Any], Union[Tensor, tuple[Tensor, Mapping[str, Any]]]]
Summarize = Callable[[Sums], dict[str, float]]

_REFRESH_SECONDS = 0.5  # reading running sums syncs with the device: a few times a second only


def mean_loss(sums: Sums) -> dict[str, float]:
    """The default epoch summary: the mean of the losses `step` returned.

    Args:
        sums: The epoch's sums (`loss` and `steps` for steps returning a bare loss).

    Returns:
        `{"train_loss": float}`.

    Raises:
        ValueError: If the epoch had no batch.
    """
    if not sums.get("steps"):
        raise ValueError("batches(epoch) yielded no batches; give it at least one batch")
    return {"train_loss": float(sums["loss"]) / sums["steps"]}


@dataclasses.dataclass(frozen=True)
class _Run:
    """The fixed pieces of one run that every epoch uses."""

    model: nn.Module
    step: StepFn
    optimizer: torch.optim.Optimizer
    grad_clip: float | None
    summarize: Summarize
    per_step: tuple[Scheduled, ...]
    policies: tuple[StopPolicy, ...]
    progress: bool


def _unpack(out: Any) -> tuple[Tensor, Mapping[str, Any]]:
    if isinstance(out, Tensor):
        loss, sums = out, {"loss": out, "steps": 1}
    elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        loss, sums = out
    else:
        raise TypeError(f"step must return the loss or (loss, sums dict); got {describe(out)}")
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise TypeError(f"step must return a scalar loss tensor; got {describe(loss)}")
    return loss, sums


def _check_finite(total: Tensor | float, epoch: int) -> None:
    value = float(total)
    if not math.isfinite(value):
        raise FloatingPointError(
            f"training loss became {value} in epoch {epoch}; "
            "lower the learning rate or set grad_clip"
        )


def _train_epoch(
    run: _Run,
    batches: Iterable[Any],
    state: FitState,
    epoch: int,
    label: str,
    clock: Callable[[], float],
) -> tuple[dict[str, float], float]:
    """Train one epoch; return its summary and the rate of its last step (param group 0)."""
    run.model.train()
    sums: Sums = {}
    loss_total: Tensor | float = 0.0
    lr = float(run.optimizer.param_groups[0]["lr"])
    shown = time.monotonic()
    bar = tqdm(
        batches, desc=label, unit="batch", disable=not run.progress, dynamic_ncols=True, leave=False
    )
    with bar:
        for batch in bar:
            loss, batch_sums = _unpack(run.step(batch))
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if run.grad_clip is not None:
                nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
            lr = float(run.optimizer.param_groups[0]["lr"])
            run.optimizer.step()
            for schedule in run.per_step:
                schedule.step()
            state.steps += 1
            loss_total = loss_total + loss.detach().double()
            accumulate(sums, batch_sums)
            if time.monotonic() - shown > _REFRESH_SECONDS:
                _check_finite(loss_total, epoch)
                if not bar.disable:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in run.summarize(sums).items()})
                shown = time.monotonic()
            if any(policy.interrupts(clock()) for policy in run.policies):
                break
    _check_finite(loss_total, epoch)
    return run.summarize(sums), lr


def _check_arguments(
    monitor: str,
    mode: str,
    improvement: Improvement,
    grad_clip: float | None,
    directory: Path | None,
    resume: bool,
) -> None:
    if not isinstance(improvement, Improvement):
        raise TypeError(
            "improvement must be an Improvement rule (e.g. AnyImproves(maximize=..., "
            f"minimize=...)) or None; got {type(improvement).__name__}"
        )
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must name a validation metric (without 'val_'); got {monitor!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(
            f"grad_clip must be a positive max gradient norm or None; got {grad_clip!r}"
        )
    if resume and directory is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from; pass checkpoint_dir")


def _check_validation(val: Mapping[str, float], needed: Sequence[str]) -> None:
    missing = [f"val_{name}" for name in needed if f"val_{name}" not in val]
    if missing:
        raise ValueError(
            f"validate() returned {sorted(val)}; it must return {', '.join(map(repr, missing))}, "
            "the monitored metric(s)"
        )


def _settings(
    policies: Sequence[StopPolicy],
    improvement: Improvement,
    monitor: str,
    mode: str,
    grad_clip: float | None,
) -> dict[str, Any]:
    """The loop's arguments that checkpoints record (a rule only where it is not the default)."""
    settings = {k: v for p in policies for k, v in p.settings().items()}
    settings |= {"monitor": monitor, "mode": mode, "grad_clip": grad_clip}
    if type(improvement) is not Improvement:
        settings["improvement"] = {"rule": type(improvement).__name__, **improvement.settings()}
    return settings


def _open(
    directory: Path | None,
    resume: bool,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fresh: FitState,
    config: dict[str, Any] | None,
    schedules: Sequence[Scheduled],
    policies: Sequence[StopPolicy],
    generators: Mapping[str, torch.Generator],
) -> FitState:
    """A fresh state, or the resumed one with every RNG put back."""
    if directory is None or not any(has_checkpoint(directory / d) for d in (LAST, BEST)):
        return fresh
    if not resume:
        raise FileExistsError(
            f"{directory} already holds a training checkpoint; pass resume=True to continue "
            "it or choose another checkpoint_dir"
        )
    state = resume_fit(
        directory,
        model=model,
        optimizer=optimizer,
        monitor=fresh.monitor,
        mode=fresh.mode,
        config=config,
        schedules=schedules,
        reasons=sorted({*REASONS, *(p.reason for p in policies)}),
    )
    state.stopped_by = stop_reason(policies, state)  # the policies of this call decide
    if state.stopped_by is None:
        # Last step before training: nothing may draw random numbers in between.
        restore_rng(state, generators)
    return state


def train_loop(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    *,
    step: StepFn,
    validate: Callable[[], Mapping[str, float]],
    optimizer: torch.optim.Optimizer,
    stop: Sequence[StopPolicy],
    monitor: str = "loss",
    mode: str = "min",
    improvement: Improvement | None = None,
    summarize: Summarize = mean_loss,
    lr_scheduler: SchedulerArg = None,
    grad_clip: float | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    config: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    log_lr: bool = False,
    progress: bool = True,
    desc: str = "",
) -> FitState:
    """Train epoch after epoch until a stopping policy says so; keep the best weights.

    Args:
        model: The model (left holding the best epoch's weights).
        batches: `batches(epoch)` gives the training batches of that epoch (1-based).
        step: `step(batch)` runs the model and returns the loss to backpropagate, or
            `(loss, sums)` with per-batch sums (tensors stay on the device) that
            `summarize` turns into the epoch's training metrics.
        validate: Returns the validation metrics, named `val_<name>`; the model is in
            train mode when it is called.
        optimizer: Optimizer over the model's parameters.
        stop: Stopping policies, one `Epochs` among them, asked in order.
        monitor: Metric that picks the best epoch: `validate()` returns `val_<monitor>`;
            with another `improvement` rule, the metric recorded as the best value (and
            given to plateau schedulers).
        mode: `"min"` when a lower metric is better, `"max"` when higher; ties keep the
            earlier epoch.
        improvement: Rule judging each epoch: improved (patience restarts) and best
            (weights kept); None judges `val_<monitor>` alone as above. `AnyImproves`
            judges several metrics (the GAT paper's early stopping). On resume the rule
            reads the history back; pass the one the run started with.
        summarize: Epoch sums to training metrics (default: `train_loss`, the mean loss).
        lr_scheduler: Learning-rate scheduler(s) stepped per optimizer step or per epoch
            as each declares (see `attnlab.train.schedules`); saved and resumed.
        grad_clip: Clip the gradient norm to this value, or None.
        checkpoint_dir: Directory for `last/` and `best/` checkpoints, or None.
        resume: Continue from `checkpoint_dir/last` if present (start fresh if not). A
            finished run is returned as stored, without training.
        config: JSON-serialisable dict or dataclass saved with checkpoints; unless None,
            a resumed checkpoint's config must equal it.
        generators: Generators the batches draw from (e.g. a DataLoader's), saved and
            restored by name with the global RNGs.
        log_lr: Record the rate of param group 0 at each epoch's last step as `lr`.
        progress: Show a tqdm bar per epoch with the running training metrics.
        desc: Prefix for the progress bar.

    Returns:
        The run's `FitState`: history (`epoch`, training metrics, validation metrics,
        `lr` if logged, `seconds` of the epoch), best epoch, steps, stop reason. The
        model holds the best epoch's weights (its last ones if no epoch was judged best,
        which the default rule never leaves).

    Raises:
        FileExistsError: If `checkpoint_dir` already holds a run and `resume` is False.
        ValueError: If an argument is invalid or the checkpoint belongs to another run.
        CheckpointMismatchError: If the checkpoint was written by a different model,
            config or schedulers, or its `best/` by another run.
        CheckpointDamagedError: If a checkpoint file is garbled, a link, or disagrees
            with its manifest (one line naming the file).
        FloatingPointError: If the training loss becomes NaN or infinite.
        KeyboardInterrupt: Re-raised after an interruption; with `checkpoint_dir` the last
            finished epoch is on disk.
    """
    policies = check_policies(stop)
    schedules = as_schedules(lr_scheduler, optimizer)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    improvement = Improvement() if improvement is None else improvement
    _check_arguments(monitor, mode, improvement, grad_clip, directory, resume)
    needed = dict.fromkeys((monitor, *improvement.metrics(monitor)))  # ordered, no repeats
    config_json = normalize_config(config)
    generators = dict(generators or {})
    settings = _settings(policies, improvement, monitor, mode, grad_clip)
    if directory is not None:  # fail now, not after the first epoch
        to_json(scheduler_states(schedules), "lr_scheduler state")
    state = _open(
        directory,
        resume,
        model=model,
        optimizer=optimizer,
        fresh=FitState(monitor=monitor, mode=mode),
        config=None if config is None else config_json,
        schedules=schedules,
        policies=policies,
        generators=generators,
    )
    per_step = tuple(s for s in schedules if s.interval == "step")
    per_epoch = [s for s in schedules if s.interval == "epoch"]
    run = _Run(model, step, optimizer, grad_clip, summarize, per_step, policies, progress)
    epochs = most_epochs(policies)
    seconds_before, started = state.seconds, time.perf_counter()

    def clock() -> float:
        return seconds_before + time.perf_counter() - started

    try:
        while state.stopped_by is None:
            epoch, start = len(state.history) + 1, time.perf_counter()
            label = f"{desc} epoch {epoch}/{epochs}".strip()
            train, lr = _train_epoch(run, batches(epoch), state, epoch, label, clock)
            val = dict(validate())
            _check_validation(val, needed)
            record = {"epoch": epoch, **train, **val, **({"lr": lr} if log_lr else {})}
            record["seconds"] = time.perf_counter() - start
            best = state.update(record, model, improvement.judge(state, record))
            for schedule in per_epoch:
                schedule.step(record[f"val_{monitor}"])
            state.seconds = clock()
            state.stopped_by = stop_reason(policies, state)
            if directory is not None:
                save_epoch(
                    directory,
                    model=model,
                    optimizer=optimizer,
                    state=state,
                    config=config_json,
                    improved=best,
                    generators=generators,
                    settings=settings,
                    schedules=schedules,
                )
    except KeyboardInterrupt:
        if directory is not None:
            logger.warning(
                "training interrupted after %d finished epoch(s); the latest saved one is in "
                "%s; run it again with resume=True to continue",
                len(state.history),
                directory / LAST,
            )
        raise
    if state.best_state is not None:  # always, under the default rule
        unwrap_model(model).load_state_dict(state.best_state)
    return state
