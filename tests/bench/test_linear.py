"""The linear suite at tiny sizes: the rows' shape and the markdown."""

import pytest

from attnlab.bench import linear
from attnlab.bench.linear import LinearSizes, run_linear
from attnlab.bench.report import summary_markdown

TINY = LinearSizes(
    lengths=(16, 32),
    rounds=1,
    heads=2,
    head_dim=8,
    error_length=16,
    error_features=(4, 16),
    error_seeds=2,
    error_stds=(1.0,),
    memory_lengths=(),
)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(linear.LinearSizes, "quick", classmethod(lambda cls: TINY))


def test_run_linear_rows_and_markdown(tiny):
    rows = run_linear(quick=True)
    scaling = [r for r in rows if r["figure"] == "scaling"]
    assert len(scaling) == 2 * 3 * 2  # lengths x methods x causal
    for r in scaling:
        assert r["suite"] == "linear" and r["pass"] == "forward+backward"
        assert r["method"] in ("sdpa", "linear_elu", "performer") and r["dtype"] == "float32"
        assert 0 < r["low"] <= r["seconds"] <= r["high"] and r["vs_sdpa"] > 0
        if r["method"] == "sdpa":
            assert r["vs_sdpa"] == 1.0
    errors = [r for r in rows if r["figure"] == "approximation_error"]
    assert [(r["method"], r["num_features"]) for r in errors] == [
        ("linear_elu", 8),
        ("performer", 4),
        ("performer", 16),
    ]
    assert all(r["relative_error"] > 0 and r["max_abs_error"] > 0 for r in errors)
    text = summary_markdown(rows, "linear", {})
    assert "## Time per call (ms): forward+backward, float32, non-causal" in text
    assert "## Time per call (ms): forward+backward, float32, causal" in text
    assert "| performer | 16 | 16 | 1 |" in text


def test_memory_point_in_process():
    assert linear.run_memory_point("performer", 32, heads=2, head_dim=8) >= 0.0


def test_schedule_shortens_long_lengths():
    sizes = LinearSizes()
    assert sizes.schedule(256) == (7, 1)
    rounds, warmup = sizes.schedule(16384)
    assert rounds == 2 and warmup == 0 and sizes.schedule(4096) == (3, 0)
