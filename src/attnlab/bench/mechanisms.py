"""The ``mechanisms`` suite: each attention mechanism against its reference, side by side.

Every case pits an attnlab implementation against a reference computing the same
function with the same parameters and inputs, and measures, for one forward+backward
pass in float32:

* time, both sides in the same rounds (:func:`~attnlab.bench.harness.time_interleaved`);
  ``speedup`` is the median over rounds of ``reference / ours`` (above 1 = ours faster);
* peak extra resident memory, each side in a fresh process
  (``python -m attnlab.bench.mechanisms '{"case": ..., "side": ..., "sizes": {...}}'``);
  ``memory_ratio`` is ``ours / reference`` (below 1 = ours smaller). The process is
  cold, so both figures include torch's one-time work of a first forward+backward
  (some tens of MiB): at the quick sizes that dominates and ratios sit near 1;
* the max abs difference between the two outputs.

References: for additive (Bahdanau) and Luong's ``general`` and ``concat`` scores, the
textbook formula on all (query, key) pairs at once (``naive_*`` below); for
multi-head attention, ``torch.nn.MultiheadAttention``; for GAT, PyTorch Geometric's
``GATConv`` (a row says "not installed" without it); for the banded and BigBird
engines, dense SDPA given the pattern as a boolean mask; for linear attention, the
materialising ``phi(Q) phi(K)^T`` formula.

Add a mechanism by appending a :class:`MechanismCase` to :data:`CASES` in this module
(the memory child looks cases up there by name): a builder in
:mod:`attnlab.bench.mechanism_cases` taking its sizes as keyword arguments (defaults =
the full run) and returning a :class:`Pair`, plus the sizes of the quick run and the
optional modules it needs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from attnlab.bench._markdown import markdown_table
from attnlab.bench.harness import paired_ratio, peak_memory_mib, time_interleaved
from attnlab.bench.mechanism_cases import (
    SOURCE_QUICK,
    Pair,
    additive_pair,
    banded_pair,
    bigbird_pair,
    gat_pair,
    linear_pair,
    luong_concat_pair,
    luong_general_pair,
    multihead_pair,
    naive_additive,
    naive_concat,
    naive_general,
)
from attnlab.bench.probe import child_main, peak_of

__all__ = [
    "CASES",
    "MechanismCase",
    "Pair",
    "get_case",
    "markdown_section",
    "mechanism_rows",
    "measure_side",
    "naive_additive",
    "naive_concat",
    "naive_general",
    "run_mechanisms",
]

# Peak RSS is per process, so two children at once do not disturb each other's
# figure, and on 2 cores they halve the time spent importing torch.
MEMORY_WORKERS = 2
SIDES = ("ours", "reference")


@dataclass(frozen=True)
class MechanismCase:
    """A mechanism against its reference.

    Attributes:
        name: row label, unique in :data:`CASES`.
        reference: what it is measured against.
        build: ``build(**sizes) -> Pair``; its defaults are the full run's sizes.
        quick: the sizes of ``--quick`` runs (keyword arguments of ``build``).
        requires: modules the case imports; missing ones give a "not installed" row.
    """

    name: str
    reference: str
    build: Callable[..., Pair]
    quick: Mapping[str, int] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


# Each mechanism against its reference; append cases here.
CASES: list[MechanismCase] = [
    MechanismCase("additive", "naive materialising", additive_pair, SOURCE_QUICK),
    MechanismCase("luong general", "naive q W k^T", luong_general_pair, SOURCE_QUICK),
    MechanismCase("luong concat", "naive concatenated pairs", luong_concat_pair, SOURCE_QUICK),
    MechanismCase(
        "multi-head", "torch.nn.MultiheadAttention", multihead_pair, {"batch": 2, "length": 256}
    ),
    MechanismCase(
        "gat", "PyG GATConv", gat_pair, {"nodes": 500, "edges": 2000}, ("torch_geometric",)
    ),
    MechanismCase("banded", "SDPA + band mask", banded_pair, {"length": 2048, "window": 64}),
    MechanismCase("block-sparse (BigBird)", "SDPA + BigBird mask", bigbird_pair, {"length": 2048}),
    MechanismCase("linear (elu + 1)", "naive phi(Q) phi(K)^T", linear_pair, {"length": 1024}),
]


def get_case(name: str) -> MechanismCase:
    """The case called ``name`` in :data:`CASES`.

    Raises:
        ValueError: if no case has this name.
    """
    for case in CASES:
        if case.name == name:
            return case
    raise ValueError(f"unknown mechanism {name!r}; cases: {', '.join(c.name for c in CASES)}")


def _step(forward: Callable[[], Tensor], upstream: Tensor) -> Callable[[], None]:
    def run() -> None:
        forward().backward(upstream)

    return run


def measure_side(case: str, side: str, sizes: dict[str, int]) -> float:
    """Peak extra MiB of one forward+backward of one side (the memory child's work).

    Args:
        case: a name in :data:`CASES`.
        side: ``"ours"`` or ``"reference"``.
        sizes: keyword arguments of the case's builder.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    pair = get_case(case).build(**sizes)
    return peak_of(_step(getattr(pair, side), pair.upstream))


def _row(case: MechanismCase, status: str) -> dict[str, Any]:
    numbers = ("ours_s", "reference_s", "speedup", "ours_peak_mib", "reference_peak_mib")
    return {
        "figure": "mechanism",
        "mechanism": case.name,
        "reference": case.reference,
        "pass": "forward+backward",
        "shape": "",
        "status": status,
        **dict.fromkeys((*numbers, "memory_ratio", "max_abs_error")),
    }


def _timed_row(case: MechanismCase, sizes: dict[str, int], rounds: int) -> dict[str, Any]:
    pair = case.build(**sizes)
    with torch.no_grad():
        error = (pair.ours() - pair.reference()).abs().max().item()
    t = time_interleaved(
        {side: _step(getattr(pair, side), pair.upstream) for side in SIDES}, rounds=rounds
    )
    return {
        **_row(case, "ok"),
        "shape": pair.shape,
        "ours_s": t["ours"].median,
        "reference_s": t["reference"].median,
        "speedup": paired_ratio(t["reference"], t["ours"]),
        "max_abs_error": error,
    }


def mechanism_rows(
    cases: Sequence[MechanismCase], *, quick: bool = False, rounds: int = 7
) -> list[dict[str, Any]]:
    """One row per case: times, peak memory of each side, and the output difference.

    Args:
        cases: what to measure: cases of :data:`CASES` (the memory children rebuild
            them by name), possibly with other ``quick`` sizes.
        quick: use each case's ``quick`` sizes.
        rounds: timing rounds per case.
    """
    rows, points = [], []
    for case in tqdm(cases, desc="mechanisms", leave=False):
        missing = case.missing()
        if missing:
            rows.append(_row(case, f"not installed ({', '.join(missing)})"))
            continue
        sizes = dict(case.quick) if quick else {}
        rows.append(_timed_row(case, sizes, rounds))
        points += [(len(rows) - 1, {"case": case.name, "side": s, "sizes": sizes}) for s in SIDES]

    def peak(point: dict[str, Any]) -> float:
        return peak_memory_mib(point, module="attnlab.bench.mechanisms")

    with ThreadPoolExecutor(MEMORY_WORKERS) as pool:
        peaks = list(pool.map(peak, [p for _, p in points]))
    for (index, point), mib in zip(points, peaks):
        rows[index][f"{point['side']}_peak_mib"] = mib
    for row in rows:
        if row["status"] == "ok":
            row["memory_ratio"] = row["ours_peak_mib"] / max(row["reference_peak_mib"], 1e-9)
    return rows


def run_mechanisms(quick: bool = False) -> list[dict[str, Any]]:
    """All rows of the ``mechanisms`` suite (``quick``: smaller sizes, fewer rounds)."""
    return mechanism_rows(CASES, quick=quick, rounds=3 if quick else 7)


def _cells(row: dict[str, Any]) -> list[str]:
    head = [str(row["mechanism"]), str(row["reference"]), str(row.get("shape") or "")]
    if row.get("status") != "ok":
        return head + [str(row.get("status"))] + [""] * 6
    return head + [
        f"{1e3 * row['ours_s']:.1f}",
        f"{1e3 * row['reference_s']:.1f}",
        f"{row['speedup']:.2f}x",
        f"{row['ours_peak_mib']:,.1f}",
        f"{row['reference_peak_mib']:,.1f}",
        f"{row['memory_ratio']:.3f}",
        f"{row['max_abs_error']:.1e}",
    ]


def markdown_section(rows: list[dict[str, Any]]) -> list[str]:
    """The suite's table as markdown lines (empty when no row is a ``mechanism`` row).

    Example:
        >>> row = {"figure": "mechanism", "mechanism": "gat", "reference": "PyG GATConv",
        ...        "status": "not installed (torch_geometric)"}
        >>> markdown_section([row])[4]
        '| gat | PyG GATConv |  | not installed (torch_geometric) |  |  |  |  |  |  |'
    """
    found = [r for r in rows if r.get("figure") == "mechanism"]
    if not found:
        return []
    header = [
        "mechanism",
        "reference",
        "sizes",
        "ours (ms)",
        "reference (ms)",
        "speedup",
        "ours peak (MiB)",
        "reference peak (MiB)",
        "memory ours / reference",
        "max abs error",
    ]
    return [
        "## Mechanisms against their references (forward+backward, float32)",
        "",
        *markdown_table(header, [_cells(r) for r in found]),
        "",
        "speedup = reference time / ours, the median of per-round ratios (above 1: ours is "
        "faster); peak = extra resident memory of one forward+backward, a fresh process per "
        "side.",
        "",
    ]


if __name__ == "__main__":
    child_main(measure_side)
