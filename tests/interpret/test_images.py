"""Attention over images: overlay values, PNG files, the HTML page, explain_image end to end."""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.image import imread

from attnlab.interpret.explain_image import explain_image, image_attention_maps
from attnlab.interpret.image_charts import (
    mean_excitation_by_class,
    plot_attention_distance,
    plot_channel_excitations,
)
from attnlab.interpret.image_page import MAX_MAPS, image_attention_html, image_attention_page
from attnlab.interpret.images import (
    overlay,
    plot_attention_grid,
    plot_image_maps,
    plot_query_attention,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path) -> np.ndarray:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
    return imread(io.BytesIO(data), format="png")


def _spot(h: int, w: int, at: tuple[int, int]) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.float64)
    m[at] = 1.0
    return m


# -- overlay ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image", [torch.rand(12, 20), torch.rand(1, 12, 20), torch.rand(3, 12, 20), np.zeros((12, 20))]
)
def test_overlay_shape_and_dtype(image):
    out = overlay(image, torch.rand(3, 5))
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8


def test_one_hot_cell_brightens_its_region():
    out = overlay(torch.zeros(16, 16), _spot(4, 4, (1, 2))).astype(float).sum(-1)
    region, elsewhere = out[4:8, 8:12], np.delete(out, np.s_[2:10], axis=0)
    assert region.min() > elsewhere.max()
    assert np.unravel_index(out.argmax(), out.shape)[0] in range(4, 8)


def test_alpha_zero_is_the_image_and_one_is_the_colour_map():
    image = torch.rand(3, 6, 7, dtype=torch.float64)
    expected = np.rint(255 * image.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(overlay(image, torch.rand(2, 2), alpha=0.0), expected)
    spot = overlay(image, _spot(6, 7, (2, 3)), alpha=1.0)
    viridis = colormaps["viridis"]
    np.testing.assert_array_equal(spot[2, 3], np.rint(255 * np.array(viridis(1.0)[:3])))
    np.testing.assert_array_equal(spot[0, 0], np.rint(255 * np.array(viridis(0.0)[:3])))


def test_map_is_bilinearly_upsampled_then_min_max_scaled():
    a = torch.rand(3, 4, dtype=torch.float64) * 5 + 2
    up = F.interpolate(a[None, None], size=(9, 16), mode="bilinear", align_corners=False)[0, 0]
    expected = (up - up.min()) / (up.max() - up.min())
    got = overlay(torch.zeros(9, 16), a, alpha=1.0, cmap="gray")[..., 0] / 255.0
    np.testing.assert_allclose(got, expected.numpy(), atol=1.5 / 255)  # 256-entry colour table


def test_constant_map_draws_all_low_and_uint8_equals_float():
    flat = overlay(torch.zeros(4, 4), torch.full((2, 2), 0.25), alpha=1.0)
    assert (flat == flat[0, 0]).all()
    pixels = torch.randint(0, 256, (5, 5), dtype=torch.uint8)
    m = torch.rand(5, 5)
    np.testing.assert_array_equal(overlay(pixels, m), overlay(pixels.double() / 255, m))


@pytest.mark.parametrize(
    ("image", "attention", "kwargs", "error", "match"),
    [
        (torch.rand(2, 5, 5), torch.rand(2, 2), {}, ValueError, r"\(H, W\), \(1, H, W\) or"),
        (torch.rand(1, 1, 5, 5), torch.rand(2, 2), {}, ValueError, "got .1, 1, 5, 5."),
        (torch.rand(5, 5) * 3, torch.rand(2, 2), {}, ValueError, "undo the input normal"),
        (torch.rand(5, 5), torch.rand(1, 2, 2), {}, ValueError, "attention must have 2 dim"),
        (torch.rand(5, 5), torch.full((2, 2), math.nan), {}, ValueError, "NaN"),
        (torch.rand(5, 5), torch.zeros(0, 2), {}, ValueError, "non-empty"),
        (torch.rand(5, 5), torch.rand(2, 2), {"alpha": 1.5}, ValueError, r"alpha must be in"),
    ],
)
def test_overlay_bad_input(image, attention, kwargs, error, match):
    with pytest.raises(error, match=match):
        overlay(image, attention, **kwargs)


# -- PNG pictures ------------------------------------------------------------------------


def test_attention_grid_and_image_maps_write_pngs(tmp_path):
    images, maps = torch.rand(3, 1, 10, 10), torch.rand(3, 5, 5)
    out = plot_attention_grid(images, maps, ["a", "$b$", "c"], tmp_path / "sub" / "g.png", ncols=2)
    assert out == tmp_path / "sub" / "g.png"
    assert _png(out).shape[1] > _png(out).shape[0]  # 2 pairs per row, 2 rows: wider than tall
    named = {"stage 1": torch.rand(10, 10), "stage 2": torch.rand(5, 5), "gate": np.ones((2, 2))}
    _png(plot_image_maps(images[0], named, tmp_path / "m.png", title="soft masks"))


def test_attention_grid_bad_input(tmp_path):
    with pytest.raises(ValueError, match="got 3, 2 and 3"):
        plot_attention_grid(torch.rand(3, 4, 4), torch.rand(2, 2, 2), path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="got 2, 2 and 1"):
        plot_attention_grid(torch.rand(2, 4, 4), torch.rand(2, 2, 2), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="images is empty"):
        plot_attention_grid([], [], path=tmp_path / "x.png")
    with pytest.raises(TypeError, match="images must be a sequence or a batch tensor, got str"):
        plot_attention_grid("cat.png", [], path=tmp_path / "x.png")
    with pytest.raises(TypeError, match="path is required"):
        plot_attention_grid(torch.rand(1, 4, 4), torch.rand(1, 2, 2))
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        plot_attention_grid(torch.rand(1, 4, 4), torch.rand(1, 2, 2), path=tmp_path / "x", ncols=0)
    with pytest.raises(ValueError, match="maps is empty"):
        plot_image_maps(torch.rand(4, 4), {}, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_query_attention_reads_the_row_of_the_query_cell(tmp_path, monkeypatch):
    import attnlab.interpret.images as images

    drawn = []
    monkeypatch.setattr(
        images, "overlay", lambda img, m, **kw: drawn.append(m) or np.zeros((12, 16, 3))
    )
    w = torch.arange(12 * 6, dtype=torch.float64).reshape(12, 6)  # row q holds 6q..6q+5
    points = [(0, 0), (11, 15), (5, 9)]
    plot_query_attention(torch.rand(12, 16), w, (3, 4), points, tmp_path / "q.png", key_hw=(2, 3))
    # (row, col) -> cell (row * 3 // 12) * 4 + col * 4 // 16: 0, 11 and 1 * 4 + 2 = 6.
    assert [int(m[0, 0]) // 6 for m in drawn] == [0, 11, 6]
    assert all(m.shape == (2, 3) for m in drawn)
    _png(tmp_path / "q.png")
    drawn.clear()  # keys max-pooled to the half grid: inferred
    plot_query_attention(torch.rand(8, 8), torch.rand(16, 4), (4, 4), [(1, 1)], tmp_path / "h")
    assert drawn[0].shape == (2, 2)


def test_query_attention_bad_input(tmp_path):
    w = torch.rand(16, 16)
    cases = [
        (torch.rand(15, 16), (4, 4), [(1, 1)], "15 query rows but grid_hw"),
        (torch.rand(16, 5), (4, 4), [(1, 1)], "neither h . w = 16 nor"),
        (w, (4, 4), [], "query_points is empty"),
        (w, (4, 4), [(8, 2)], r"\(8, 2\) is outside the 8x8 image"),
        (w, (4, 0), [(1, 1)], r"grid_hw\[1\] must be >= 1"),
    ]
    for weights, grid, points, match in cases:
        with pytest.raises(ValueError, match=match):
            plot_query_attention(torch.rand(8, 8), weights, grid, points, tmp_path / "q.png")
    with pytest.raises(ValueError, match="16 key columns but key_hw"):
        plot_query_attention(torch.rand(8, 8), w, (4, 4), [(1, 1)], tmp_path / "q", key_hw=(3, 3))


# -- charts -------------------------------------------------------------------------------


def test_mean_excitation_by_class_golden_and_errors():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])[:, :, None, None]
    got = mean_excitation_by_class(e, torch.tensor([2, 0, 2]), 3)
    expected = torch.tensor([[0.0, 1.0], [math.nan, math.nan], [0.75, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(got, expected, equal_nan=True)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got 0..3"):
        mean_excitation_by_class(e, torch.tensor([0, 3, 1]), 3)
    with pytest.raises(ValueError, match=r"with labels \(N,\), got \(3, 2, 1, 1\) and \(2,\)"):
        mean_excitation_by_class(e, torch.tensor([0, 1]), 3)


def test_channel_excitations_png_and_errors(tmp_path):
    stages = {"stage 1": torch.rand(3, 8), "stage 2": torch.rand(3, 16)}
    _png(plot_channel_excitations(stages, ["Bag", "Coat", "$x$"], tmp_path / "se.png"))
    with pytest.raises(ValueError, match=r"'stage 2'\] has 2 rows but class_names has 3"):
        stages["stage 2"] = torch.rand(2, 16)
        plot_channel_excitations(stages, ["Bag", "Coat", "x"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="excitations is empty"):
        plot_channel_excitations({}, ["Bag"], tmp_path / "x.png")


def test_attention_distance_png_and_errors(tmp_path):
    _png(plot_attention_distance(torch.rand(12, 3) * 100, tmp_path / "d.png", title="ViT"))
    with pytest.raises(ValueError, match="must be non-negative"):
        plot_attention_distance(-torch.rand(2, 2), tmp_path / "x.png")
    with pytest.raises(ValueError, match="must have 2 dimension"):
        plot_attention_distance(torch.rand(4), tmp_path / "x.png")


# -- HTML page ------------------------------------------------------------------------------


def _cards(page: str) -> list[str]:
    return page.split('<div class="example card">')[1:]


def test_page_is_self_contained_with_one_tab_per_map(tmp_path):
    maps = {"CBAM": torch.rand(3, 4, 4), "rollout": [torch.rand(2, 2) for _ in range(3)]}
    out = image_attention_page(
        torch.rand(3, 1, 8, 8),
        maps,
        ["Bag", "Coat", "Bag"],
        tmp_path / "p.html",
        predictions=["Bag", "Bag", "Bag"],
    )
    page = out.read_text(encoding="utf-8")
    assert "http" not in page and "<script" not in page and "url(" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 3 * (1 + 2)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        picture = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert picture.shape[:2] == (8, 8)
    cards = _cards(page)
    assert len(cards) == 3
    for card in cards:  # the first overlay shows by default, the others one tab away
        radios = re.findall(r"<input [^>]*>", card)
        assert len(radios) == 2 and "checked" in radios[0] and "checked" not in radios[1]
        assert re.findall(r"<label for=[^>]*>([^<]*)</label>", card) == ["CBAM", "rollout"]
    assert [re.search(r'label (\w+)">', c).group(1) for c in cards] == [
        "correct",
        "wrong",
        "correct",
    ]


def test_page_escapes_labels_names_and_title():
    bad = "<script>alert(1)</script>"
    page = image_attention_html(
        torch.rand(1, 4, 4), {bad: torch.rand(1, 2, 2)}, [bad], predictions=["a&b"], title=bad
    )
    assert "<script" not in page and page.count("&lt;script&gt;") >= 4 and "a&amp;b" in page


def test_page_bad_input(tmp_path):
    images = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match=r"images: 2, maps_by_name\['A'\]: 1"):
        image_attention_html(images, {"A": torch.rand(1, 2, 2)})
    with pytest.raises(ValueError, match="labels: 3"):
        image_attention_html(images, {"A": torch.rand(2, 2, 2)}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="maps_by_name is empty"):
        image_attention_html(images, {})
    too_many = {f"m{i}": torch.rand(2, 2, 2) for i in range(MAX_MAPS + 1)}
    with pytest.raises(ValueError, match=f"at most {MAX_MAPS}"):
        image_attention_html(images, too_many)
    with pytest.raises(ValueError, match="attention must have 2 dim"):
        image_attention_html(images, {"A": torch.rand(2, 1, 2, 2)})
    with pytest.raises(TypeError, match="path is required"):
        image_attention_page(images, {"A": torch.rand(2, 2, 2)}, None)


# -- explain_image ---------------------------------------------------------------------------


def _files(tmp_path, summary):
    for name in summary["files"].values():
        assert (tmp_path / name).stat().st_size > 500
    assert json.loads((tmp_path / "explain.json").read_text()) == summary


def test_explain_cbam_convnet(tmp_path):
    from attnlab.models.convnet import ConvNet
    from attnlab.vision.cbam import CBAM

    torch.manual_seed(0)
    model = ConvNet(1, 3, widths=(4, 8), block=functools.partial(CBAM, reduction=2)).train()
    image = torch.randint(0, 256, (12, 12), dtype=torch.uint8)
    summary = explain_image(model, image, tmp_path, class_names=["a", "b", "c"], title="cbam")
    assert model.training  # mode restored
    assert summary["maps"] == {
        "stages.0.block.channel": {"shape": [4, 1, 1], "kind": "channels"},
        "stages.0.block.spatial": {"shape": [1, 12, 12], "kind": "spatial"},
        "stages.1.block.channel": {"shape": [8, 1, 1], "kind": "channels"},
        "stages.1.block.spatial": {"shape": [1, 6, 6], "kind": "spatial"},
    }
    assert set(summary["files"]) == {"maps", "html", "channels"}
    assert summary["prediction"]["label"] in {"a", "b", "c"}
    _files(tmp_path, summary)
    with pytest.raises(KeyError, match="no attention map matches 'nothing'"):
        explain_image(model, image, tmp_path, maps=["nothing"])
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        explain_image(model, image, tmp_path, class_names=["a", "b"])


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_explain_vit_draws_rollout_and_distance(tmp_path, pool):
    from attnlab.models.vit import VisionTransformer

    model = VisionTransformer((8, 12), 4, 3, 5, dim=8, depth=2, heads=2, pool=pool)
    summary = explain_image(model, torch.rand(3, 8, 12), tmp_path)
    assert [m["kind"] for m in summary["maps"].values()] == ["tokens", "tokens"]
    assert np.asarray(summary["mean_attention_distance"]).shape == (2, 2)
    assert set(summary["files"]) == {"maps", "html", "distance"}
    assert "rollout" in (tmp_path / "explain.html").read_text()
    _files(tmp_path, summary)


def test_explain_non_local_and_gates(tmp_path):
    from attnlab.models.convnet import ConvNet
    from attnlab.models.unet import UNet
    from attnlab.vision.attention_gate import AttentionGate
    from attnlab.vision.non_local import NonLocalBlock

    net = ConvNet(1, 3, widths=(4, 8), block=NonLocalBlock, block_at=[1])
    summary = explain_image(net, torch.rand(1, 8, 8), tmp_path / "nl", query_points=[(1, 2)])
    assert summary["maps"] == {"stages.1.block": {"shape": [16, 16], "kind": "query"}}
    _files(tmp_path / "nl", summary)
    unet = UNet(1, 1, widths=(4, 8), gate=AttentionGate)
    summary = explain_image(unet, torch.rand(8, 8), tmp_path / "unet")
    assert summary["maps"] == {"gates.0": {"shape": [1, 8, 8], "kind": "spatial"}}
    assert (
        "prediction" not in summary
        and "output (sigmoid)" in (tmp_path / "unet" / "explain.html").read_text()
    )


def test_attention_maps_lists_passed_on_weights_once():
    from attnlab.vision.cbam import CBAM
    from attnlab.vision.squeeze_excite import SqueezeExcite

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([SqueezeExcite(4, reduction=2), CBAM(4, reduction=2)])

        def forward(self, x):
            for block in self.blocks:
                x = block(x).context
            return x

    net = Net()
    _, maps = image_attention_maps(net, torch.rand(2, 4, 5, 5))
    assert {n: tuple(w.shape) for n, (w, _) in maps.items()} == {
        "blocks.0": (2, 4, 1, 1),
        "blocks.1.channel": (2, 4, 1, 1),
        "blocks.1.spatial": (2, 1, 5, 5),
    }
    assert all(is_block for _, is_block in maps.values())
    _, some = image_attention_maps(net, torch.rand(2, 4, 5, 5), layers=["blocks.1.*"])
    assert list(some) == ["blocks.1.channel", "blocks.1.spatial"]


def test_attention_maps_of_torch_multihead_attention_are_token_maps():
    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(6, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    _, maps = image_attention_maps(Tokens().eval(), torch.rand(1, 5, 6))
    (weights, is_block) = maps["attn"]
    assert weights.shape == (1, 2, 5, 5) and not is_block
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 5))


def test_patch_grid_is_inferred_without_the_model_telling():
    from attnlab.interpret.explain_image import _patch_grid

    plain = torch.nn.Identity()
    assert _patch_grid(plain, 17, (28, 28)) == (4, 4)  # class token + 4x4 patches of 7
    assert _patch_grid(plain, 6, (8, 12)) == (2, 3)  # no prefix token, 2x3 patches of 4
    assert _patch_grid(plain, 10, (28, 28)) is None
