"""Checks that a checkpoint's files are what its ``checkpoint.json`` says they are.

Every problem is reported as one :class:`CheckpointDamagedError` naming the file and
what is wrong with it, before anything is loaded into a model: truncated or garbled
safetensors, tensors whose names, shapes or dtypes differ from the manifest, bytes that
changed after saving (sha256), NaN weights, symbolic links, and manifest fields that are
missing, of the wrong type or out of range.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from attnlab._validate import dtype_name
from attnlab.train._storage import FORMAT, MANIFEST, MODEL_FILE, VERSION, recover_directory

__all__ = [
    "CheckpointDamagedError",
    "damaged",
    "describe_file",
    "is_int",
    "plain",
    "read_manifest",
    "read_tensors",
    "require",
]


class CheckpointDamagedError(ValueError):
    """A checkpoint file is garbled, a link, or disagrees with its manifest."""


def damaged(path: Path, problem: str) -> CheckpointDamagedError:
    """The one-line error for a damaged checkpoint file.

    Args:
        path: The file (or folder) that is wrong.
        problem: What is wrong with it, without a trailing period.

    Returns:
        The exception to raise.
    """
    problem = " ".join(problem.split())
    return CheckpointDamagedError(
        f"{path}: {problem}; the checkpoint is damaged, so restore it from a copy or train again"
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value: Any) -> bool:
    """Whether `value` is an int and not a bool (JSON and Python both blur the two).

    Args:
        value: Anything.

    Returns:
        True for a real integer.
    """
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sizes(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(x) and x >= 0 for x in value)


_KINDS: dict[str, Callable[[Any], bool]] = {
    "an integer": is_int,
    "a number": lambda v: is_int(v) or isinstance(v, float),
    "a string": lambda v: isinstance(v, str),
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a list of objects": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "a list of sizes": _is_sizes,
}


def require(
    path: Path,
    doc: Mapping[str, Any],
    key: str,
    kind: str,
    *,
    nullable: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """Read one field of a JSON document, insisting on its type and range.

    Args:
        path: The file the document came from (for the message).
        doc: The document.
        key: The field.
        kind: One of ``"an integer"``, ``"a number"``, ``"a string"``, ``"an object"``,
            ``"a list"``, ``"a list of objects"``, ``"a list of sizes"``.
        nullable: Whether None is allowed.
        low: Smallest allowed value (numbers only).
        high: Largest allowed value (numbers only).

    Returns:
        The value.

    Raises:
        CheckpointDamagedError: If the field is missing, of another type or out of range.
    """
    if key not in doc:
        raise damaged(path, f"{key!r} is missing")
    value = doc[key]
    if value is None and nullable:
        return value
    if not _KINDS[kind](value):
        raise damaged(path, f"{key!r} is {_show(value)}, expected {kind}")
    too_low = low is not None and value < low
    if too_low or (high is not None and value > high):
        bounds = f"at least {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise damaged(path, f"{key!r} is {_show(value)}, expected {kind} {bounds}")
    return value


def plain(path: Path) -> Path:
    """Refuse a symbolic link where a checkpoint keeps a plain file or folder.

    attnlab never writes links, so one means the checkpoint was tampered with; it may
    point anywhere, outside the run folder included.

    Args:
        path: A file or folder of a checkpoint.

    Returns:
        ``path``.

    Raises:
        CheckpointDamagedError: If ``path`` is a symbolic link.
    """
    if path.is_symlink():
        target = os.readlink(path)
        raise damaged(path, f"is a symbolic link to {target}; attnlab never writes links")
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read ``checkpoint.json``, finishing an interrupted save first, and check every field.

    Args:
        directory: The checkpoint directory.

    Returns:
        The manifest, each field of the type ``read_checkpoint`` relies on.

    Raises:
        FileNotFoundError: If the manifest or ``model.safetensors`` is missing.
        CheckpointDamagedError: If the manifest is not valid JSON or a field is wrong.
        ValueError: If the checkpoint is from a newer format.
    """
    recover_directory(directory)
    path = directory / MANIFEST
    if not plain(path).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {directory} ({MANIFEST} missing); check the path or train first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # UnicodeDecodeError included
        raise damaged(path, f"is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise damaged(path, f"holds a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != FORMAT or not is_int(manifest.get("version")):
        raise CheckpointDamagedError(
            f"{path} is not an attnlab checkpoint; point at a directory it wrote"
        )
    if manifest["version"] > VERSION:
        raise ValueError(
            f"checkpoint at {directory} has format version {manifest['version']}, newer than "
            f"this attnlab reads ({VERSION}); upgrade attnlab"
        )
    _check_fields(path, manifest)
    if not plain(directory / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"checkpoint at {directory} is incomplete ({MODEL_FILE} missing); save it again"
        )
    return manifest


def _check_fields(path: Path, manifest: dict[str, Any]) -> None:
    # Every field read_checkpoint uses, so a hand-edited one fails here with its name.
    require(path, manifest, "model_class", "a string")
    require(path, manifest, "model_description", "a string")
    parameters = require(path, manifest, "parameters", "an object")
    for name in parameters:
        require(path, parameters, name, "a list of sizes")
    require(path, manifest, "epoch", "an integer", low=0)
    require(path, manifest, "config", "an object")
    require(path, manifest, "history", "a list of objects")
    require(path, manifest, "extra", "an object")
    require(path, manifest, "optimizer_class", "a string", nullable=True)
    skeleton = require(path, manifest, "optimizer", "an object", nullable=True)
    if skeleton is not None:
        for group in require(path, skeleton, "param_groups", "a list of objects"):
            require(path, group, "params", "a list")
    if "files" in manifest:  # absent from checkpoints saved before it was recorded
        for name, record in require(path, manifest, "files", "an object").items():
            if not _is_record(record):
                raise damaged(path, f"the entry of {name} is {_show(record)}")


def _is_record(record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return False
    layouts = record.get("tensors")
    return isinstance(layouts, dict) and all(
        isinstance(t, dict) and isinstance(t.get("dtype"), str) and _is_sizes(t.get("shape"))
        for t in layouts.values()
    )


def describe_file(path: Path, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the manifest records about a tensor file: its sha256 and each tensor's layout.

    Args:
        path: The safetensors file, already written.
        tensors: The tensors written into it.

    Returns:
        ``{"sha256": hex, "tensors": {name: {"dtype": "float32", "shape": [...]}}}``.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    layout = {
        name: {"dtype": dtype_name(t.dtype), "shape": list(t.shape)} for name, t in tensors.items()
    }
    return {"sha256": digest.hexdigest(), "tensors": layout}


def _layout_problem(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, Any], with_dtypes: bool
) -> str | None:
    missing = sorted(set(expected) - set(tensors))
    if missing:
        return f"tensor {missing[0]!r} is missing"
    extra = sorted(set(tensors) - set(expected))
    if extra:
        return f"tensor {extra[0]!r} is not in {MANIFEST}"
    for name, want in expected.items():
        shape = want["shape"] if with_dtypes else want
        got = list(tensors[name].shape)
        if got != list(shape):
            return f"tensor {name!r} has shape {got}, {MANIFEST} says {shape}"
        dtype = dtype_name(tensors[name].dtype)
        if with_dtypes and dtype != want["dtype"]:
            return f"tensor {name!r} is {dtype}, {MANIFEST} says {want['dtype']}"
    return None


def read_tensors(
    path: Path,
    *,
    record: Mapping[str, Any] | None,
    shapes: Mapping[str, list[int]] | None = None,
    finite: bool = False,
) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking it against the manifest before anyone uses it.

    Args:
        path: The file.
        record: Its entry written by :func:`describe_file`, or None for checkpoints saved
            before attnlab recorded one.
        shapes: Name to shape the tensors must have (the model's parameters), if known.
        finite: Refuse NaN in floating tensors (model weights are never NaN).

    Returns:
        The tensors, on the CPU.

    Raises:
        CheckpointDamagedError: If the file is a link, cannot be parsed, or differs from
            the manifest in tensor names, shapes, dtypes or bytes.
    """
    data = plain(path).read_bytes()
    if not data:
        raise damaged(path, "is empty")
    try:
        tensors = load(data)
    except SafetensorError as err:
        raise damaged(path, f"is not a readable safetensors file ({err})") from None
    problem = None
    if record is not None:
        problem = _layout_problem(tensors, record["tensors"], with_dtypes=True)
        if problem is None and hashlib.sha256(data).hexdigest() != record["sha256"]:
            problem = f"its bytes changed after it was saved (sha256 differs from {MANIFEST})"
    if problem is None and shapes is not None:
        problem = _layout_problem(tensors, shapes, with_dtypes=False)
    if problem is None and finite:
        nan = [n for n, t in tensors.items() if t.is_floating_point() and bool(t.isnan().any())]
        problem = f"tensor {nan[0]!r} holds NaN" if nan else None
    if problem is not None:
        raise damaged(path, problem)
    return tensors
