import json

import pytest
import torch
from torch import nn

import attnlab.train._storage as storage
import attnlab.train.checkpoint as checkpoint_module
from attnlab.train import (
    CheckpointInfo,
    CheckpointMismatchError,
    load_checkpoint,
    save_checkpoint,
)


def trained_adam(model: nn.Module, steps: int = 3) -> torch.optim.Adam:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(5, 8, generator=g)).pow(2).mean().backward()
        optimizer.step()
    return optimizer


def assert_same_tree(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_tree(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    else:
        assert a == b


def save(directory, model, optimizer=None, epoch=1, **kwargs):
    kwargs.setdefault("config", {"lr": 0.01})
    kwargs.setdefault("history", [{"epoch": 1, "val_accuracy": 0.5}])
    save_checkpoint(directory, model=model, optimizer=optimizer, epoch=epoch, **kwargs)


def test_round_trip_restores_model_and_adam_exactly(tmp_path, make_model):
    model = make_model(0)
    optimizer = trained_adam(model)
    history = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}]
    save_checkpoint(
        tmp_path / "ckpt",
        model=model,
        optimizer=optimizer,
        epoch=2,
        config={"lr": 0.01, "sizes": (3, 4)},
        history=history,
        extra={"note": "x"},
    )
    clone = make_model(1)
    clone_optimizer = torch.optim.Adam(clone.parameters(), lr=0.5)
    info = load_checkpoint(tmp_path / "ckpt", model=clone, optimizer=clone_optimizer)

    assert info == CheckpointInfo(
        epoch=2, config={"lr": 0.01, "sizes": [3, 4]}, history=history, extra={"note": "x"}
    )
    assert_same_tree(model.state_dict(), clone.state_dict())
    assert_same_tree(optimizer.state_dict(), clone_optimizer.state_dict())
    # Resumed training continues identically: one more identical step, identical weights.
    x = torch.randn(5, 8)
    for m, opt in ((model, optimizer), (clone, clone_optimizer)):
        m.eval()
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
    assert_same_tree(model.state_dict(), clone.state_dict())


def test_files_and_manifest(tmp_path, make_model):
    model = make_model()
    save(tmp_path / "ckpt", model, trained_adam(model), epoch=4)
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["checkpoint.json", "model.safetensors", "optimizer.safetensors"]
    manifest = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert manifest["format"] == "attnlab-checkpoint" and manifest["version"] == 1
    assert manifest["model_class"] == "Sequential" and manifest["epoch"] == 4
    assert manifest["parameters"]["0.weight"] == [16, 8]
    assert manifest["optimizer_class"] == "Adam"
    assert manifest["optimizer"]["param_groups"][0]["betas"] == {"__tuple__": [0.8, 0.95]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging leftovers


def test_model_only_and_tied_weights(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    model = Tied()
    save(tmp_path / "ckpt", model)
    clone = Tied()
    load_checkpoint(tmp_path / "ckpt", model=clone)
    assert torch.equal(clone.embed.weight, model.embed.weight)
    assert clone.out.weight is clone.embed.weight


def test_mismatched_model_raises_one_line(tmp_path):
    save(tmp_path / "ckpt", nn.Linear(8, 4))
    other = nn.Linear(8, 5)
    before = other.weight.clone()
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(tmp_path / "ckpt", model=other)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint at {tmp_path / 'ckpt'} holds Linear(in_features=8, ")
    assert "this model is Linear(in_features=8, out_features=5, bias=True)" in message
    assert "names/shapes differ at 'weight' (4x8 vs 5x8)" in message
    assert message.endswith("load it into the model it was trained with")
    assert torch.equal(other.weight, before)  # nothing loaded
    assert isinstance(err.value, ValueError)


def test_mismatched_class_and_names(tmp_path, make_model):
    save(tmp_path / "ckpt", make_model())
    with pytest.raises(CheckpointMismatchError, match=r"class differs \(Sequential vs Linear\)"):
        load_checkpoint(tmp_path / "ckpt", model=nn.Linear(8, 16))

    class Sequential(nn.Module):  # same class name, different parameter names
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(8, 16)

    with pytest.raises(CheckpointMismatchError, match=r"at '0.weight' \(only in the checkpoint\)"):
        load_checkpoint(tmp_path / "ckpt", model=Sequential())


def test_mismatched_optimizer(tmp_path, make_model):
    model = make_model()
    save(tmp_path / "ckpt", model, trained_adam(model))
    with pytest.raises(CheckpointMismatchError, match="holds Adam state"):
        sgd = torch.optim.SGD(model.parameters())
        load_checkpoint(tmp_path / "ckpt", model=model, optimizer=sgd)


def test_missing_files(tmp_path, make_model):
    model = make_model()
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*checkpoint.json missing"):
        load_checkpoint(tmp_path / "nowhere", model=model)
    save(tmp_path / "ckpt", model)
    with pytest.raises(FileNotFoundError, match="has no optimizer state.*optimizer=None"):
        adam = torch.optim.Adam(model.parameters())
        load_checkpoint(tmp_path / "ckpt", model=model, optimizer=adam)
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete \\(model.safetensors missing\\)"):
        load_checkpoint(tmp_path / "ckpt", model=model)


def test_unserialisable_config(tmp_path, make_model):
    with pytest.raises(TypeError, match="checkpoint config is not JSON-serialisable"):
        save(tmp_path / "ckpt", make_model(), config={"fn": print})
    assert not (tmp_path / "ckpt").exists()


def test_failure_mid_save_keeps_previous_checkpoint(tmp_path, make_model, monkeypatch):
    old_model, new_model = make_model(0), make_model(1)
    save(tmp_path / "ckpt", old_model, trained_adam(old_model), epoch=1)
    real_save_file = checkpoint_module.save_file
    calls = []

    def failing_save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # model written, optimizer half-written, then the disk fills
            with open(path, "wb") as f:
                f.write(b"\x00garbage")
            raise OSError("No space left on device")
        real_save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space left"):
        save(tmp_path / "ckpt", new_model, trained_adam(new_model), epoch=2)
    monkeypatch.undo()

    probe = make_model(2)
    probe_adam = torch.optim.Adam(probe.parameters())
    info = load_checkpoint(tmp_path / "ckpt", model=probe, optimizer=probe_adam)
    assert info.epoch == 1
    assert_same_tree(probe.state_dict(), old_model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_interruption_during_swap_is_recovered(tmp_path, make_model, monkeypatch):
    old_model = make_model(0)
    save(tmp_path / "ckpt", old_model, epoch=1)
    real_rename = storage.os.rename
    renames = []

    def interrupted_rename(src, dst):
        renames.append(dst)
        if len(renames) == 2:  # old checkpoint moved aside, new one not yet in place
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(storage.os, "rename", interrupted_rename)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "ckpt", make_model(1), epoch=2)
    monkeypatch.undo()
    assert not (tmp_path / "ckpt").exists()

    probe = make_model(2)
    assert load_checkpoint(tmp_path / "ckpt", model=probe).epoch == 1
    assert_same_tree(probe.state_dict(), old_model.state_dict())
    save(tmp_path / "ckpt", make_model(1), epoch=2)
    assert load_checkpoint(tmp_path / "ckpt", model=probe).epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_save_replaces_stale_optimizer_file(tmp_path, make_model):
    model = make_model()
    save(tmp_path / "ckpt", model, trained_adam(model))
    save(tmp_path / "ckpt", model)  # model only now: no stale optimizer state may remain
    assert not (tmp_path / "ckpt" / "optimizer.safetensors").exists()
