"""The same-different experiment: smoke run, where the non-local block looks, bad settings."""

import json

import pytest
import torch

import attnlab.experiments.same_different as sd
from attnlab.data.image_worlds import attention_in_box
from attnlab.experiments import run_experiment
from attnlab.interpret.capture import capture
from attnlab.models.convnet import ConvNet
from experiments._fake_items import TINY, fake_items  # noqa: F401 (fixture)


@pytest.mark.usefixtures("fake_items")
def test_smoke_run_writes_results_report_pictures_and_page(tmp_path):
    cfg = sd.SameDifferentConfig(**TINY)
    out = run_experiment("same-different", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "same-different"
    assert results["dataset"] == "fashion-mnist-same-different"
    cnn, nonlocal_ = results["results"]
    assert (cnn["model"], nonlocal_["model"]) == ("cnn", "cnn-nonlocal")
    assert set(cnn["metrics"]) == {"test_accuracy", "seconds_per_epoch"}
    metrics = nonlocal_["metrics"]
    assert {"attention_to_partner", "attention_to_partner_uniform"} <= set(metrics)
    assert 0 <= metrics["attention_to_partner"]["mean"] <= 1
    assert nonlocal_["parameters"] > cnn["parameters"]
    for picture in ("attention_cnn-nonlocal.png", "query_cnn-nonlocal.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    page = (out / "attention.html").read_text()
    assert "cnn-nonlocal: from item 1" in page and "cnn-nonlocal: from item 2" in page
    report = (out / "report.md").read_text()
    assert "receptive field of the last stage 14x14 px" in report  # two stages
    assert "Goal: the non-local model at least 10 points above the CNN. Measured: " in report


@pytest.mark.usefixtures("fake_items")
def test_partner_attention_reads_the_rows_of_the_item_centres():
    cfg = sd.SameDifferentConfig(**TINY)
    worlds = sd.prepare(cfg)
    torch.manual_seed(0)
    model = sd._build(cfg, "cnn-nonlocal").eval()
    torch.nn.init.normal_(model.stages[1].block.theta.weight, std=3.0)  # a peaked softmax
    maps, shares = sd.partner_attention(model, worlds, 5)
    assert maps.shape == (5, 2, 32, 32) and shares.shape == (5, 2)
    x = worlds.splits.prepare(worlds.splits.test.images[:5])
    with torch.no_grad(), capture(model) as seen:
        model(x)
    weights = seen["stages.1.block"]  # (5, 1024, 1024) on the 32x32 grid of stage 2
    for i in range(5):
        for k in range(2):
            x0, y0, x1, y1 = worlds.test.boxes[i, k].tolist()
            row, col = (y0 + y1) // 2, (x0 + x1) // 2
            expected = weights[i, (row // 2) * 32 + col // 2].reshape(32, 32)
            torch.testing.assert_close(maps[i, k], expected)
            other = worlds.test.boxes[i : i + 1, 1 - k]
            share = attention_in_box(expected[None], other)
            torch.testing.assert_close(shares[i, k], share[0])


@pytest.mark.parametrize("stages", [2, 3])
def test_the_receptive_field_is_what_the_input_gradient_reaches(stages):
    torch.manual_seed(0)
    net = ConvNet(1, 2, widths=(3,) * stages).eval()
    reached = torch.zeros(64, 64, dtype=torch.bool)
    for _ in range(8):  # max-pools pass gradients through one pixel each: take the union
        x = torch.randn(1, 1, 64, 64, requires_grad=True)
        features = net.features(x)
        centre = features.shape[-1] // 2
        features[0, :, centre, centre].sum().backward()
        reached |= x.grad[0, 0] != 0
    rows, cols = reached.any(1).nonzero(), reached.any(0).nonzero()
    assert int(rows.max() - rows.min()) + 1 == sd.receptive_field(stages)
    assert int(cols.max() - cols.min()) + 1 == sd.receptive_field(stages)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"models": ("cnn", "vit")}, "--models vit is unknown; choose from cnn, cnn-nonlocal"),
        ({"nonlocal_stage": 3}, r"--nonlocal-stage must be in 0..2, got 3"),
        ({"min_distance": -1.0}, "--min-distance must be at least 0"),
        ({"widths": (8, 16, 0)}, "--widths must be 2 to 7 channel counts of at least 1"),
        ({"val_size": 0}, "--val-size must be at least 1"),
    ],
)
def test_bad_settings_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sd.SameDifferentConfig(**kwargs)
