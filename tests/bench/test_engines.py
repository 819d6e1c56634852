"""The engines suite on tiny sizes, its memory child, and the scaling report."""

from __future__ import annotations

import pytest
import torch

from attnlab.bench import engines
from attnlab.bench.report import summary_markdown, write_bench
from attnlab.bench.scaling import crossover_length, panels

TINY = engines.EngineSizes((64, 128), (256,), (128,), 64, 128, 16, (128,), 1)


def test_every_method_computes_attention_of_the_right_shape():
    q, k, v = (torch.randn(1, 2, 96, 8) for _ in range(3))
    for name in ("sdpa", "sdpa_band_mask", "chunked", "math", "banded", "bigbird", "linear_elu"):
        assert engines.build_method(name, 96, window=16)(q, k, v).shape == (1, 2, 96, 8)
    with torch.no_grad():
        flex = engines.build_method("flex", 96, window=16)(q, k, v)
    band = engines.build_method("sdpa_band_mask", 96, window=16)(q, k, v)
    torch.testing.assert_close(engines.build_method("banded", 96, 16)(q, k, v), band)
    torch.testing.assert_close(flex, band, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown method"):
        engines.build_method("nope", 8)


def test_suite_rows_and_report(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "HEADS", 2)
    monkeypatch.setattr(engines, "peak_memory_mib", lambda point, module: 1.0 + point["length"])
    rows = engines.timing_rows(TINY) + engines.memory_rows(TINY)
    timed = [r for r in rows if r["figure"] == "scaling"]
    at_64 = {(r["method"], r["pass"]) for r in timed if r["length"] == 64}
    assert {m for m, _ in at_64} == set(engines.methods_at(64, TINY))
    assert ("flex", "forward+backward") not in at_64
    assert {r["method"] for r in timed if r["length"] == 256} == {"banded", "bigbird", "linear_elu"}
    assert {r["dtype"] for r in timed} == {"float32", "bfloat16"}
    assert all(r["vs_band_mask"] > 0 for r in timed if r["length"] == 128)
    out = write_bench(rows, tmp_path / "b", "engines", {"device": "cpu"})
    assert (out / "time.png").stat().st_size > 0 and (out / "memory.png").stat().st_size > 0
    text = (out / "summary.md").read_text()
    assert "## Banded engine vs dense SDPA with the band mask" in text
    assert "## Time per call (ms): forward+backward, float32" in text
    assert "![time against L](time.png)" in text


def test_memory_child_measures_one_point():
    point = {"method": "banded", "length": 256, "window": 16}
    assert engines.peak_memory_mib(point, module="attnlab.bench.engines") > 0


def test_crossover_is_where_a_method_stays_faster():
    rows = [
        {"figure": "scaling", "method": m, "length": n, "pass": "forward", "seconds": s}
        for m, times in (("sdpa", (1, 4, 16, 64)), ("x", (2, 3, 20, 30)), ("y", (5, 5, 5, 80)))
        for n, s in zip((1, 2, 4, 8), times)
    ]
    per_method = panels(rows)[("forward", "float32", "")]
    assert crossover_length(per_method, "x") == 8  # faster at 2, slower at 4: not yet
    assert crossover_length(per_method, "y") is None
    assert "| y | 5,000.0 | 5,000.0 | 5,000.0 | 80,000.0 | never here |" in summary_markdown(
        rows, "engines", {}
    )
