"""PNG heatmaps: files are real PNGs, sized to the input, truncated with a note, checked."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from attnlab.interpret import (
    alignment_figure,
    plot_alignment,
    plot_token_weights,
    token_weights_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def toks(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def alignment(n_q: int, n_k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n_q, n_k, generator=g), dim=-1)


def sentence(n: int, seed: int = 0) -> tuple[list[str], torch.Tensor, str]:
    g = torch.Generator().manual_seed(seed)
    return toks("w", n), torch.softmax(torch.randn(n, generator=g), dim=-1), "true: pos"


# --- plot_alignment ------------------------------------------------------------------


def test_alignment_writes_png_and_returns_path(tmp_path: Path) -> None:
    out = plot_alignment(
        alignment(3, 5),
        x_tokens=["le", "chat", "dort", ".", "<end>"],
        y_tokens=["the", "cat", "sleeps"],
        path=tmp_path / "sub" / "align.png",
        title="demo",
    )
    assert out == tmp_path / "sub" / "align.png"
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    "weights",
    [
        alignment(2, 3).numpy(),
        alignment(2, 3).to(torch.bfloat16),
        alignment(2, 3).requires_grad_(),
        [[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]],
    ],
    ids=["numpy", "bf16", "requires_grad", "list"],
)
def test_alignment_accepts_tensors_arrays_and_lists(weights: object) -> None:
    fig = alignment_figure(weights, x_tokens=toks("k", 3), y_tokens=toks("q", 2))
    assert fig.axes[0].images[0].get_array().shape == (2, 3)


def save_alignment(tmp_path: Path, n_q: int, n_k: int) -> tuple[int, int]:
    path = tmp_path / f"{n_q}x{n_k}.png"
    # Low dpi: only the proportions matter here, and fewer pixels keep the test fast.
    plot_alignment(
        alignment(n_q, n_k), x_tokens=toks("k", n_k), y_tokens=toks("q", n_q), path=path, dpi=40
    )
    return png_size(path)


def test_alignment_grows_with_tokens_and_follows_shape(tmp_path: Path) -> None:
    small, big, wide = (save_alignment(tmp_path, *s) for s in [(4, 5), (12, 16), (2, 30)])
    assert big[0] > small[0] and big[1] > small[1]
    assert wide[0] > 2 * wide[1]  # 2 x 30 weights give a wide, flat picture


def test_alignment_truncates_long_input_with_note() -> None:
    fig = alignment_figure(
        alignment(5, 312),
        x_tokens=toks("k", 312),
        y_tokens=toks("q", 5),
        title="long",
        max_tokens=80,
    )
    ax = fig.axes[0]
    assert "first 80 of 312 tokens shown" in ax.get_title()
    assert ax.get_title().startswith("long")
    assert ax.images[0].get_array().shape == (5, 80)
    assert [t.get_text() for t in ax.get_xticklabels()] == toks("k", 80)


def test_alignment_has_no_note_when_nothing_is_cut() -> None:
    fig = alignment_figure(alignment(3, 4), x_tokens=toks("k", 4), y_tokens=toks("q", 3), title="t")
    assert fig.axes[0].get_title() == "t"


def test_alignment_note_names_both_axes_when_both_are_cut() -> None:
    fig = alignment_figure(
        alignment(9, 10),
        x_tokens=toks("k", 10),
        y_tokens=toks("q", 9),
        max_tokens=5,
        x_label="source",
        y_label="target",
    )
    title = fig.axes[0].get_title()
    assert "source: first 5 of 10 tokens shown" in title
    assert "target: first 5 of 9 tokens shown" in title


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (toks("k", 4), toks("q", 3), "x_tokens has 4 tokens"),
        (toks("k", 5), toks("q", 2), "y_tokens has 2 tokens"),
    ],
)
def test_alignment_token_count_mismatch_raises(x: list[str], y: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        alignment_figure(alignment(3, 5), x_tokens=x, y_tokens=y)


def test_alignment_rejects_nan_inf_wrong_rank_and_empty(tmp_path: Path) -> None:
    w = alignment(2, 3)
    w[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        plot_alignment(w, x_tokens=toks("k", 3), y_tokens=toks("q", 2), path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()  # checked before any work
    with pytest.raises(ValueError, match="infinite"):
        alignment_figure(np.array([[np.inf]]), x_tokens=["a"], y_tokens=["b"])
    with pytest.raises(ValueError, match="2 dimension"):
        alignment_figure(torch.ones(3), x_tokens=toks("k", 3), y_tokens=["q"])
    with pytest.raises(ValueError, match="non-empty"):
        alignment_figure(np.zeros((0, 3)), x_tokens=toks("k", 3), y_tokens=[])
    with pytest.raises(ValueError, match="max_tokens"):
        alignment_figure(alignment(1, 1), x_tokens=["a"], y_tokens=["b"], max_tokens=0)
    with pytest.raises(TypeError, match="list of strings"):
        alignment_figure(alignment(1, 3), x_tokens="abc", y_tokens=["b"])


def test_alignment_prints_dollar_tokens_literally(tmp_path: Path) -> None:
    # "$...$" is mathtext to matplotlib; unescaped, "a$b$" would render as math or raise.
    x = ["$5", "a$b$", "<script>", " "]
    out = plot_alignment(
        alignment(1, 4), x_tokens=x, y_tokens=["$"], path=tmp_path / "d.png", title="$x$"
    )
    assert out.read_bytes().startswith(PNG_MAGIC)
    labels = [
        t.get_text()
        for t in alignment_figure(alignment(1, 4), x_tokens=x, y_tokens=["q"])
        .axes[0]
        .get_xticklabels()
    ]
    assert labels[:3] == [r"\$5", r"a\$b\$", "<script>"]
    assert labels[3] != " "  # whitespace tokens get a visible mark


# --- plot_token_weights --------------------------------------------------------------


def test_token_weights_writes_png(tmp_path: Path) -> None:
    rows = [
        sentence(5, 0),
        sentence(9, 1),
        (["it", "'s", "fine"], np.array([0.2, 0.1, 0.7]), "p (0.93)"),
    ]
    out = plot_token_weights(rows, tmp_path / "strips.png", title="sentiment")
    assert out == tmp_path / "strips.png"
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_token_weights_grows_with_rows_and_length(tmp_path: Path) -> None:
    one = png_size(plot_token_weights([sentence(8)], tmp_path / "one.png", dpi=40))
    three = png_size(
        plot_token_weights([sentence(8, s) for s in range(3)], tmp_path / "three.png", dpi=40)
    )
    longer = png_size(plot_token_weights([sentence(40)], tmp_path / "long.png", dpi=40))
    assert three[1] > one[1]
    assert longer[0] > one[0]


def test_token_weights_caption_and_truncation_note() -> None:
    rows = [sentence(100), sentence(10, 1)]
    fig = token_weights_figure(rows, title="t", max_tokens=60)
    first, second = fig.axes[0], fig.axes[1]
    assert first.get_title(loc="left") == "true: pos (first 60 of 100 tokens shown)"
    assert second.get_title(loc="left") == "true: pos"
    assert len(first.get_xticklabels()) == 60 and len(second.get_xticklabels()) == 10
    assert fig.get_suptitle() == "t"


def test_token_weights_normalisation() -> None:
    w = np.array([0.1, 0.4, 0.5])
    rows = [(["a", "b", "c"], w, ""), (["d", "e"], np.array([0.25, 0.75]), "")]
    by_row = token_weights_figure(rows, normalize="row")
    np.testing.assert_allclose(by_row.axes[0].images[0].get_array()[0, :3], w / 0.5)
    shared = token_weights_figure(rows, normalize="global")
    np.testing.assert_allclose(shared.axes[0].images[0].get_array()[0, :3], w)
    assert shared.axes[1].images[0].get_array().mask[0, 2]  # shorter sentence: padded blank


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([sentence(3), (["a", "b"], [0.5, 0.3, 0.2], "")], r"rows\[1\] tokens has 2 tokens"),
        ([(["a", "b"], [float("nan"), 1.0], "")], "NaN"),
        ([(["a", "b"], [-0.1, 1.1], "")], "non-negative"),
        ([(["a"], [[1.0]], "")], "1 dimension"),
        ([(["a"], [1.0])], r"rows\[0\] must be a \(tokens, weights, caption\)"),
        ([([], [], "")], "no tokens"),
        ([], "at least one"),
    ],
    ids=["mismatch", "nan", "negative", "2d", "pair", "empty-sentence", "no-rows"],
)
def test_token_weights_bad_input_raises(rows: list, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        plot_token_weights(rows, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_no_pyplot_figures_leak(tmp_path: Path) -> None:
    before = plt.get_fignums()
    plot_alignment(
        alignment(2, 2), x_tokens=["a", "b"], y_tokens=["c", "d"], path=tmp_path / "a.png", dpi=40
    )
    plot_token_weights([sentence(3)], tmp_path / "t.png", dpi=40)
    assert plt.get_fignums() == before
