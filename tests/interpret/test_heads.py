"""Head grids and token attribution bars: real PNGs, truncation notes, caps, input checks."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from attnlab.interpret.heads import (
    MAX_PANELS,
    head_grid_figure,
    plot_head_grid,
    plot_token_attribution,
    select_heads,
    token_attribution_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def toks(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


def model(n_layers: int, n_heads: int, length: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n_heads, length, length)
    return [torch.softmax(torch.randn(shape, generator=g), -1) for _ in range(n_layers)]


# --- selection (pure) ----------------------------------------------------------------


def test_select_defaults_to_everything_without_note() -> None:
    sel = select_heads(3, 4, 10)
    assert (sel.layers, sel.heads, sel.shown, sel.total, sel.note) == (
        (0, 1, 2),
        (0, 1, 2, 3),
        10,
        10,
        "",
    )


def test_select_negative_indices_and_truncation_note() -> None:
    sel = select_heads(12, 12, 300, layers=[0, -1], heads=[-2, 3], max_tokens=64)
    assert sel.layers == (0, 11) and sel.heads == (10, 3)
    assert (sel.shown, sel.note) == (64, "first 64 of 300 tokens shown")


def test_select_caps_panels() -> None:
    assert len(select_heads(12, 12, 5).layers) == 12  # 144 panels: allowed
    with pytest.raises(ValueError, match="--layers/--heads") as exc:
        select_heads(24, 16, 5)
    assert "384 panels" in str(exc.value) and str(MAX_PANELS) in str(exc.value)
    assert select_heads(24, 16, 5, layers=[0, 5, 11], heads=None).heads == tuple(range(16))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layers": [3]}, ValueError, "layers index 3 is out of range for 3 layers"),
        ({"layers": [-4]}, ValueError, "out of range"),
        ({"heads": [4]}, ValueError, "heads index 4"),
        ({"heads": []}, ValueError, "heads is empty"),
        ({"layers": [0.0]}, TypeError, "integers"),
        ({"layers": 1}, TypeError, "sequence"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
    ],
)
def test_select_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as exc:
        select_heads(3, 4, 10, **kwargs)
    assert "\n" not in str(exc.value)


# --- head grid -----------------------------------------------------------------------


def test_head_grid_writes_png(tmp_path: Path) -> None:
    out = plot_head_grid(model(2, 3, 5), toks(5), tmp_path / "sub" / "g.png", title="demo", dpi=40)
    assert out == tmp_path / "sub" / "g.png"
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_head_grid_accepts_batch_of_one_and_numpy(tmp_path: Path) -> None:
    att = [a[None].numpy() for a in model(2, 3, 5)]
    fig = head_grid_figure(att, toks(5))
    assert len(fig.axes) == 6


def test_head_grid_panels_follow_selection_with_labels_for_short_input() -> None:
    att = model(4, 5, 7)
    fig = head_grid_figure(att, toks(7), layers=[3, 1], heads=[0, 4, 2])
    assert len(fig.axes) == 6
    first = fig.axes[0]
    np.testing.assert_allclose(first.images[0].get_array(), att[3][0].numpy(), rtol=1e-6)
    assert first.get_title() == "head 0" and first.get_ylabel() == "layer 3"
    assert fig.axes[3].get_ylabel() == "layer 1"
    # Token labels: y on the first column, x on the bottom row.
    assert [t.get_text() for t in first.get_yticklabels()] == toks(7)
    assert [t.get_text() for t in fig.axes[3].get_xticklabels()] == toks(7)
    assert "first" not in fig.get_suptitle()


def test_head_grid_truncates_long_input_with_note() -> None:
    fig = head_grid_figure(model(1, 2, 80), toks(80), max_tokens=64, title="long")
    assert fig.get_suptitle().startswith("long")
    assert "(first 64 of 80 tokens shown)" in fig.get_suptitle()
    assert fig.axes[0].images[0].get_array().shape == (64, 64)
    assert fig.axes[0].get_xticklabels() == []  # too many tokens to label


@pytest.mark.parametrize(
    ("att", "tokens", "kwargs", "error", "match"),
    [
        (model(2, 3, 5), toks(4), {}, ValueError, "tokens has 4 tokens"),
        (model(2, 3, 5), toks(5), {"layers": [2]}, ValueError, "layers index 2"),
        (model(2, 3, 5), toks(5), {"heads": [-4]}, ValueError, "heads index -4"),
        ([torch.ones(2, 3, 5, 5)], toks(5), {}, ValueError, "batch of 2"),
        ([torch.ones(3, 5, 5), torch.ones(3, 4, 4)], toks(5), {}, ValueError, "has shape"),
        (model(1, 1, 3), "abc", {}, TypeError, "list of strings"),
        (model(13, 12, 3), toks(3), {}, ValueError, "panels"),
    ],
)
def test_head_grid_bad_input(
    att: list, tokens: list, kwargs: dict, error: type[Exception], match: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=match) as exc:
        plot_head_grid(att, tokens, tmp_path / "bad.png", **kwargs)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "bad.png").exists()


# --- token attribution ---------------------------------------------------------------


def test_attribution_writes_png(tmp_path: Path) -> None:
    scores = torch.softmax(torch.randn(12), -1)
    out = plot_token_attribution(scores, toks(12), tmp_path / "a.png", title="rollout", dpi=40)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_attribution_shows_128_tokens_without_note() -> None:
    fig = token_attribution_figure(np.linspace(0, 1, 128), toks(128), title="t")
    ax = fig.axes[0]
    assert len(ax.patches) == 128
    assert ax.get_title() == "t"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "w0" and labels[-1] == "w127"
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # first token at the top


def test_attribution_truncates_with_note() -> None:
    ax = token_attribution_figure(np.ones(300), toks(300), max_tokens=100).axes[0]
    assert len(ax.patches) == 100
    assert ax.get_title() == "(first 100 of 300 tokens shown)"


def test_attribution_colours_negative_scores_apart() -> None:
    ax = token_attribution_figure([0.5, -0.25, 0.0], ["a", "b", "c"]).axes[0]
    colours = [tuple(p.get_facecolor()) for p in ax.patches]
    assert colours[0] == colours[2] != colours[1]
    assert [p.get_width() for p in ax.patches] == [0.5, -0.25, 0.0]


@pytest.mark.parametrize(
    ("scores", "tokens", "match"),
    [
        ([0.1, 0.9], ["a"], "tokens has 1 tokens"),
        ([[0.1, 0.9]], ["a", "b"], "1 dimension"),
        ([], [], "empty"),
        ([float("inf")], ["a"], "infinite"),
    ],
)
def test_attribution_bad_input(scores: list, tokens: list, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        plot_token_attribution(scores, tokens, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_no_pyplot_figures_leak(tmp_path: Path) -> None:
    before = plt.get_fignums()
    plot_head_grid(model(1, 2, 3), toks(3), tmp_path / "g.png", dpi=30)
    plot_token_attribution([1.0, 2.0], ["a", "b"], tmp_path / "a.png", dpi=30)
    assert plt.get_fignums() == before
