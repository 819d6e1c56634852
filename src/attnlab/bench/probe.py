"""Child process of the memory benchmark: build inputs, run one point, print peak MiB.

Run as ``python -m attnlab.bench.probe '{"engine": "chunked", "length": 4096, ...}'``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import torch

from attnlab.functional import attention


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_of(run: Callable[[], object]) -> float:
    """Peak extra resident MiB while ``run()`` executes (inputs already built)."""
    if not _reset_peak():
        raise RuntimeError("cannot reset the peak-RSS counter (/proc/self/clear_refs)")
    baseline = _status_mib("VmRSS")
    run()
    # The kernel folds RSS into VmHWM lazily, so right after the reset VmHWM can lag a
    # few pages behind the VmRSS read as baseline: tiny runs then measured -0.07 MiB on
    # some machines. The peak is at least the current RSS, and extra memory never < 0.
    peak = max(_status_mib("VmHWM"), _status_mib("VmRSS"))
    return max(0.0, peak - baseline)


def run_point(
    engine: str,
    length: int,
    heads: int = 8,
    head_dim: int = 64,
    batch: int = 1,
    backward: bool = True,
) -> float:
    """Run one attention call (and its backward) and return the peak extra MiB."""
    torch.manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, requires_grad=backward) for _ in range(3)
    )
    grad = torch.randn(batch, heads, length, head_dim)

    def run() -> None:
        out = attention(q, k, v, backend=engine).output
        if backward:
            out.backward(grad)

    return peak_of(run)


def child_main(run: Callable[..., float], argv: list[str] | None = None) -> None:
    """A memory child's entry point: ``run(**point)`` with the JSON point of argv[1]."""
    point: dict[str, Any] = json.loads((sys.argv if argv is None else argv)[1])
    print(json.dumps({"peak_mib": run(**point)}))


if __name__ == "__main__":
    child_main(run_point)
