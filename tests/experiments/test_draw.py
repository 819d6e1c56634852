"""The DRAW experiment: data splits, a smoke run that learns, pictures, goal line, bad settings."""

import json
from pathlib import Path

import pytest
import torch

import attnlab.experiments.draw as draw
from attnlab.data.fashion_mnist import FashionMNIST
from attnlab.data.mnist import DIGITS
from attnlab.experiments import ModelResult, run_experiment
from attnlab.experiments._draw_pictures import animate_draw_steps, plot_draw_steps
from attnlab.experiments._draw_report import goal_lines
from attnlab.models.draw import DrawSteps
from attnlab.vision.draw_attention import DrawRead, draw_write
from experiments._fake_items import fake_fashion_mnist

PER_CLASS = 20


def fake_mnist_5k(*, data_dir=None):
    """200 fake digits sorted by label, like the real file; a bright block placed by class."""
    labels = torch.arange(10).repeat_interleave(PER_CLASS)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (len(labels), 28, 28), generator=g, dtype=torch.uint8)
    for k, label in enumerate(labels.tolist()):
        row, col = 4 + 2 * (label % 5), 4 + 10 * (label // 5)
        images[k, row : row + 8, col : col + 10] = 255
        # Digit k's number in binary along the top row: 0 and 255 survive any binarisation.
        images[k, 0, :8] = torch.tensor([255 * ((k >> j) & 1) for j in range(8)])
    return FashionMNIST(images, labels, DIGITS)


@pytest.fixture
def fake_data(monkeypatch):
    monkeypatch.setattr(draw, "load_mnist_5k", fake_mnist_5k)
    monkeypatch.setattr(draw, "load_fashion_mnist", fake_fashion_mnist)


TINY = {
    "seeds": 1,
    "epochs": 8,
    "batch_size": 16,
    "lr": 1e-2,
    "budget_minutes": 1.0,
    "time_steps": 2,
    "hidden_size": 8,
    "latent_size": 2,
    "train_size": 60,
    "val_size": 20,
    "test_size": 20,
    "examples": 2,
    "samples": 4,
    "device": "cpu",
}


@pytest.mark.usefixtures("fake_data")
def test_splits_are_stratified_disjoint_and_binary():
    cfg = draw.DrawConfig(**TINY)
    data = draw.prepare(cfg)
    assert list(data.splits) == ["mnist", "fashion"]
    for name, parts in data.splits.items():
        for split, size in zip(parts, (60, 20, 20), strict=True):
            assert split.images.shape == (size, 1, 28, 28)
            assert set(split.images.unique().tolist()) <= {0.0, 1.0}
            assert torch.bincount(split.targets, minlength=10).tolist() == [size // 10] * 10, name
    ids = [_ids(split) for split in data.splits["mnist"]]
    assert sum(map(len, ids)) == 100 and len(set().union(*ids)) == 100  # disjoint
    again = draw.prepare(draw.DrawConfig(**TINY, dataset="mnist"))
    assert list(again.splits) == ["mnist"]
    assert torch.equal(again.splits["mnist"][0].images, data.splits["mnist"][0].images)
    threshold = draw.prepare(draw.DrawConfig(**TINY, dataset="mnist", binarization="threshold"))
    assert [_ids(s) for s in threshold.splits["mnist"]] == ids
    # The noise (grey 0..39) is drawn black or white stochastically, always black at 127.
    assert (
        threshold.splits["mnist"][0].images[:, :, 1:].mean()
        < data.splits["mnist"][0].images[:, :, 1:].mean()
    )


def _ids(split):
    bits = split.images[:, 0, 0, :8].long()
    return set((bits * (2 ** torch.arange(8))).sum(1).tolist())


@pytest.mark.usefixtures("fake_data")
def test_smoke_run_learns_and_writes_results_report_and_pictures(tmp_path):
    cfg = draw.DrawConfig(**TINY)
    out = run_experiment("draw", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "draw"
    assert results["dataset"] == "binarized-mnist-5k+fashion-mnist-subset"
    entries = {r["model"]: r for r in results["results"]}
    assert list(entries) == [
        "mnist-draw", "mnist-draw-no-attention", "fashion-draw", "fashion-draw-no-attention"
    ]  # fmt: skip
    test = draw.prepare(cfg).splits["mnist"][2].images
    for key, entry in entries.items():
        metrics = entry["metrics"]
        assert list(metrics) == ["test_nll", "test_reconstruction", "test_kl", "seconds_per_epoch"]
        nll, rec, kl = (metrics[m]["mean"] for m in ("test_nll", "test_reconstruction", "test_kl"))
        assert nll == pytest.approx(rec + kl, rel=1e-5) and kl >= 0
        for picture in (f"steps_{key}.png", f"samples_{key}.png"):
            assert (out / picture).read_bytes()[:4] == b"\x89PNG"
        assert (out / f"steps_{key}.gif").read_bytes()[:6] == b"GIF89a"
        assert entry["pictures"] == [f"steps_{key}.png", f"steps_{key}.gif", f"samples_{key}.png"]
        assert entry["epochs_runs"] == [8]
    # Learning, not just running: an untrained model's bound is worse (784 ln 2 = 543 nats).
    # Two 5x5 writes can cover only 50 pixels, so the attention model gains less here.
    nll = {key: entries[f"mnist-{key}"]["metrics"]["test_nll"]["mean"] for key in draw.MODELS}
    for key, share in (("draw", 0.99), ("draw-no-attention", 0.85)):
        torch.manual_seed(0)
        untrained = draw.bound(draw.build(cfg, key), test)["nll"]
        assert untrained > 500 and nll[key] < share * untrained
    report = (out / "report.md").read_text()
    assert "attnlab run draw" in report and "80.97" in report and "87.40" in report
    assert "Goal (issue 15): DRAW with attention at least 3 nats better" in report
    assert "- binarised MNIST-5k: with attention " in report
    assert "- binarised Fashion-MNIST (stratified subset): with attention " in report
    assert "![mnist-draw](steps_mnist-draw.gif)" in report


def _result(model, runs):
    return ModelResult(model, {"test_nll": runs}, parameters=1, seconds=1.0)


def test_goal_line_says_reached_or_not():
    cfg = draw.DrawConfig(dataset="both")
    results = [
        _result("mnist-draw", [80.0, 82.0]),
        _result("mnist-draw-no-attention", [86.0, 86.0]),
        _result("fashion-draw", [240.0, 240.0]),
        _result("fashion-draw-no-attention", [241.0, 243.0]),
    ]
    text = "\n".join(goal_lines(cfg, results))
    assert "- binarised MNIST-5k: with attention 81.00 ± 1.41 nats, without 86.00 ± 0.00" in text
    assert "attention better by 5.00 nats: goal reached." in text
    assert "attention better by 2.00 nats: goal not reached." in text
    assert goal_lines(cfg, results[:1]) == []


def test_strip_and_gif_draw_the_windows(tmp_path):
    steps = DrawSteps(
        torch.rand(2, 3, 1, 28, 28),
        torch.tensor([14.5, 14.5, 1.0, 3.0, 1.0]).expand(2, 3, 5),
        torch.tensor([7.0, 20.0, 1.0, 2.0, 1.0]).expand(2, 3, 5),
    )
    images = torch.rand(2, 1, 28, 28)
    png = plot_draw_steps(images, steps, tmp_path / "s.png", read_size=2, write_size=5)
    gif = animate_draw_steps(images, steps, tmp_path / "s.gif", read_size=2, write_size=5)
    from PIL import Image

    with Image.open(gif) as frames:
        assert frames.n_frames == 3
    assert Path(png).stat().st_size > 0
    with pytest.raises(ValueError, match=r"canvases \(2, 3, 1, 28, 28\) do not match images"):
        plot_draw_steps(images[:1], steps, tmp_path / "bad.png", read_size=2, write_size=5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"models": ("draw", "vae")}, ValueError, "--models vae is unknown; choose from draw, "),
        ({"dataset": "cifar"}, ValueError, "--dataset must be one of mnist, fashion, both"),
        ({"time_steps": 0}, ValueError, "--time-steps must be at least 1, got 0"),
        ({"write_size": 29}, ValueError, "a grid larger than the 28x28 image"),
        ({"train_size": 4600}, ValueError, "more than the 5,000 digits of MNIST-5k"),
        ({"dataset": "fashion", "test_size": 20000}, ValueError, "at most 10,000"),
        ({"grad_clip": 0.0}, ValueError, "--grad-clip must be > 0"),
        ({"augment": True}, ValueError, "--augment does not apply to DRAW"),
        ({"budget_minutes": 0.0}, ValueError, "--budget-minutes must be > 0"),
    ],
)
def test_bad_settings_are_one_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        draw.DrawConfig(**kwargs)


def test_the_first_windows_tile_the_image_so_the_first_read_sees_the_digit():
    cfg = draw.DrawConfig(hidden_size=8, read_size=2, write_size=5)  # the paper's MNIST sizes
    model = draw.build(cfg, "draw")
    blob = torch.zeros(1, 1, 28, 28)
    blob[..., 10:18, 10:18] = 1.0  # a centred stroke, far from the corners
    h = torch.zeros(1, 8)
    glimpse, window = model.read(blob, blob, h)
    assert window[0].tolist() == pytest.approx([14.5, 14.5, 49.0, 14.0, 1.0])
    assert glimpse.min() > 0.05  # each of the 2x2 filters sees a quarter of the blob
    _, write = model.write(h)
    assert write[0].tolist() == pytest.approx([14.5, 14.5, 2.8**2, 5.6, 1 / 5.6**2])
    # Unit gain: a patch of ones adds about one logit to the pixels it covers.
    canvas = draw_write(torch.ones(1, 1, 5, 5), write, height=28, width=28).context
    assert 0.8 < canvas[0, 0, 8:20, 8:20].min() and canvas[0, 0, 8:20, 8:20].max() < 1.2
    # The module's own start (bias zero) puts the 2x2 filters on the corner pixels.
    corners, _ = DrawRead(8, 28, 28, size=2)(blob, blob, h)
    assert corners.abs().max() < 1e-6
