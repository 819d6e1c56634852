"""Training under a wall-clock budget, for models that compute their own loss.

:func:`fit` is for classifiers (logits and class targets). Sequence models such as
:class:`attnlab.models.Seq2Seq` return their loss from a step function and are
compared "at the same training budget": :func:`fit_budget` trains epoch after epoch
until ``budget_seconds`` run out (checked after every step, validation included),
halves the learning rate when the validation metric stops improving (Luong et al.
2015), keeps the best epoch's weights and can resume from its checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attnlab.train._fitstate import copy_state
from attnlab.train._integrity import damaged, require
from attnlab.train._storage import MANIFEST, has_checkpoint
from attnlab.train.checkpoint import (
    CheckpointInfo,
    check_config,
    load_checkpoint,
    normalize_config,
    read_checkpoint,
    save_checkpoint,
)

__all__ = ["BudgetResult", "fit_budget"]

_RESTART = "resume with the flags this run was started with, or start it afresh"
_STOPS = ("budget", "epochs", "patience")

StepFn = Callable[[Any], tuple[Tensor, Tensor, Tensor]]  # batch -> (loss, summed nll, tokens)


@dataclass
class BudgetResult:
    """How a budgeted training went.

    Attributes:
        best_epoch: epoch (1-based) whose weights the model holds.
        best_metric: its validation metric (lower is better).
        history: one record per epoch (train loss, val metric, lr, seconds).
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
) -> BudgetResult:
    """Train until the budget, the epochs or the patience run out; keep the best weights.

    Args:
        model: the model (left holding the best epoch's weights).
        batches: ``batches(epoch)`` yields the training batches of that epoch (shuffle
            with the epoch as seed, so a resumed run sees the same order).
        step: ``step(batch) -> (loss, summed_nll, tokens)``; ``loss`` is backpropagated.
        validate: returns the validation metric, lower is better (e.g. perplexity).
        optimizer: its learning rates are multiplied by ``decay`` after an epoch
            without improvement.
        budget_seconds: wall-clock limit for training plus validation; the epoch in
            progress stops early when it is reached and is then validated.
        max_epochs: most epochs.
        patience: stop after this many epochs without improvement (None: never).
        grad_clip: clip the gradient norm to this (None: no clipping).
        decay: learning-rate factor on a plateau (1.0 keeps it).
        warmup_steps: the learning rate rises linearly from ``lr / warmup_steps`` to
            ``lr`` over the first optimizer steps (Transformers train badly without).
        checkpoint_dir: where ``last/`` and ``best/`` go after every epoch; an existing
            ``last/`` is resumed (elapsed time included).
        config: the run's config (dict or dataclass), saved with the checkpoints; a
            checkpoint saved with another config is refused on resume, never mixed in.
        progress: show a tqdm bar per epoch.
        desc: bar label.

    Returns:
        A :class:`BudgetResult`.
    """
    if not budget_seconds > 0 or max_epochs < 1:
        raise ValueError(
            f"budget_seconds must be > 0 and max_epochs >= 1; got {budget_seconds}, {max_epochs}"
        )
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    config = normalize_config(config)
    result = BudgetResult(best_epoch=0, best_metric=math.inf)
    best_state = None
    if directory is not None and has_checkpoint(directory / "last"):
        info = load_checkpoint(directory / "last", model=model, optimizer=optimizer, config=config)
        result = _recorded_result(directory / "last", info, max_epochs)
        best_state = copy_state(model)
        if has_checkpoint(directory / "best"):
            best, best_state, _ = read_checkpoint(directory / "best", model=model)
            check_config(directory / "best", best.config, config, _RESTART)
    started = time.perf_counter() - result.seconds
    deadline = started + budget_seconds
    bad = sum(1 for r in result.history if r["epoch"] > result.best_epoch)
    while len(result.history) < max_epochs and result.stopped_by != "budget":
        if patience is not None and bad >= patience:
            result.stopped_by = "patience"
            break
        epoch = len(result.history) + 1
        train_loss, out_of_time, result.steps = _epoch(
            model,
            batches(epoch),
            step,
            optimizer,
            grad_clip,
            deadline,
            progress,
            f"{desc} epoch {epoch}".strip(),
            _Warmup(warmup_steps, result.steps),
        )
        metric = validate()
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_metric": metric,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        result.history.append(record)
        result.seconds = record["seconds"]
        if metric < result.best_metric:
            result.best_epoch, result.best_metric, bad = epoch, metric, 0
            best_state = copy_state(model)
        else:
            bad += 1
            for group in optimizer.param_groups:
                group["lr"] *= decay
                if "peak_lr" in group:  # warm-up's target decays with it
                    group["peak_lr"] *= decay
        if out_of_time or time.perf_counter() >= deadline:
            result.stopped_by = "budget"
        if directory is not None:
            _save(directory, model, optimizer, result, config, improved=result.best_epoch == epoch)
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _recorded_result(directory: Path, info: CheckpointInfo, max_epochs: int) -> BudgetResult:
    """The :class:`BudgetResult` a checkpoint recorded, every field checked."""
    path = directory / MANIFEST
    extra = info.extra if isinstance(info.extra, dict) else {}
    record = require(path, extra, "result", "an object")
    history = require(path, record, "history", "a list of objects")
    if len(history) != info.epoch or not 1 <= info.epoch <= max_epochs:
        raise damaged(path, f"it records epoch {info.epoch} with {len(history)} epochs of history")
    stopped_by = require(path, record, "stopped_by", "a string")
    if stopped_by not in _STOPS:
        raise damaged(path, f"'stopped_by' is {stopped_by!r}, expected one of {_STOPS}")
    return BudgetResult(
        best_epoch=require(path, record, "best_epoch", "an integer", low=1, high=info.epoch),
        best_metric=require(path, record, "best_metric", "a number"),
        history=history,
        seconds=require(path, record, "seconds", "a number", low=0),
        stopped_by=stopped_by,
        steps=require(path, record, "steps", "an integer", low=0),
    )


def _epoch(
    model: nn.Module,
    batches: Iterable[Any],
    step: StepFn,
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    deadline: float,
    progress: bool,
    label: str,
    warmup: _Warmup,
) -> tuple[float, bool, int]:
    model.train()
    total, tokens, out_of_time = 0.0, 0, False
    bar = tqdm(
        batches, desc=label, unit="batch", disable=not progress, leave=False, dynamic_ncols=True
    )
    for batch in bar:
        loss, nll, count = step(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {float(loss)} ({label}); lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        warmup.apply(optimizer)
        optimizer.step()
        total, tokens = total + float(nll), tokens + int(count)
        bar.set_postfix(ppl=f"{math.exp(min(total / max(tokens, 1), 50)):.1f}")
        if time.perf_counter() >= deadline:
            out_of_time = True
            break
    bar.close()
    return total / max(tokens, 1), out_of_time, warmup.step


class _Warmup:
    """Linear warm-up: step ``n`` (1-based) of ``total`` runs at ``peak_lr * n / total``."""

    def __init__(self, total: int, step: int) -> None:
        self.total, self.step = total, step

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        self.step += 1
        if self.step > self.total:
            return
        for group in optimizer.param_groups:
            peak = group.setdefault("peak_lr", group["lr"])
            group["lr"] = peak * min(1.0, self.step / max(self.total, 1))


def _save(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    result: BudgetResult,
    config: dict[str, Any],
    *,
    improved: bool,
) -> None:
    extra = {"result": {k: getattr(result, k) for k in BudgetResult.__dataclass_fields__}}
    common = {"epoch": len(result.history), "config": config, "history": result.history}
    save_checkpoint(directory / "last", model=model, optimizer=optimizer, extra=extra, **common)
    if improved:
        save_checkpoint(directory / "best", model=model, extra=extra, **common)
