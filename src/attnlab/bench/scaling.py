"""Time against sequence length: crossovers, the log-log plot and the markdown table.

Rows are ``{"figure": "scaling", "method", "length", "pass", "dtype", "seconds",
"vs_sdpa"?, "causal"?}`` (from the ``engines`` and ``linear`` suites). A panel is one
``(pass, dtype, causal)``; within it, a method's crossover is the smallest measured
length from which it stays faster than dense SDPA (``method == "sdpa"``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from attnlab.bench._markdown import markdown_table

__all__ = [
    "crossover_length",
    "method_colors",
    "panels",
    "scaling_section",
    "time_figure",
]

REFERENCE = "sdpa"
Row = dict[str, Any]


def panels(rows: Sequence[Row]) -> dict[tuple[str, str, str], dict[str, dict[int, Row]]]:
    """``{(pass, dtype, causality): {method: {length: row}}}`` for the scaling rows."""
    out: dict[tuple[str, str, str], dict[str, dict[int, Row]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in rows:
        if row.get("figure") != "scaling":
            continue
        causal = {True: "causal", False: "non-causal"}.get(row.get("causal"), "")
        key = (str(row["pass"]), str(row.get("dtype", "float32")), causal)
        out[key][str(row["method"])][int(row["length"])] = row
    return out


def _faster(row: Row, reference: Row) -> bool:
    if "vs_sdpa" in row:  # paired per round: robust to the machine's slow spells
        return float(row["vs_sdpa"]) > 1.0
    return float(row["seconds"]) < float(reference["seconds"])


def crossover_length(per_method: dict[str, dict[int, Row]], method: str) -> int | None:
    """The smallest measured L from which ``method`` stays faster than dense SDPA.

    Only lengths where both were measured count; None if it never overtakes it.

    Example:
        >>> rows = {"sdpa": {1: {"seconds": 1.0}, 2: {"seconds": 4.0}},
        ...         "x": {1: {"seconds": 2.0}, 2: {"seconds": 3.0}}}
        >>> crossover_length(rows, "x")
        2
    """
    reference, ours = per_method.get(REFERENCE, {}), per_method.get(method, {})
    common = sorted(set(reference) & set(ours))
    found = None
    for length in reversed(common):
        if not _faster(ours[length], reference[length]):
            break
        found = length
    return found


def method_colors(rows: Sequence[Row]) -> dict[str, str]:
    """One matplotlib colour per method (or engine), the same in every plot of a run."""
    names = sorted({str(r.get("method", r.get("engine"))) for r in rows})
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def time_figure(rows: Sequence[Row], suite: str) -> Figure | None:
    """Log-log seconds against L per method, one panel per pass.

    Each method keeps its colour across panels; where it overtakes dense SDPA a dotted
    line marks the length and its legend entry says so.
    """
    found = {k: v for k, v in panels(rows).items() if k[1] == "float32"}
    if not found:
        return None
    fig = Figure(figsize=(6 * len(found), 4.5))
    colors = method_colors(rows)
    for i, ((name, _, causal), per_method) in enumerate(sorted(found.items())):
        ax = fig.add_subplot(1, len(found), i + 1)
        for method, points in sorted(per_method.items()):
            xs = sorted(points)
            cross = crossover_length(per_method, method) if method != REFERENCE else None
            label = method + (f" (< sdpa from L = {cross})" if cross is not None else "")
            ax.plot(xs, [points[n]["seconds"] for n in xs], "o-", color=colors[method], label=label)
            if cross is not None:
                ax.axvline(cross, color=colors[method], linestyle=":", alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        lengths = sorted({n for p in per_method.values() for n in p})
        ax.set_xticks(lengths, [str(n) for n in lengths], rotation=45)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("seconds per call")
        ax.set_title(f"{suite}: {name}" + (f", {causal}" if causal else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no display, no pyplot state
    return fig


def band_speedup_lines(rows: Sequence[Row]) -> list[str]:
    """The banded engine against dense SDPA given the same band as a mask."""
    found = [r for r in rows if r.get("method") == "banded" and "vs_band_mask" in r]
    if not found:
        return []
    lines = ["## Banded engine vs dense SDPA with the band mask", ""]
    lines += [
        f"- L = {r['length']}, {r['pass']}, {r.get('dtype', 'float32')}: "
        f"{r['vs_band_mask']:.1f}x the speed of the masked dense call"
        for r in sorted(found, key=lambda r: (r["pass"], r.get("dtype", ""), r["length"]))
    ]
    return lines + [""]


def scaling_section(rows: Sequence[Row]) -> list[str]:
    """Markdown: milliseconds per method and length, with each crossover, per panel."""
    lines: list[str] = band_speedup_lines(rows)
    ordered = sorted(panels(rows).items(), key=lambda kv: (kv[0][1] != "float32", kv[0]))
    for (name, dtype, causal), per_method in ordered:
        lengths = sorted({n for p in per_method.values() for n in p})
        header = ["method"] + [f"L = {n}" for n in lengths] + ["faster than SDPA from"]
        body = []
        for method, points in per_method.items():
            cells = [f"{1e3 * points[n]['seconds']:,.1f}" if n in points else "—" for n in lengths]
            cross = crossover_length(per_method, method)
            where = "—" if method == REFERENCE else (f"L = {cross}" if cross else "never here")
            body.append([method, *cells, where])
        title = f"## Time per call (ms): {name}, {dtype}" + (f", {causal}" if causal else "")
        lines += [title, "", *markdown_table(header, body), ""]
    return lines
