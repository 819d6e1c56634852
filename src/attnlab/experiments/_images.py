"""What every image experiment shares: splits, augmented batches, budgeted training, scores.

An image experiment loads its data into an :class:`ImageSplits` (train, validation and
test :class:`Split` tensors, normalisation from the training images), then for each
(model, seed) calls :func:`train_seed`: it seeds, builds the model, trains it on the
one training loop (:func:`attnlab.train.train_loop`) under a wall-clock
:class:`~attnlab.train.Budget` with the learning rate decaying linearly to zero over
the budget (:class:`~attnlab.train.BudgetDecay`), keeps the best validation epoch, scores the test
split and returns the :class:`~attnlab.experiments.SeedResult` with the test score,
the seconds per epoch and the parameter count. The task says what is learned:
:data:`CLASSIFY` (class logits ``(B, K)``, accuracy) or :data:`SEGMENT` (one logit
per pixel ``(B, 1, H, W)``, Dice). The data pieces live in
:mod:`attnlab.experiments._image_data` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.experiments import _checks as checks
from attnlab.experiments._framework import run_models
from attnlab.experiments._image_data import (
    ImageSplits,
    Split,
    as_float,
    augment,
    epoch_batches,
    holdout,
)
from attnlab.experiments._results import ModelResult, SeedResult, count_parameters
from attnlab.experiments._rundir import RunDir
from attnlab.experiments._settings import Checked
from attnlab.train import Budget, BudgetDecay, Epochs, seed_everything, train_loop
from attnlab.train.engine import mean_loss

__all__ = [
    "CLASSIFY",
    "SEGMENT",
    "Fitted",
    "ImageSplits",
    "ImageTask",
    "ImageTraining",
    "Split",
    "as_float",
    "augment",
    "dice_per_image",
    "epoch_batches",
    "fit_budgeted",
    "fit_images",
    "holdout",
    "predict",
    "seed_budget",
    "train_seed",
]

# Share of --budget-minutes given to training and validation; the rest covers loading
# the data, scoring the test split and drawing (measured: about a tenth on 2 cores).
TRAINING_SHARE = 0.85
_EVAL_BATCH = 500


def dice_per_image(predicted: Tensor, masks: Tensor, eps: float = 1.0) -> Tensor:
    r"""Dice of each image, :math:`(2 \sum p m + \epsilon) / (\sum p + \sum m + \epsilon)`.

    ``predicted`` holds probabilities (the soft Dice, a loss) or 0/1 pixels (the
    score); ``eps`` makes an empty prediction of an empty mask score 1.

    Shapes:
        predicted, masks: ``(B, 1, H, W)``; output ``(B,)``.

    Example:
        >>> masks = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
        >>> dice_per_image(torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]), masks, eps=0.0)
        tensor([0.6667])
    """
    p, m = predicted.float().flatten(1), masks.float().flatten(1)
    return (2 * (p * m).sum(1) + eps) / (p.sum(1) + m.sum(1) + eps)


def _hard_dice(logits: Tensor, masks: Tensor) -> Tensor:
    return dice_per_image((logits > 0).float(), masks)


def _segment_loss(logits: Tensor, masks: Tensor) -> Tensor:
    # BCE alone neglects small targets; the soft Dice term weighs each image equally.
    bce = F.binary_cross_entropy_with_logits(logits, masks.float())
    return bce + (1 - dice_per_image(torch.sigmoid(logits), masks)).mean()


@dataclass(frozen=True)
class ImageTask:
    """What a model learns: its loss and the per-example score the run reports.

    Attributes:
        metric: The score's name (``accuracy``, ``dice``): ``test_<metric>`` in results.
        loss: Mean loss ``loss(outputs, targets)``.
        score: Per-example score ``score(outputs, targets) -> (B,)``, higher is better.
    """

    metric: str
    loss: Callable[[Tensor, Tensor], Tensor]
    score: Callable[[Tensor, Tensor], Tensor]


CLASSIFY = ImageTask("accuracy", F.cross_entropy, lambda out, y: (out.argmax(-1) == y).float())
SEGMENT = ImageTask("dice", _segment_loss, _hard_dice)


@dataclass(frozen=True)
class ImageTraining(Checked):
    """Training settings of the image experiments (AdamW under a wall-clock budget).

    Attributes:
        seeds: training runs per model (seeds 0..N-1), all on the same split.
        epochs: most epochs per run; the learning rate reaches zero at the last one or
            at the end of the budget, whichever comes first.
        batch_size: images per batch.
        lr: AdamW peak learning rate.
        weight_decay: AdamW's decoupled weight decay (not on biases and norms).
        warmup: share of the schedule spent warming the learning rate up linearly.
        budget_minutes: wall-clock minutes for the whole run on this machine; each
            (model, seed) trains and validates for an equal share of 85% of it.
        augment: random crops (2-pixel shifts) and horizontal flips of training images.
        device: cpu, cuda, cuda:N, or auto (CUDA when there is one).
    """

    seeds: int = 3
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    budget_minutes: float = 30.0
    augment: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "seeds", "epochs", "batch_size")
        checks.at_least(self, 0, "weight_decay")
        checks.positive(self, "lr", "budget_minutes")
        checks.fraction(self, "warmup")
        checks.device(self, auto=True)

    def torch_device(self) -> torch.device:
        """The device to train on (``auto`` resolved)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def seed_budget(settings: ImageTraining, runs: int) -> float:
    """Seconds of training and validation for each of ``runs`` (model, seed) pairs."""
    return settings.budget_minutes * 60 * TRAINING_SHARE / runs


@dataclass(frozen=True)
class Fitted:
    """How one model trained.

    Attributes:
        best_epoch: Epoch (1-based) whose weights the model holds.
        epochs: Epochs run (the last one cut short when the budget ran out).
        steps: Optimizer steps taken.
        seconds: Seconds of training and validation, over resumed sessions.
        seconds_per_epoch: ``seconds`` per full pass over the training split.
        stopped_by: ``"budget"`` or ``"epochs"``.
        val_score: The best epoch's validation score.
    """

    best_epoch: int
    epochs: int
    steps: int
    seconds: float
    seconds_per_epoch: float
    stopped_by: str
    val_score: float

    def extras(self, metric: str) -> dict[str, Any]:
        """The per-seed record every image experiment keeps (``val_<metric>``, epochs, stop)."""
        return {
            f"val_{metric}": self.val_score,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "stopped_by": self.stopped_by,
        }

    @property
    def note(self) -> str:
        """The progress line's summary: ``5 epochs, best 4, stopped by budget``."""
        return f"{self.epochs} epochs, best {self.best_epoch}, stopped by {self.stopped_by}"


def predict(model: nn.Module, data: ImageSplits, images: Tensor) -> Tensor:
    """The model's outputs for ``images`` (eval mode, no gradients, in batches), on the CPU."""
    device = next(iter(model.parameters())).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = [model(data.prepare(x, device)).float().cpu() for x in images.split(_EVAL_BATCH)]
    finally:
        model.train(training)
    return torch.cat(outs)


def _evaluate(model: nn.Module, data: ImageSplits, split: Split, task: ImageTask) -> dict:
    out = predict(model, data, split.images)
    loss = float(task.loss(out, split.targets))
    return {"loss": loss, task.metric: float(task.score(out, split.targets).mean())}


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay weights of linear maps and convolutions, not biases and norm scales (timm's rule).
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def fit_budgeted(
    model: nn.Module,
    settings: ImageTraining,
    *,
    batches: Callable[[int], Iterable[Any]],
    steps_per_epoch: int,
    step: Callable[[Any], tuple[Tensor, dict[str, Any]]],
    validate: Callable[[], dict[str, float]],
    monitor: str,
    mode: str = "max",
    summarize: Callable[[dict[str, Any]], dict[str, float]] = mean_loss,
    grad_clip: float | None = None,
    budget_seconds: float,
    lr: float | None = None,
    weight_decay: float | None = None,
    checkpoint_dir: Path | None = None,
    config: dict[str, Any] | None = None,
    desc: str = "",
) -> Fitted:
    """Train any model with AdamW under a wall-clock budget; keep the best validation epoch.

    The recipe every image experiment shares (captions, questions and DRAW's images
    included): AdamW with decay on weights only, :class:`~attnlab.train.BudgetDecay`
    (warm-up, then linear decay to zero at ``settings.epochs`` or at the end of the
    budget), the one training loop with resumable checkpoints. What a batch is and how
    it is scored is the caller's: ``batches``, ``step``, ``validate``.

    Args:
        model: The model, on its device (left holding the best epoch's weights).
        settings: Epochs, rates, warm-up (``settings.batch_size`` is the caller's business).
        batches: ``batches(epoch)``: the training batches of a 1-based epoch.
        steps_per_epoch: Batches per epoch (sizes the schedule).
        step: ``step(batch) -> (loss, sums)``, as :func:`~attnlab.train.train_loop` takes.
        validate: The validation metrics, ``val_<monitor>`` among them.
        monitor: The validation metric that picks the best epoch (without ``val_``).
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        summarize: Turns an epoch's summed ``sums`` into its training metrics.
        grad_clip: Clip the gradient norm to this (recurrent models), or None.
        budget_seconds: Seconds of training and validation (:class:`~attnlab.train.Budget`).
        lr: Peak rate instead of ``settings.lr``.
        weight_decay: Instead of ``settings.weight_decay``.
        checkpoint_dir: Where ``last/`` and ``best/`` go after every epoch; an
            unfinished run there is resumed, a finished one read back.
        config: Recorded with the checkpoints; a resume must match it.
        desc: Progress bar label.

    Returns:
        How the training went.
    """
    optimizer = torch.optim.AdamW(
        _param_groups(model, settings.weight_decay if weight_decay is None else weight_decay),
        lr=settings.lr if lr is None else lr,
    )
    schedule = BudgetDecay(
        optimizer,
        total_steps=settings.epochs * steps_per_epoch,
        budget_seconds=budget_seconds,
        warmup=settings.warmup,
    )
    state = train_loop(
        model,
        batches,
        step=step,
        validate=validate,
        optimizer=optimizer,
        stop=(Budget(budget_seconds), Epochs(settings.epochs)),
        monitor=monitor,
        mode=mode,
        summarize=summarize,
        lr_scheduler=schedule,
        grad_clip=grad_clip,
        checkpoint_dir=checkpoint_dir,
        resume=checkpoint_dir is not None,
        config=config,
        progress=False,
        desc=desc,
    )
    passes = state.steps / steps_per_epoch
    return Fitted(
        best_epoch=state.best_epoch,
        epochs=len(state.history),
        steps=state.steps,
        seconds=state.seconds,
        seconds_per_epoch=state.seconds / passes if passes else math.nan,
        stopped_by=state.stopped_by or "epochs",
        val_score=float(state.best_value),
    )


def fit_images(
    model: nn.Module,
    data: ImageSplits,
    task: ImageTask,
    settings: ImageTraining,
    *,
    seed: int,
    budget_seconds: float,
    lr: float | None = None,
    weight_decay: float | None = None,
    checkpoint_dir: Path | None = None,
    config: dict[str, Any] | None = None,
    desc: str = "",
) -> Fitted:
    """:func:`fit_budgeted` on ``data.train``'s (augmented) images and their targets.

    Args:
        model: The model, on its device (left holding the best epoch's weights).
        data: The splits.
        task: What it learns.
        settings: Epochs, batch size, rates, warm-up, augmentation.
        seed: Orders the batches and draws the augmentations.
        budget_seconds: Seconds of training and validation (:class:`~attnlab.train.Budget`).
        lr: Peak rate instead of ``settings.lr`` (e.g. the ViT's own).
        weight_decay: Instead of ``settings.weight_decay``.
        checkpoint_dir: Where ``last/`` and ``best/`` go after every epoch; an
            unfinished run there is resumed, a finished one read back.
        config: Recorded with the checkpoints; a resume must match it.
        desc: Progress bar label.

    Returns:
        How the training went.
    """
    device = next(iter(model.parameters())).device

    def step(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        images, targets = batch
        targets = targets.to(device)
        out = model(data.prepare(images, device))
        loss = task.loss(out, targets)
        n = len(targets)
        return loss, {"loss": loss.detach() * n, "score": task.score(out.detach(), targets).sum(),
                      "count": n}  # fmt: skip

    def summarize(sums: dict[str, Any]) -> dict[str, float]:
        n = sums["count"]
        return {
            "train_loss": float(sums["loss"]) / n,
            f"train_{task.metric}": float(sums["score"]) / n,
        }

    def validate() -> dict[str, float]:
        return {f"val_{k}": v for k, v in _evaluate(model, data, data.val, task).items()}

    return fit_budgeted(
        model,
        settings,
        batches=lambda epoch: epoch_batches(
            data.train, settings.batch_size, seed=seed, epoch=epoch, augmented=settings.augment
        ),
        steps_per_epoch=math.ceil(len(data.train) / settings.batch_size),
        step=step,
        validate=validate,
        monitor=task.metric,
        summarize=summarize,
        budget_seconds=budget_seconds,
        lr=lr,
        weight_decay=weight_decay,
        checkpoint_dir=checkpoint_dir,
        config=config,
        desc=desc,
    )


def train_seed(
    build: Callable[[], nn.Module],
    data: ImageSplits,
    task: ImageTask,
    settings: ImageTraining,
    *,
    name: str,
    seed: int,
    budget_seconds: float,
    checkpoint_dir: Path | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
) -> tuple[nn.Module, SeedResult]:
    """Seed, build, train (resumably) and test one model: one step of the experiment loop.

    Args:
        build: Builds the model (called after seeding, on the CPU).
        data: The splits.
        task: What it learns.
        settings: The experiment's Config (recorded with the checkpoints).
        name: The model's name (checkpoint config and progress label).
        seed: The run's seed.
        budget_seconds: This run's training budget (:func:`seed_budget`).
        checkpoint_dir: Checkpoints of this (model, seed); None keeps none.
        lr: Peak rate instead of ``settings.lr``.
        weight_decay: Instead of ``settings.weight_decay``.

    Returns:
        The trained model (best validation epoch, eval mode) and its
        :class:`~attnlab.experiments.SeedResult`: ``test_<metric>`` and
        ``seconds_per_epoch`` as metrics, the epochs, best epoch and stop reason as extras.
    """
    seed_everything(seed)
    model = build().to(settings.torch_device(), memory_format=torch.channels_last)
    config = {"model": name, "seed": seed, "budget_seconds": budget_seconds, **asdict(settings)}
    fitted = fit_images(
        model,
        data,
        task,
        settings,
        seed=seed,
        budget_seconds=budget_seconds,
        lr=lr,
        weight_decay=weight_decay,
        checkpoint_dir=checkpoint_dir,
        config=config,
        desc=f"{name} seed {seed}",
    )
    test = _evaluate(model, data, data.test, task)[task.metric]
    model.eval()
    return model, SeedResult(
        metrics={f"test_{task.metric}": test, "seconds_per_epoch": fitted.seconds_per_epoch},
        parameters=count_parameters(model),
        seconds=fitted.seconds,
        extra=fitted.extras(task.metric),
        note=fitted.note,
    )


def train_models(
    models: Sequence[str],
    seeds: int,
    train_one: Callable[[str, int], SeedResult],
    run_dir: RunDir,
    *,
    recorded: Sequence[str],
) -> list[ModelResult]:
    """``train_one(model, seed)`` for every model over seeds ``0..seeds - 1``.

    ``recorded`` names the per-seed ``extra`` entries (epochs, best epoch, validation
    score, ...) kept in ``results.json`` as ``<name>_runs`` lists; an entry a model does
    not record is left out.
    """
    return run_models(
        models,
        range(seeds),
        train_one,
        records=run_dir,
        summary=lambda name, runs: {
            f"{key}_runs": [r.extra[key] for r in runs] for key in recorded if key in runs[0].extra
        },
    )
