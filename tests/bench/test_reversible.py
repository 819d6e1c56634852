"""The reversible suite at small sizes: children run, rows and markdown are right."""

import pytest

from attnlab.bench.reversible import (
    FIGURE,
    ReversibleSizes,
    _child_point,
    markdown_section,
    reversible_rows,
)

TINY = ReversibleSizes(length=16, batch=1, d_model=8, heads=2, ff=16, layers=(2,))
SMALL = ReversibleSizes(length=512, batch=2, d_model=64, heads=2, ff=256, layers=(1, 8))


def test_tiny_rows_from_fresh_processes_and_their_table():
    rows = reversible_rows(TINY)
    assert [(r["layers"], r["reversible"]) for r in rows] == [(2, True), (2, False)]
    for row in rows:
        assert row["figure"] == FIGURE and row["length"] == 16 and row["batch"] == 1
        assert row["malloc"] == "fixed" and row["d_model"] == 8 and row["peak_mib"] >= 0
    lines = markdown_section(rows)
    assert "L = 16, B = 1, malloc fixed; gradients included:" in lines
    assert "| layers | reversible | ordinary |" in lines
    assert any(line.startswith("| 2 | ") for line in lines)


@pytest.mark.slow
def test_reversible_memory_does_not_grow_like_ordinary_memory():
    rows = reversible_rows(SMALL)
    peak = {(r["layers"], r["reversible"]): r["peak_mib"] for r in rows}
    # Behaviour, not a number: the ordinary path stores every layer, the reversible one
    # does not, so at 8 layers it needs well under half the memory.
    assert peak[8, True] < peak[8, False] / 2
    assert peak[8, True] / peak[1, True] < peak[8, False] / peak[1, False]
    assert "8-layer / 1-layer: reversible" in "\n".join(markdown_section(rows))


def test_markdown_ignores_other_figures_and_reports_a_missed_target():
    assert markdown_section([{"figure": "peak_memory", "length": 8}]) == []
    rows = [
        {"figure": FIGURE, "layers": n, "length": 8, "batch": 1, "reversible": True, "peak_mib": m}
        for n, m in ((1, 10.0), (12, 30.0))
    ]
    lines = markdown_section(rows)
    assert "12-layer / 1-layer: reversible 3.00x (target <= 1.5x: missed)." in lines
    assert "| 12 | 30.0 | — |" in lines


def test_child_point_with_the_default_allocator_runs_in_process():
    mib = _child_point(malloc="default", layers=2, length=16, reversible=True, batch=1, d_model=8)
    assert mib >= 0
