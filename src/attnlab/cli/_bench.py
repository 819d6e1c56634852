"""``attnlab bench``: run a benchmark suite and write its files."""

from __future__ import annotations

import argparse

from attnlab.bench import get_suite
from attnlab.bench.harness import environment
from attnlab.bench.report import check_new_dir, default_bench_dir, write_bench

__all__ = ["bench_command"]


def bench_command(args: argparse.Namespace) -> int:
    """Handle ``attnlab bench [--suite NAME] [--quick] [--out DIR]``."""
    suite = get_suite(args.suite)
    out = args.out if args.out is not None else default_bench_dir()
    check_new_dir(out)  # before the suite runs: minutes of measuring must not be thrown away
    rows = suite(quick=args.quick)
    write_bench(rows, out, args.suite, environment())
    print((out / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {out}")
    return 0
