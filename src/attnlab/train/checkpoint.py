"""Checkpoints as safetensors plus JSON, written atomically and validated on load.

A checkpoint directory holds:

- `model.safetensors`: the model's `state_dict` (tensors only, safe to load);
- `optimizer.safetensors` (optional): every tensor of the optimizer's state, by path;
- `checkpoint.json`: format version, model class and parameter names/shapes, the
  optimizer's non-tensor state (step counts, param_groups) with references to its
  tensors, the run's epoch, config, history and extra data, and each tensor file's
  sha256 and tensor layouts.

Loading checks everything before it modifies anything: a file that is truncated,
garbled, a symbolic link or different from the manifest, and a manifest field that is
missing or of the wrong type, each raise one `CheckpointDamagedError` naming the file.

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
from safetensors.torch import save_file
from torch import nn

from attnlab.train._integrity import (
    CheckpointDamagedError,
    damaged,
    describe_file,
    read_manifest,
    read_tensors,
)
from attnlab.train._storage import (
    FORMAT,
    MANIFEST,
    MODEL_FILE,
    OPTIMIZER_FILE,
    VERSION,
    decode_tree,
    encode_tree,
    staged_directory,
    to_json,
    unshare,
)

__all__ = [
    "CheckpointDamagedError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "load_checkpoint",
    "save_checkpoint",
]


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different model, optimizer or config than the one given."""


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
    with staged_directory(directory) as stage:
        save_file(state, str(stage / MODEL_FILE), metadata={"format": "pt"})
        files = {MODEL_FILE: describe_file(stage / MODEL_FILE, state)}
        if optimizer is not None:
            optimizer_tensors = unshare(optimizer_tensors)
            save_file(optimizer_tensors, str(stage / OPTIMIZER_FILE))
            files[OPTIMIZER_FILE] = describe_file(stage / OPTIMIZER_FILE, optimizer_tensors)
        manifest["files"] = files  # what load checks every byte and tensor against
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


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
        CheckpointDamagedError: If a file is garbled, a link, or differs from the manifest.
        ValueError: If the checkpoint is from a newer format.
    """
    directory = Path(directory)
    model = unwrap_model(model)
    manifest = read_manifest(directory)
    _check_model(directory, manifest, model)
    if optimizer is not None:
        _check_optimizer(directory, manifest, optimizer)
    files = manifest.get("files") or {}
    state = read_tensors(
        directory / MODEL_FILE,
        record=files.get(MODEL_FILE),
        shapes=manifest["parameters"],
        finite=True,
    )
    optimizer_state = None
    if optimizer is not None:
        path = directory / OPTIMIZER_FILE
        tensors = read_tensors(path, record=files.get(OPTIMIZER_FILE))
        try:
            optimizer_state = decode_tree(manifest["optimizer"], tensors)
        except KeyError as err:
            raise damaged(path, f"tensor {err} named in {MANIFEST} is missing") from None
        except (TypeError, ValueError) as err:
            raise damaged(directory / MANIFEST, f"its optimizer state is garbled ({err})") from None
    info = CheckpointInfo(
        epoch=manifest["epoch"],
        config=manifest["config"],
        history=manifest["history"],
        extra=manifest["extra"],
    )
    return info, state, optimizer_state


def apply_checkpoint(
    directory: Path,
    model: nn.Module,
    state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Load what `read_checkpoint` returned: the optimizer first, as only it can still fail.

    Args:
        directory: The checkpoint directory (for the message).
        model: The model (wrappers are stripped).
        state: Its state dict, already checked against the model.
        optimizer: The optimizer, or None.
        optimizer_state: Its state dict.

    Raises:
        CheckpointDamagedError: If the saved optimizer state does not load.
    """
    if optimizer is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            text = " ".join(str(err).split())
            raise damaged(directory / MANIFEST, f"its optimizer state does not load ({text})")
    unwrap_model(model).load_state_dict(state)


def normalize_config(config: Any) -> dict[str, Any]:
    """Turn a dict or dataclass config into the JSON form a checkpoint stores.

    Args:
        config: None, a mapping, or a dataclass instance.

    Returns:
        A plain dict that compares equal to itself after a JSON round trip.

    Raises:
        TypeError: If `config` is of another type or not JSON-serialisable.
    """
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a dict or a dataclass instance; got {type(config).__name__}"
        )
    return to_json(dict(config), "config")


def check_config(directory: Path, saved: dict[str, Any], given: dict[str, Any], hint: str) -> None:
    """Refuse a checkpoint trained with another config than the running one.

    Args:
        directory: The checkpoint directory (for the message).
        saved: The config it was saved with.
        given: The running config, normalised.
        hint: What to do instead, for the end of the message.

    Raises:
        CheckpointMismatchError: If the two differ; the message names the first key.
    """
    if saved == given:
        return
    key = next(k for k in sorted(set(saved) | set(given)) if saved.get(k) != given.get(k))
    saved_text = repr(saved[key]) if key in saved else "missing"
    given_text = repr(given[key]) if key in given else "missing"
    raise CheckpointMismatchError(
        f"checkpoint at {directory} was trained with a different config "
        f"({key!r}: {saved_text} vs {given_text}); {hint}"
    )


def load_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    config: Any = None,
) -> CheckpointInfo:
    """Validate a checkpoint, then load it into `model` (and `optimizer`).

    Everything is checked before anything is modified, so a failed load leaves the
    model and optimizer untouched.

    Args:
        directory: Checkpoint directory written by `save_checkpoint`.
        model: Model of the same class and parameter names/shapes as the saved one.
        optimizer: Optimizer to restore (same class and param groups), or None.
        config: The running config (dict or dataclass); if given, the checkpoint's must
            equal it, so a checkpoint of another run is never taken for this one's.

    Returns:
        The epoch, config, history and extra data saved with the tensors.

    Raises:
        FileNotFoundError: If the directory or a needed file is missing.
        CheckpointMismatchError: If the model, optimizer or config differs from the saved one.
        CheckpointDamagedError: If a file is garbled, a link, or differs from the manifest.
        ValueError: If the checkpoint is from a newer format.
    """
    directory = Path(directory)
    info, state, optimizer_state = read_checkpoint(directory, model=model, optimizer=optimizer)
    if config is not None:
        hint = "load the checkpoint of this run or pass the config it was trained with"
        check_config(directory, info.config, normalize_config(config), hint)
    apply_checkpoint(directory, model, state, optimizer, optimizer_state)
    return info
