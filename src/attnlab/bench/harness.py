"""Benchmark harness: interleaved timing, peak memory in a fresh process, environment.

The machines are noisy, so methods are timed side by side: every round runs each
candidate once, in rotating order, and figures are medians (with the spread) of
per-round times. Peak memory is measured in a fresh Python process per point, as
the growth of the resident set (``ru_maxrss``) over the baseline after inputs exist.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

__all__ = [
    "Timing",
    "environment",
    "paired_ratio",
    "peak_memory_mib",
    "run_steps",
    "time_interleaved",
]


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the measured rounds."""

    median: float
    low: float
    high: float
    rounds: int
    samples: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return asdict(self)


def paired_ratio(numerator: Timing, denominator: Timing) -> float:
    """Median over rounds of ``numerator_i / denominator_i``.

    Both were timed in the same rounds (:func:`time_interleaved`), so a slow spell of
    the machine cancels out of each round's ratio instead of skewing one median.
    """
    pairs = zip(numerator.samples, denominator.samples)
    return statistics.median(a / b for a, b in pairs)


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            wanted = {"avx2", "avx512f", "avx512_bf16", "amx_tile", "fma"}
            return sorted(wanted & set(line.split(":", 1)[1].split()))
    return []


def environment(device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, object]:
    """What a result depends on: versions, threads, CPU flags, device, dtype, commit."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "commit": _git_commit(),
    }


def time_interleaved(
    candidates: dict[str, Callable[[], object]], *, rounds: int = 7, warmup: int = 1
) -> dict[str, Timing]:
    """Time each candidate once per round, rotating the order, after ``warmup`` rounds."""
    names = list(candidates)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                samples[name].append(elapsed)
    return {
        n: Timing(statistics.median(s), min(s), max(s), len(s), tuple(s))
        for n, s in samples.items()
    }


def run_steps(suite: str, steps: Sequence[Callable[[Any], list[dict]]], sizes: Any) -> list[dict]:
    """Run a suite's measuring steps on its sizes, with a progress bar; their rows, in order."""
    rows: list[dict] = []
    for step in tqdm(steps, desc=f"{suite} suite"):
        rows.extend(step(sizes))
    return rows


def peak_memory_mib(
    point: dict[str, object], *, module: str = "attnlab.bench.probe", timeout: float = 600.0
) -> float:
    """Peak extra resident memory (MiB) of one point, run in a fresh process.

    Args:
        point: keyword arguments of the child's measuring function (for the default
            module, :func:`attnlab.bench.probe.run_point`).
        module: the child, run as ``python -m MODULE '{point}'``; it prints
            ``{"peak_mib": ...}`` (see :func:`attnlab.bench.probe.child_main`).
        timeout: seconds before the child is abandoned.
    """
    cmd = [sys.executable, "-m", module, json.dumps(point)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory probe {point} failed: {last}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])
