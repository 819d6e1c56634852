"""The benchmark report writer, on synthetic rows (the real suites are too slow for tests)."""

from __future__ import annotations

import csv
import json

import pytest

from attnlab.bench import SUITES, get_suite
from attnlab.bench.report import write_bench

from ._rows import synthetic_rows

ENV = {
    "torch": "2.13.0",
    "python": "3.11",
    "threads": 2,
    "cpu": "x86_64",
    "cpu_flags": ["avx2"],
    "cores": 2,
    "device": "cpu",
    "dtype": "float32",
    "commit": "abc",
}


def test_write_bench_files(tmp_path):
    rows = synthetic_rows()
    out = write_bench(rows, tmp_path / "bench", "core", ENV)
    assert sorted(p.name for p in out.iterdir()) == [
        "memory.png",
        "results.csv",
        "results.json",
        "summary.md",
    ]
    doc = json.loads((out / "results.json").read_text())
    assert doc == {"suite": "core", "environment": ENV, "rows": rows}
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert {"figure", "ratio", "engine", "gflops", "peak_mib"} <= set(table[0])  # key union
    assert table[0]["engine"] == "" and table[-1]["ratio"] == ""
    assert (out / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_headline_figures(tmp_path):
    out = write_bench(synthetic_rows(), tmp_path / "bench", "core", ENV)
    summary = (out / "summary.md").read_text()
    assert "torch 2.13.0" in summary and "commit abc" in summary
    assert "| 256 | 0.200 | 0.250 | 1.25x |" in summary  # attention / sdpa per length
    assert "| 1024 | 3.000 | 3.030 | 1.01x |" in summary
    assert "| forward | 1024 | 160.0 | 120.0 | 75.0% |" in summary
    assert "| forward+backward | 1024 | 120.0 | 84.0 | 70.0% |" in summary
    assert "| engine | L = 512 | L = 1024 | L = 2048 |" in summary
    assert "| math | 4.0 | 16.0 | 64.0 |" in summary
    assert "![peak memory](memory.png)" in summary


def test_rows_without_known_figures_still_write(tmp_path):
    out = write_bench([{"figure": "other", "x": 1}], tmp_path / "bench", "core", ENV)
    assert not (out / "memory.png").exists()
    assert "No figures" in (out / "summary.md").read_text()


def test_never_writes_into_a_non_empty_folder(tmp_path):
    (tmp_path / "old.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty; pass --out another folder"):
        write_bench(synthetic_rows(), tmp_path, "core", ENV)
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_suites_registry():
    assert "core" in SUITES and get_suite("core") is SUITES["core"]
    with pytest.raises(ValueError, match="unknown bench suite 'nope'; available: core"):
        get_suite("nope")
