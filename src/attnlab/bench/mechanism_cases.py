"""What the ``mechanisms`` suite compares: each case's two forwards and the naive references.

A builder takes its sizes as keyword arguments (defaults: the full run) and returns a
:class:`Pair` of closures over shared inputs and parameters. The references are the
textbook formulas on all (query, key) pairs at once, torch's and PyG's modules, and,
for the long-input mechanisms, dense SDPA given the pattern as a mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.bench import graph, multihead
from attnlab.functional import attention, elu_feature_map, linear_attention
from attnlab.masks import bigbird_pattern, sliding_window_pattern
from attnlab.nn import AdditiveAttention, LuongAttention

__all__ = [
    "Pair",
    "SOURCE_QUICK",
    "additive_pair",
    "banded_pair",
    "bigbird_pair",
    "gat_pair",
    "linear_pair",
    "luong_concat_pair",
    "luong_general_pair",
    "multihead_pair",
    "naive_additive",
    "naive_concat",
    "naive_general",
    "naive_linear",
]

SOURCE_QUICK = {"batch": 8, "queries": 20, "keys": 80, "hidden": 128}


class Pair(NamedTuple):
    """One case, built: both forwards (closing over shared inputs and parameters).

    Attributes:
        ours: runs attnlab's forward, returns its output.
        reference: runs the reference's forward, returns an output of the same shape.
        upstream: the gradient each output receives in backward.
        shape: the sizes, for the table (``"B=32, Lq=50, ..."``).
    """

    ours: Callable[[], Tensor]
    reference: Callable[[], Tensor]
    upstream: Tensor
    shape: str


def naive_additive(
    query: Tensor, keys: Tensor, values: Tensor, w_q: Tensor, w_k: Tensor, b: Tensor, v: Tensor
) -> Tensor:
    """Bahdanau as written: ``softmax_j(v^T tanh(W_q q_i + W_k k_j + b)) @ values``.

    Builds the ``(B, Lq, Lk, hidden)`` tanh tensor, as textbook code does.
    """
    hidden = torch.tanh(F.linear(query, w_q)[:, :, None] + F.linear(keys, w_k, b)[:, None])
    return torch.softmax(hidden @ v, dim=-1) @ values


def naive_general(query: Tensor, keys: Tensor, values: Tensor, weight: Tensor) -> Tensor:
    """Luong ``general`` as written: ``softmax(q W k^T) @ values``."""
    return torch.softmax(query @ weight @ keys.transpose(1, 2), dim=-1) @ values


def naive_concat(
    query: Tensor, keys: Tensor, values: Tensor, weight: Tensor, b: Tensor, v: Tensor
) -> Tensor:
    """Luong ``concat`` as written: ``v^T tanh(W [h_t; h_s] + b)`` on every concatenated pair."""
    lq, lk = query.shape[1], keys.shape[1]
    pairs = torch.cat(
        [query[:, :, None].expand(-1, -1, lk, -1), keys[:, None].expand(-1, lq, -1, -1)], dim=-1
    )
    return torch.softmax(torch.tanh(F.linear(pairs, weight, b)) @ v, dim=-1) @ values


def _leaf(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g).requires_grad_()


def _source(batch: int, queries: int, keys: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Decoder queries, encoder states (keys = values) and the upstream gradient."""
    g = torch.Generator().manual_seed(0)
    upstream = torch.randn(batch, queries, size, generator=g)
    return _leaf(g, batch, queries, size), _leaf(g, batch, keys, size), upstream


def _source_shape(batch: int, queries: int, keys: int, hidden: int | None = None) -> str:
    extra = "" if hidden is None else f", hidden={hidden}"
    return f"B={batch}, Lq={queries}, Lk={keys}{extra}"


def additive_pair(batch: int = 32, queries: int = 50, keys: int = 200, hidden: int = 256) -> Pair:
    """:class:`~attnlab.nn.AdditiveAttention` (chunked engine) vs the materialising formula."""
    query, source, upstream = _source(batch, queries, keys, hidden)
    torch.manual_seed(0)
    attn = AdditiveAttention(hidden, hidden, hidden)
    weights = (attn.query_proj.weight, attn.key_proj.weight, attn.key_proj.bias, attn.v)
    return Pair(
        lambda: attn(query, source)[0],
        lambda: naive_additive(query, source, source, *weights),
        upstream,
        _source_shape(batch, queries, keys, hidden),
    )


def luong_general_pair(
    batch: int = 32, queries: int = 50, keys: int = 200, hidden: int = 256
) -> Pair:
    """Luong ``general`` (:class:`~attnlab.nn.LuongAttention`, SDPA) vs ``q W k^T``."""
    query, source, upstream = _source(batch, queries, keys, hidden)
    torch.manual_seed(0)
    attn = LuongAttention(hidden, score="general")
    return Pair(
        lambda: attn(query, source)[0],
        lambda: naive_general(query, source, source, attn.weight),
        upstream,
        _source_shape(batch, queries, keys) + f", D={hidden}",
    )


def luong_concat_pair(
    batch: int = 32, queries: int = 50, keys: int = 200, hidden: int = 256
) -> Pair:
    """Luong ``concat`` (chunked engine) vs ``v^T tanh(W [h_t; h_s])`` on concatenated pairs."""
    query, source, upstream = _source(batch, queries, keys, hidden)
    torch.manual_seed(0)
    attn = LuongAttention(hidden, score="concat", hidden_size=hidden)

    def reference() -> Tensor:
        weight = torch.cat([attn.query_proj.weight, attn.key_proj.weight], dim=1)
        return naive_concat(query, source, source, weight, attn.key_proj.bias, attn.v)

    return Pair(
        lambda: attn(query, source)[0],
        reference,
        upstream,
        _source_shape(batch, queries, keys, hidden),
    )


def multihead_pair(batch: int = 4, length: int = 1024) -> Pair:
    """Self-attention: :class:`~attnlab.nn.MultiHeadAttention` vs torch's module."""
    ours, theirs = multihead._modules()
    g = torch.Generator().manual_seed(0)
    x = _leaf(g, batch, length, multihead.EMBED)
    return Pair(
        lambda: ours(x)[0],
        lambda: theirs(x, x, x, need_weights=False)[0],
        torch.randn(batch, length, multihead.EMBED, generator=g),
        f"B={batch}, L={length}, E={multihead.EMBED}, {multihead.HEADS} heads",
    )


def gat_pair(nodes: int = 2708, edges: int = 10556, features: int = 1433) -> Pair:
    """:class:`~attnlab.nn.GATConv` vs PyG's ``GATConv`` (weights copied), 8 heads of 8."""
    ours, theirs = graph._layers(features)
    x, edge_index = graph.random_graph(nodes, edges, features)
    g = torch.Generator().manual_seed(1)
    return Pair(
        lambda: ours(x, edge_index).context,
        lambda: theirs(x, edge_index),
        torch.randn(nodes, graph.HEADS * graph.OUT, generator=g),
        f"N={nodes}, E={edges}, F={features}, {graph.HEADS} heads x {graph.OUT}",
    )


def _heads(length: int, heads: int = 8, dim: int = 64) -> tuple[Tensor, ...]:
    """q, k, v ``(1, H, L, D)`` leaves and an upstream gradient."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (_leaf(g, 1, heads, length, dim) for _ in range(3))
    return q, k, v, torch.randn(1, heads, length, dim, generator=g)


def _pattern_pair(pattern, backend: str, length: int, label: str) -> Pair:
    q, k, v, upstream = _heads(length)
    mask = pattern.mask(length)
    return Pair(
        lambda: attention(q, k, v, pattern=pattern, backend=backend).output,
        lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        upstream,
        f"L={length}, 8 heads x 64, {label}",
    )


def banded_pair(length: int = 8192, window: int = 256) -> Pair:
    """The ``banded`` engine vs dense SDPA given the same window as a boolean mask."""
    return _pattern_pair(sliding_window_pattern(window), "banded", length, f"w={window}")


def bigbird_pair(length: int = 8192, block: int = 64) -> Pair:
    """BigBird on the ``block_sparse`` engine vs dense SDPA with the BigBird mask."""
    pattern = bigbird_pattern(block, window_blocks=3, global_blocks=2, random_blocks=3)
    return _pattern_pair(pattern, "block_sparse", length, f"blocks of {block}: 3+2+3")


def naive_linear(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The elu + 1 linear attention as written: ``phi(Q) phi(K)^T`` row-normalised, then ``@ V``."""
    scores = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)
    return (scores / scores.sum(-1, keepdim=True)) @ v


def linear_pair(length: int = 4096) -> Pair:
    """:func:`~attnlab.functional.linear_attention` vs the materialising formula."""
    q, k, v, upstream = _heads(length)
    return Pair(
        lambda: linear_attention(q, k, v),
        lambda: naive_linear(q, k, v),
        upstream,
        f"L={length}, 8 heads x 64, non-causal",
    )
