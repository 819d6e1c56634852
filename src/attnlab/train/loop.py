"""Fit and evaluate classification-style models: early stopping, checkpoints, resume.

`fit` is the classifier entry point of the one training loop (`engine.train_loop`): its
step runs the model on a batch and scores logits against class targets.

A batch is a tuple or list whose last element is the integer target tensor `(B,)`;
the model is called as `model(*batch[:-1])` and returns logits `(B, C)`. Tensors in
the batch are moved to the device of the model's first parameter.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from attnlab.train import fit, seed_everything
    >>> g = seed_everything(0)
    >>> x = torch.randn(64, 2)
    >>> y = (x[:, 0] > 0).long()
    >>> model = torch.nn.Linear(2, 2)
    >>> data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g)
    >>> result = fit(model, data, data, optimizer=torch.optim.Adam(model.parameters(), lr=0.1),
    ...              epochs=5, progress=False)
    >>> result.best_metrics["val_accuracy"] > 0.8
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.train._batch import (
    LossFn,
    Sums,
    accumulate,
    classify_metrics,
    classify_sums,
    forward,
    model_device,
)
from attnlab.train._fitstate import CLASSIFIER_MODES, FitState, loader_generators
from attnlab.train.checkpoint import normalize_config
from attnlab.train.engine import train_loop
from attnlab.train.policies import Epochs, Patience, StopPolicy
from attnlab.train.schedules import SchedulerArg

__all__ = ["FitResult", "evaluate", "fit"]

_MONITORS = tuple(CLASSIFIER_MODES)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """Outcome of `fit`.

    Attributes:
        best_epoch: 1-based epoch with the best monitored validation metric; the
            model holds this epoch's weights when `fit` returns.
        best_metrics: That epoch's record from `history`.
        history: One dict per epoch: `epoch`, `train_loss`, `train_accuracy`,
            `val_loss`, `val_accuracy` (fractions in [0, 1]) and `seconds`.
        stopped_early: Whether patience ran out before the last epoch.
        epochs_run: Number of epochs in `history` (including resumed ones).
        seconds: Training wall time over all sessions of the run.
    """

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped_early: bool
    epochs_run: int
    seconds: float


def evaluate(
    model: nn.Module, loader: Iterable[Any], *, loss_fn: LossFn = F.cross_entropy
) -> dict[str, float]:
    """Mean loss and accuracy of `model` over `loader`, in eval mode without gradients.

    The model's train/eval mode is restored afterwards.

    Args:
        model: Classifier returning logits `(B, C)`.
        loader: Iterable of batches `(inputs..., target)`.
        loss_fn: Mean-reduced loss `loss_fn(logits, target)`; averaged over samples.

    Returns:
        `{"loss": float, "accuracy": float}`, accuracy a fraction in [0, 1].

    Raises:
        TypeError: If a batch or its target has the wrong form.
        ValueError: If the model output is not `(B, C)` or the loader is empty.
    """
    was_training = model.training
    device, sums = model_device(model), {}
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                logits, target = forward(model, batch, device)
                accumulate(sums, classify_sums(loss_fn(logits, target), logits, target))
    finally:
        model.train(was_training)
    return classify_metrics(sums, "the loader")


def _result(state: FitState) -> FitResult:
    return FitResult(
        best_epoch=state.best_epoch,
        best_metrics=dict(state.history[state.best_epoch - 1]),
        history=[dict(record) for record in state.history],
        stopped_early=state.stopped_by == Patience.reason,
        epochs_run=len(state.history),
        seconds=state.seconds,
    )


def _train_metrics(sums: Sums) -> dict[str, float]:
    metrics = classify_metrics(sums, "the train loader")
    return {"train_loss": metrics["loss"], "train_accuracy": metrics["accuracy"]}


def fit(
    model: nn.Module,
    train_loader: Iterable[Sequence[Any]],
    val_loader: Iterable[Sequence[Any]],
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    patience: int | None = None,
    monitor: str = "accuracy",
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    grad_clip: float | None = None,
    progress: bool = True,
    desc: str = "",
    config: Any = None,
    loss_fn: LossFn = F.cross_entropy,
    lr_scheduler: SchedulerArg = None,
) -> FitResult:
    """Train with validation after every epoch; keep and restore the best weights.

    With `checkpoint_dir`, `last/` (everything needed to continue, RNG states included)
    is saved after every epoch and `best/` whenever the monitored metric improves; a
    run interrupted at any point can be resumed with `resume=True` and continues as
    if it had never stopped (same shuffles, same weights), given loaders built the same
    way (shuffle with a DataLoader `generator`, or rely on torch's global generator).

    Args:
        model: Classifier returning logits `(B, C)` for `model(*batch[:-1])`.
        train_loader: Iterable of training batches `(inputs..., target)`.
        val_loader: Iterable of validation batches.
        optimizer: Optimizer over the model's parameters.
        epochs: Total number of epochs (counting resumed ones).
        patience: Stop after this many epochs without improvement; None never stops.
        monitor: Validation metric to select on: "accuracy" (higher is better) or
            "loss" (lower is better); ties keep the earlier epoch.
        checkpoint_dir: Directory for `last/` and `best/` checkpoints, or None.
        resume: Continue from `checkpoint_dir/last` if present (start fresh if not).
            A finished run is returned as stored, without training.
        grad_clip: Clip the gradient norm to this value, or None.
        progress: Show a tqdm bar per epoch with running loss and accuracy.
        desc: Prefix for the progress bar.
        config: JSON-serialisable dict or dataclass saved with checkpoints; when
            resuming, a non-empty config must equal the saved one.
        loss_fn: Mean-reduced loss `loss_fn(logits, target)`.
        lr_scheduler: Learning-rate scheduler(s) on `optimizer`, stepped per optimizer
            step or per epoch as each declares (`attnlab.train.schedules`); a
            `ReduceLROnPlateau` gets the monitored validation metric. Saved in `last/`.

    Returns:
        The `FitResult`; the model holds the best epoch's weights.

    Raises:
        FileExistsError: If `checkpoint_dir` already holds a run and `resume` is False.
        ValueError: If an argument is invalid or the checkpoint belongs to another run.
        CheckpointMismatchError: If the checkpoint was written by a different model,
            config or schedulers, or its `best/` by another run.
        CheckpointDamagedError: If a checkpoint file is garbled, a link, or disagrees with
            its manifest (one line naming the file).
        FloatingPointError: If the training loss becomes NaN or infinite.
        KeyboardInterrupt: Re-raised after an interruption; with `checkpoint_dir` the
            last finished epoch is on disk.
    """
    if monitor not in _MONITORS:
        raise ValueError(f"monitor must be one of {_MONITORS}; got {monitor!r}")
    stop: list[StopPolicy] = [Epochs(epochs)]
    if patience is not None:
        stop.append(Patience(patience))
    device = model_device(model)

    def step(batch: Any) -> tuple[Tensor, dict[str, Any]]:
        logits, target = forward(model, batch, device)
        loss = loss_fn(logits, target)
        return loss, classify_sums(loss, logits, target)

    def validate() -> dict[str, float]:
        # Looked up at call time, so a patched `evaluate` is the one that runs.
        return {f"val_{k}": v for k, v in evaluate(model, val_loader, loss_fn=loss_fn).items()}

    config_json = normalize_config(config)
    state = train_loop(
        model,
        lambda epoch: train_loader,
        step=step,
        validate=validate,
        optimizer=optimizer,
        stop=stop,
        monitor=monitor,
        mode=CLASSIFIER_MODES[monitor],
        summarize=_train_metrics,
        lr_scheduler=lr_scheduler,
        grad_clip=grad_clip,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        config=config_json or None,  # an empty config is not compared on resume
        generators=loader_generators(train_loader, "train") | loader_generators(val_loader, "val"),
        progress=progress,
        desc=desc,
    )
    return _result(state)
