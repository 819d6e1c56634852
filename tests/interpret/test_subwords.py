import numpy as np
import pytest

from attnlab.interpret.grid import AlignmentPanel, plot_alignment_grid
from attnlab.interpret.subwords import group_pieces, merge_subword_alignment


def test_group_pieces_keeps_specials_apart():
    words, owner = group_pieces(["▁Ein", "▁Fahr", "rad", "</s>"])
    assert words == ["Ein", "Fahrrad", "</s>"] and owner == [0, 1, 1, 2]


def test_merge_keeps_rows_distributions():
    rng = np.random.default_rng(0)
    w = rng.random((4, 5))
    w /= w.sum(1, keepdims=True)
    merged, src, tgt = merge_subword_alignment(
        w, ["▁a", "b", "▁c", "▁d", "e"], ["▁x", "y", "▁z", "</s>"]
    )
    assert src == ["ab", "c", "de"] and tgt == ["xy", "z", "</s>"]
    np.testing.assert_allclose(merged.sum(1), 1.0)
    np.testing.assert_allclose(merged[0, 0], (w[0, :2].sum() + w[1, :2].sum()) / 2)


def test_merge_rejects_mismatched_pieces():
    with pytest.raises(ValueError):
        merge_subword_alignment(np.ones((2, 3)) / 3, ["▁a"], ["▁x", "▁y"])


def test_grid_draws_panels_and_missing_attention(tmp_path):
    panels = [
        AlignmentPanel("dot", np.eye(3), list("abc"), list("xyz")),
        AlignmentPanel("none", None, list("abc"), list("xyz")),
    ]
    out = plot_alignment_grid(panels, tmp_path / "g.png", columns=2, suptitle="Ein Hund")
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match="panels is empty"):
        plot_alignment_grid([], tmp_path / "h.png")
