"""The image-classify experiment: a smoke run through the framework, and its Config's errors."""

import json
import os
from pathlib import Path

import pytest
import torch

import attnlab.experiments.image_classify as ic
from attnlab.data.fashion_mnist import FashionMNIST
from attnlab.experiments import get_experiment, run_experiment

TINY = {
    "seeds": 1,
    "epochs": 1,
    "batch_size": 64,
    "widths": (4, 8, 8),
    "reduction": 2,
    "vit_dim": 8,
    "vit_depth": 1,
    "vit_heads": 2,
    "val_size": 64,
    "train_size": 192,
    "test_size": 96,
    "examples": 3,
    "device": "cpu",
}


def _fake_fashion_mnist(split, *, data_dir=None):
    """Random 28x28 items in 10 classes, in place of the real files."""
    n = 400 if split == "train" else 120
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    return FashionMNIST(images, torch.arange(n) % 10)


@pytest.fixture
def fashion(monkeypatch):
    """The real Fashion-MNIST where $ATTNLAB_DATA_DIR has it, else a fake one."""
    folder = Path(os.environ.get("ATTNLAB_DATA_DIR", "/nonexistent")) / "fashion-mnist"
    if not (folder / "t10k-labels-idx1-ubyte.gz").is_file():
        monkeypatch.setattr(ic, "load_fashion_mnist", _fake_fashion_mnist)


def test_registered_with_every_model():
    spec = get_experiment("image-classify")
    assert spec.config is ic.ImageClassifyConfig
    assert spec.config().models == tuple(ic.MODELS)
    assert spec.dataset(spec.config()) == "fashion-mnist"


def test_smoke_run_writes_results_report_pictures_and_page(fashion, tmp_path):
    cfg = ic.ImageClassifyConfig(models=tuple(ic.MODELS), **TINY)
    out = run_experiment("image-classify", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "image-classify" and results["dataset"] == "fashion-mnist"
    assert set(results["environment"]) == {"torch", "python", "threads", "device", "commit"}
    assert [r["model"] for r in results["results"]] == list(ic.MODELS)
    for r in results["results"]:
        assert set(r["metrics"]) == {"test_accuracy", "seconds_per_epoch"}
        (accuracy,) = r["metrics"]["test_accuracy"]["runs"]
        assert 0.0 <= accuracy <= 1.0 and r["metrics"]["test_accuracy"]["std"] == 0.0
        assert r["metrics"]["seconds_per_epoch"]["mean"] > 0 and r["parameters"] > 0
        assert r["epochs_runs"] == [1] and r["stopped_by_runs"] == ["epochs"]
    by_model = {r["model"]: r.get("pictures", []) for r in results["results"]}
    assert by_model["cnn"] == [] and by_model["cnn-se"] == ["excitations_cnn-se.png"]
    assert "query_cnn-nonlocal.png" in by_model["cnn-nonlocal"]
    assert {"attention_ran.png", "maps_ran.png"} <= set(by_model["ran"])
    assert {"attention_vit.png", "distance_vit.png"} <= set(by_model["vit"])
    for picture in sum(by_model.values(), []):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG", picture
    page = (out / "attention.html").read_text()
    assert "cnn-cbam stage 3 spatial" in page and "vit rollout" in page and "<script" not in page
    report = (out / "report.md").read_text()
    assert "attnlab run image-classify" in report and "91.6%" in report
    assert "![cnn-cbam](attention_cnn-cbam.png)" in report and "(attention.html)" in report
    assert (out / "checkpoints" / "cnn" / "seed0.json").is_file()  # --resume skips it


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"models": ("cnn", "resnet")}, ValueError, "--models resnet is unknown; choose from cnn"),
        ({"models": ()}, ValueError, "--models is empty"),
        ({"widths": (8, 0)}, ValueError, "--widths must be channel counts of at least 1"),
        ({"widths": ()}, ValueError, "--widths must be channel counts"),
        ({"reduction": 32}, ValueError, "--reduction 32 is larger than the narrowest stage"),
        ({"vit_patch": 5}, ValueError, "--vit-patch 5 does not divide 28"),
        ({"vit_dim": 30}, ValueError, "--vit-dim 30 does not split into 4 heads"),
        ({"val_size": 0}, ValueError, "--val-size must be at least 1"),
        ({"dropout": 1.5}, ValueError, "--dropout must be in [0, 1)"),
        ({"vit_lr": -1.0}, ValueError, "--vit-lr must be"),
        ({"budget_minutes": -2.0}, ValueError, "--budget-minutes must be"),
        ({"seeds": "3"}, TypeError, "--seeds must be an integer"),
        ({"data_dir": "/no/such/folder"}, ValueError, "--data-dir /no/such/folder is not a folder"),
    ],
)
def test_config_refuses_bad_values_in_one_line(kwargs, error, words):
    with pytest.raises(error) as info:
        ic.ImageClassifyConfig(**kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_val_size_as_large_as_the_training_split_is_named(fashion):
    cfg = ic.ImageClassifyConfig(**{**TINY, "val_size": 1_000_000})
    with pytest.raises(ValueError, match=r"held-out part must have 1\.\.\d+ of \d+ examples"):
        ic.prepare(cfg)


def test_explain_draws_each_trained_model_on_a_test_index_or_a_png(fashion, tmp_path):
    from matplotlib.image import imsave

    from attnlab.cli.main import main

    cfg = ic.ImageClassifyConfig(**{**TINY, "models": ("cnn", "cnn-cbam"), "examples": 0})
    run = run_experiment("image-classify", cfg, out=tmp_path / "run")
    out = tmp_path / "explained"
    assert main(["explain", "--model", str(run), "--image", "5", "--out", str(out)]) == 0
    summary = json.loads((out / "cnn-cbam" / "explain.json").read_text())
    assert summary["prediction"]["label"] in ic.load_fashion_mnist("test").classes
    assert {"maps", "html", "channels"} <= set(summary["files"])
    assert (out / "cnn" / "explain.json").is_file()
    png = tmp_path / "coat.png"
    imsave(png, torch.rand(40, 30, 3).numpy())  # any size and colour: made grey 28x28
    files = ic.explain(cfg, run, str(png), tmp_path / "from-png")
    assert tmp_path / "from-png" / "cnn-cbam" / "maps.png" in files
    bad = {
        "96": "--image 96 is outside the 96 test images",
        "nothing.png": "--image nothing.png is neither a test index nor a PNG file",
    }
    for image, words in bad.items():
        with pytest.raises(ValueError, match=words):
            ic.explain(cfg, run, image, tmp_path / "never")
