"""The vision suite at tiny sizes: the naive twin, rows, markdown, the ViT hook, the wiring."""

import json

import pytest
import torch

from attnlab.bench import SUITES, vision
from attnlab.bench.harness import peak_memory_mib
from attnlab.bench.report import write_bench
from attnlab.bench.vision import (
    FIGURE,
    VIT_TODO,
    VisionSizes,
    markdown_section,
    naive_non_local,
    non_local_rows,
    run_memory_point,
    vit_rows_or_todo,
)
from attnlab.vision.non_local import PAIRWISE, NonLocalBlock

TINY = VisionSizes(channels=4, height=6, width=5, batch=2, rounds=1)
NUMBERS = ("attnlab_s", "naive_s", "speedup", "attnlab_peak_mib", "naive_peak_mib")


@pytest.mark.parametrize("pairwise", PAIRWISE)
@pytest.mark.parametrize("subsample", [False, True])
def test_the_naive_twin_computes_the_blocks_function(pairwise, subsample):
    torch.manual_seed(0)
    block = NonLocalBlock(6, 4, pairwise=pairwise, subsample=subsample, dtype=torch.float64)
    with torch.no_grad():
        block.norm.weight.normal_()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(naive_non_local(block, x), block(x).context)


def test_rows_and_markdown_at_tiny_sizes(monkeypatch):
    # Memory in this process: the child itself has a test of its own below.
    monkeypatch.setattr(vision, "peak_memory_mib", lambda point, module, timeout: 1.0)
    rows = non_local_rows(TINY)
    assert [r["pairwise"] for r in rows] == list(PAIRWISE)
    for row in rows:
        assert row["figure"] == FIGURE and row["pass"] == "forward+backward"
        assert (row["channels"], row["height"], row["width"], row["positions"]) == (4, 6, 5, 30)
        assert all(row[k] > 0 for k in NUMBERS) and row["memory_ratio"] == 1.0
        assert row["max_abs_error"] < 1e-5
    lines = markdown_section(rows)
    assert lines[0].startswith("## Non-local block vs the naive twin: 4 channels on 6 x 5")
    assert {line.count("|") for line in lines if line.startswith("|")} == {9}
    assert sum(line.startswith("Embedded Gaussian: memory 1.000x") for line in lines) == 1


def test_memory_point_in_a_fresh_process_and_in_this_one():
    point = {"side": "naive", **TINY.point("embedded-gaussian")}
    assert peak_memory_mib(point, module="attnlab.bench.vision") >= 0
    assert run_memory_point(**{**point, "side": "attnlab"}) >= 0
    with pytest.raises(ValueError, match="side must be one of"):
        run_memory_point(**{**point, "side": "timm"})


def test_goal_line_says_met_or_missed():
    row = {"figure": FIGURE, "pairwise": "embedded-gaussian", "channels": 64, "height": 128}
    row |= {"width": 128, "positions": 16384, "batch": 1, "attnlab_s": 1.0, "naive_s": 3.0}
    row |= {"attnlab_peak_mib": 50.0, "naive_peak_mib": 3000.0, "max_abs_error": 1e-5}
    met = {**row, "speedup": 3.0, "memory_ratio": 0.02}
    missed = {**row, "speedup": 1.5, "memory_ratio": 0.2}
    assert (
        "Embedded Gaussian: memory 0.020x the naive twin's (goal <= 0.1x: met), 3.00x faster "
        "(goal >= 2.0x: met)."
    ) in markdown_section([met])
    text = "\n".join(markdown_section([missed]))
    assert "(goal <= 0.1x: missed)" in text and "(goal >= 2.0x: missed)" in text


def test_the_vit_hook_calls_vit_rows_or_says_what_is_missing(monkeypatch):
    from attnlab.bench import vit

    calls = []
    monkeypatch.setattr(vit, "vit_rows", lambda quick: calls.append(quick) or [{"x": 1}])
    assert vit_rows_or_todo(quick=True) == [{"x": 1}] and calls == [True]
    monkeypatch.setattr(vision.importlib.util, "find_spec", lambda name: None)
    assert vit_rows_or_todo() == [{"figure": "vit_step", "status": VIT_TODO}]
    assert markdown_section(vit_rows_or_todo()) == [
        "## ViT-Tiny training step vs timm",
        "",
        VIT_TODO,
        "",
    ]


def test_vit_rows_are_tabulated_with_their_note():
    rows = [
        {"figure": "vit_train_step", "config": "ViT", "batch": 8, "attnlab_s": 0.5, "timm_s": 0.5}
        | {"vs_timm": 1.0},
        {"figure": "vit_memory", "config": "ViT", "batch": 8, "attnlab_mib": 900.0}
        | {"timm_mib": None, "vs_timm": None, "note": "timm is not importable here"},
    ]
    lines = markdown_section(rows)
    assert "| step time (ms) | ViT | 8 | 500.0 | 500.0 | 1.00x |" in lines
    assert "| peak memory (MiB) | ViT | 8 | 900.0 | — | — |" in lines
    assert "Note: timm is not importable here." in lines


def test_the_suite_is_registered_and_quick(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(vision, "non_local_rows", lambda sizes: seen.append(sizes) or [])
    monkeypatch.setattr(
        vision, "vit_rows_or_todo", lambda quick: [{"figure": "vit_step"} | {"status": VIT_TODO}]
    )
    rows = SUITES["vision"](quick=True)
    assert seen == [VisionSizes.quick()] and seen[0].height * seen[0].width == 48 * 48
    write_bench(rows, tmp_path / "out", "vision", {"torch": "x"})
    assert VIT_TODO in (tmp_path / "out" / "summary.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["suite"] == "vision"
