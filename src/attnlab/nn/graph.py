r"""Graph attention layers: GAT (Velickovic et al. 2018) and GATv2 (Brody et al. 2022).

Node ``i`` attends over its incoming edges ``j -> i`` (PyG layout: ``edge_index`` row 0
source ``j``, row 1 target ``i``):

.. math::
    \alpha_{ij} = \mathrm{softmax}_{j \in \mathcal{N}(i)}(e_{ij}), \qquad
    h'_i = \sum_{j \in \mathcal{N}(i)} \alpha_{ij} W_s x_j

GAT scores :math:`e_{ij} = \mathrm{LeakyReLU}(a_s^\top W x_j + a_t^\top W x_i)` (the
decomposed form of :math:`a^\top [W x_i \| W x_j]`), which ranks the neighbours the same
way for every query node ("static" attention). GATv2 scores
:math:`e_{ij} = a^\top \mathrm{LeakyReLU}(W_s x_j + W_t x_i)` ("dynamic" attention).

The sparse path is scatter-based (:func:`attnlab.functional.graph.segment_softmax`);
``dense=True`` computes the same layer over an ``(N, N)`` adjacency through the library's
core (:func:`attnlab.functional.attention`), for small graphs and as a cross-check.
Duplicate edges count once per copy (as in PyG). A node without incoming edges (no
self-loops) outputs the bias alone; a graph without nodes gives an empty ``(0, H * C)``
output and ``(0, H)`` weights. :meth:`GATConv.from_pyg` / :meth:`GATv2Conv.from_pyg`
copy the weights of PyTorch Geometric's layers.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, attention
from attnlab.functional._problem import check_layout
from attnlab.functional.graph import (
    add_self_loops,
    check_edge_index,
    edge_counts,
    gather_aggregate,
    gather_edges,
    segment_softmax,
)
from attnlab.functional.scores import Zero
from attnlab.nn._checks import (
    as_positive,
    check_input,
    factory_kwargs,
    parameter_dtype,
    probability,
    real,
)

__all__ = ["GATConv", "GATv2Conv"]

Attention = Literal["learned", "uniform"]


def _glorot(t: Tensor) -> None:
    bound = math.sqrt(6.0 / (t.shape[-2] + t.shape[-1]))
    nn.init.uniform_(t, -bound, bound)


class _GraphAttention(nn.Module):
    """Shared constructor and forward of GAT and GATv2: self-loops, softmax, dropout, heads.

    Subclasses create their parameters in :meth:`_build`, and say what they compute in
    :meth:`_project` and :meth:`_combine`; :meth:`_pyg_problem` names what their PyG
    twin may have that :meth:`from_pyg` cannot copy.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        bias: bool = True,
        attention: Attention = "learned",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        if attention not in ("learned", "uniform"):
            raise ValueError(f"attention must be 'learned' or 'uniform', got {attention!r}")
        self.in_channels = as_positive("in_channels", in_channels)
        self.out_channels = as_positive("out_channels", out_channels)
        self.heads = as_positive("heads", heads)
        self.negative_slope = real("negative_slope", negative_slope)
        self.dropout = probability("dropout", dropout)
        self.concat, self.add_self_loops, self.attention = concat, add_self_loops, attention
        size = self.heads * self.out_channels if concat else self.out_channels
        self.bias = nn.Parameter(torch.zeros(size, **factory)) if bias else None
        self._build(bias, factory)

    def _build(self, bias: bool, factory: dict) -> None:
        """Create the projections and attention vectors (after the output bias)."""
        raise NotImplementedError

    @classmethod
    def _pyg_problem(cls, module: nn.Module) -> str | None:
        """Why ``module`` (the PyG twin) cannot be copied, or None."""
        raise NotImplementedError

    @classmethod
    def from_pyg(cls, module: nn.Module) -> _GraphAttention:
        """A copy of PyG's twin layer (same-size input, no edge features, no residual).

        Raises:
            ValueError: for a PyG layer with options this layer does not have.
        """
        problem = cls._pyg_problem(module)
        if problem is None and getattr(module, "res", None) is not None:
            problem = "does not support residual=True"
        if problem is None and not isinstance(module.in_channels, int):
            problem = "needs one in_channels, got a (source, target) pair"
        if problem is not None:
            raise ValueError(f"from_pyg {problem}")
        p = next(module.parameters())
        ours = cls(
            module.in_channels,
            module.out_channels,
            heads=module.heads,
            concat=module.concat,
            negative_slope=module.negative_slope,
            dropout=module.dropout,
            add_self_loops=module.add_self_loops,
            bias=module.bias is not None,
            device=p.device,
            dtype=p.dtype,
        )
        ours.load_state_dict(
            {k: v for k, v in module.state_dict().items() if k in ours.state_dict()}
        )
        return ours

    def extra_repr(self) -> str:
        """Sizes and options, shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}, "
            f"add_self_loops={self.add_self_loops}, attention={self.attention!r}"
        )

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-node ``(values (N, H, C), source terms, target terms)``."""
        raise NotImplementedError

    def _combine(self, src: Tensor, dst: Tensor) -> Tensor:
        """Logits from broadcastable source and target terms (edge or dense layout)."""
        raise NotImplementedError

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        *,
        need_weights: bool = False,
        dense: bool = False,
    ) -> AttentionOutput:
        """Attend over incoming edges.

        Args:
            x: ``(N, in_channels)`` node features.
            edge_index: ``(2, E)`` int64, row 0 source, row 1 target.
            need_weights: also return the pre-dropout coefficients ``alpha (E', H)``
                and, as the extra ``edge_index``, the ``E'`` edges they belong to (after
                self-loops were added).
            dense: compute through an ``(N, N)`` adjacency (small graphs; same result).

        Returns:
            :class:`~attnlab.functional.AttentionOutput` ``(out, alpha or None)`` with the
            extra ``edge_index`` (the edges used, or None without ``need_weights``).
        """
        check_layout("x", x, ("N", "F"), self.in_channels)
        check_input(self, "x", x, parameter_dtype(self))
        n = x.shape[0]
        check_edge_index(edge_index, n)
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n)
        values, q_src, q_dst = self._project(x)
        run = self._dense if dense else self._sparse
        out, alpha = run(values, q_src, q_dst, edge_index)
        out = out.reshape(n, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        if not need_weights:
            return AttentionOutput(out, None, edge_index=None)
        return AttentionOutput(out, alpha, edge_index=edge_index)

    def _sparse(
        self, values: Tensor, q_src: Tensor, q_dst: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        n, (src, dst) = values.shape[0], edge_index
        if self.attention == "uniform":
            deg = torch.bincount(dst, minlength=n).clamp_min(1).to(values.dtype)
            alpha = deg.reciprocal().index_select(0, dst).unsqueeze(1).expand(-1, self.heads)
        else:
            logits = self._combine(gather_edges(q_src, src), gather_edges(q_dst, dst))
            alpha = segment_softmax(logits, dst, n)
        weights = F.dropout(alpha, self.dropout, self.training)
        return gather_aggregate(values, weights, src, dst, n), alpha

    def _dense(
        self, values: Tensor, q_src: Tensor, q_dst: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        n = values.shape[0]
        counts = edge_counts(edge_index, n, torch.float32)
        if self.attention == "uniform":
            logits = values.new_zeros(1, 1, n, n, dtype=torch.float32)
        else:  # (N_dst, N_src, H) -> (1, H, N_dst, N_src)
            logits = self._combine(q_src.unsqueeze(0), q_dst.unsqueeze(1)).float()
            logits = logits.permute(2, 0, 1).unsqueeze(0)
        bias = logits + counts.clamp_min(1).log()  # a duplicated edge weighs once per copy
        v = values.transpose(0, 1).unsqueeze(0)  # (1, H, N, C)
        out, probs = attention(
            v,
            v,
            v,
            score=Zero(),
            mask=counts > 0,
            bias=bias.to(values.dtype),
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=True,
            backend="math",
        )
        src, dst = edge_index
        per_edge = probs[0].float()[:, dst, src] / counts[dst, src]  # (H, E)
        return out[0].transpose(0, 1), per_edge.t().to(values.dtype)


class GATConv(_GraphAttention):
    r"""Graph attention layer (Velickovic et al. 2018, "Graph Attention Networks").

    :math:`h = W x`, :math:`e_{ij} = \mathrm{LeakyReLU}(a_s \cdot h_j + a_t \cdot h_i)`,
    :math:`\alpha_{ij}` the softmax of :math:`e_{ij}` over the incoming edges of ``i``
    (dropout on it while training), :math:`h'_i = \sum_j \alpha_{ij} h_j`, heads
    concatenated or averaged, plus the bias. ``attention="uniform"`` keeps the network
    but gives each incoming edge the weight ``1 / deg(i)`` (the uniform baseline).
    Parameters match PyG's ``GATConv`` (``lin``, ``att_src``, ``att_dst``, ``bias``).

    Args:
        in_channels: node feature size ``F``.
        out_channels: per-head output size ``C``.
        heads: attention heads ``H``.
        concat: concatenate heads (``H * C`` outputs) or average them (``C``).
        negative_slope: of the LeakyReLU.
        dropout: on the coefficients while training.
        add_self_loops: replace existing loops by one loop per node.
        bias: learnable output bias.
        attention: ``"learned"`` or ``"uniform"``.

    Shapes:
        x ``(N, F)``, edge_index ``(2, E)`` -> ``(N, H * C)`` (or ``(N, C)`` averaged);
        weights ``(E', H)`` over the ``E'`` edges used (self-loops included).

    Example:
        >>> conv = GATConv(4, 3, heads=2)
        >>> out, alpha = conv(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]))
        >>> out.shape, alpha
        (torch.Size([5, 6]), None)
    """

    def _build(self, bias: bool, factory: dict) -> None:
        heads, out_channels = self.heads, self.out_channels
        self.lin = nn.Linear(self.in_channels, heads * out_channels, bias=False, **factory)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        nn.init.xavier_uniform_(self.lin.weight)
        _glorot(self.att_src)
        _glorot(self.att_dst)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.lin(x).view(x.shape[0], self.heads, self.out_channels)
        return h, (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)

    def _combine(self, src: Tensor, dst: Tensor) -> Tensor:
        return F.leaky_relu(src + dst, self.negative_slope)

    @classmethod
    def _pyg_problem(cls, module: nn.Module) -> str | None:
        if getattr(module, "lin", None) is None or getattr(module, "lin_edge", None) is not None:
            return "needs a GATConv with one in_channels and no edge_dim"
        return None


class GATv2Conv(_GraphAttention):
    r"""Dynamic graph attention (Brody et al. 2022, "How Attentive are Graph Attention Networks?").

    :math:`e_{ij} = a^\top \mathrm{LeakyReLU}(W_s x_j + W_t x_i)`, softmax over the
    incoming edges of ``i``, :math:`h'_i = \sum_j \alpha_{ij} W_s x_j`. The nonlinearity
    sits between :math:`W` and :math:`a`, so the ranking of neighbours can depend on the
    query node. Parameters match PyG's ``GATv2Conv`` with ``share_weights=False``:
    ``lin_l`` (source, with bias), ``lin_r`` (target, with bias), ``att (1, H, C)``, ``bias``.
    Other arguments as :class:`GATConv`.

    Shapes:
        x ``(N, F)``, edge_index ``(2, E)`` -> ``(N, H * C)`` (or ``(N, C)`` averaged).

    Example:
        >>> conv = GATv2Conv(4, 3, heads=2, concat=False)
        >>> res = conv(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]), need_weights=True)
        >>> res.context.shape, res.weights.shape, res.edge_index.shape  # 3 edges + 5 self-loops
        (torch.Size([5, 3]), torch.Size([8, 2]), torch.Size([2, 8]))
    """

    def _build(self, bias: bool, factory: dict) -> None:
        heads, out_channels = self.heads, self.out_channels
        self.lin_l = nn.Linear(self.in_channels, heads * out_channels, bias=bias, **factory)
        self.lin_r = nn.Linear(self.in_channels, heads * out_channels, bias=bias, **factory)
        self.att = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        for lin in (self.lin_l, self.lin_r):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        _glorot(self.att)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shape = (x.shape[0], self.heads, self.out_channels)
        h_l = self.lin_l(x).view(shape)
        h_r = self.lin_r(x).view(shape)
        return h_l, h_l, h_r

    def _combine(self, src: Tensor, dst: Tensor) -> Tensor:
        return (F.leaky_relu(src + dst, self.negative_slope) * self.att).sum(-1)

    @classmethod
    def _pyg_problem(cls, module: nn.Module) -> str | None:
        if module.share_weights or getattr(module, "lin_edge", None) is not None:
            return "needs a GATv2Conv with share_weights=False and no edge_dim"
        return None
