"""Batches for `fit` and `evaluate`: unpacking, checking, metric totals, a training epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LossFn = Callable[[Tensor, Tensor], Tensor]


class Totals:
    """Sample-weighted loss and accuracy, summed on the device to avoid per-batch syncs."""

    def __init__(self) -> None:
        self.loss: Tensor | float = 0.0
        self.correct: Tensor | int = 0
        self.count = 0

    def add(self, loss: Tensor, logits: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            loss: The batch's mean loss.
            logits: `(B, C)` model output.
            target: `(B,)` class indices.
        """
        n = target.shape[0]
        self.loss = self.loss + loss.detach().double() * n
        self.correct = self.correct + (logits.detach().argmax(-1) == target).sum()
        self.count += n

    def metrics(self, source: str) -> dict[str, float]:
        """Mean loss and accuracy so far.

        Args:
            source: What yielded the batches, for the error message.

        Returns:
            `{"loss": float, "accuracy": float}`.

        Raises:
            ValueError: If no batch was added.
        """
        if self.count == 0:
            raise ValueError(f"{source} yielded no batches; give it at least one batch")
        return {"loss": float(self.loss) / self.count, "accuracy": float(self.correct) / self.count}


def describe(value: Any) -> str:
    """Describe a value for an error message: dtype and shape of a tensor, else its type.

    Args:
        value: Anything.

    Returns:
        E.g. `"float32 tensor of shape (4, 3)"` or `"dict"`.
    """
    if isinstance(value, Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def model_device(model: nn.Module) -> torch.device | None:
    """Device of the model's first parameter or buffer.

    Args:
        model: The model.

    Returns:
        The device, or None for a model without tensors (batches are then left as is).
    """
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def split_batch(batch: Any, device: torch.device | None) -> tuple[list[Any], Tensor]:
    """Split a batch into model inputs and target, moved to `device`, and check the target.

    Args:
        batch: Tuple or list `(inputs..., target)`.
        device: Where to move the tensors, or None to leave them.

    Returns:
        The inputs and the integer target `(B,)`.

    Raises:
        TypeError: If the batch or its target has the wrong form.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            "each batch must be a tuple or list (inputs..., target) of at least 2 elements; "
            f"got {describe(batch)}"
        )
    if device is not None:
        batch = [x.to(device, non_blocking=True) if isinstance(x, Tensor) else x for x in batch]
    *inputs, target = batch
    if (
        not isinstance(target, Tensor)
        or target.ndim != 1
        or target.dtype.is_floating_point
        or target.dtype.is_complex
        or target.dtype == torch.bool
    ):
        raise TypeError(
            "the last element of each batch must be an integer class-index tensor of shape (B,); "
            f"got {describe(target)}"
        )
    return inputs, target


def forward(model: nn.Module, batch: Any, device: torch.device | None) -> tuple[Tensor, Tensor]:
    """Run `model(*batch[:-1])` and check that it returned logits `(B, C)`.

    Args:
        model: The classifier.
        batch: Tuple or list `(inputs..., target)`.
        device: Where to move the tensors, or None to leave them.

    Returns:
        The logits and the target.

    Raises:
        TypeError: If the batch or its target has the wrong form.
        ValueError: If the output is not `(B, C)` with the target's B.
    """
    inputs, target = split_batch(batch, device)
    logits = model(*inputs)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"the model must return logits of shape (B, C) with B = {target.shape[0]} as in the "
            f"target; got {describe(logits)}"
        )
    return logits, target


def train_epoch(
    model: nn.Module,
    bar: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    grad_clip: float | None,
) -> dict[str, float]:
    """Train one epoch over `bar`, showing running metrics on it if it is a live tqdm bar.

    Args:
        model: The classifier.
        bar: The training batches, possibly wrapped in tqdm.
        optimizer: Its optimizer.
        loss_fn: Mean-reduced loss `loss_fn(logits, target)`.
        grad_clip: Max gradient norm, or None.

    Returns:
        The epoch's mean training loss and accuracy.
    """
    model.train()
    device, totals = model_device(model), Totals()
    shown = time.monotonic()
    for batch in bar:
        logits, target = forward(model, batch, device)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        totals.add(loss, logits, target)
        # Reading running totals syncs with the device, so refresh a few times a second only.
        if isinstance(bar, tqdm) and not bar.disable and time.monotonic() - shown > 0.5:
            running = totals.metrics("the train loader")
            bar.set_postfix(loss=f"{running['loss']:.4f}", acc=f"{running['accuracy']:.3f}")
            shown = time.monotonic()
    return totals.metrics("the train loader")
