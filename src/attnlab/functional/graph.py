r"""Attention over graph edges: segment softmax, aggregation, edge-list utilities.

Graphs follow PyTorch Geometric: node features ``x (N, F)``, ``edge_index (2, E)``
of int64 node ids, row 0 the source ``j``, row 1 the target ``i``; node ``i``
attends over its incoming edges ``j -> i``. The softmax runs per target node
("segment"), with scatter operations instead of a dense ``(N, N)`` matrix:

.. math::
    \alpha_{ij} = \frac{\exp(e_{ij} - m_i)}{\sum_{k \in \mathcal{N}(i)} \exp(e_{ik} - m_i)},
    \qquad m_i = \max_{k \in \mathcal{N}(i)} e_{ik}

A node without incoming edges owns no coefficient, so its aggregate is zero, never NaN.
Each copy of a duplicated edge is a separate edge with its own coefficient (as in PyG).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "add_self_loops",
    "aggregate",
    "check_edge_index",
    "edge_counts",
    "gather_aggregate",
    "gather_edges",
    "remove_self_loops",
    "segment_softmax",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: bf16/fp16 accumulate in float32 and cast back."""
    return torch.promote_types(dtype, torch.float32)


def check_edge_index(edge_index: Tensor, num_nodes: int) -> None:
    """One-line errors for an edge list that is not int64 ``(2, E)`` with ids in ``[0, N)``.

    Args:
        edge_index: ``(2, E)`` source and target node ids.
        num_nodes: ``N``.

    Example:
        >>> check_edge_index(torch.tensor([[0, 1], [1, 2]]), 3)
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dtype != torch.int64:
        raise TypeError(f"edge_index must be int64 (torch.long) node ids, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(edge_index))
    if low < 0:
        raise ValueError(f"edge_index holds a negative node id {low}; ids must be in [0, N)")
    if high >= num_nodes:
        ids = f"ids 0..{num_nodes - 1}" if num_nodes else "an empty graph has no edges"
        raise ValueError(
            f"edge_index holds node id {high} but there are only N={num_nodes} nodes ({ids})"
        )


def remove_self_loops(edge_index: Tensor) -> Tensor:
    """Drop the edges ``i -> i``, keeping the order of the others.

    Example:
        >>> remove_self_loops(torch.tensor([[0, 1, 2], [0, 2, 2]])).tolist()
        [[1], [2]]
    """
    return edge_index[:, edge_index[0] != edge_index[1]]


def add_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Exactly one loop ``i -> i`` per node, appended after the other edges.

    Existing self-loops are removed first (PyG's default), so none is counted twice.

    Shapes:
        ``(2, E)`` -> ``(2, E' + N)`` with ``E'`` the edges that are not loops.

    Example:
        >>> add_self_loops(torch.tensor([[0, 1], [1, 1]]), 2).tolist()
        [[0, 0, 1], [1, 0, 1]]
    """
    loops = torch.arange(num_nodes, device=edge_index.device).expand(2, num_nodes)
    return torch.cat([remove_self_loops(edge_index), loops], dim=1)


def gather_edges(x: Tensor, index: Tensor) -> Tensor:
    """Per-edge rows of node tensor ``x``: ``x[index]`` along dim 0.

    Shapes:
        x ``(N, *)``, index ``(E,)`` -> ``(E, *)``.

    Example:
        >>> gather_edges(torch.tensor([10.0, 20.0]), torch.tensor([1, 1, 0])).tolist()
        [20.0, 20.0, 10.0]
    """
    return x.index_select(0, index)


def segment_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    r"""Softmax of edge scores over the edges that share a target node.

    :math:`\alpha_e = \exp(s_e - m_{t(e)}) / \sum_{e': t(e') = t(e)} \exp(s_{e'} - m_{t(e)})`,
    with :math:`m` the per-node maximum (``index_reduce`` amax, detached: the softmax does
    not depend on the shift) and the sums by ``index_add``. Runs in at least float32 and
    casts back. Scores must be finite.

    Args:
        scores: ``(E, H)`` (or ``(E,)``) edge logits.
        index: ``(E,)`` target node of each edge.
        num_nodes: ``N``.

    Shapes:
        scores ``(E, H)``, index ``(E,)`` -> ``(E, H)``.

    Example:
        >>> s = torch.tensor([0.0, 0.0, 5.0])
        >>> segment_softmax(s, torch.tensor([1, 1, 0]), 3).tolist()
        [0.5, 0.5, 1.0]
    """
    if scores.shape[0] != index.shape[0]:
        raise ValueError(
            f"scores has {scores.shape[0]} edges but index has {index.shape[0]}; "
            "pass one target id per edge"
        )
    s = scores.to(_compute_dtype(scores.dtype))
    shape = (num_nodes, *s.shape[1:])
    wide = index.view(-1, *([1] * (s.dim() - 1))).expand_as(s)
    peak = s.new_zeros(shape).scatter_reduce_(0, wide, s.detach(), "amax", include_self=False)
    e = (s - peak.index_select(0, index)).exp()
    total = s.new_zeros(shape).index_add_(0, index, e)
    return (e / total.index_select(0, index)).to(scores.dtype)


def aggregate(messages: Tensor, alpha: Tensor, target: Tensor, num_nodes: int) -> Tensor:
    r"""Weighted sum of edge messages into their targets: :math:`o_i = \sum_{e \to i} \alpha_e m_e`.

    Low-precision inputs accumulate in float32 and are cast back.

    Args:
        messages: ``(E, H, D)`` per-edge values (usually ``gather_edges(h, source)``).
        alpha: ``(E, H)`` coefficients.
        target: ``(E,)`` target node of each edge.
        num_nodes: ``N``; nodes without edges get zeros.

    Shapes:
        messages ``(E, H, D)``, alpha ``(E, H)``, target ``(E,)`` -> ``(N, H, D)``.

    Example:
        >>> m = torch.ones(3, 1, 2)
        >>> a = torch.tensor([[0.25], [0.75], [1.0]])
        >>> aggregate(m, a, torch.tensor([0, 0, 2]), 3)[:, 0, 0].tolist()
        [1.0, 0.0, 1.0]
    """
    dtype = messages.dtype
    weighted = messages.to(_compute_dtype(dtype)) * alpha.to(_compute_dtype(dtype)).unsqueeze(-1)
    out = weighted.new_zeros(num_nodes, *weighted.shape[1:])
    return out.index_add_(0, target, weighted).to(dtype)


# Edges per block of the fused gather-aggregate: bounds its (block, H, D) temporaries.
_BLOCK = 1 << 16


class _GatherAggregate(torch.autograd.Function):
    """``aggregate(gather_edges(values, source), alpha, target, N)`` in edge blocks.

    Saves only ``values`` and ``alpha`` (not the ``(E, H, D)`` messages) and recomputes
    the per-edge products block by block in the backward.
    """

    @staticmethod
    def forward(ctx, values, alpha, source, target, num_nodes):  # noqa: D102
        out = values.new_zeros(num_nodes, *values.shape[1:])
        for s in range(0, source.shape[0], _BLOCK):
            msg = values.index_select(0, source[s : s + _BLOCK])
            out.index_add_(0, target[s : s + _BLOCK], msg * alpha[s : s + _BLOCK, ..., None])
        ctx.save_for_backward(values, alpha, source, target)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        values, alpha, source, target = ctx.saved_tensors
        need_values, need_alpha = ctx.needs_input_grad[:2]
        grad_values = torch.zeros_like(values) if need_values else None
        grad_alpha = torch.empty_like(alpha) if need_alpha else None
        for s in range(0, source.shape[0], _BLOCK):
            src, blk = source[s : s + _BLOCK], slice(s, s + _BLOCK)
            g = grad.index_select(0, target[blk])
            if grad_values is not None:
                grad_values.index_add_(0, src, g * alpha[blk, ..., None])
            if grad_alpha is not None:
                grad_alpha[blk] = (g * values.index_select(0, src)).sum(-1)
        return grad_values, grad_alpha, None, None, None


def gather_aggregate(
    values: Tensor, alpha: Tensor, source: Tensor, target: Tensor, num_nodes: int
) -> Tensor:
    r"""Fused :math:`o_i = \sum_{e: j \to i} \alpha_e v_j`, without ``(E, H, D)`` messages.

    Equals ``aggregate(gather_edges(values, source), alpha, target, num_nodes)`` but runs
    in blocks of edges and keeps only ``values`` and ``alpha`` for the backward, so the
    peak memory grows with ``E * H`` instead of ``E * H * D``. First derivatives only
    (no double backward). Low precision accumulates in float32 and is cast back.

    Shapes:
        values ``(N, H, D)``, alpha ``(E, H)``, source and target ``(E,)`` -> ``(N, H, D)``.

    Example:
        >>> v = torch.tensor([[[1.0]], [[3.0]]])
        >>> a = torch.tensor([[0.5], [0.5]])
        >>> gather_aggregate(v, a, torch.tensor([0, 1]), torch.tensor([1, 1]), 2).flatten().tolist()
        [0.0, 2.0]
    """
    dtype, wide = values.dtype, _compute_dtype(values.dtype)
    out = _GatherAggregate.apply(values.to(wide), alpha.to(wide), source, target, num_nodes)
    return out.to(dtype)


def edge_counts(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Dense ``(N, N)`` matrix ``C[i, j]`` = number of edges ``j -> i`` (target row, source col).

    Used by dense (small-graph) attention: the mask is ``C > 0``, and ``log C`` as a bias
    makes a duplicated edge weigh as its copies do in the sparse path.

    Example:
        >>> edge_counts(torch.tensor([[0, 0, 1], [1, 1, 0]]), 2).tolist()
        [[0.0, 1.0], [2.0, 0.0]]
    """
    counts = torch.zeros(num_nodes * num_nodes, dtype=dtype, device=edge_index.device)
    flat = edge_index[1] * num_nodes + edge_index[0]
    counts.index_add_(0, flat, torch.ones(flat.shape[0], dtype=dtype, device=flat.device))
    return counts.view(num_nodes, num_nodes)
