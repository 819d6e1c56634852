"""Checkpoints as safetensors plus JSON, written atomically and validated on load.

A checkpoint directory holds:

- `model.safetensors`: the model's `state_dict` (tensors only, safe to load);
- `optimizer.safetensors` (optional): every tensor of the optimizer's state, by path;
- `checkpoint.json`: format version, model class and parameter names/shapes, the
  optimizer's non-tensor state (step counts, param_groups) with references to its
  tensors, and the run's epoch, config, history and extra data.

Example:
    >>> model = torch.nn.Linear(4, 3)
    >>> save_checkpoint("runs/ckpt", model=model, epoch=1, config={}, history=[])
    >>> load_checkpoint("runs/ckpt", model=model).epoch
    1
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attnlab.train._storage import (
    MANIFEST,
    decode_tree,
    encode_tree,
    recover_directory,
    staged_directory,
    to_json,
    unshare,
)

__all__ = ["CheckpointInfo", "CheckpointMismatchError", "load_checkpoint", "save_checkpoint"]

FORMAT = "attnlab-checkpoint"
VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different model or optimizer than the one given."""


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint records besides its tensors.

    Attributes:
        epoch: The epoch the checkpoint was taken after (1-based; 0 before training).
        config: The run's configuration, as saved.
        history: Per-epoch metric dicts up to `epoch`.
        extra: Free-form JSON data saved alongside (e.g. trainer state).
    """

    epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]]
    extra: dict[str, Any]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module whose parameters are saved: strips DDP/DataParallel and compile.

    Args:
        model: A module, possibly wrapped.

    Returns:
        The innermost plain module, so checkpoints do not depend on the wrapping.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def describe_model(model: nn.Module) -> str:
    """Name a model for messages: its class plus its `extra_repr`, if any.

    Args:
        model: The model.

    Returns:
        E.g. `"Linear(in_features=4, out_features=3, bias=True)"` or `"Sequential"`.
    """
    model = unwrap_model(model)
    extra = model.extra_repr()
    return f"{type(model).__name__}({extra})" if extra else type(model).__name__


def _shape_text(shape: list[int] | tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int,
    config: Mapping[str, Any],
    history: list[dict[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically: the directory is replaced whole or not at all.

    An interruption or error at any point leaves the previous checkpoint in
    `directory` intact (or recoverable by the next save or load).

    Args:
        directory: Checkpoint directory; created if missing, replaced if present.
        model: The model whose `state_dict` is saved (wrappers are stripped).
        optimizer: Optional optimizer whose full state is saved.
        epoch: Epochs completed at this point.
        config: JSON-serialisable configuration of the run.
        history: JSON-serialisable per-epoch metric dicts.
        extra: Optional JSON-serialisable data to store alongside.

    Raises:
        TypeError: If config, history, extra or the optimizer state cannot be saved.
    """
    directory = Path(directory)
    model = unwrap_model(model)
    state = unshare(model.state_dict())
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "model_description": describe_model(model),
        "parameters": {name: list(t.shape) for name, t in state.items()},
        "optimizer_class": None,
        "optimizer": None,
        "epoch": int(epoch),
        "config": to_json(dict(config), "config"),
        "history": to_json(list(history), "history"),
        "extra": to_json(dict(extra or {}), "extra"),
        "torch_version": torch.__version__,
    }
    optimizer_tensors: dict[str, torch.Tensor] = {}
    if optimizer is not None:
        skeleton, optimizer_tensors = encode_tree(optimizer.state_dict(), "optimizer")
        manifest["optimizer_class"] = type(optimizer).__name__
        manifest["optimizer"] = skeleton
    text = json.dumps(manifest, indent=1)
    with staged_directory(directory) as stage:
        save_file(state, str(stage / MODEL_FILE), metadata={"format": "pt"})
        if optimizer is not None:
            save_file(unshare(optimizer_tensors), str(stage / OPTIMIZER_FILE))
        (stage / MANIFEST).write_text(text, encoding="utf-8")


def _read_manifest(directory: Path) -> dict[str, Any]:
    recover_directory(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {directory} ({MANIFEST} missing); check the path or train first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the checkpoint is damaged") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("version"), int):
        raise ValueError(f"{path} is not an attnlab checkpoint; point at a directory it wrote")
    if manifest["version"] > VERSION:
        raise ValueError(
            f"checkpoint at {directory} has format version {manifest['version']}, newer than "
            f"this attnlab reads ({VERSION}); upgrade attnlab"
        )
    if not (directory / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"checkpoint at {directory} is incomplete ({MODEL_FILE} missing); save it again"
        )
    return manifest


def _check_model(directory: Path, manifest: dict[str, Any], model: nn.Module) -> None:
    saved = {name: list(shape) for name, shape in manifest["parameters"].items()}
    live = {name: list(t.shape) for name, t in model.state_dict().items()}
    diffs: list[str] = []
    if manifest["model_class"] != type(model).__name__:
        diffs.append(f"class differs ({manifest['model_class']} vs {type(model).__name__})")
    for name, shape in saved.items():
        if name not in live:
            diffs.append(f"names/shapes differ at {name!r} (only in the checkpoint)")
        elif live[name] != shape:
            shapes = f"{_shape_text(shape)} vs {_shape_text(live[name])}"
            diffs.append(f"names/shapes differ at {name!r} ({shapes})")
    missing = [name for name in live if name not in saved]
    diffs += [f"names/shapes differ at {name!r} (not in the checkpoint)" for name in missing]
    if diffs:
        more = f" and {len(diffs) - 1} more difference(s)" if len(diffs) > 1 else ""
        raise CheckpointMismatchError(
            f"checkpoint at {directory} holds {manifest['model_description']} parameters; "
            f"this model is {describe_model(model)}: {diffs[0]}{more}; "
            "load it into the model it was trained with"
        )


def _check_optimizer(
    directory: Path, manifest: dict[str, Any], optimizer: torch.optim.Optimizer
) -> None:
    if manifest["optimizer"] is None or not (directory / OPTIMIZER_FILE).is_file():
        raise FileNotFoundError(
            f"checkpoint at {directory} has no optimizer state ({OPTIMIZER_FILE} missing); "
            "pass optimizer=None to load the model only"
        )
    name = type(optimizer).__name__
    saved_groups = [len(g["params"]) for g in manifest["optimizer"]["param_groups"]]
    live_groups = [len(g["params"]) for g in optimizer.param_groups]
    if manifest["optimizer_class"] != name or saved_groups != live_groups:
        raise CheckpointMismatchError(
            f"checkpoint at {directory} holds {manifest['optimizer_class']} state for param "
            f"groups of sizes {saved_groups}; this optimizer is {name} with {live_groups}; "
            "build the optimizer as it was built for training"
        )


def read_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[CheckpointInfo, dict[str, torch.Tensor], dict[str, Any] | None]:
    """Validate a checkpoint against `model`/`optimizer` and read it without applying it.

    Args:
        directory: Checkpoint directory.
        model: Model the checkpoint must fit (it is not modified).
        optimizer: Optimizer the checkpoint must fit, or None to skip its state.

    Returns:
        The info, the model state dict (CPU tensors) and the optimizer state dict
        (None when `optimizer` is None).

    Raises:
        FileNotFoundError: If the directory or a needed file is missing.
        CheckpointMismatchError: If the model or optimizer differs from the saved one.
        ValueError: If the checkpoint is damaged or from a newer format.
    """
    directory = Path(directory)
    model = unwrap_model(model)
    manifest = _read_manifest(directory)
    _check_model(directory, manifest, model)
    if optimizer is not None:
        _check_optimizer(directory, manifest, optimizer)
    state = load_file(str(directory / MODEL_FILE), device="cpu")
    if set(state) != set(manifest["parameters"]):
        raise ValueError(
            f"{MODEL_FILE} at {directory} does not match its {MANIFEST}; the checkpoint is damaged"
        )
    optimizer_state = None
    if optimizer is not None:
        tensors = load_file(str(directory / OPTIMIZER_FILE), device="cpu")
        optimizer_state = decode_tree(manifest["optimizer"], tensors)
    info = CheckpointInfo(
        epoch=manifest["epoch"],
        config=manifest["config"],
        history=manifest["history"],
        extra=manifest["extra"],
    )
    return info, state, optimizer_state


def load_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> CheckpointInfo:
    """Validate a checkpoint, then load it into `model` (and `optimizer`).

    Everything is checked before anything is modified, so a failed load leaves the
    model and optimizer untouched.

    Args:
        directory: Checkpoint directory written by `save_checkpoint`.
        model: Model of the same class and parameter names/shapes as the saved one.
        optimizer: Optimizer to restore (same class and param groups), or None.

    Returns:
        The epoch, config, history and extra data saved with the tensors.

    Raises:
        FileNotFoundError: If the directory or a needed file is missing.
        CheckpointMismatchError: If the model or optimizer differs from the saved one.
        ValueError: If the checkpoint is damaged or from a newer format.
    """
    info, state, optimizer_state = read_checkpoint(directory, model=model, optimizer=optimizer)
    unwrap_model(model).load_state_dict(state)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state)
    return info
