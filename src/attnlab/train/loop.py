"""Fit and evaluate classification-style models: early stopping, checkpoints, resume.

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
import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attnlab.train._batch import LossFn, Totals, forward, model_device, train_epoch
from attnlab.train._fitstate import (
    BEST,
    LAST,
    FitState,
    loader_generators,
    restore_rng,
    resume_fit,
    save_epoch,
)
from attnlab.train._storage import has_checkpoint
from attnlab.train.checkpoint import normalize_config, unwrap_model

__all__ = ["FitResult", "evaluate", "fit"]

logger = logging.getLogger(__name__)

_MONITORS = ("accuracy", "loss")


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
    device, totals = model_device(model), Totals()
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                logits, target = forward(model, batch, device)
                totals.add(loss_fn(logits, target), logits, target)
    finally:
        model.train(was_training)
    return totals.metrics("the loader")


def _run_epoch(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any],
    *,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    grad_clip: float | None,
    progress: bool,
    label: str,
) -> dict[str, float]:
    start = time.perf_counter()
    bar = tqdm(
        train_loader,
        desc=label,
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    with bar:
        train = train_epoch(model, bar, optimizer, loss_fn, grad_clip)
        if not math.isfinite(train["loss"]):
            raise FloatingPointError(
                f"training loss became {train['loss']} in epoch {epoch}; "
                "lower the learning rate or set grad_clip"
            )
        val = evaluate(model, val_loader, loss_fn=loss_fn)
        bar.set_postfix(
            loss=f"{train['loss']:.4f}",
            acc=f"{train['accuracy']:.3f}",
            val_loss=f"{val['loss']:.4f}",
            val_acc=f"{val['accuracy']:.3f}",
        )
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "seconds": time.perf_counter() - start,
    }


def _check_arguments(
    epochs: int,
    patience: int | None,
    monitor: str,
    grad_clip: float | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
    ):
        raise ValueError(
            f"patience must be a positive int (epochs without improvement) or None; "
            f"got {patience!r}"
        )
    if monitor not in _MONITORS:
        raise ValueError(f"monitor must be one of {_MONITORS}; got {monitor!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(
            f"grad_clip must be a positive max gradient norm or None; got {grad_clip!r}"
        )
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from; pass checkpoint_dir")


def _result(state: FitState, epochs: int, patience: int | None) -> FitResult:
    exhausted = patience is not None and state.bad_epochs >= patience
    return FitResult(
        best_epoch=state.best_epoch,
        best_metrics=dict(state.history[state.best_epoch - 1]),
        history=[dict(record) for record in state.history],
        stopped_early=exhausted and len(state.history) < epochs,
        epochs_run=len(state.history),
        seconds=state.seconds,
    )


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

    Returns:
        The `FitResult`; the model holds the best epoch's weights.

    Raises:
        FileExistsError: If `checkpoint_dir` already holds a run and `resume` is False.
        ValueError: If an argument is invalid or the checkpoint belongs to another run.
        CheckpointMismatchError: If the checkpoint was written by a different model or
            config, or its `best/` by another run.
        CheckpointDamagedError: If a checkpoint file is garbled, a link, or disagrees with
            its manifest (one line naming the file).
        FloatingPointError: If the training loss becomes NaN or infinite.
        KeyboardInterrupt: Re-raised after an interruption; with `checkpoint_dir` the
            last finished epoch is on disk.
    """
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    _check_arguments(epochs, patience, monitor, grad_clip, directory, resume)
    config_json = normalize_config(config)
    generators = loader_generators(train_loader, "train") | loader_generators(val_loader, "val")
    state = FitState(monitor=monitor)
    if directory is not None and any(has_checkpoint(directory / d) for d in (LAST, BEST)):
        if not resume:
            raise FileExistsError(
                f"{directory} already holds a training checkpoint; pass resume=True to continue "
                "it or choose another checkpoint_dir"
            )
        state = resume_fit(
            directory, model=model, optimizer=optimizer, monitor=monitor, config=config_json
        )
        if not state.finished(epochs, patience):
            # Last step before training: nothing may draw random numbers in between.
            restore_rng(state, generators)
    settings = {"epochs": epochs, "patience": patience, "monitor": monitor, "grad_clip": grad_clip}
    seconds_before, started = state.seconds, time.perf_counter()
    try:
        while not state.finished(epochs, patience):
            epoch = len(state.history) + 1
            record = _run_epoch(
                model,
                train_loader,
                val_loader,
                epoch=epoch,
                optimizer=optimizer,
                loss_fn=loss_fn,
                grad_clip=grad_clip,
                progress=progress,
                label=f"{desc} epoch {epoch}/{epochs}".strip(),
            )
            improved = state.update(record, model)
            state.seconds = seconds_before + time.perf_counter() - started
            if directory is not None:
                save_epoch(
                    directory,
                    model=model,
                    optimizer=optimizer,
                    state=state,
                    config=config_json,
                    improved=improved,
                    generators=generators,
                    settings=settings,
                )
    except KeyboardInterrupt:
        if directory is not None:
            logger.warning(
                "fit interrupted after %d finished epoch(s); the latest saved one is in %s; "
                "call fit(..., resume=True) to continue",
                len(state.history),
                directory / LAST,
            )
        raise
    assert state.best_state is not None  # at least one epoch ran or was resumed
    unwrap_model(model).load_state_dict(state.best_state)
    return _result(state, epochs, patience)
