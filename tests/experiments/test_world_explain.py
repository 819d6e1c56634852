"""``attnlab explain --model RUN --image ...`` on runs of the experiments on worlds of items."""

import json

import pytest
import torch

from attnlab.cli.main import main
from attnlab.experiments import get_experiment, run_experiment
from experiments._fake_items import TINY, fake_items  # noqa: F401 (fixture)

SMALL_VIT = {"vit_dim": 8, "vit_depth": 1, "vit_heads": 2, "vit_patch": 16}

# experiment -> (its Config's settings, model -> files its explain folder must hold)
CASES = {
    "clutter": (
        {**TINY, **SMALL_VIT, "models": ("cnn-cbam", "gated", "vit")},
        {"cnn-cbam": {"maps", "channels"}, "gated": {"maps"}, "vit": {"maps", "distance"}},
    ),
    "same-different": (
        {**TINY, "models": ("cnn", "cnn-nonlocal")},
        {"cnn": set(), "cnn-nonlocal": {"query stages.1.block"}},
    ),
    "segment": (
        {**TINY, "widths": (4, 8, 16)},
        {"unet": {"maps"}, "attention-unet": {"maps"}},
    ),
}


def _run(name: str, tmp_path):
    settings, _ = CASES[name]
    cfg = get_experiment(name).config(**{**settings, "examples": 0})
    return cfg, run_experiment(name, cfg, out=tmp_path / "run")


@pytest.mark.usefixtures("fake_items")
@pytest.mark.parametrize("name", list(CASES))
def test_explain_draws_each_trained_model_on_a_test_canvas(name, tmp_path):
    _, run = _run(name, tmp_path)
    out = tmp_path / "explained"
    assert main(["explain", "--model", str(run), "--image", "3", "--out", str(out)]) == 0
    for model, files in CASES[name][1].items():
        summary = json.loads((out / model / "explain.json").read_text())
        assert files <= set(summary["files"]), (model, summary["files"])
        assert summary["image"] == [1, 64, 64]
        for file in summary["files"].values():
            assert (out / model / file).stat().st_size > 0


@pytest.mark.usefixtures("fake_items")
def test_same_different_queries_the_centres_of_both_items(tmp_path, monkeypatch):
    import attnlab.experiments._image_explain as image_explain
    import attnlab.experiments.same_different as sd

    cfg, run = _run("same-different", tmp_path)
    asked = []
    monkeypatch.setattr(
        image_explain, "explain_models", lambda *a, **k: asked.append(k["query_points"]) or []
    )
    spec = get_experiment("same-different")
    spec.explain_image(cfg, run, "3", tmp_path / "a")
    boxes = sd.prepare(cfg).test.boxes[3]  # (2 items, (x0, y0, x1, y1))
    rows, cols = (boxes[:, 1] + boxes[:, 3]) // 2, (boxes[:, 0] + boxes[:, 2]) // 2
    assert asked == [list(zip(rows.tolist(), cols.tolist()))]
    spec.explain_image(cfg, run, str(_png(tmp_path)), tmp_path / "b")
    assert asked[-1] is None  # a PNG has no known items: the block's default, the centre


@pytest.mark.usefixtures("fake_items")
def test_segment_shows_the_predicted_mask_and_refuses_a_bad_index(tmp_path):
    cfg, run = _run("segment", tmp_path)
    spec = get_experiment("segment")
    files = spec.explain_image(cfg, run, str(_png(tmp_path)), tmp_path / "png")
    assert tmp_path / "png" / "attention-unet" / "maps.png" in files
    summary = json.loads((tmp_path / "png" / "unet" / "explain.json").read_text())
    assert "prediction" not in summary  # a mask, not classes
    with pytest.raises(ValueError, match="--image 16 is outside the 16 test images"):
        spec.explain_image(cfg, run, "16", tmp_path / "never")


def _png(tmp_path):
    from matplotlib.image import imsave

    path = tmp_path / "canvas.png"
    imsave(path, torch.rand(50, 70, 3).numpy())  # any size and colour: made grey 64x64
    return path
