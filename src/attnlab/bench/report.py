"""Write a benchmark suite's rows as files: JSON, CSV, a memory plot and a markdown summary.

Rows are plain dicts tagged with ``"figure"`` (``dispatch_overhead``, ``throughput``,
``peak_memory``; see :mod:`attnlab.bench.core`). Figures the summary does not know are
still kept in the JSON and CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from attnlab.bench import linear, mechanisms, reversible, vision
from attnlab.bench._markdown import markdown_table
from attnlab.bench.scaling import method_colors, scaling_section, time_figure

__all__ = ["default_bench_dir", "check_new_dir", "write_bench", "summary_markdown"]


def default_bench_dir() -> Path:
    """``runs/bench/<YYYYmmdd-HHMMSS>``, the folder ``attnlab bench`` writes by default."""
    return Path("runs") / "bench" / time.strftime("%Y%m%d-%H%M%S")


def check_new_dir(out: Path) -> None:
    """Refuse a folder that already holds something: benchmark results are never replaced.

    Args:
        out: The intended output folder.

    Raises:
        FileExistsError: If ``out`` is a file or a non-empty folder.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass --out another folder")


def _replace_into(path: Path, write: Any) -> None:
    # Write beside the target then rename, so a crash never leaves half a file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    _replace_into(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()}
        )
    return buffer.getvalue()


def _by_figure(rows: Sequence[dict[str, Any]], figure: str) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("figure") == figure]


def _memory_plot(rows: Sequence[dict[str, Any]], suite: str, path: Path) -> bool:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in _by_figure(rows, "peak_memory"):
        if row.get("peak_mib", 0) > 0:  # a log axis cannot show zero growth
            series[str(row.get("engine"))].append((int(row["length"]), float(row["peak_mib"])))
    if not series:
        return False
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    colors = method_colors(rows)
    for engine, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, "o-", color=colors[engine], label=engine)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    # Plain numbers read better than 2^10 or 4x10^2 for lengths and MiB.
    lengths = sorted({n for points in series.values() for n, _ in points})
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("peak extra memory (MiB)")
    ax.set_title(f"{suite}: peak memory of forward+backward")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    FigureCanvasAgg(fig)  # explicit Agg canvas: no display, no pyplot state
    _save_png(fig, path)
    return True


def _save_png(fig: Figure, path: Path) -> None:
    _replace_into(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def _overhead_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    found = _by_figure(rows, "dispatch_overhead")
    if not found:
        return []
    body = [
        [
            str(r["length"]),
            f"{1e3 * r['sdpa_s']:.3f}",
            f"{1e3 * r['attention_s']:.3f}",
            f"{r['ratio']:.2f}x",
        ]
        for r in found
    ]
    return [
        "## Dispatch overhead: `attention` over bare SDPA (forward)",
        "",
        *markdown_table(["length", "sdpa (ms)", "attention (ms)", "attention / sdpa"], body),
        "",
    ]


def _throughput_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[int, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in _by_figure(rows, "throughput"):
        groups[(int(row["length"]), str(row["pass"]))][str(row["engine"])] = row
    body = []
    for (length, name), engines in groups.items():
        sdpa, chunked = engines.get("sdpa"), engines.get("chunked")
        if sdpa is None or chunked is None:
            continue
        share = chunked.get("vs_sdpa", chunked["gflops"] / sdpa["gflops"])
        body.append(
            [
                name,
                str(length),
                f"{sdpa['gflops']:.1f}",
                f"{chunked['gflops']:.1f}",
                f"{100 * share:.1f}%",
            ]
        )
    if not body:
        return []
    return [
        "## Chunked engine vs SDPA throughput",
        "",
        *markdown_table(
            ["pass", "length", "sdpa GFLOP/s", "chunked GFLOP/s", "chunked / sdpa"], body
        ),
        "",
    ]


def _multihead_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    found = _by_figure(rows, "multihead_forward_backward")
    if not found:
        return []
    body = [
        [
            str(r["length"]),
            str(r["batch"]),
            f"{1e3 * r['attnlab_s']:.1f}",
            f"{1e3 * r['torch_s']:.1f}",
            f"{1e3 * r['bare_s']:.1f}",
            f"{r['vs_torch']:.2f}x",
            f"{r['vs_bare']:.2f}x",
        ]
        for r in found
    ]
    header = ["length", "batch", "attnlab (ms)", "torch (ms)", "bare (ms)"]
    return [
        "## MultiHeadAttention forward+backward vs torch.nn.MultiheadAttention and bare SDPA",
        "",
        *markdown_table(header + ["attnlab / torch", "attnlab / bare"], body),
        "",
        "bare = one packed input projection + bare SDPA + output projection.",
        "",
    ]


def _gat_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    timed, memory = _by_figure(rows, "gat_layer"), _by_figure(rows, "gat_memory")
    lines = []
    if timed:
        body = [
            [
                str(r["pass"]),
                f"{1e3 * r['attnlab_s']:.2f}",
                f"{1e3 * r['pyg_s']:.2f}",
                f"{r['vs_pyg']:.2f}x",
            ]
            for r in timed
        ]
        lines += [
            f"## GATConv (8 heads x 8) vs PyG on {timed[0]['nodes']} nodes, "
            f"{timed[0]['edges']} edges",
            "",
            *markdown_table(["pass", "attnlab (ms)", "PyG (ms)", "attnlab / PyG"], body),
            "",
        ]
    lines += [
        f"GATConv forward+backward on {r['nodes']:,} nodes, {r['edges']:,} edges: peak "
        f"{r['peak_mib']:,.0f} MiB (fresh process)."
        for r in memory
    ]
    return lines + ([""] if memory else [])


def _equivalence_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    found = _by_figure(rows, "max_abs_difference")
    if not found:
        return []
    lines = ["## Max abs difference against trusted references (float32)", ""]
    for r in found:
        numbers = ", ".join(
            f"{k} {v:.1e}" for k, v in r.items() if isinstance(v, float) and k != "figure"
        )
        lines.append(f"- {r.get('reference', '')}: {r['case']}: {numbers or 'not measured'}")
    return lines + [""]


def _memory_section(rows: Sequence[dict[str, Any]], plotted: bool) -> list[str]:
    found = _by_figure(rows, "peak_memory")
    if not found:
        return []
    lengths = sorted({int(r["length"]) for r in found})
    cells: dict[str, dict[int, float]] = defaultdict(dict)
    for r in found:
        cells[str(r["engine"])][int(r["length"])] = float(r["peak_mib"])
    body = [
        [engine] + [f"{per[n]:,.1f}" if n in per else "—" for n in lengths]
        for engine, per in cells.items()
    ]
    lines = [
        "## Peak memory of forward+backward (MiB, fresh process per point)",
        "",
        *markdown_table(["engine"] + [f"L = {n}" for n in lengths], body),
        "",
    ]
    return lines + (["![peak memory](memory.png)", ""] if plotted else [])


def summary_markdown(
    rows: Sequence[dict[str, Any]],
    suite: str,
    environment: dict[str, Any],
    *,
    plotted: bool = False,
    time_plotted: bool = False,
) -> str:
    """The headline figures of a run as markdown.

    Args:
        rows: The suite's rows.
        suite: The suite name.
        environment: From :func:`attnlab.bench.harness.environment`.
        plotted: Whether ``memory.png`` was written (then it is linked).
        time_plotted: Whether ``time.png`` was written (then it is linked).

    Returns:
        Markdown: the environment line, then dispatch overhead ratios, chunked throughput
        as a percentage of SDPA with GFLOP/s, and the memory table, where measured.
    """
    env = environment
    flags = ", ".join(env.get("cpu_flags") or []) or "no flags read"
    head = [
        f"# Benchmark: {suite} suite",
        "",
        f"torch {env.get('torch')}, Python {env.get('python')}, {env.get('threads')} "
        f"threads, {env.get('device')} ({env.get('cpu')}; {flags}), {env.get('dtype')}, "
        f"commit {env.get('commit')}.",
        "",
        "Ratios are measured side by side in one run; absolute times vary between machines.",
        "",
    ]
    body = (
        scaling_section(rows)
        + (["![time against L](time.png)", ""] if time_plotted else [])
        + linear.markdown_section(list(rows))
        + reversible.markdown_section(list(rows))
        + _overhead_section(rows)
        + _throughput_section(rows)
        + _multihead_section(rows)
        + mechanisms.markdown_section(list(rows))
        + vision.markdown_section(list(rows))
        + _equivalence_section(rows)
        + _gat_section(rows)
        + _memory_section(rows, plotted)
    )
    return "\n".join(head + (body or ["No figures this summary knows; see results.csv.", ""]))


def write_bench(
    rows: Sequence[dict[str, Any]], out_dir: Path, suite: str, environment: dict[str, Any]
) -> Path:
    """Write ``results.json``, ``results.csv``, ``memory.png``, ``time.png``, ``summary.md``.

    Args:
        rows: The suite's rows (one dict per measurement).
        out_dir: A new or empty folder.
        suite: The suite name.
        environment: From :func:`attnlab.bench.harness.environment`.

    Returns:
        ``out_dir``.

    Raises:
        FileExistsError: If ``out_dir`` already holds something.
    """
    out_dir = Path(out_dir)
    check_new_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    document = {"suite": suite, "environment": environment, "rows": rows}
    _write_text(out_dir / "results.json", json.dumps(document, indent=2, default=str) + "\n")
    _write_text(out_dir / "results.csv", _csv_text(rows))
    plotted = _memory_plot(rows, suite, out_dir / "memory.png")
    figure = time_figure(rows, suite)
    if figure is not None:
        _save_png(figure, out_dir / "time.png")
    timed = figure is not None
    _write_text(
        out_dir / "summary.md",
        summary_markdown(rows, suite, environment, plotted=plotted, time_plotted=timed),
    )
    return out_dir
