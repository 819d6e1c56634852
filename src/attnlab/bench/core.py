"""The ``core`` suite: the attention entry point against bare SDPA, and the chunked engine.

Figures (all ratios measured side by side in one run, each the median over rounds of
the per-round ratio):

* dispatch overhead: ``attention(q, k, v)`` (which runs SDPA) vs calling
  :func:`torch.nn.functional.scaled_dot_product_attention` directly, L = 256 and 4096;
* chunked vs SDPA throughput at L = 4096, forward and forward+backward, with FLOPs
  counted as ``4 B H L^2 D`` forward and 2.5 times that for forward+backward;
* peak memory of forward+backward against L, per engine, each point in a fresh process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnlab.bench.harness import paired_ratio, peak_memory_mib, run_steps, time_interleaved
from attnlab.functional import attention

HEADS, HEAD_DIM = 8, 64


@dataclass(frozen=True)
class CoreSizes:
    """What the suite measures; ``quick`` shrinks it to finish in well under 2 minutes."""

    overhead_lengths: tuple[int, ...] = (256, 4096)
    throughput_length: int = 4096
    memory_lengths: tuple[int, ...] = (1024, 4096, 16384)
    math_memory_max: int = 4096
    rounds: int = 11

    @classmethod
    def quick(cls) -> CoreSizes:
        """A smaller run for ``attnlab bench --quick``."""
        return cls((256, 1024), 1024, (512, 1024, 2048), 2048, 3)


def _inputs(length: int, grad: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(1, HEADS, length, HEAD_DIM, generator=g, requires_grad=grad) for _ in range(4)
    )


def _fwd_bwd(fn: Callable[..., torch.Tensor], q, k, v, dout) -> Callable[[], None]:
    def run() -> None:
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(dout)

    return run


def overhead_rows(sizes: CoreSizes) -> list[dict]:
    """Dispatch overhead of ``attention`` over bare SDPA (forward, no grad)."""
    rows = []
    for length in sizes.overhead_lengths:
        q, k, v, _ = _inputs(length, grad=False)
        # Short samples, many rounds: alternating often cancels the machine's drift,
        # which at L = 256 is larger than the overhead being measured.
        reps = max(1, 2**19 // (length * length))

        def bare() -> None:
            for _ in range(reps):
                F.scaled_dot_product_attention(q, k, v)

        def ours() -> None:
            for _ in range(reps):
                attention(q, k, v)

        rounds = sizes.rounds * (15 if reps > 1 else 3)
        t = time_interleaved({"sdpa": bare, "attention": ours}, rounds=rounds)
        rows.append(
            {
                "figure": "dispatch_overhead",
                "length": length,
                "pass": "forward",
                "sdpa_s": t["sdpa"].median / reps,
                "attention_s": t["attention"].median / reps,
                "ratio": paired_ratio(t["attention"], t["sdpa"]),
            }
        )
    return rows


def throughput_rows(sizes: CoreSizes) -> list[dict]:
    """Chunked engine vs SDPA at one length, forward and forward+backward."""
    length = sizes.throughput_length
    flops = 4 * HEADS * length * length * HEAD_DIM
    rows = []
    q, k, v, dout = _inputs(length, grad=True)

    def run(engine: str) -> Callable[..., torch.Tensor]:
        return lambda q, k, v: attention(q, k, v, backend=engine).output

    for name, factor in (("forward", 1.0), ("forward+backward", 2.5)):
        if name == "forward":

            def cands(engine: str) -> Callable[[], None]:
                def f() -> None:
                    with torch.no_grad():
                        run(engine)(q, k, v)

                return f
        else:

            def cands(engine: str) -> Callable[[], None]:
                return _fwd_bwd(run(engine), q, k, v, dout)

        t = time_interleaved({e: cands(e) for e in ("sdpa", "chunked")}, rounds=sizes.rounds)
        for engine, timing in t.items():
            rows.append(
                {
                    "figure": "throughput",
                    "length": length,
                    "pass": name,
                    "engine": engine,
                    "seconds": timing.median,
                    "low": timing.low,
                    "high": timing.high,
                    "gflops": factor * flops / timing.median / 1e9,
                    "vs_sdpa": paired_ratio(t["sdpa"], timing),
                }
            )
    return rows


def memory_rows(sizes: CoreSizes) -> list[dict]:
    """Peak extra memory of forward+backward per engine and length (fresh process each)."""
    points = [
        (e, n)
        for n in sizes.memory_lengths
        for e in ("chunked", "sdpa", "math")
        if e != "math" or n <= sizes.math_memory_max
    ]
    rows = []
    for engine, length in tqdm(points, desc="memory", leave=False):
        mib = peak_memory_mib({"engine": engine, "length": length})
        rows.append(
            {
                "figure": "peak_memory",
                "length": length,
                "pass": "forward+backward",
                "engine": engine,
                "peak_mib": mib,
            }
        )
    return rows


def run_core(quick: bool = False) -> list[dict]:
    """All rows of the core suite."""
    sizes = CoreSizes.quick() if quick else CoreSizes()
    return run_steps("core", (overhead_rows, throughput_rows, memory_rows), sizes)
