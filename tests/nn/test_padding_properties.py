"""Property suite: every registered module on inputs that are all padding, in every dtype.

Hypothesis draws a module of the conformance registry (``attnlab.nn.MECHANISMS``, via
the cases of ``test_conformance.py``) or of the graph registry (``GRAPH_MECHANISMS``),
a dtype, a key length (zero included), which batch rows are entirely padding (at least
one) and whether weights are asked for. A fully padded row has nothing to attend to:
its weights are zeros, every output and gradient is finite, its output does not depend
on the padded keys, and those keys get zero gradient. Graph layers get the same with
nodes that no edge reaches (no self-loops) and with graphs of no nodes or no edges.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnlab.nn import GRAPH_MECHANISMS

from .test_conformance import CASES, DK, NO_WEIGHTS, B

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# Modules whose output rows mix keys beyond attention (a recurrent encoder over the whole
# sequence), so padded keys may move the output through the recurrence but never its
# attention; for these only finiteness and the weights are asserted.
RECURRENT = {"sequence-encoder"}
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _call(name: str, module, keys: torch.Tensor, mask: torch.Tensor, need_weights: bool):
    torch.manual_seed(1)  # hard attention samples: the same draw for every call
    return CASES[name][1](module, keys, mask, need_weights)


@settings(max_examples=80, derandomize=True, database=None, **SETTINGS)
@given(
    name=st.sampled_from(sorted(CASES)),
    dtype=st.sampled_from(DTYPES),
    lk=st.sampled_from((1, 2, 5, 7)),
    padded=st.sampled_from(((0,), (1,), (0, 1))),
    need_weights=st.booleans(),
)
def test_rows_of_padding_give_zero_weights_and_finite_gradients(
    name, dtype, lk, padded, need_weights
):
    torch.manual_seed(0)
    module = CASES[name][0](dtype=dtype)
    keys = torch.randn(B, lk, DK, dtype=dtype, requires_grad=True)
    mask = torch.ones(B, lk, dtype=torch.bool)
    mask[list(padded)] = False
    ctx, w = _call(name, module, keys, mask, need_weights)
    assert torch.isfinite(ctx).all(), f"{name}: non-finite output"
    if need_weights and name not in NO_WEIGHTS:
        assert torch.isfinite(w).all() and (w[list(padded)] == 0).all(), f"{name}: weights"
    ctx.float().square().sum().backward()
    if keys.grad is None:  # every row is padding: the output does not read the keys
        keys.grad = torch.zeros_like(keys)
    assert torch.isfinite(keys.grad).all(), f"{name}: non-finite key gradient"
    for pname, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name}.{pname}"
    if name in RECURRENT:
        return
    assert (keys.grad[list(padded)] == 0).all(), f"{name}: padded keys got gradient"
    moved = keys.detach().clone()
    moved[list(padded)] = 1e3  # what padding holds must not matter
    again, _ = _call(name, module, moved, mask, need_weights)
    torch.testing.assert_close(again[list(padded)], ctx.detach()[list(padded)])


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_keys_give_the_empty_result(name, need_weights):
    """No keys at all (Lk = 0, AdditiveAttention included): zero context, no crash."""
    torch.manual_seed(0)
    module = CASES[name][0]()
    keys = torch.randn(B, 0, DK, requires_grad=True)
    mask = torch.ones(B, 0, dtype=torch.bool)
    ctx, w = _call(name, module, keys, mask, need_weights)
    assert torch.isfinite(ctx).all() and ctx.shape[0] == B
    assert w is None or w.numel() == 0
    if ctx.requires_grad:
        ctx.float().sum().backward()
        assert keys.grad is None or keys.grad.shape == keys.shape


@settings(max_examples=40, derandomize=True, database=None, **SETTINGS)
@given(
    name=st.sampled_from(sorted(GRAPH_MECHANISMS)),
    dtype=st.sampled_from(DTYPES),
    nodes=st.sampled_from((0, 1, 4, 9)),
    edges=st.sampled_from((0, 3, 12)),
    heads=st.sampled_from((1, 2)),
    concat=st.booleans(),
    dense=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_graph_nodes_no_edge_reaches(name, dtype, nodes, edges, heads, concat, dense, seed):
    g = torch.Generator().manual_seed(seed)
    layer = GRAPH_MECHANISMS[name](5, 3, heads=heads, concat=concat, add_self_loops=False)
    layer = layer.to(dtype)
    x = torch.randn(nodes, 5, generator=g).to(dtype).requires_grad_()
    # Edges only into the first half of the nodes: the rest have nothing to attend to.
    reached = max(1, nodes // 2)
    ei = (
        torch.stack(
            [
                torch.randint(0, max(nodes, 1), (edges,), generator=g),
                torch.randint(0, reached, (edges,), generator=g),
            ]
        )
        if nodes
        else torch.zeros(2, 0, dtype=torch.long)
    )
    out, alpha = layer(x, ei, need_weights=True, dense=dense)
    assert out.shape == (nodes, 3 * heads if concat else 3) and torch.isfinite(out).all()
    assert alpha.shape == (ei.shape[1], heads) and torch.isfinite(alpha).all()
    out.float().square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    lonely = torch.ones(nodes, dtype=torch.bool)
    lonely[ei[1]] = False
    if lonely.any():  # an unreached node's output is the bias alone
        expected = layer.bias.detach().expand(int(lonely.sum()), -1)
        torch.testing.assert_close(out.detach()[lonely], expected.to(out.dtype))
