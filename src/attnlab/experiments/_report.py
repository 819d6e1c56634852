"""Turn per-seed model results into the stable ``results.json`` shape and a markdown table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attnlab.experiments._results import ModelResult

__all__ = [
    "format_metric",
    "format_number",
    "report_md",
    "results_entries",
    "results_table",
    "summarise",
]


def summarise(runs: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof=1; 0.0 for one run) and the runs themselves.

    Args:
        runs: One value per seed.

    Returns:
        ``{"mean", "std", "runs"}``.
    """
    values = [float(v) for v in runs]
    std = statistics.stdev(values) if len(values) >= 2 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "runs": values}


def results_entries(results: Sequence[ModelResult]) -> list[dict[str, Any]]:
    """The ``"results"`` list of ``results.json``: one entry per model, extras last.

    Args:
        results: What the experiment returned.

    Returns:
        ``[{"model", "metrics": {METRIC: {"mean", "std", "runs"}}, "parameters",
        "seconds", **extra}, ...]``.
    """
    return [
        {
            "model": r.model,
            "metrics": {name: summarise(runs) for name, runs in r.metrics.items()},
            "parameters": int(r.parameters),
            "seconds": float(r.seconds),
            **r.extra,
        }
        for r in results
    ]


def _is_accuracy(metric: str) -> bool:
    return metric.endswith("accuracy")


def format_number(x: float, significant: int = 4) -> str:
    """``x`` with about ``significant`` digits and thousands separators, no exponent."""
    if not math.isfinite(x):
        return str(x)
    decimals = _decimals(x, significant)
    return f"{x:,.{decimals}f}"


def _decimals(x: float, significant: int) -> int:
    if x == 0:
        return significant - 1
    return min(max(significant - 1 - math.floor(math.log10(abs(x))), 0), 8)


def format_metric(metric: str, value: float) -> str:
    """One value of a metric as a progress line shows it: ``79.30%`` or ``12.35``."""
    return f"{100 * value:.2f}%" if _is_accuracy(metric) else format_number(value)


def _cell(metric: str, stats: dict[str, Any]) -> str:
    mean, std = stats["mean"], stats["std"]
    if _is_accuracy(metric):
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    if not math.isfinite(mean):
        return f"{mean} ± {std}"
    decimals = _decimals(mean, 4)  # the std gets the mean's decimals so the two line up
    return f"{mean:,.{decimals}f} ± {std:,.{decimals}f}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def results_table(entries: Sequence[dict[str, Any]]) -> str:
    """A markdown table with one row per model.

    Accuracies (metric names ending in ``accuracy``) are shown as percentages with two
    decimals; other metrics with about four significant digits; every metric as
    ``mean ± std`` over the runs.

    Args:
        entries: The ``"results"`` list of ``results.json`` (see :func:`results_entries`).

    Returns:
        The table, ending with a newline.
    """
    metrics: list[str] = []
    for entry in entries:
        metrics += [m for m in entry["metrics"] if m not in metrics]
    header = ["model"] + [f"{m} (%)" if _is_accuracy(m) else m for m in metrics]
    header += ["runs", "parameters", "seconds"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for entry in entries:
        cells = [_escape(str(entry["model"]))]
        cells += [_cell(m, entry["metrics"][m]) if m in entry["metrics"] else "—" for m in metrics]
        counts = sorted({len(s["runs"]) for s in entry["metrics"].values()})
        cells.append("/".join(str(n) for n in counts) or "0")
        cells.append(f"{entry['parameters']:,}")
        cells.append(format_number(entry["seconds"], 3))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_md(title: str, command: str, table: str, extra: str) -> str:
    """The text of ``report.md``: a title, the reproducing command, the table, the notes.

    Args:
        title: The first heading's text (``NAME: description``).
        command: The shell command that reproduces the run.
        table: The results table (:func:`results_table`).
        extra: The experiment's notes under the table (may be empty).

    Returns:
        Markdown ending with a newline.
    """
    parts = [f"# {title}", "", "Reproduce with:", "", "```bash", command, "```", ""]
    parts.append(table.rstrip("\n"))
    if extra.strip():
        parts += ["", extra.strip()]
    return "\n".join(parts) + "\n"
