"""Crash-safe checkpoint directories and a JSON codec for nested tensor state.

A checkpoint is several files (tensors and JSON) that are only meaningful together,
so atomicity is per directory, not per file: everything is written into a hidden
staging directory next to the target and swapped in with renames. At every instant
either the target directory is a complete checkpoint or (inside the two-rename
window) the previous complete checkpoint sits in `.NAME.old`, from which
`recover_directory` puts it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# The files of a checkpoint directory, and the manifest's format tag and version.
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT = "attnlab-checkpoint"
VERSION = 1

# Markers for JSON values that JSON itself cannot express; chosen so they cannot
# collide with real state keys (which never start with a double underscore).
_TENSOR, _TUPLE, _PAIRS = "__tensor__", "__tuple__", "__pairs__"


def _stage_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.tmp"


def _old_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def recover_directory(directory: Path) -> None:
    """Finish or roll back a swap that an interruption cut short.

    Args:
        directory: The checkpoint directory (which may not exist yet).
    """
    old = _old_path(directory)
    if not old.exists():
        return
    if (directory / MANIFEST).exists():
        shutil.rmtree(old, ignore_errors=True)  # the swap finished; only cleanup was lost
    elif not directory.exists():
        os.rename(old, directory)  # interrupted between the two renames: roll back


def has_checkpoint(directory: Path) -> bool:
    """Tell whether `directory` holds a checkpoint (including one awaiting recovery).

    Args:
        directory: The checkpoint directory.

    Returns:
        True if a complete checkpoint is there or can be recovered there.
    """
    return (directory / MANIFEST).exists() or (_old_path(directory) / MANIFEST).exists()


def _fsync(path: Path) -> None:
    # Directories cannot be opened for fsync on Windows; durability there is best effort.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_directory(directory: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on clean exit swap it in for `directory`.

    If the body raises (including KeyboardInterrupt) the staging directory is removed
    and `directory` is left exactly as it was.

    Args:
        directory: The checkpoint directory to create or replace.

    Yields:
        The staging directory to write every file into.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    stage, old = _stage_path(directory), _old_path(directory)
    shutil.rmtree(stage, ignore_errors=True)  # leftover of an earlier failed save
    stage.mkdir()
    try:
        yield stage
        for file in stage.iterdir():
            _fsync(file)  # data must be on disk before the rename makes it visible
        _fsync(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if directory.exists():
        os.rename(directory, old)
    os.rename(stage, directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def to_json(value: Any, what: str) -> Any:
    """Round-trip a value through JSON, so what is kept in memory equals what is loaded.

    Args:
        value: JSON-serialisable data (tuples become lists).
        what: Its name, for the error message.

    Returns:
        The value as JSON would give it back.

    Raises:
        TypeError: If the value cannot be written as JSON.
    """
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"checkpoint {what} is not JSON-serialisable ({err}); "
            "use plain numbers, strings, lists and dicts"
        ) from None


def encode_tree(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested state into a JSON-able skeleton and a flat dict of named tensors.

    Tensors are replaced by `{"__tensor__": name}`; tuples and dicts with non-string
    keys (an optimizer's integer parameter ids) get markers so decoding is exact.

    Args:
        tree: Nested dicts, lists, tuples, tensors, numbers, strings, bools and None.
        prefix: Prefix for the generated tensor names.

    Returns:
        The JSON-able skeleton and the tensors (detached, on CPU, contiguous).

    Raises:
        TypeError: If the tree holds a value of any other type.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            name, n = path, 1
            while name in tensors:  # e.g. keys 0 and "0" in one dict give one path
                name, n = f"{path}#{n}", n + 1
            tensors[name] = value.detach().to("cpu").contiguous()
            return {_TENSOR: name}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: encode(v, f"{path}.{k}") for k, v in value.items()}
            return {_PAIRS: [[encode(k, path), encode(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            items = [encode(v, f"{path}.{i}") for i, v in enumerate(value)]
            return {_TUPLE: items} if isinstance(value, tuple) else items
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(
            f"state at {path!r} is a {type(value).__name__}, which cannot be saved; "
            "only tensors, numbers, strings, lists, tuples and dicts are supported"
        )

    return encode(tree, prefix), tensors


def decode_tree(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Invert `encode_tree`.

    Args:
        skeleton: The JSON-able skeleton returned by `encode_tree`.
        tensors: The named tensors returned by `encode_tree` (e.g. after a file trip).

    Returns:
        The nested state with tensors, tuples and non-string keys restored.
    """
    if isinstance(skeleton, list):
        return [decode_tree(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _TUPLE in skeleton:
            return tuple(decode_tree(v, tensors) for v in skeleton[_TUPLE])
        if _PAIRS in skeleton:
            return {decode_tree(k, tensors): decode_tree(v, tensors) for k, v in skeleton[_PAIRS]}
        return {k: decode_tree(v, tensors) for k, v in skeleton.items()}
    return skeleton


def unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make tensors saveable by safetensors: on CPU, contiguous, no shared storage.

    Tied weights (one storage under two names) are cloned, since safetensors refuses
    shared storage; `load_state_dict` copies both entries back into the one tensor.

    Args:
        state: A state dict.

    Returns:
        A new dict with the same names.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel() > 0:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out
