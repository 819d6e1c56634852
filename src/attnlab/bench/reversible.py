"""The ``reversible`` suite: peak training memory of a reversible encoder against depth.

One training step (forward, then backward of ``out.pow(2).mean()``) of
:class:`~attnlab.nn.reversible.ReversibleTransformerEncoder`, float32, ``B = 4``,
``L = 4096`` (1024 with ``quick``), ``d_model = 256``, 4 heads, feed-forward 1024,
GELU, no dropout, at 1 and 12 layers, on both paths:

* ``reversible=True``: the reversible backward, which keeps one layer's activations;
* ``reversible=False``: the same layers under ordinary autograd, which keeps all of them.

Each point runs in a fresh process (``python -m attnlab.bench.reversible '{...}'``)
and reports the growth of the resident set during the step, after the model and the
input exist: activations, the backward's workspaces and the parameters' gradients,
which the step allocates and so are counted (3 MiB a layer, 36 MiB at 12 layers). A
tiny warm-up step runs first (its gradients are then freed) so that one-time costs,
lazy imports and code pages, are not counted.

Why ``B = 4`` and not 1: the reversible path's peak is one layer's working set plus
every layer's gradients plus its saved outputs. At ``B = 1`` the working set is only
about 65 MiB, so the 36 MiB of gradients alone push the 12-layer / 1-layer ratio to
1.74x (measured: 72 -> 125 MiB) although no activation is stored per layer; at
``B = 4`` the activations dominate, as in real training, and the ratio shows what
reversibility saves (target: at most 1.5x; measured 1.41x, 275 -> 387 MiB, against
9.3x, 338 -> 3,158 MiB, for the ordinary path).

The allocator: the child fixes glibc's mmap threshold at 128 KiB (``malloc="fixed"``,
the default), so every tensor buffer is mapped on allocation and unmapped on free and
the resident set follows the live tensors. With glibc's default, adaptive threshold,
freed buffers of up to 32 MiB stay in a fragmented heap, and the reversible backward,
which allocates and frees one layer's worth of buffers per layer, shows several times
its live memory: ``malloc="default"`` measured 386 -> 1,778 MiB (4.6x) at ``B = 4``,
ordinary 466 -> 3,585 MiB. A CPU user gets the fixed figures by exporting
``MALLOC_MMAP_THRESHOLD_=131072`` (or with another allocator such as jemalloc).
"""

from __future__ import annotations

import ctypes
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attnlab.bench.harness import peak_memory_mib
from attnlab.bench.probe import child_main, peak_of
from attnlab.nn.reversible import ReversibleTransformerEncoder

__all__ = [
    "ReversibleSizes",
    "markdown_section",
    "reversible_rows",
    "run_memory_point",
    "run_reversible",
]

Malloc = Literal["fixed", "default"]

FIGURE = "reversible_memory"
TARGET_RATIO = 1.5


@dataclass(frozen=True)
class ReversibleSizes:
    """Model and input sizes of the figure; ``quick`` shortens the sequence."""

    length: int = 4096
    batch: int = 4
    d_model: int = 256
    heads: int = 4
    ff: int = 1024
    layers: tuple[int, ...] = (1, 12)

    @classmethod
    def quick(cls) -> ReversibleSizes:
        """``L = 1024`` for ``attnlab bench --suite reversible --quick``."""
        return cls(length=1024)


def run_memory_point(
    layers: int,
    length: int,
    reversible: bool,
    batch: int = 4,
    d_model: int = 256,
    heads: int = 4,
    ff: int = 1024,
) -> float:
    """One training step of the encoder; returns the peak extra resident MiB.

    Args:
        layers: encoder layers.
        length: sequence length ``L``.
        reversible: the reversible backward, or ordinary autograd over the same layers.
        batch: batch size ``B``.
        d_model: model width.
        heads: attention heads.
        ff: feed-forward hidden size.

    Returns:
        Peak growth of the resident set during forward + backward, in MiB.

    Example:
        >>> run_memory_point(2, 16, True, d_model=8, heads=2, ff=16) >= 0
        True
    """
    torch.manual_seed(0)
    model = ReversibleTransformerEncoder(d_model, heads, ff, layers, reversible=reversible)
    x = torch.randn(batch, length, d_model)

    def step(inputs: torch.Tensor) -> None:
        model(inputs).pow(2).mean().backward()

    # A tiny step first, so one-time costs are not counted as the step's memory: lazy
    # imports (the first torch.autograd.grad imports sympy, about 35 MiB) and code pages.
    step(x[:, :8])
    model.zero_grad(set_to_none=True)
    return peak_of(lambda: step(x))


def reversible_rows(
    sizes: ReversibleSizes | None = None,
    *,
    malloc: Malloc = "fixed",
    timeout: float = 600.0,
) -> list[dict]:
    """Peak memory of one training step per (layers, path), each in a fresh process.

    Args:
        sizes: the sizes (default :class:`ReversibleSizes`).
        malloc: ``"fixed"`` mmap threshold in the child (the resident set follows the
            live tensors) or glibc's ``"default"`` adaptive one.
        timeout: seconds before a child is abandoned.

    Returns:
        Rows ``{"figure", "layers", "length", "batch", "d_model", "reversible",
        "malloc", "peak_mib"}``, one per point.
    """
    sizes = sizes or ReversibleSizes()
    rows = []
    for layers in sizes.layers:
        for reversible in (True, False):
            point = {
                "layers": layers,
                "length": sizes.length,
                "reversible": reversible,
                "batch": sizes.batch,
                "d_model": sizes.d_model,
                "heads": sizes.heads,
                "ff": sizes.ff,
                "malloc": malloc,
            }
            mib = peak_memory_mib(point, module="attnlab.bench.reversible", timeout=timeout)
            rows.append(
                {
                    "figure": FIGURE,
                    "layers": layers,
                    "length": sizes.length,
                    "batch": sizes.batch,
                    "d_model": sizes.d_model,
                    "reversible": reversible,
                    "malloc": malloc,
                    "peak_mib": mib,
                }
            )
    return rows


def run_reversible(quick: bool = False) -> list[dict]:
    """The whole suite: 1 and 12 layers, reversible and ordinary (``L = 1024`` if quick)."""
    return reversible_rows(ReversibleSizes.quick() if quick else None)


def markdown_section(rows: list[dict]) -> list[str]:
    """A table of peaks per depth and path, and the deepest / shallowest ratio of each path.

    Args:
        rows: rows of :func:`reversible_rows` (other figures are ignored).

    Returns:
        Markdown lines (empty when there is no ``reversible_memory`` row).

    Example:
        >>> points = ((1, True, 10.0), (1, False, 10.0), (4, True, 12.0), (4, False, 40.0))
        >>> rows = [
        ...     {"figure": FIGURE, "layers": n, "length": 64, "reversible": r, "peak_mib": m}
        ...     for n, r, m in points
        ... ]
        >>> markdown_section(rows)[-2]
        '4-layer / 1-layer: reversible 1.20x (target <= 1.5x: met), ordinary 4.00x.'
    """
    found = [r for r in rows if r.get("figure") == FIGURE]
    if not found:
        return []
    groups: dict[tuple[int, int, str], dict[tuple[int, bool], float]] = defaultdict(dict)
    for r in found:
        key = (int(r["length"]), int(r.get("batch", 1)), str(r.get("malloc", "fixed")))
        groups[key][int(r["layers"]), bool(r["reversible"])] = float(r["peak_mib"])
    lines = ["## Reversible encoder: peak memory of one training step (MiB, fresh process)", ""]
    for (length, batch, malloc), peaks in sorted(groups.items()):
        depths = sorted({n for n, _ in peaks})
        lines += [
            f"L = {length}, B = {batch}, malloc {malloc}; gradients included:",
            "",
            "| layers | reversible | ordinary |",
            "|---|---:|---:|",
            *(f"| {n} | {_mib(peaks, n, True)} | {_mib(peaks, n, False)} |" for n in depths),
            "",
        ]
        if len(depths) > 1:
            lines += [_ratio_line(peaks, depths[0], depths[-1]), ""]
    return lines


def _mib(peaks: dict[tuple[int, bool], float], layers: int, reversible: bool) -> str:
    value = peaks.get((layers, reversible))
    return "—" if value is None else f"{value:,.1f}"


def _ratio_line(peaks: dict[tuple[int, bool], float], lo: int, hi: int) -> str:
    parts = []
    for reversible, name in ((True, "reversible"), (False, "ordinary")):
        a, b = peaks.get((hi, reversible)), peaks.get((lo, reversible))
        if a is None or not b:
            continue
        text = f"{name} {a / b:.2f}x"
        if reversible:
            text += f" (target <= {TARGET_RATIO}x: {'met' if a / b <= TARGET_RATIO else 'missed'})"
        parts.append(text)
    return f"{hi}-layer / {lo}-layer: " + ", ".join(parts) + "."


def _fix_mmap_threshold() -> None:
    """Map every buffer of 128 KiB or more on allocation and unmap it on free (glibc).

    Setting the threshold also turns off glibc's adaptive threshold, which would
    otherwise raise it to the largest freed buffer (up to 32 MiB) and keep later
    buffers in a heap that rarely shrinks. Other C libraries are left as they are.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters of <malloc.h>
    libc.mallopt(m_mmap_threshold, 128 * 1024)
    libc.mallopt(m_trim_threshold, 128 * 1024)


def _child_point(malloc: Malloc = "fixed", **point: Any) -> float:
    # Only the fresh child changes its allocator, never a caller's process.
    if malloc == "fixed":
        _fix_mmap_threshold()
    return run_memory_point(**point)


if __name__ == "__main__":
    child_main(_child_point)
