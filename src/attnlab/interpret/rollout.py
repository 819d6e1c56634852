"""Attention rollout and attention flow: how much each input token reaches each output.

Both methods are from Abnar & Zuidema, "Quantifying Attention Flow in Transformers"
(ACL 2020). Per layer the heads are fused into one matrix, the residual connection
is modelled as ``0.5 * A + 0.5 * I`` and rows are renormalised; then

- :func:`attention_rollout` multiplies the layers, ``R = A_n @ ... @ A_1``;
- :func:`attention_flow` treats the layers as a flow network and computes, for each
  output token ``i`` and input token ``j``, the maximum flow from ``j`` to ``i``.

Input convention: one tensor per layer, bottom layer first, each (B, H, L, L) or
(H, L, L) (torch or numpy), rows = queries summing to 1, or to 0 for padding rows.
An optional key mask (B, L) is boolean, True = real token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from tqdm.auto import tqdm

from attnlab.interpret._common import as_attention_layers

__all__ = ["FLOW_SCALE", "HeadFusion", "attention_flow", "attention_rollout", "fuse_layers"]

HeadFusion = Literal["mean", "max", "min"]
"""How the heads of one layer are combined into one matrix."""

FLOW_SCALE = 2**30
"""Capacities are rounded to multiples of ``1 / FLOW_SCALE`` for the integer max-flow."""

# Above this many max-flow problems (about 3.5 ms each for 128 tokens x 6 layers) a
# progress bar is shown unless the caller says otherwise.
_PROGRESS_MIN_FLOWS = 2000


def _key_mask(
    mask: Any, stacked: torch.Tensor, batched: bool
) -> torch.Tensor:  # (B, L) bool, True = real token
    n_batch, length = stacked.shape[1], stacked.shape[-1]
    if mask is None:
        # A token whose query rows are zero in every layer and head is padding.
        return stacked.sum(dim=(0, 2, 4)) > 0
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    if m.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = real token), got dtype {m.dtype}")
    expected = (n_batch, length) if batched else (length,)
    if tuple(m.shape) != expected:
        raise ValueError(f"mask must have shape {expected}, got {tuple(m.shape)}")
    return m.to(stacked.device).reshape(n_batch, length)


def _normalise_rows(a: torch.Tensor) -> torch.Tensor:
    total = a.sum(dim=-1, keepdim=True)
    # Rows with no mass (padding) stay exactly zero instead of becoming 0 / 0 = NaN.
    return torch.where(total > 0, a / total.clamp_min(torch.finfo(a.dtype).tiny), 0.0)


def _discard_lowest(a: torch.Tensor, keep: torch.Tensor, ratio: float) -> torch.Tensor:
    length = a.shape[-1]
    diag = torch.eye(length, dtype=torch.bool, device=a.device)
    candidate = keep[:, None, :] & ~diag  # (B, L, L): off-diagonal real keys
    ranks = a.masked_fill(~candidate, math.inf).argsort(dim=-1, stable=True).argsort(dim=-1)
    # Each real row of item b has (n_b - 1) candidates; drop the floor(ratio * (n_b - 1))
    # smallest. Protected entries are +inf, rank last, and so are never dropped.
    n_drop = torch.floor(ratio * (keep.sum(dim=-1) - 1).clamp_min(0).to(a.dtype))
    return a.masked_fill(ranks < n_drop.to(ranks.dtype)[None, :, None, None], 0.0)


def fuse_layers(
    attentions: Sequence[Any],
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
    mask: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    r"""Fuse the heads of every layer and add the residual: the matrices rollout multiplies.

    Per layer and batch item: fuse the heads (mean, max or min), zero padding rows and
    columns, drop the lowest ``discard_ratio`` of each row's off-diagonal weights,
    renormalise rows, then with ``residual`` take ``0.5 * A + 0.5 * I`` on real tokens
    and renormalise again:

    .. math::
        \hat A_l = \operatorname{norm}\big(0.5\,\operatorname{norm}(
        \operatorname{fuse}_h A_l^{(h)}) + 0.5\,I\big)

    Normalising before the residual keeps the residual's share at exactly one half
    for max/min fusion and after discarding; for mean fusion without discarding it is
    exactly Abnar & Zuidema's ``0.5 * W + 0.5 * I``. (Gildenblat's vit-explain instead
    adds ``I`` to the un-normalised matrix.) The diagonal is never discarded, so every
    token keeps its own path (this includes the CLS-to-CLS entry that vit-explain
    protects); attention *to* CLS from other tokens may be discarded like any other.

    Args:
        attentions: One (B, H, L, L) or (H, L, L) tensor or array per layer, bottom first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: Fraction in [0, 1) of each row's off-diagonal weights set to zero,
            smallest first (ties broken by key position).
        residual: Whether to add the identity for the residual connection.
        mask: Boolean key mask (B, L) (or (L,) for unbatched input), True = real token.
            If None, a token whose query rows are zero in every layer is padding.

    Returns:
        ``(fused, keep, batched)``: fused layers (n_layers, B, L, L) with rows summing
        to 1 on real tokens and 0 on padding, the (B, L) mask used, and whether the
        input was batched.

    Raises:
        ValueError: On a bad fusion name, ratio, layer shapes or mask shape.
        TypeError: If ``attentions`` is not a sequence or ``mask`` is not boolean.

    Shapes:
        attentions[l]: (B, H, L, L) or (H, L, L); fused: (n_layers, B, L, L).

    Example:
        >>> heads = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
        >>> fuse_layers([heads], residual=False)[0][0, 0]
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    stacked, batched = as_attention_layers(attentions)
    keep = _key_mask(mask, stacked, batched)
    if head_fusion == "mean":
        fused = stacked.mean(dim=2)
    elif head_fusion == "max":
        fused = stacked.amax(dim=2)
    else:
        fused = stacked.amin(dim=2)
    fused = fused * (keep[:, :, None] & keep[:, None, :]).to(fused.dtype)
    if discard_ratio > 0.0:
        fused = _discard_lowest(fused, keep, discard_ratio)
    fused = _normalise_rows(fused)
    if residual:
        eye = torch.diag_embed(keep.to(fused.dtype))  # identity on real tokens only
        fused = _normalise_rows(0.5 * fused + 0.5 * eye)
    return fused, keep, batched


def attention_rollout(
    attentions: Sequence[Any],
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
    mask: Any = None,
) -> torch.Tensor:
    r"""Attention rollout (Abnar & Zuidema, ACL 2020): products of the fused layers.

    .. math::
        \tilde A = \hat A_n \hat A_{n-1} \cdots \hat A_1

    where :math:`\hat A_l` is layer ``l``'s fused matrix (see :func:`fuse_layers`).
    Row ``i`` of the result is how much output token ``i`` (top layer) draws from
    each input token ``j`` (embeddings); real rows sum to 1. Padding rows and columns
    are zero, never NaN.

    Args:
        attentions: One (B, H, L, L) or (H, L, L) tensor or array per layer, bottom first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: Fraction in [0, 1) of each row's smallest off-diagonal weights
            dropped per layer (the diagonal is never dropped).
        residual: Model the residual connection as ``0.5 * A + 0.5 * I``.
        mask: Boolean key mask (B, L) (or (L,) when unbatched), True = real token.

    Returns:
        The rollout, (B, L, L), or (L, L) for unbatched input; at least float32, on
        the input's device.

    Raises:
        ValueError: On ragged layers, wrong ranks, a bad ratio or fusion name.
        TypeError: If ``attentions`` is not a sequence or ``mask`` is not boolean.

    Shapes:
        attentions[l]: (B, H, L, L) or (H, L, L); mask: (B, L) or (L,);
        output: (B, L, L) or (L, L).

    Example:
        >>> layer = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # token 1 reads token 0
        >>> attention_rollout([layer, layer])
        tensor([[1.0000, 0.0000],
                [0.7500, 0.2500]])
    """
    fused, _, batched = fuse_layers(
        attentions,
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
        residual=residual,
        mask=mask,
    )
    rollout = fused[0]
    for layer in fused[1:]:
        rollout = layer @ rollout
    return rollout if batched else rollout[0]


def _check_outputs(outputs: Sequence[int] | None, length: int) -> list[int]:
    if outputs is None:
        return list(range(length))
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Sequence):
        raise TypeError(f"outputs must be a sequence of token indices, got {type(outputs)}")
    if len(outputs) == 0:
        raise ValueError("outputs is empty; give at least one output token index")
    rows = []
    for o in outputs:
        if isinstance(o, bool) or not isinstance(o, (int, np.integer)):
            raise TypeError(f"outputs must hold integer token indices, got {o!r}")
        if not -length <= o < length:
            raise ValueError(f"output index {o} is out of range for {length} tokens")
        rows.append(int(o) % length)
    return rows


def _maxflow_rows(caps: np.ndarray, rows: Sequence[int], bar: Any) -> np.ndarray:
    """Max flow from every input token to each output in ``rows``, via scipy (n >= 2).

    The network is folded: input token ``j`` becomes a source ``s`` with edges to layer 1
    (capacities ``A_1[:, j]``) and output token ``i`` a sink ``t`` with edges from layer
    ``n - 1`` (capacities ``A_n[i, :]``); other input and output nodes cannot carry flow
    from ``j`` to ``i``. The CSR structure is built once and only those 2m capacities
    change between problems.
    """
    n, m = caps.shape[0], caps.shape[-1]
    q = np.rint(caps * FLOW_SCALE).astype(np.int32)  # rows sum to 1, so no overflow
    t = 1 + (n - 1) * m  # nodes: s = 0, layer l token k = 1 + (l-1)m + k, then t
    counts = np.concatenate([[m], np.full((n - 2) * m, m), np.ones(m, np.int64), [0]])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    # Row of node (l, a), l = 1..n-2: edges to (l+1, b) with capacity A_{l+1}[b, a].
    middle = [np.tile(1 + k * m + np.arange(m), m) for k in range(1, n - 1)]
    indices = np.concatenate([1 + np.arange(m), *middle, np.full(m, t)]).astype(np.int32)
    data = np.concatenate([np.zeros(m, np.int32), *(q[k].T.ravel() for k in range(1, n - 1))])
    data = np.concatenate([data, np.zeros(m, np.int32)])
    graph = csr_matrix((data, indices, indptr), shape=(t + 1, t + 1))
    t_edges = slice(graph.nnz - m, graph.nnz)
    out = np.zeros((len(rows), m))
    for r, i in enumerate(rows):
        graph.data[t_edges] = q[-1][i]
        for j in range(m):
            graph.data[:m] = q[0][:, j]
            if graph.data[:m].any() and graph.data[t_edges].any():
                out[r, j] = maximum_flow(graph, 0, t).flow_value / FLOW_SCALE
            bar.update(1)
    return out


def _flow_rows(caps: np.ndarray, rows: Sequence[int], bar: Any) -> np.ndarray:
    n = caps.shape[0]
    if n == 1:  # one edge per pair: the flow is its capacity
        bar.update(len(rows) * caps.shape[-1])
        return caps[0][list(rows)]
    if n == 2:  # paths j -> k -> i are edge-disjoint: sum_k min(A_1[k, j], A_2[i, k])
        bar.update(len(rows) * caps.shape[-1])
        return np.stack([np.minimum(caps[1][i][:, None], caps[0]).sum(axis=0) for i in rows])
    return _maxflow_rows(caps, rows, bar)


def attention_flow(
    attentions: Sequence[Any],
    *,
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
    outputs: Sequence[int] | None = None,
    mask: Any = None,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""Attention flow (Abnar & Zuidema, ACL 2020): max flow through the layer graph.

    The network has a node per token at each of layers 0..n and an edge from token
    ``j`` of layer ``l - 1`` to token ``i`` of layer ``l`` with capacity
    :math:`\hat A_l[i, j]` (heads fused, residual added, see :func:`fuse_layers`):

    .. math::
        F[i, j] = \operatorname{maxflow}\big((0, j) \to (n, i)\big)

    For one layer this is :math:`\hat A_1`; for two it is
    :math:`\sum_k \min(\hat A_1[k, j], \hat A_2[i, k])` (computed in closed form);
    from three layers on each entry is one max-flow problem solved with Dinic's
    algorithm (``scipy.sparse.csgraph.maximum_flow``) on integer capacities: each is
    rounded to a multiple of ``2**-30``, so an entry is off by at most
    ``E * 2**-31`` (E = edges in a cut: about 3e-5 for 128 tokens and 6 layers) and
    in practice by about 1e-9.

    Cost: one problem per (output, input) pair, about 3.5 ms each for 128 tokens and
    6 layers on one idle core (mostly scipy's O(E) set-up per call): ``outputs=[0]``
    (the CLS row) takes about half a second, all 128 rows about a minute (two to three
    on a busy machine). A progress bar appears for over 2000 problems. Padding pairs
    are skipped and come out as zero.

    Args:
        attentions: One (B, H, L, L) or (H, L, L) tensor or array per layer, bottom first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        residual: Model the residual connection as ``0.5 * A + 0.5 * I``.
        outputs: Output token indices (rows) to compute, e.g. ``[0]`` for CLS; None
            computes all L rows.
        mask: Boolean key mask (B, L) (or (L,) when unbatched), True = real token.
        progress: Show a tqdm progress bar; None shows it for long computations.

    Returns:
        Flows (B, R, L), or (R, L) for unbatched input, where row r belongs to output
        token ``outputs[r]`` (R = L when ``outputs`` is None).

    Raises:
        ValueError: On ragged layers, wrong ranks, a bad fusion name or output index.
        TypeError: If ``attentions``/``outputs`` are not sequences or ``mask`` is not
            boolean.

    Shapes:
        attentions[l]: (B, H, L, L) or (H, L, L); output: (B, R, L) or (R, L).

    Example:
        >>> layer = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # token 1 reads token 0
        >>> attention_flow([layer, layer, layer], outputs=[1])
        tensor([[1.0000, 0.5000]])
    """
    fused, keep, batched = fuse_layers(
        attentions, head_fusion=head_fusion, residual=residual, mask=mask
    )
    rows = _check_outputs(outputs, fused.shape[-1])
    caps = fused.cpu().double().numpy()
    keep_np = keep.cpu().numpy()
    # Per item, only real tokens enter the network; padding outputs stay zero.
    work = [(np.flatnonzero(k), sorted({r for r in rows if k[r]})) for k in keep_np]
    total = sum(len(real_rows) * len(real) for real, real_rows in work)
    slow = caps.shape[0] >= 3 and total > _PROGRESS_MIN_FLOWS  # n <= 2: closed forms
    show = slow if progress is None else progress
    result = np.zeros((len(work), len(rows), fused.shape[-1]))
    with tqdm(total=total, disable=not show, desc="attention flow", unit="flow") as bar:
        for b, (real, real_rows) in enumerate(work):
            if not real_rows:
                continue
            sub = caps[:, b][:, real][:, :, real]
            flows = _flow_rows(sub, np.searchsorted(real, real_rows).tolist(), bar)
            by_token = dict(zip(real_rows, flows, strict=True))
            for slot, r in enumerate(rows):
                if r in by_token:
                    result[b, slot, real] = by_token[r]
    out = torch.from_numpy(result).to(device=fused.device, dtype=fused.dtype)
    return out if batched else out[0]
