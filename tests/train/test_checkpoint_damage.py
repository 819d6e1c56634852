"""Every way a checkpoint can be damaged gives one clean error naming the file, never a traceback.

Each case of `_tamper.TAMPERINGS` damages a copy of a real `fit` checkpoint folder; then
`load_checkpoint` (for damage it can see alone) and `fit(resume=True)` must raise
exactly the expected type, with a one-line message naming the file and what is wrong,
and must leave the model untouched.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from attnlab.train import fit, load_checkpoint, save_checkpoint, seed_everything

from ._tamper import TAMPERINGS, Tampering
from .conftest import adam, assert_same_weights, toy_loaders, toy_model

CONFIG = {"lr": 1e-2}
EPOCHS = 3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A 3-epoch fit checkpoint folder; tests damage copies of it."""
    directory = tmp_path_factory.mktemp("pristine") / "ckpt"
    seed_everything(0)
    model = toy_model()
    train, val = toy_loaders()
    fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=EPOCHS,
        checkpoint_dir=directory,
        progress=False,
        config=CONFIG,
    )
    return directory


def damaged_copy(pristine: Path, tmp_path: Path, case: Tampering) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(pristine, folder)
    case.damage(folder, tmp_path / "outside")
    return folder


def resume(folder: Path, model: torch.nn.Module, epochs: int = EPOCHS + 1):
    """Resume as a new process would; one more epoch than saved, so the RNG is restored too."""
    train, val = toy_loaders(3)
    return fit(
        model,
        train,
        val,
        optimizer=adam(model),
        epochs=epochs,
        checkpoint_dir=folder,
        resume=True,
        progress=False,
        config=CONFIG,
    )


def check_message(err: pytest.ExceptionInfo, case: Tampering, folder: Path) -> None:
    assert type(err.value) is case.error
    message = str(err.value)
    assert "\n" not in message
    assert re.search(case.words, message), message
    assert case.named_in(message, folder), message


def test_the_catalogue_covers_every_kind_of_damage():
    names = [case.name for case in TAMPERINGS]
    assert len(names) == len(set(names)) >= 30


@pytest.mark.parametrize("case", [c for c in TAMPERINGS if not c.fit_only], ids=lambda c: c.name)
def test_load_checkpoint_names_the_damaged_file(case, pristine, tmp_path):
    folder = damaged_copy(pristine, tmp_path, case)
    part = Path(case.file).parts[0]
    model, untouched = toy_model(5), toy_model(5)
    optimizer = adam(model) if part == "last" else None
    with pytest.raises(case.error) as err:
        load_checkpoint(folder / part, model=model, optimizer=optimizer, config=CONFIG)
    check_message(err, case, folder)
    assert_same_weights(model, untouched)  # nothing was loaded
    assert optimizer is None or not optimizer.state_dict()["state"]


@pytest.mark.parametrize("case", TAMPERINGS, ids=lambda c: c.name)
def test_fit_resume_names_the_damaged_file(case, pristine, tmp_path):
    folder = damaged_copy(pristine, tmp_path, case)
    model, untouched = toy_model(5), toy_model(5)
    with pytest.raises(case.error) as err:
        resume(folder, model)
    check_message(err, case, folder)
    if case.name != "rng-garbled":  # only the RNG is restored after the weights
        assert_same_weights(model, untouched)


def test_an_undamaged_copy_resumes(pristine, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(pristine, folder)
    assert resume(folder, toy_model(5)).epochs_run == EPOCHS + 1


def test_manifest_records_each_file_and_its_tensors(pristine):
    manifest = json.loads((pristine / "last" / "checkpoint.json").read_text())
    files = manifest["files"]
    assert sorted(files) == ["model.safetensors", "optimizer.safetensors"]
    assert files["model.safetensors"]["tensors"]["0.weight"] == {
        "dtype": "float32",
        "shape": [16, 8],
    }
    assert re.fullmatch(r"[0-9a-f]{64}", files["model.safetensors"]["sha256"])


def test_checkpoints_saved_before_file_records_still_load(tmp_path):
    model = toy_model(0)
    save_checkpoint(tmp_path / "ckpt", model=model, epoch=1, config={}, history=[])
    path = tmp_path / "ckpt" / "checkpoint.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]  # as written by attnlab before it recorded them
    path.write_text(json.dumps(manifest))
    clone = toy_model(1)
    assert load_checkpoint(tmp_path / "ckpt", model=clone).epoch == 1
    assert_same_weights(clone, model)


def test_load_checkpoint_compares_the_config(tmp_path):
    @dataclass(frozen=True)
    class Config:
        lr: float = 0.01
        sizes: tuple[int, ...] = (3, 4)

    model = toy_model(0)
    save_checkpoint(tmp_path / "ckpt", model=model, epoch=1, config=vars(Config()), history=[])
    assert load_checkpoint(tmp_path / "ckpt", model=toy_model(1), config=Config()).epoch == 1
    with pytest.raises(ValueError, match=r"different config \('sizes': \[3, 4\] vs \[5\]\)"):
        load_checkpoint(tmp_path / "ckpt", model=toy_model(1), config=Config(sizes=(5,)))
