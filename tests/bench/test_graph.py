"""The gat suite at tiny sizes: both candidates run, the memory probe runs in a child."""

import pytest

from attnlab.bench.graph import GatSizes, gat_memory_row, gat_rows, run_memory_point

pytest.importorskip("torch_geometric")


def test_gat_rows_tiny():
    rows = gat_rows(sizes=GatSizes(nodes=50, edges=200, features=16, rounds=1))
    assert [r["pass"] for r in rows] == ["forward", "forward+backward"]
    for row in rows:
        assert row["figure"] == "gat_layer" and row["nodes"] == 50
        assert all(row[k] > 0 for k in ("attnlab_s", "pyg_s", "vs_pyg"))


def test_gat_memory_row_tiny():
    row = gat_memory_row(nodes=100, edges=500)
    assert row["figure"] == "gat_memory" and row["edges"] == 500 and row["peak_mib"] >= 0


def test_memory_point_grows_with_the_graph():
    assert run_memory_point(20_000, 200_000) > run_memory_point(100, 500)
