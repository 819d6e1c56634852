"""A two-layer graph attention network for node classification (Velickovic et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn._checks import as_positive, check_tensor, factory_kwargs, probability
from attnlab.nn.graph import GATConv, GATv2Conv

__all__ = ["GAT", "GAT_KINDS"]

GAT_KINDS = ("gat", "gat-uniform", "gatv2")


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
        kind: ``"gat"``, ``"gat-uniform"`` or ``"gatv2"``.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        x: (N, F), dense or sparse COO; edge_index: (2, E); output: (N, C) logits.

    Example:
        >>> net = GAT(5, 3, hidden=2, heads=2)
        >>> net(torch.rand(4, 5), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape
        torch.Size([4, 3])
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
        kind: str = "gat",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if kind not in GAT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(GAT_KINDS)}; got {kind!r}")
        factory = factory_kwargs(device, dtype)
        classes = as_positive("classes", classes)
        hidden, heads = as_positive("hidden", hidden), as_positive("heads", heads)
        output_heads = as_positive("output_heads", output_heads)
        conv = GATv2Conv if kind == "gatv2" else GATConv
        attention = "uniform" if kind == "gat-uniform" else "learned"
        common = dict(dropout=dropout, attention=attention, **factory)
        self.dropout = probability("dropout", dropout)
        self.conv1 = conv(in_channels, hidden, heads=heads, **common)
        self.conv2 = conv(hidden * heads, classes, heads=output_heads, concat=False, **common)

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
