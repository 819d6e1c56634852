"""The ``gat`` suite: :class:`~attnlab.nn.GATConv` against PyTorch Geometric's ``GATConv``.

* ``gat_layer``: one layer, 8 heads of 8, 1433 input features, on a random Cora-sized
  graph (2708 nodes, 10556 edges, plus self-loops), forward (no grad) and
  forward+backward, float32, timed side by side with the weights of the PyG layer
  copied into ours; ``vs_pyg`` is the median over rounds of ``attnlab / pyg`` time
  (below 1 = faster).
* ``gat_memory``: peak extra resident memory of one forward+backward of a GATConv
  (8 heads of 8, 64 input features) on a random graph of 100k nodes and 1M edges,
  in a fresh process (``python -m attnlab.bench.graph '{...}'``).

PyG is imported only here, on use: it is the reference, not a dependency of the library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attnlab.bench.harness import paired_ratio, peak_memory_mib, time_interleaved
from attnlab.bench.probe import child_main, peak_of
from attnlab.nn.graph import GATConv

__all__ = ["GatSizes", "gat_memory_row", "gat_rows", "run_gat", "run_memory_point"]

HEADS, OUT = 8, 8


@dataclass(frozen=True)
class GatSizes:
    """Graph and layer sizes of the timing figure; ``quick`` runs fewer rounds."""

    nodes: int = 2708
    edges: int = 10556
    features: int = 1433
    rounds: int = 21

    @classmethod
    def quick(cls) -> GatSizes:
        """Same graph, fewer rounds, for ``attnlab bench --suite gat --quick``."""
        return cls(rounds=7)


def random_graph(
    nodes: int, edges: int, features: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features ``(N, F)`` and a random edge list ``(2, E)`` (uniform endpoints)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, features, generator=g)
    return x, torch.randint(0, nodes, (2, edges), generator=g)


def _layers(features: int) -> tuple[GATConv, torch.nn.Module]:
    from torch_geometric.nn import GATConv as PygGATConv

    torch.manual_seed(0)
    theirs = PygGATConv(features, OUT, heads=HEADS)
    return GATConv.from_pyg(theirs), theirs


def _node_output(result: object) -> torch.Tensor:
    """Node features from either layer: ours returns ``(out, weights)``, PyG's a tensor."""
    return result[0] if isinstance(result, tuple) else result


def _candidate(layer: torch.nn.Module, x, edge_index, backward: bool) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            layer(x, edge_index)

    def forward_backward() -> None:
        layer.zero_grad(set_to_none=True)
        _node_output(layer(x, edge_index)).sum().backward()

    return forward_backward if backward else forward


def gat_rows(quick: bool = False, sizes: GatSizes | None = None) -> list[dict]:
    """Forward and forward+backward time of one GATConv layer, attnlab vs PyG."""
    sizes = sizes or (GatSizes.quick() if quick else GatSizes())
    ours, theirs = _layers(sizes.features)
    x, edge_index = random_graph(sizes.nodes, sizes.edges, sizes.features)
    rows = []
    for name, backward in (("forward", False), ("forward+backward", True)):
        t = time_interleaved(
            {
                "attnlab": _candidate(ours, x, edge_index, backward),
                "pyg": _candidate(theirs, x, edge_index, backward),
            },
            rounds=sizes.rounds,
            warmup=2,
        )
        rows.append(
            {
                "figure": "gat_layer",
                "pass": name,
                "nodes": sizes.nodes,
                "edges": sizes.edges,
                "attnlab_s": t["attnlab"].median,
                "pyg_s": t["pyg"].median,
                "vs_pyg": paired_ratio(t["attnlab"], t["pyg"]),
            }
        )
    return rows


def run_memory_point(nodes: int, edges: int, features: int = 64) -> float:
    """One forward+backward of GATConv (8 heads of 8); returns the peak extra MiB."""
    torch.manual_seed(0)
    layer = GATConv(features, OUT, heads=HEADS)
    x, edge_index = random_graph(nodes, edges, features)
    x.requires_grad_(True)
    return peak_of(lambda: _node_output(layer(x, edge_index)).sum().backward())


def gat_memory_row(nodes: int = 100_000, edges: int = 1_000_000, *, timeout: float = 600.0) -> dict:
    """Peak extra resident memory of one GATConv forward+backward, in a fresh process."""
    point = {"nodes": nodes, "edges": edges}
    mib = peak_memory_mib(point, module="attnlab.bench.graph", timeout=timeout)
    return {"figure": "gat_memory", "pass": "forward+backward", **point, "peak_mib": mib}


def run_gat(quick: bool = False) -> list[dict]:
    """The whole suite: timing rows, then the memory row."""
    return [*gat_rows(quick), gat_memory_row()]


if __name__ == "__main__":
    child_main(run_memory_point)
