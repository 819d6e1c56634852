"""A two-layer graph attention network for node classification (Velickovic et al. 2018).

The layer it runs is injected: ``GAT(conv=...)`` takes a graph attention layer class or
factory; :data:`GAT_LAYERS` names them for the experiment configs and the command line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn._checks import (
    as_positive,
    build_injected,
    check_tensor,
    factory_kwargs,
    probability,
)
from attnlab.nn.graph import GATConv, GATv2Conv

__all__ = ["GAT", "GAT_LAYERS", "ConvFactory", "uniform_gat_conv"]

# ``factory(in_channels, out_channels, *, heads, concat=True, dropout, device, dtype)``
# building a graph layer whose forward returns AttentionOutput (GATConv's call).
ConvFactory = Callable[..., nn.Module]


def uniform_gat_conv(in_channels: int, out_channels: int, **kwargs: Any) -> GATConv:
    """GATConv whose weights are 1/degree over every neighbour, self included (no attention).

    Args:
        in_channels: Input features per node.
        out_channels: Output features per head.
        **kwargs: The other arguments of :class:`~attnlab.nn.GATConv`.

    Returns:
        ``GATConv(..., attention="uniform")``: same parameters, attention unused.
    """
    return GATConv(in_channels, out_channels, attention="uniform", **kwargs)


# The names people type (``--models`` of the gat experiment) -> the layer the GAT runs.
GAT_LAYERS: dict[str, ConvFactory] = {
    "gat": GATConv,
    "gat-uniform": uniform_gat_conv,
    "gatv2": GATv2Conv,
}


class GAT(nn.Module):
    """Two-layer GAT for node classification (Velickovic et al. 2018, section 3.3).

    ``dropout -> conv1 (heads concatenated) -> ELU -> dropout -> conv2 (heads averaged)``.

    Args:
        in_channels: input features F.
        classes: output classes C.
        hidden: features per first-layer head.
        heads: first-layer heads.
        output_heads: output-layer heads (averaged).
        dropout: input and attention dropout.
        conv: class or factory of both layers, called as ``conv(in_channels,
            out_channels, heads=, [concat=False,] dropout=, device=, dtype=)``, e.g. one
            of :data:`GAT_LAYERS` (default :class:`~attnlab.nn.GATConv`, the paper's).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        x: (N, F), dense or sparse COO; edge_index: (2, E); output: (N, C) logits.

    Example:
        >>> net = GAT(5, 3, hidden=2, heads=2)
        >>> net(torch.rand(4, 5), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape
        torch.Size([4, 3])
        >>> GAT(5, 3, conv=GAT_LAYERS["gatv2"]).conv1.__class__.__name__
        'GATv2Conv'
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        hidden: int = 8,
        heads: int = 8,
        output_heads: int = 1,
        dropout: float = 0.6,
        conv: ConvFactory = GATConv,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        classes = as_positive("classes", classes)
        hidden, heads = as_positive("hidden", hidden), as_positive("heads", heads)
        output_heads = as_positive("output_heads", output_heads)
        common = dict(dropout=dropout, **factory)
        self.dropout = probability("dropout", dropout)
        layer = functools.partial(
            build_injected,
            conv,
            name="conv",
            expected="a graph attention layer class or factory, built here for each layer "
            "(e.g. GAT_LAYERS['gatv2'])",
            **common,
        )
        self.conv1 = layer(in_channels, hidden, heads=heads)
        self.conv2 = layer(hidden * heads, classes, heads=output_heads, concat=False)

    def hidden(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """First layer's output after ELU, with its attention ``(edges, alpha (E', H))``.

        ``x`` may be a sparse COO tensor (bag-of-words features are ~99% zeros): dropout
        then draws only for the stored entries, the same distribution as dense dropout
        (a zero stays zero) at a fraction of the cost, before the layer sees it dense.
        """
        if check_tensor("x", x).is_sparse:
            x = x.coalesce()
            kept = F.dropout(x.values(), self.dropout, self.training)
            x = torch.sparse_coo_tensor(x.indices(), kept, x.shape, check_invariants=False)
            x = x.to_dense()
        else:
            x = F.dropout(x, self.dropout, self.training)
        out = self.conv1(x, edge_index, need_weights=True)
        return F.elu(out.context), (out.edge_index, out.weights)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Class logits per node."""
        h, _ = self.hidden(x, edge_index)
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index).context
