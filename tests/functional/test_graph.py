"""Segment softmax, aggregation and edge-list utilities against dense references."""

import pytest
import torch

from attnlab.functional import graph
from attnlab.functional.graph import (
    add_self_loops,
    aggregate,
    check_edge_index,
    edge_counts,
    gather_aggregate,
    gather_edges,
    remove_self_loops,
    segment_softmax,
)

N, H, D = 7, 3, 5


def _edges(e: int = 23, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, N, (2, e), generator=g)
    ei[1] = ei[1].clamp(max=N - 2)  # node N - 1 never receives an edge
    return ei


def _reference_softmax(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(scores)
    for node in index.unique():
        sel = index == node
        out[sel] = torch.softmax(scores[sel], dim=0)
    return out


def test_segment_softmax_equals_per_node_dense_softmax():
    ei = _edges()
    scores = torch.randn(ei.shape[1], H)
    got = segment_softmax(scores, ei[1], N)
    torch.testing.assert_close(got, _reference_softmax(scores, ei[1]))
    sums = torch.zeros(N, H).index_add_(0, ei[1], got)
    has_edges = torch.bincount(ei[1], minlength=N) > 0
    torch.testing.assert_close(sums[has_edges], torch.ones(int(has_edges.sum()), H))


def test_segment_softmax_golden():
    got = segment_softmax(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([2, 2, 0]), 3)
    e = torch.e
    torch.testing.assert_close(got[:, 0], torch.tensor([1 / (1 + e), e / (1 + e), 1.0]))


def test_segment_softmax_gradcheck_float64():
    ei = torch.tensor([[0, 1, 2, 3, 0], [1, 1, 1, 0, 3]])
    scores = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: segment_softmax(s, ei[1], 5), (scores,))


def test_aggregate_gradcheck_float64():
    ei = torch.tensor([[0, 1, 2, 3, 0], [1, 1, 1, 0, 3]])
    msg = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, a: aggregate(m, a, ei[1], 5), (msg, alpha))


@pytest.mark.parametrize("block", [2, 1 << 16])
def test_gather_aggregate_equals_unfused_and_gradchecks(monkeypatch, block):
    monkeypatch.setattr(graph, "_BLOCK", block)
    ei = torch.tensor([[0, 1, 2, 3, 0], [1, 1, 1, 0, 3]])
    values = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    got = gather_aggregate(values, alpha, ei[0], ei[1], 5)
    torch.testing.assert_close(got, aggregate(gather_edges(values, ei[0]), alpha, ei[1], 5))
    fused = lambda v, a: gather_aggregate(v, a, ei[0], ei[1], 5)  # noqa: E731
    assert torch.autograd.gradcheck(fused, (values, alpha))


def test_gather_aggregate_bfloat16_keeps_dtype():
    ei = _edges()
    values = torch.randn(N, H, D)
    alpha = segment_softmax(torch.randn(ei.shape[1], H), ei[1], N)
    got = gather_aggregate(values.bfloat16(), alpha.bfloat16(), ei[0], ei[1], N)
    assert got.dtype == torch.bfloat16
    want = gather_aggregate(values, alpha, ei[0], ei[1], N)
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=2e-2)


def test_nodes_without_edges_aggregate_to_zero_with_finite_grads():
    ei = _edges()
    scores = torch.randn(ei.shape[1], H, requires_grad=True)
    values = torch.randn(N, H, D, requires_grad=True)
    alpha = segment_softmax(scores, ei[1], N)
    out = gather_aggregate(values, alpha, ei[0], ei[1], N)
    assert out.shape == (N, H, D)
    assert torch.equal(out[N - 1], torch.zeros(H, D))
    out.sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.isfinite(values.grad).all()


def test_empty_edge_list():
    empty = torch.empty(2, 0, dtype=torch.long)
    assert segment_softmax(torch.empty(0, H), empty[1], N).shape == (0, H)
    check_edge_index(empty, N)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_large_scores_stay_finite(scale):
    ei = _edges()
    scores = torch.randn(ei.shape[1], H) * scale
    got = segment_softmax(scores, ei[1], N)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _reference_softmax(scores, ei[1]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_computes_in_float32(dtype):
    ei = _edges()
    scores = torch.randn(ei.shape[1], H).to(dtype)
    got = segment_softmax(scores, ei[1], N)
    assert got.dtype == dtype
    want = _reference_softmax(scores.float(), ei[1]).to(dtype)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_segment_softmax_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 edges but index has 2"):
        segment_softmax(torch.zeros(3, 1), torch.tensor([0, 1]), 2)


def test_self_loop_helpers():
    ei = torch.tensor([[0, 2, 1, 2], [0, 1, 1, 3]])
    assert remove_self_loops(ei).tolist() == [[2, 2], [1, 3]]
    assert add_self_loops(ei, 4).tolist() == [[2, 2, 0, 1, 2, 3], [1, 3, 0, 1, 2, 3]]


def test_edge_counts_counts_duplicates_target_by_source():
    counts = edge_counts(torch.tensor([[0, 0, 2], [1, 1, 1]]), 3)
    assert counts[1].tolist() == [2.0, 0.0, 1.0]
    assert counts.sum() == 3


@pytest.mark.parametrize(
    ("edge_index", "error", "match"),
    [
        (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), TypeError, "int64.*float32"),
        (torch.tensor([[0, 1], [1, 0]], dtype=torch.int32), TypeError, "int64.*int32"),
        (torch.zeros(3, 4, dtype=torch.long), ValueError, r"\(2, E\), got \(3, 4\)"),
        (torch.zeros(2, dtype=torch.long), ValueError, r"\(2, E\), got \(2,\)"),
        (torch.tensor([[0, 9], [1, 0]]), ValueError, "node id 9 but there are only N=4"),
        (torch.tensor([[0, -1], [1, 0]]), ValueError, "negative node id -1"),
        ([[0, 1], [1, 0]], TypeError, "must be a torch.Tensor"),
    ],
)
def test_check_edge_index_errors(edge_index, error, match):
    with pytest.raises(error, match=match):
        check_edge_index(edge_index, 4)
