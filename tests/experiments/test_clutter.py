"""The clutter experiment: a smoke run on tiny worlds, the maps it scores, bad settings."""

import json

import pytest
import torch

import attnlab.experiments.clutter as clutter
from attnlab.data.image_worlds import attention_in_box, uniform_box_share
from attnlab.experiments import run_experiment
from attnlab.interpret.explain_image import image_attention_maps
from experiments._fake_items import TINY, fake_items  # noqa: F401 (fixture)

SMALL_VIT = {"vit_dim": 8, "vit_depth": 1, "vit_heads": 2}


@pytest.mark.usefixtures("fake_items")
def test_smoke_run_writes_results_report_pictures_and_page(tmp_path):
    cfg = clutter.ClutterConfig(**TINY, **SMALL_VIT)
    out = run_experiment("clutter", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "clutter" and results["dataset"] == "fashion-mnist-clutter"
    assert set(results["environment"]) == {"torch", "python", "threads", "device", "commit"}
    entries = {r["model"]: r for r in results["results"]}
    assert list(entries) == ["cnn", "cnn-cbam", "gated", "vit"]
    assert set(entries["cnn"]["metrics"]) == {"test_accuracy", "seconds_per_epoch"}
    worlds = clutter.prepare(cfg)
    uniform = float(uniform_box_share(worlds.test.boxes).mean())
    for name in ("cnn-cbam", "gated", "vit"):
        metrics = entries[name]["metrics"]
        assert list(metrics) == [
            "test_accuracy", "seconds_per_epoch", "localisation", "localisation_uniform"
        ]  # fmt: skip
        assert 0 <= metrics["localisation"]["mean"] <= 1
        assert metrics["localisation_uniform"]["runs"] == [pytest.approx(uniform)]
        scored = list(entries[name]["localisation_by_map_runs"][0].values())[-1]
        assert metrics["localisation"]["runs"] == [scored]
        for picture in (f"attention_{name}.png", f"maps_{name}.png"):
            assert (out / picture).read_bytes()[:4] == b"\x89PNG"
            assert picture in entries[name]["pictures"]
    assert list(entries["cnn-cbam"]["localisation_by_map_runs"][0]) == [
        "CBAM stage 1",
        "CBAM stage 2",
    ]
    page = (out / "attention.html").read_text()
    assert "gated: gate on stage 1" in page and "vit: rollout" in page
    for label in worlds.splits.test.targets[:4]:
        assert f"true: {clutter.CLASSES[int(label)]}" in page
    report = (out / "report.md").read_text()
    assert "attnlab run clutter" in report and "localisation" in report and "n/a" in report
    assert "Goal: CBAM's or the gate's localisation at least 0.5" in report
    assert "Measured: cnn-cbam 0." in report and "; gated 0." in report


def _trained_like(name, cfg):
    torch.manual_seed(0)
    model = clutter.MODELS[name].build(cfg).eval()
    for m in model.modules():  # move the norms off their identity start
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
    return model


@pytest.mark.usefixtures("fake_items")
def test_the_scored_maps_are_the_models_own_attention():
    cfg = clutter.ClutterConfig(**TINY, **SMALL_VIT)
    worlds = clutter.prepare(cfg)
    images = worlds.splits.test.images[:6]
    x = worlds.splits.prepare(images)
    gated = _trained_like("gated", cfg)
    maps = clutter.attention_maps(clutter.MODELS["gated"].maps, gated, worlds, images)
    _, alphas = gated.forward_with_weights(x)
    assert list(maps) == ["gate on stage 1", "gate on stage 2"]
    torch.testing.assert_close(maps["gate on stage 1"], alphas[0][:, 0].detach())
    torch.testing.assert_close(maps["gate on stage 2"], alphas[1][:, 0].detach())
    cbam = _trained_like("cnn-cbam", cfg)
    maps = clutter.attention_maps(clutter.MODELS["cnn-cbam"].maps, cbam, worlds, images)
    _, found = image_attention_maps(cbam, x)
    for stage in (0, 1):
        spatial = found[f"stages.{stage}.block.spatial"][0][:, 0]
        torch.testing.assert_close(maps[f"CBAM stage {stage + 1}"], spatial)
    vit = _trained_like("vit", cfg)
    rollout = clutter.attention_maps(clutter.MODELS["vit"].maps, vit, worlds, images)["rollout"]
    assert rollout.shape == (6, 8, 8) and (rollout >= 0).all()
    share = attention_in_box(rollout, worlds.test.boxes[:6])
    assert ((share >= 0) & (share <= 1)).all()
    assert clutter.MODELS["cnn"].maps is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"models": ("cnn", "rnn")}, ValueError, "--models rnn is unknown; choose from cnn, "),
        ({"models": ("cnn", "cnn")}, ValueError, "--models names cnn twice"),
        ({"widths": (8,)}, ValueError, "--widths must be 2 to 7 channel counts"),
        ({"reduction": 32}, ValueError, "--reduction 32 is larger than the narrowest stage"),
        ({"vit_patch": 7}, ValueError, "--vit-patch 7 does not divide the 64-pixel canvas"),
        ({"vit_dim": 30}, ValueError, r"--vit-dim must be a multiple of 4 \(--vit-heads\)"),
        ({"clutter": -1}, ValueError, "--clutter must be at least 0, got -1"),
        ({"dropout": 1.0}, ValueError, r"--dropout must be in \[0, 1\)"),
        ({"budget_minutes": 0.0}, ValueError, "--budget-minutes must be > 0"),
        ({"seeds": "3"}, TypeError, "--seeds must be an integer, got '3'"),
    ],
)
def test_bad_settings_are_one_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        clutter.ClutterConfig(**kwargs)
