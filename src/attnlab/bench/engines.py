"""The ``engines`` suite: every engine against L, forward and forward+backward, two dtypes.

Batch 1, 8 heads, head dim 64, timed side by side at each length (each round runs
every method once, in rotating order; figures are medians of per-round ratios):

* ``sdpa``: dense SDPA, no mask (the reference every crossover is measured against);
* ``sdpa_band_mask``: dense SDPA with the sliding window as a mask (what a user gets
  without a banded engine: SDPA does not skip masked blocks);
* ``chunked``: attnlab's online-softmax engine; ``math``: the materialising reference;
* ``banded``: sliding window ``w = 256`` keys each side (513 keys per query);
* ``bigbird``: BigBird blocks of 64 (3 window + 2 global + 3 random blocks) on the
  ``block_sparse`` engine;
* ``linear_elu``: elu + 1 linear attention (not softmax attention: a different
  function, included for its cost);
* ``flex``: the same window through compiled FlexAttention, forward only (it has no
  CPU backward; compilation happens in the untimed warm-up round).

Peak memory of forward+backward is measured in a fresh process per point, run as
``python -m attnlab.bench.engines '{"method": ..., "length": ...}'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from attnlab.bench.harness import paired_ratio, peak_memory_mib, time_interleaved
from attnlab.bench.probe import child_main, peak_of
from attnlab.functional import attention
from attnlab.functional.linear import linear_attention
from attnlab.masks import bigbird_pattern, sliding_window_pattern

HEADS, HEAD_DIM = 8, 64
WINDOW = 256
Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EngineSizes:
    """What the suite measures; ``quick`` shrinks it to well under 2 minutes."""

    lengths: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    sparse_only_lengths: tuple[int, ...] = (65536,)
    memory_lengths: tuple[int, ...] = (4096, 16384, 65536)
    math_max: int = 4096
    dense_max: int = 16384
    window: int = WINDOW
    half_lengths: tuple[int, ...] = (4096, 16384)
    rounds: int = 3

    @classmethod
    def quick(cls) -> EngineSizes:
        """A smaller run for ``attnlab bench --quick``."""
        return cls((512, 1024, 2048), (), (1024, 4096), 1024, 2048, 64, (1024,), 2)


def build_method(name: str, length: int, window: int = WINDOW) -> Method:
    """The callable ``(q, k, v) -> out`` a method name stands for (masks built here)."""
    if name in ("sdpa", "chunked", "math"):
        return lambda q, k, v: attention(q, k, v, backend=name).output
    if name == "sdpa_band_mask":
        band = sliding_window_pattern(window).mask(length)
        return lambda q, k, v: attention(q, k, v, mask=band, backend="sdpa").output
    if name == "banded":
        pattern = sliding_window_pattern(window)
        return lambda q, k, v: attention(q, k, v, pattern=pattern, backend="banded").output
    if name == "bigbird":
        pattern = bigbird_pattern(64, window_blocks=3, global_blocks=2, random_blocks=3)
        return lambda q, k, v: attention(q, k, v, pattern=pattern, backend="block_sparse").output
    if name == "linear_elu":
        return lambda q, k, v: linear_attention(q, k, v)
    if name == "flex":
        pattern = sliding_window_pattern(window)
        return lambda q, k, v: attention(q, k, v, pattern=pattern, backend="flex").output
    raise ValueError(f"unknown method {name!r}")


def methods_at(length: int, sizes: EngineSizes) -> list[str]:
    """The methods measured at one length (dense ones stop where they take too long)."""
    names = ["banded", "bigbird", "linear_elu"]
    if length <= sizes.dense_max:
        names = ["sdpa", "sdpa_band_mask", "chunked"] + names + ["flex"]
    if length <= sizes.math_max:
        names.append("math")
    return names


def _inputs(length: int, dtype: torch.dtype, grad: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(1, HEADS, length, HEAD_DIM, generator=g)
        .to(dtype)
        .requires_grad_(grad and i < 3)
        for i in range(4)
    )


def _candidate(method: Method, inputs: tuple[torch.Tensor, ...], backward: bool) -> Callable:
    q, k, v, grad = inputs

    def run() -> None:
        if not backward:
            with torch.no_grad():
                method(q, k, v)
            return
        q.grad = k.grad = v.grad = None
        method(q, k, v).backward(grad)

    return run


def timing_rows(sizes: EngineSizes) -> list[dict]:
    """Seconds per call of every method at every length, both passes, float32 and bf16."""
    plan = [(n, torch.float32, p) for n in sizes.lengths for p in ("forward", "forward+backward")]
    plan += [(n, torch.float32, "forward+backward") for n in sizes.sparse_only_lengths]
    plan += [(n, torch.bfloat16, "forward+backward") for n in sizes.half_lengths]
    rows = []
    for length, dtype, name in tqdm(plan, desc="engines: timing", leave=False):
        backward = name == "forward+backward"
        names = methods_at(length, sizes)
        if backward:  # FlexAttention has no CPU backward
            names = [m for m in names if m != "flex"]
        if dtype != torch.float32:
            names = [m for m in names if m in ("sdpa", "sdpa_band_mask", "banded")]
        inputs = _inputs(length, dtype, backward)
        cands = {
            m: _candidate(build_method(m, length, sizes.window), inputs, backward) for m in names
        }
        timed = time_interleaved(cands, rounds=sizes.rounds)
        for method, t in timed.items():
            row = {
                "figure": "scaling",
                "suite": "engines",
                "method": method,
                "length": length,
                "pass": name,
                "dtype": str(dtype).replace("torch.", ""),
                "seconds": t.median,
                "low": t.low,
                "high": t.high,
            }
            if "sdpa" in timed:
                row["vs_sdpa"] = paired_ratio(timed["sdpa"], t)
            if "sdpa_band_mask" in timed:
                row["vs_band_mask"] = paired_ratio(timed["sdpa_band_mask"], t)
            rows.append(row)
    return rows


def memory_rows(sizes: EngineSizes) -> list[dict]:
    """Peak extra MiB of forward+backward per method and length (fresh process each)."""
    points = [(m, n) for n in sizes.memory_lengths for m in methods_at(n, sizes) if m != "flex"]
    rows = []
    for method, length in tqdm(points, desc="engines: memory", leave=False):
        point = {"method": method, "length": length, "window": sizes.window}
        mib = peak_memory_mib(point, module="attnlab.bench.engines")
        rows.append(
            {
                "figure": "peak_memory",
                "engine": method,
                "length": length,
                "pass": "forward+backward",
                "peak_mib": mib,
            }
        )
    return rows


def run_point(method: str, length: int, window: int = WINDOW) -> float:
    """One forward+backward of ``method`` at ``length``; the peak extra MiB (child side)."""
    fn = build_method(method, length, window)
    inputs = _inputs(length, torch.float32, grad=True)
    return peak_of(_candidate(fn, inputs, backward=True))


def run_engines(quick: bool = False) -> list[dict]:
    """All rows of the engines suite."""
    sizes = EngineSizes.quick() if quick else EngineSizes()
    return timing_rows(sizes) + memory_rows(sizes)


if __name__ == "__main__":
    child_main(run_point)
