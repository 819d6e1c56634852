"""Graph attention on empty graphs (N = 0 nodes, E = 0 edges): empty results, working grads."""

import pytest
import torch

from attnlab.functional.graph import (
    check_edge_index,
    edge_counts,
    gather_aggregate,
    segment_softmax,
)
from attnlab.models import GAT, GAT_LAYERS
from attnlab.nn import GATConv, GATv2Conv

F_IN, C, HEADS = 5, 3, 2
NO_EDGES = torch.zeros(2, 0, dtype=torch.long)


@pytest.mark.parametrize("cls", [GATConv, GATv2Conv], ids=["gat", "gatv2"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("attention", ["learned", "uniform"])
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("loops", [True, False])
def test_a_graph_without_nodes_gives_empty_outputs_and_gradients(
    cls, dense, attention, concat, loops
):
    conv = cls(F_IN, C, heads=HEADS, concat=concat, add_self_loops=loops, attention=attention)
    conv.train()  # dropout on zero coefficients must not fail either
    x = torch.randn(0, F_IN, requires_grad=True)
    out, alpha = res = conv(x, NO_EDGES, need_weights=True, dense=dense)
    edges = res.edge_index
    assert out.shape == (0, HEADS * C if concat else C)
    assert edges.shape == (2, 0) and alpha.shape == (0, HEADS)
    assert out.dtype == alpha.dtype == x.dtype
    out.sum().backward()
    assert x.grad.shape == (0, F_IN)
    grads = {name: p.grad for name, p in conv.named_parameters()}
    assert grads["bias"] is not None  # uniform attention leaves att* without gradient
    assert all(g is None or (g == 0).all() for g in grads.values())


@pytest.mark.parametrize("cls", [GATConv, GATv2Conv], ids=["gat", "gatv2"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_empty_graphs_keep_the_dtype(cls, dtype):
    conv = cls(F_IN, C, heads=HEADS, dtype=dtype)
    for dense in (False, True):
        out = conv(torch.randn(0, F_IN, dtype=dtype), NO_EDGES, dense=dense).context
        assert out.shape == (0, HEADS * C) and out.dtype == dtype


@pytest.mark.parametrize("cls", [GATConv, GATv2Conv], ids=["gat", "gatv2"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_nodes_without_edges_output_the_bias(cls, dense):
    conv = cls(F_IN, C, heads=HEADS, add_self_loops=False)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(4, F_IN, requires_grad=True)
    out, alpha = conv(x, NO_EDGES, need_weights=True, dense=dense)
    torch.testing.assert_close(out, conv.bias.expand(4, -1))
    assert alpha.shape == (0, HEADS)
    out.sum().backward()
    assert (x.grad == 0).all()


def test_the_gat_network_classifies_an_empty_graph():
    for x in (torch.rand(0, F_IN), torch.rand(0, F_IN).to_sparse()):
        for kind in ("gat", "gat-uniform", "gatv2"):
            net = GAT(F_IN, C, hidden=2, heads=2, conv=GAT_LAYERS[kind])
            assert net(x, NO_EDGES).shape == (0, C)


def test_the_functional_pieces_accept_empty_graphs():
    scores = torch.zeros(0, HEADS, requires_grad=True)
    alpha = segment_softmax(scores, NO_EDGES[1], 0)
    assert alpha.shape == (0, HEADS)
    values = torch.zeros(0, HEADS, C, requires_grad=True)
    out = gather_aggregate(values, alpha, NO_EDGES[0], NO_EDGES[1], 0)
    out.sum().backward()
    assert out.shape == (0, HEADS, C) and values.grad.shape == (0, HEADS, C)
    assert edge_counts(NO_EDGES, 0).shape == (0, 0)
    check_edge_index(NO_EDGES, 0)


def test_an_edge_in_a_graph_without_nodes_is_one_clear_line():
    with pytest.raises(ValueError, match=r"node id 0 but there are only N=0 nodes") as info:
        GATConv(F_IN, C)(torch.randn(0, F_IN), torch.tensor([[0], [0]]))
    assert "0..-1" not in str(info.value) and "\n" not in str(info.value)
