import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection

from attnlab.interpret.graph import graph_attention_figure, plot_graph_attention

XY = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
EDGES = torch.tensor([[0, 1, 2, 3, 0], [1, 2, 3, 0, 0]])  # the last is a self-loop
W = torch.tensor([0.9, 0.1, 0.5, 0.0, 1.0])
Y = torch.tensor([0, 1, 1, 2])


def _lines(fig):
    (ax,) = fig.axes
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return lines


def test_png_written(tmp_path):
    out = plot_graph_attention(XY, EDGES, W, Y, tmp_path / "sub" / "g.png", title="toy")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strongest_edges_last_widest_and_most_opaque():
    fig = graph_attention_figure(XY, EDGES, W, Y, class_names=["a", "b", "c"])
    lines = _lines(fig)
    segments = lines.get_segments()
    assert len(segments) == 4  # self-loop dropped
    # weakest (3->0, weight 0) first, strongest (0->1, weight 0.9) last
    np.testing.assert_allclose(segments[0], [[1, 1], [0, 0]])
    np.testing.assert_allclose(segments[-1], [[0, 0], [1, 0]])
    widths, alphas = lines.get_linewidths(), lines.get_colors()[:, 3]
    assert np.all(np.diff(widths) >= 0) and np.all(np.diff(alphas) >= 0)
    assert widths[-1] > 5 * widths[0]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a", "b", "c"]


def test_numpy_inputs_and_all_zero_weights():
    fig = graph_attention_figure(XY.numpy(), EDGES.numpy(), np.zeros(5), Y.numpy())
    assert len(_lines(fig).get_segments()) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"coords": torch.zeros(4, 3)}, ValueError, r"coords must have shape \(N, 2\)"),
        ({"edge_index": torch.zeros(3, 5, dtype=torch.long)}, ValueError, r"shape \(2, E\)"),
        ({"edge_index": EDGES + 1}, ValueError, "coords has 4 nodes"),
        ({"edge_index": EDGES.float()}, TypeError, "edge_index must hold integers"),
        ({"weights": W[:3]}, ValueError, "weights has 3 values but edge_index has 5"),
        ({"weights": -W}, ValueError, "non-negative"),
        ({"weights": W * float("nan")}, ValueError, "NaN"),
        ({"labels": Y[:2]}, ValueError, "labels has 2 values"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, kwargs, error, match):
    args = {"coords": XY, "edge_index": EDGES, "weights": W, "labels": Y, **kwargs}
    with pytest.raises(error, match=match):
        plot_graph_attention(path=tmp_path / "g.png", **args)
    assert not (tmp_path / "g.png").exists()
