"""Batches for `fit` and `evaluate`: unpacking, checking, and metric sums kept on the device."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from attnlab._validate import describe

LossFn = Callable[[Tensor, Tensor], Tensor]


Sums = dict[str, Any]


def accumulate(sums: Sums, batch: Mapping[str, Any]) -> None:
    """Add one batch's sums to the running ones, on the device (no host sync).

    Floating tensors are summed in float64, so long epochs lose no precision.

    Args:
        sums: The running sums, updated in place.
        batch: The batch's sums by name (tensors or numbers).
    """
    for key, value in batch.items():
        if isinstance(value, Tensor):
            value = value.detach()
            value = value.double() if value.is_floating_point() else value
        sums[key] = sums.get(key, 0) + value


def classify_sums(loss: Tensor, logits: Tensor, target: Tensor) -> dict[str, Any]:
    """One classification batch's sums: sample-weighted loss, correct predictions, samples.

    Args:
        loss: The batch's mean loss.
        logits: `(B, C)` model output.
        target: `(B,)` class indices.

    Returns:
        `{"loss": ..., "correct": ..., "count": B}` for `accumulate`.
    """
    n = target.shape[0]
    return {
        "loss": loss.detach().double() * n,
        "correct": (logits.detach().argmax(-1) == target).sum(),
        "count": n,
    }


def classify_metrics(sums: Sums, source: str) -> dict[str, float]:
    """Mean loss and accuracy from sums of `classify_sums`.

    Args:
        sums: The accumulated sums.
        source: What yielded the batches, for the error message.

    Returns:
        `{"loss": float, "accuracy": float}`.

    Raises:
        ValueError: If no batch was added.
    """
    count = sums.get("count", 0)
    if count == 0:
        raise ValueError(f"{source} yielded no batches; give it at least one batch")
    return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count}


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
