import pytest

from attnlab.bench.harness import environment, peak_memory_mib, time_interleaved
from attnlab.bench.probe import run_point


def test_environment_names_what_results_depend_on():
    env = environment()
    assert {"torch", "python", "threads", "device", "dtype", "commit"} <= set(env)


def test_time_interleaved_counts_rounds():
    calls = []
    timings = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3
    )
    assert calls.count("a") == 4 and timings["a"].rounds == 3
    assert timings["a"].low <= timings["a"].median <= timings["a"].high


@pytest.mark.parametrize("engine", ["chunked", "sdpa", "math"])
def test_probe_measures_a_point_in_process(engine):
    assert run_point(engine, 64, heads=2, head_dim=8) >= 0.0


def test_peak_memory_runs_in_a_fresh_process():
    assert peak_memory_mib({"engine": "chunked", "length": 64, "heads": 2, "head_dim": 8}) >= 0.0
