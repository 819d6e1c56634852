"""Ways to damage the checkpoint folder of a `fit` run (`last/`, `best/`), one per case.

Shared by the checkpoint tests (`load_checkpoint`, `fit(resume=True)`) and the CLI's
`--resume` tests, so both meet exactly the same damage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from attnlab.train.checkpoint import CheckpointDamagedError, CheckpointMismatchError

MODEL, OPTIMIZER, MANIFEST = "model.safetensors", "optimizer.safetensors", "checkpoint.json"
Damage = Callable[[Path, Path], None]  # (checkpoint folder, a scratch folder outside the run)


@dataclass(frozen=True)
class Tampering:
    """One damaged checkpoint and the one-line error it must give.

    Attributes:
        name: The test id.
        file: What the message must name, relative to the checkpoint folder.
        damage: Does the damage.
        error: The exception type expected.
        words: A regex the message must match.
        fit_only: Only resuming `fit` can notice it (e.g. history that disagrees with epoch).
    """

    name: str
    file: str
    damage: Damage
    error: type[Exception]
    words: str
    fit_only: bool = False

    def named_in(self, message: str, folder: Path) -> bool:
        """Whether `message` names the damaged file (its folder and its own name)."""
        part = Path(self.file).parts[0]
        return str(folder / part) in message and Path(self.file).name in message


def _bytes(file: str, change: Callable[[bytes], bytes]) -> Damage:
    def damage(folder: Path, outside: Path) -> None:
        path = folder / file
        path.write_bytes(change(path.read_bytes()))

    return damage


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def _first_matrix(tensors: dict[str, torch.Tensor]) -> str:
    return next(name for name in sorted(tensors) if tensors[name].numel() > 1)


def _forge_record(folder: Path, file: str, tensors: dict[str, torch.Tensor]) -> None:
    """Rewrite the manifest's record of `file` to match it, as a careful forger would."""
    manifest = folder / Path(file).parent / MANIFEST
    doc = json.loads(manifest.read_text())
    doc["files"][Path(file).name] = {
        "sha256": hashlib.sha256((folder / file).read_bytes()).hexdigest(),
        "tensors": {
            n: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            for n, t in tensors.items()
        },
    }
    manifest.write_text(json.dumps(doc))


def _tensors(
    file: str, change: Callable[[dict[str, torch.Tensor]], None], *, forge: bool = False
) -> Damage:
    def damage(folder: Path, outside: Path) -> None:
        tensors = load_file(folder / file)
        change(tensors)
        save_file(tensors, folder / file)
        if forge:
            _forge_record(folder, file, tensors)

    return damage


def _reshape(t: dict[str, torch.Tensor]) -> None:
    name = _first_matrix(t)
    t[name] = torch.zeros(t[name].numel() + 1)


def _to_double(t: dict[str, torch.Tensor]) -> None:
    name = _first_matrix(t)
    t[name] = t[name].double()


def _drop(t: dict[str, torch.Tensor]) -> None:
    del t[_first_matrix(t)]


def _add(t: dict[str, torch.Tensor]) -> None:
    t["intruder"] = torch.zeros(3)


def _nan(t: dict[str, torch.Tensor]) -> None:
    t[_first_matrix(t)].view(-1)[0] = float("nan")


def _link_out(file: str) -> Damage:
    """Replace `file` (or folder) by a link to a copy of it outside the run folder."""

    def damage(folder: Path, outside: Path) -> None:
        path, copy = folder / file, outside / file.replace("/", "-")
        outside.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, copy)
            shutil.rmtree(path)
        else:
            shutil.copy(path, copy)
            path.unlink()
        path.symlink_to(copy)

    return damage


def _delete(file: str) -> Damage:
    return lambda folder, outside: (folder / file).unlink()


def _json(part: str, edit: Callable[[dict], object]) -> Damage:
    def damage(folder: Path, outside: Path) -> None:
        path = folder / part / MANIFEST
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))

    return damage


def _text(part: str, text: str) -> Damage:
    return lambda folder, outside: (folder / part / MANIFEST).write_text(text)


D, M = CheckpointDamagedError, CheckpointMismatchError
LAST_MODEL, LAST_OPT, LAST_JSON = f"last/{MODEL}", f"last/{OPTIMIZER}", f"last/{MANIFEST}"
BEST_MODEL, BEST_JSON = f"best/{MODEL}", f"best/{MANIFEST}"
UNREADABLE = "is not a readable safetensors file"
GARBAGE = b"\x89garbage, not tensors\n" * 20

TAMPERINGS = [
    Tampering("model-truncated", LAST_MODEL, _bytes(LAST_MODEL, lambda b: b[:-7]), D, UNREADABLE),
    Tampering("model-empty", LAST_MODEL, _bytes(LAST_MODEL, lambda b: b""), D, "is empty"),
    Tampering("model-garbage", LAST_MODEL, _bytes(LAST_MODEL, lambda b: GARBAGE), D, UNREADABLE),
    Tampering("model-bytes-changed", LAST_MODEL, _bytes(LAST_MODEL, _flip_last_byte), D, "sha256"),
    Tampering("model-shape", LAST_MODEL, _tensors(LAST_MODEL, _reshape), D, "has shape"),
    Tampering(
        "model-shape-forged", LAST_MODEL, _tensors(LAST_MODEL, _reshape, forge=True), D, "shape"
    ),
    Tampering("model-dtype", LAST_MODEL, _tensors(LAST_MODEL, _to_double), D, "is float64"),
    Tampering("model-missing-tensor", LAST_MODEL, _tensors(LAST_MODEL, _drop), D, "is missing"),
    Tampering("model-extra-tensor", LAST_MODEL, _tensors(LAST_MODEL, _add), D, "'intruder'"),
    Tampering("model-link-out", LAST_MODEL, _link_out(LAST_MODEL), D, "symbolic link"),
    Tampering("model-deleted", LAST_MODEL, _delete(LAST_MODEL), FileNotFoundError, "incomplete"),
    Tampering("optimizer-truncated", LAST_OPT, _bytes(LAST_OPT, lambda b: b[:-7]), D, UNREADABLE),
    Tampering("optimizer-empty", LAST_OPT, _bytes(LAST_OPT, lambda b: b""), D, "is empty"),
    Tampering("optimizer-garbage", LAST_OPT, _bytes(LAST_OPT, lambda b: GARBAGE), D, UNREADABLE),
    Tampering("optimizer-shape", LAST_OPT, _tensors(LAST_OPT, _reshape), D, "has shape"),
    Tampering("optimizer-missing-tensor", LAST_OPT, _tensors(LAST_OPT, _drop), D, "is missing"),
    Tampering("optimizer-link-out", LAST_OPT, _link_out(LAST_OPT), D, "symbolic link"),
    Tampering("optimizer-deleted", LAST_OPT, _delete(LAST_OPT), FileNotFoundError, "missing"),
    Tampering("json-invalid", LAST_JSON, _text("last", '{"epoch": 2,'), D, "not valid JSON"),
    Tampering("json-not-object", LAST_JSON, _text("last", "[]"), D, "not an object"),
    Tampering(
        "epoch-abc",
        LAST_JSON,
        _json("last", lambda d: d.update(epoch="abc")),
        D,
        "'epoch' is 'abc'",
    ),
    Tampering("epoch-negative", LAST_JSON, _json("last", lambda d: d.update(epoch=-1)), D, "-1"),
    Tampering("epoch-float", LAST_JSON, _json("last", lambda d: d.update(epoch=1.5)), D, "1.5"),
    Tampering(
        "epoch-beyond-epochs",
        LAST_JSON,
        _json("last", lambda d: d.update(epoch=99)),
        D,
        r"'epoch' is 99, expected an integer in \[1, 3\]",
        fit_only=True,
    ),
    Tampering(
        "history-empty",
        LAST_JSON,
        _json("last", lambda d: d.update(history=[])),
        D,
        "'history' holds 0 epoch",
        fit_only=True,
    ),
    Tampering(
        "history-not-a-list",
        LAST_JSON,
        _json("last", lambda d: d.update(history="abc")),
        D,
        "'history' is 'abc', expected a list of objects",
    ),
    Tampering(
        "history-of-numbers",
        LAST_JSON,
        _json("last", lambda d: d.update(history=[1, 2])),
        D,
        "'history' is",
    ),
    Tampering(
        "parameters-missing",
        LAST_JSON,
        _json("last", lambda d: d.pop("parameters")),
        D,
        "'parameters' is missing",
    ),
    Tampering(
        "extra-missing", LAST_JSON, _json("last", lambda d: d.pop("extra")), D, "'extra' is missing"
    ),
    Tampering(
        "best-epoch-wrong-type",
        LAST_JSON,
        _json("last", lambda d: d["extra"].update(best_epoch="x")),
        D,
        "'best_epoch' is 'x'",
        fit_only=True,
    ),
    Tampering(
        "rng-garbled",
        LAST_JSON,
        _json("last", lambda d: d["extra"]["rng"].update(python="garbage")),
        D,
        "RNG state does not load",
        fit_only=True,
    ),
    Tampering(
        "config-of-another-run",
        "last",
        _json("last", lambda d: d.update(config={"lr": 0.5})),
        M,
        "different config",
    ),
    Tampering("last-link-out", "last", _link_out("last"), D, "symbolic link", fit_only=True),
    Tampering("best-nan", BEST_MODEL, _tensors(BEST_MODEL, _nan, forge=True), D, "holds NaN"),
    Tampering("best-truncated", BEST_MODEL, _bytes(BEST_MODEL, lambda b: b[:-7]), D, UNREADABLE),
    Tampering(
        "best-epoch-abc", BEST_JSON, _json("best", lambda d: d.update(epoch="abc")), D, "'epoch'"
    ),
    Tampering(
        "best-config-of-another-run",
        "best",
        _json("best", lambda d: d.update(config={"lr": 0.5})),
        M,
        "different config",
    ),
    Tampering("best-link-out", "best", _link_out("best"), D, "symbolic link", fit_only=True),
]
