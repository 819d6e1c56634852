"""Synthetic rows in the shape of the core suite, for the report writer and the CLI."""

from __future__ import annotations


def synthetic_rows() -> list[dict]:
    rows: list[dict] = [
        {
            "figure": "dispatch_overhead",
            "length": n,
            "pass": "forward",
            "sdpa_s": s,
            "attention_s": s * r,
            "ratio": r,
        }
        for n, s, r in ((256, 2e-4, 1.25), (1024, 3e-3, 1.01))
    ]
    for name, sdpa, chunked in (("forward", 160.0, 120.0), ("forward+backward", 120.0, 84.0)):
        for engine, gflops in (("sdpa", sdpa), ("chunked", chunked)):
            rows.append(
                {
                    "figure": "throughput",
                    "length": 1024,
                    "pass": name,
                    "engine": engine,
                    "seconds": 0.01,
                    "low": 0.009,
                    "high": 0.011,
                    "gflops": gflops,
                    "vs_sdpa": gflops / sdpa,
                }
            )
    for n in (512, 1024, 2048):
        for engine, mib in (("chunked", n / 64), ("sdpa", n / 32), ("math", n * n / 2**16)):
            rows.append(
                {
                    "figure": "peak_memory",
                    "length": n,
                    "pass": "forward+backward",
                    "engine": engine,
                    "peak_mib": mib,
                }
            )
    return rows
