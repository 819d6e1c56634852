"""Training under a wall-clock budget, for models that compute their own loss.

:func:`fit` is for classifiers (logits and class targets). Sequence models such as
:class:`attnlab.models.Seq2Seq` return their loss from a step function and are
compared "at the same training budget": :func:`fit_budget` trains epoch after epoch
until ``budget_seconds`` run out (checked after every step, validation included),
halves the learning rate when the validation metric stops improving (Luong et al.
2015), keeps the best epoch's weights and resumes exactly from its checkpoints.

It is the budgeted entry point of the one training loop
(:func:`attnlab.train.engine.train_loop`): the stopping policies are
``Budget(budget_seconds)``, ``Epochs(max_epochs)`` and ``Patience(patience)``, the
warm-up is a :class:`~attnlab.train.schedules.LinearWarmup` and the decay on a plateau
a :class:`~attnlab.train.schedules.PlateauDecay`, both saved in the checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.train._batch import Sums
from attnlab.train.checkpoint import normalize_config
from attnlab.train.engine import train_loop
from attnlab.train.policies import Budget, Epochs, Patience, StopPolicy
from attnlab.train.schedules import (
    LinearWarmup,
    PlateauDecay,
    Scheduled,
    SchedulerArg,
    as_schedules,
)

__all__ = ["BudgetResult", "fit_budget"]

StepFn = Callable[[Any], tuple[Tensor, Tensor, Tensor]]  # batch -> (loss, summed nll, tokens)


@dataclass
class BudgetResult:
    """How a budgeted training went.

    Attributes:
        best_epoch: epoch (1-based) whose weights the model holds.
        best_metric: its validation metric (lower is better).
        history: one record per epoch (train loss per token, val metric, the learning
            rate of the epoch's last step, seconds of the epoch).
        seconds: wall-clock seconds of training and validation, over resumptions.
        stopped_by: ``"budget"``, ``"epochs"`` or ``"patience"``.
        steps: optimizer steps taken (the warm-up resumes from it).
    """

    best_epoch: int
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "epochs"
    steps: int = 0


def _per_token(sums: Sums) -> dict[str, float]:
    return {"train_loss": float(sums.get("nll", 0.0)) / max(int(sums.get("tokens", 0)), 1)}


def budget_schedules(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay: float
) -> list[Scheduled]:
    """The schedules of :func:`fit_budget`: linear warm-up, then decay on a plateau.

    Args:
        optimizer: The optimizer; its rates are the peaks.
        warmup_steps: Steps of the linear warm-up (0: none).
        decay: Factor on a plateau (1.0: none); a plateau during the warm-up lowers
            the peak it climbs to as well.

    Returns:
        The schedules, in the order the loop steps them.
    """
    warmup = LinearWarmup(optimizer, warmup_steps) if warmup_steps != 0 else None
    schedules = [Scheduled(warmup, "step")] if warmup is not None else []
    if decay != 1.0:
        schedules.append(Scheduled(PlateauDecay(optimizer, decay, warmup=warmup), "epoch"))
    return schedules


def fit_budget(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    *,
    step: StepFn,
    validate: Callable[[], float],
    optimizer: torch.optim.Optimizer,
    budget_seconds: float,
    max_epochs: int,
    patience: int | None = None,
    grad_clip: float | None = 1.0,
    decay: float = 0.5,
    warmup_steps: int = 0,
    checkpoint_dir: str | Path | None = None,
    config: Any = None,
    progress: bool = True,
    desc: str = "",
    lr_scheduler: SchedulerArg = None,
) -> BudgetResult:
    """Train until the budget, the epochs or the patience run out; keep the best weights.

    Args:
        model: the model (left holding the best epoch's weights).
        batches: ``batches(epoch)`` yields the training batches of that epoch (shuffle
            with the epoch as seed, or with torch's global generator, which resumes).
        step: ``step(batch) -> (loss, summed_nll, tokens)``; ``loss`` is backpropagated.
        validate: returns the validation metric, lower is better (e.g. perplexity).
        optimizer: its learning rates are the peaks of the schedule.
        budget_seconds: wall-clock limit for training plus validation; the epoch in
            progress stops early when it is reached and is then validated.
        max_epochs: most epochs.
        patience: stop after this many epochs without improvement (None: never).
        grad_clip: clip the gradient norm to this (None: no clipping).
        decay: learning-rate factor after an epoch without improvement, in [0, 1]
            (1.0 keeps it).
        warmup_steps: the learning rate rises linearly from ``lr / warmup_steps`` to
            ``lr`` over the first optimizer steps (Transformers train badly without).
        checkpoint_dir: where ``last/`` and ``best/`` go after every epoch; an existing
            ``last/`` is resumed (elapsed time, RNG and schedule included).
        config: the run's config (dict or dataclass), saved with the checkpoints; a
            checkpoint saved with another config is refused on resume, never mixed in.
        progress: show a tqdm bar per epoch.
        desc: bar label.
        lr_scheduler: further learning-rate scheduler(s), stepped after the warm-up and
            the decay (see :mod:`attnlab.train.schedules`).

    Returns:
        A :class:`BudgetResult`.

    Raises:
        ValueError: If an argument is invalid or the checkpoint belongs to another run
            (see :func:`~attnlab.train.engine.train_loop` for the checkpoint errors).
    """
    stop: list[StopPolicy] = [Budget(budget_seconds), Epochs(max_epochs)]
    if patience is not None:
        stop.append(Patience(patience))
    schedules = budget_schedules(optimizer, warmup_steps, decay)
    schedules += as_schedules(lr_scheduler, optimizer)

    def token_step(batch: Any) -> tuple[Tensor, dict[str, Any]]:
        loss, nll, tokens = step(batch)
        return loss, {"nll": nll, "tokens": tokens}

    state = train_loop(
        model,
        batches,
        step=token_step,
        validate=lambda: {"val_metric": validate()},
        optimizer=optimizer,
        stop=stop,
        monitor="metric",
        mode="min",
        summarize=_per_token,
        lr_scheduler=schedules,
        grad_clip=grad_clip,
        checkpoint_dir=checkpoint_dir,
        resume=checkpoint_dir is not None,  # an existing last/ is always continued
        config=normalize_config(config),  # compared on resume even when empty
        log_lr=True,
        progress=progress,
        desc=desc,
    )
    return BudgetResult(
        best_epoch=state.best_epoch,
        best_metric=state.best_value,
        history=state.history,
        seconds=state.seconds,
        stopped_by=state.stopped_by or Epochs.reason,
        steps=state.steps,
    )
