"""The mechanisms suite at tiny sizes: rows, the markdown table, the memory child."""

from dataclasses import replace

import pytest
import torch

from attnlab.bench import mechanisms
from attnlab.bench.harness import peak_memory_mib
from attnlab.bench.mechanisms import (
    CASES,
    MechanismCase,
    get_case,
    markdown_section,
    measure_side,
    mechanism_rows,
    naive_additive,
    naive_concat,
    naive_general,
)
from attnlab.nn import AdditiveAttention, LuongAttention

TINY = {
    "additive": {"batch": 2, "queries": 3, "keys": 5, "hidden": 8},
    "luong general": {"batch": 2, "queries": 3, "keys": 5, "hidden": 8},
    "luong concat": {"batch": 2, "queries": 3, "keys": 5, "hidden": 8},
    "multi-head": {"batch": 1, "length": 6},
    "gat": {"nodes": 30, "edges": 90, "features": 16},
    "banded": {"length": 40, "window": 3},
    "block-sparse (BigBird)": {"length": 48, "block": 8},
    "linear (elu + 1)": {"length": 24},
}
NUMBERS = ("ours_s", "reference_s", "speedup", "ours_peak_mib", "reference_peak_mib")


def _tiny_cases() -> list[MechanismCase]:
    return [replace(case, quick=TINY[case.name]) for case in CASES]


def test_rows_and_markdown_at_tiny_sizes(monkeypatch):
    # Memory in this process: the child's own plumbing has a test of its own below.
    def in_process(point, module):
        return measure_side(**point)

    monkeypatch.setattr(mechanisms, "peak_memory_mib", in_process)
    rows = mechanism_rows(_tiny_cases(), quick=True, rounds=1)
    assert [r["mechanism"] for r in rows] == [c.name for c in CASES]
    for row in rows:
        assert row["figure"] == "mechanism" and row["pass"] == "forward+backward"
        if row["status"] != "ok":
            assert row["mechanism"] == "gat" and row["status"].startswith("not installed")
            continue
        assert all(row[k] >= 0 for k in NUMBERS) and row["speedup"] > 0
        assert row["memory_ratio"] == pytest.approx(
            row["ours_peak_mib"] / max(row["reference_peak_mib"], 1e-9)
        )
        assert row["max_abs_error"] < 1e-4
    lines = markdown_section(rows)
    assert {line.count("|") for line in lines if line.startswith("|")} == {11}
    text = "\n".join(lines)
    assert "| mechanism | reference | sizes |" in text
    assert "| additive | naive materialising | B=2, Lq=3, Lk=5, hidden=8 |" in text
    assert markdown_section([{"figure": "throughput"}]) == []


def test_a_missing_reference_gives_a_not_installed_row():
    def never(**sizes):
        raise AssertionError("a case with missing modules must not be built")

    case = MechanismCase("ghost", "ghost library", never, requires=("attnlab_no_such_module",))
    (row,) = mechanism_rows([case], quick=True, rounds=1)
    assert row["status"] == "not installed (attnlab_no_such_module)"
    assert all(row[k] is None for k in (*NUMBERS, "memory_ratio", "max_abs_error"))
    assert "not installed (attnlab_no_such_module)" in "\n".join(markdown_section([row]))


def _naive_cases():
    torch.manual_seed(0)
    add = AdditiveAttention(8, 8, 6)
    gen = LuongAttention(8, score="general")
    cat = LuongAttention(8, score="concat", hidden_size=6)

    def concat_ref(q, k):
        w = torch.cat([cat.query_proj.weight, cat.key_proj.weight], dim=1)
        return naive_concat(q, k, k, w, cat.key_proj.bias, cat.v)

    return {
        "additive": (
            add,
            lambda q, k: naive_additive(
                q, k, k, add.query_proj.weight, add.key_proj.weight, add.key_proj.bias, add.v
            ),
        ),
        "general": (gen, lambda q, k: naive_general(q, k, k, gen.weight)),
        "concat": (cat, concat_ref),
    }


@pytest.mark.parametrize("name", ["additive", "general", "concat"])
def test_naive_references_agree_with_attnlab_in_outputs_and_gradients(name):
    module, naive = _naive_cases()[name]
    q = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    module.double()
    ours, theirs = module(q, k)[0], naive(q, k)
    torch.testing.assert_close(ours, theirs)
    leaves = [q, k, *module.parameters()]
    for a, b in zip(
        torch.autograd.grad(ours.sum(), leaves), torch.autograd.grad(theirs.sum(), leaves)
    ):
        torch.testing.assert_close(a, b)


def test_memory_child_measures_one_side_in_a_fresh_process():
    point = {"case": "additive", "side": "ours", "sizes": TINY["additive"]}
    assert peak_memory_mib(point, module="attnlab.bench.mechanisms") >= 0.0


def test_bad_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown mechanism"):
        get_case("bahdanau-v9")
    with pytest.raises(ValueError, match="side"):
        measure_side("additive", "theirs", TINY["additive"])
    assert len({c.name for c in CASES}) == len(CASES)
