"""The segment experiment: smoke run, Dice by target size, the gates it draws, bad settings."""

import json

import pytest
import torch

import attnlab.experiments.segment as segment
from attnlab.experiments import run_experiment
from attnlab.interpret.capture import capture
from experiments._fake_items import TINY, fake_items  # noqa: F401 (fixture)


@pytest.mark.usefixtures("fake_items")
def test_smoke_run_writes_dice_by_size_pictures_and_page(tmp_path):
    cfg = segment.SegmentConfig(**{**TINY, "widths": (4, 8, 16)})  # two gates
    out = run_experiment("segment", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "segment" and results["dataset"] == "fashion-mnist-segment"
    assert [r["model"] for r in results["results"]] == ["unet", "attention-unet"]
    sizes = [f"test_dice_size_{s}" for s in (10, 16, 22, 28)]
    for entry in results["results"]:
        metrics = entry["metrics"]
        assert list(metrics) == ["test_dice", *sizes, "seconds_per_epoch"]
        # 16 test canvases, 4 of each size: the overall Dice is the mean of the four.
        by_size = [metrics[name]["mean"] for name in sizes]
        assert metrics["test_dice"]["mean"] == pytest.approx(sum(by_size) / 4, abs=1e-6)
        assert all(0 <= d <= 1 for d in by_size)
    for picture in ("masks_unet.png", "maps_unet.png", "masks_attention-unet.png",
                    "attention_attention-unet.png", "maps_attention-unet.png"):  # fmt: skip
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    page = (out / "attention.html").read_text()
    assert page.index("true mask") < page.index("unet: predicted mask")
    assert "attention-unet: gate 1 (64x64)" in page and "attention-unet: gate 2 (32x32)" in page
    assert "target 10 px" in page
    report = (out / "report.md").read_text()
    assert "| model | 10 px (4 canvases) | 16 px (4 canvases)" in report
    assert "on the smallest targets (10 px). Measured: " in report


def test_gate_maps_are_the_captured_coefficients_finest_first():
    torch.manual_seed(0)
    model = segment._build(segment.SegmentConfig(widths=(4, 8, 16)), "attention-unet").eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        maps = segment.gate_maps(model, x)
        with capture(model) as seen:
            model(x)
    assert list(maps) == ["gate 1 (64x64)", "gate 2 (32x32)"]
    torch.testing.assert_close(maps["gate 1 (64x64)"], seen["gates.0"][:, 0])
    torch.testing.assert_close(maps["gate 2 (32x32)"], seen["gates.1"][:, 0])
    assert segment._build(segment.SegmentConfig(), "unet").gates is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"models": ("unet", "segnet")}, "--models segnet is unknown; choose from unet, "),
        ({"sizes": (10, 80)}, r"--sizes must be sides of 1 to 64 pixels, got \(10, 80\)"),
        ({"sizes": ()}, r"--sizes must be sides of 1 to 64 pixels, got \(\)"),
        ({"sizes": (10, 10)}, "--sizes names a side twice"),
        ({"widths": (16,)}, "--widths must be 2 to 7 channel counts"),
        ({"clutter": -2}, "--clutter must be at least 0, got -2"),
    ],
)
def test_bad_settings_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment.SegmentConfig(**kwargs)
