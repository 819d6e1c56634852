"""The ``vision`` suite: the non-local block against the naive twin, and the ViT step.

* ``non_local``: one :class:`~attnlab.vision.non_local.NonLocalBlock` of 64 channels
  (``C' = 32``) on a 128 x 128 map (``HW = 16,384`` positions), batch 1, float32,
  forward+backward, for each pairwise function, against :func:`naive_non_local`: the
  same function with the same parameters, written as popular repositories write it
  (the ``(HW x HW')`` matrix materialised, then softmax or ``/ N``, then ``@ g``).
  ``speedup`` is the median over rounds of ``naive / attnlab`` time (above 1 = ours
  faster); ``memory_ratio`` is ``attnlab / naive`` peak extra resident memory, each
  side in a fresh process (``python -m attnlab.bench.vision '{...}'``) after a warm-up
  step on an 8 x 8 map, so that torch's one-time costs are not counted. Goals for the
  embedded Gaussian: ``memory_ratio <= 0.1`` and ``speedup >= 2``. Measured (torch
  2.13 CPU, 2 threads, a shared machine at load 4-7): 2.30x faster, 48 against
  3,112 MiB (0.016x); dot-product 8.6x and concatenation 7.7x faster, the Gaussian
  1.6x (its keys are the 64 raw channels, so SDPA does twice the work).
* the ViT-Tiny training step against timm's ``VisionTransformer``: rows of
  ``attnlab.bench.vit.vit_rows`` (another module); while that does not exist, one
  ``vit_step`` row says so (:data:`VIT_TODO`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.bench._markdown import markdown_table
from attnlab.bench.harness import paired_ratio, peak_memory_mib, time_interleaved
from attnlab.bench.probe import child_main, peak_of
from attnlab.vision.non_local import PAIRWISE, NonLocalBlock

__all__ = [
    "FIGURE",
    "VIT_TODO",
    "VisionSizes",
    "markdown_section",
    "naive_non_local",
    "non_local_rows",
    "run_memory_point",
    "run_vision",
    "vit_rows_or_todo",
]

FIGURE = "non_local"
SIDES = ("attnlab", "naive")
MEMORY_WORKERS = 2  # peak RSS is per process: two children at once do not disturb each other
GOAL_MEMORY, GOAL_SPEEDUP = 0.1, 2.0
VIT_TODO = "TODO: attnlab.bench.vit.vit_rows not available yet (the ViT-Tiny step vs timm)"


@dataclass(frozen=True)
class VisionSizes:
    """The non-local figure's sizes; ``quick`` shrinks the map and the rounds."""

    channels: int = 64
    height: int = 128
    width: int = 128
    batch: int = 1
    subsample: bool = False
    rounds: int = 5
    pairwise: tuple[str, ...] = PAIRWISE

    @classmethod
    def quick(cls) -> VisionSizes:
        """32 channels on 48 x 48 (``HW = 2,304``), 3 rounds: ``--quick``."""
        return cls(channels=32, height=48, width=48, rounds=3)

    def point(self, pairwise: str) -> dict[str, Any]:
        """The keyword arguments of :func:`run_memory_point` (less ``side``)."""
        sizes = asdict(self)
        del sizes["rounds"], sizes["pairwise"]
        return {"pairwise": pairwise, **sizes}


def naive_non_local(block: NonLocalBlock, x: Tensor) -> Tensor:
    """NAIVE TWIN: ``block``'s function as popular repositories write it.

    The ``(B, HW, HW')`` pairwise matrix is materialised, normalised (softmax, or
    ``/ N``) and multiplied by ``g``; concatenation builds ``ReLU(a_i + b_j)`` (the
    repositories that concatenate ``[theta_i; phi_j]`` first build a ``2C'`` times
    larger tensor, which does not fit at the full size).
    """
    b, _, h, w = x.shape
    pool = (lambda t: F.max_pool2d(t, 2)) if block.subsample else (lambda t: t)

    def flat(t: Tensor) -> Tensor:
        return t.reshape(b, t.shape[1], -1)

    g_x = flat(pool(block.g(x))).permute(0, 2, 1)
    if block.pairwise == "gaussian":
        theta_x, phi_x = flat(x).permute(0, 2, 1), flat(pool(x))
    else:
        theta_x, phi_x = flat(block.theta(x)).permute(0, 2, 1), flat(pool(block.phi(x)))
    n = phi_x.shape[-1]
    if block.pairwise == "concatenation":
        w_theta, w_phi = block.w_f.chunk(2)
        f = F.relu((theta_x @ w_theta)[:, :, None] + (w_phi @ phi_x)[:, None, :]) / n
    else:
        f = torch.matmul(theta_x, phi_x)
        f = F.softmax(f, dim=-1) if block.pairwise in ("embedded-gaussian", "gaussian") else f / n
    y = torch.matmul(f, g_x).permute(0, 2, 1).reshape(b, -1, h, w)
    return block.norm(block.proj(y)) + x


def _setup(point: dict[str, Any]) -> tuple[NonLocalBlock, Tensor, Tensor]:
    """The block (BatchNorm gamma drawn, so outputs depend on every path), input, upstream."""
    torch.manual_seed(0)
    block = NonLocalBlock(
        point["channels"], pairwise=point["pairwise"], subsample=point["subsample"]
    )
    with torch.no_grad():
        block.norm.weight.normal_()
    shape = (point["batch"], point["channels"], point["height"], point["width"])
    # Unit-variance maps make the Gaussian form's raw x_i . x_j ~ C: a nearly one-hot softmax.
    x = (torch.randn(shape) / point["channels"] ** 0.5).requires_grad_()
    return block, x, torch.randn(shape)


def _step(side: str, block: NonLocalBlock, x: Tensor, upstream: Tensor) -> Callable[[], None]:
    forward = (
        (lambda: block(x).context) if side == "attnlab" else (lambda: naive_non_local(block, x))
    )

    def run() -> None:
        block.zero_grad(set_to_none=True)
        x.grad = None
        forward().backward(upstream)

    return run


def run_memory_point(side: str, **point: Any) -> float:
    """One forward+backward of one side; the peak extra resident MiB (the child's work).

    Args:
        side: ``"attnlab"`` or ``"naive"``.
        point: :meth:`VisionSizes.point`.

    Example:
        >>> p = VisionSizes(channels=4, height=6, width=5).point("gaussian")
        >>> run_memory_point("naive", **p) >= 0
        True
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    # A step on an 8 x 8 map first: lazy imports and kernel set-up are not the step's memory.
    _step(side, *_setup({**point, "height": 8, "width": 8}))()
    block, x, upstream = _setup(point)
    return peak_of(_step(side, block, x, upstream))


def _timed_row(sizes: VisionSizes, pairwise: str) -> dict[str, Any]:
    point = sizes.point(pairwise)
    block, x, upstream = _setup(point)
    with torch.no_grad():
        error = (block(x).context - naive_non_local(block, x)).abs().max().item()
    steps = {s: _step(s, block, x, upstream) for s in SIDES}
    t = time_interleaved(steps, rounds=sizes.rounds, warmup=2)
    return {
        "figure": FIGURE,
        "pass": "forward+backward",
        **point,
        "positions": sizes.height * sizes.width,
        "attnlab_s": t["attnlab"].median,
        "naive_s": t["naive"].median,
        "speedup": paired_ratio(t["naive"], t["attnlab"]),
        "max_abs_error": error,
    }


def non_local_rows(sizes: VisionSizes | None = None, *, timeout: float = 600.0) -> list[dict]:
    """Time (side by side) and peak memory (fresh processes) of both sides, per pairwise.

    Args:
        sizes: the sizes (default :class:`VisionSizes`, the issue's figure).
        timeout: seconds before a memory child is abandoned.

    Returns:
        One ``non_local`` row per pairwise function: ``attnlab_s``, ``naive_s``,
        ``speedup``, ``attnlab_peak_mib``, ``naive_peak_mib``, ``memory_ratio``,
        ``max_abs_error`` and the sizes.
    """
    sizes = sizes or VisionSizes()
    rows = [_timed_row(sizes, p) for p in sizes.pairwise]
    points = [{"side": s, **sizes.point(p)} for p in sizes.pairwise for s in SIDES]

    def peak(point: dict[str, Any]) -> float:
        return peak_memory_mib(point, module="attnlab.bench.vision", timeout=timeout)

    with ThreadPoolExecutor(MEMORY_WORKERS) as pool:
        peaks = iter(pool.map(peak, points))
    for row in rows:
        row["attnlab_peak_mib"], row["naive_peak_mib"] = next(peaks), next(peaks)
        row["memory_ratio"] = row["attnlab_peak_mib"] / max(row["naive_peak_mib"], 1e-9)
    return rows


def vit_rows_or_todo(quick: bool = False) -> list[dict]:
    """``attnlab.bench.vit.vit_rows(quick=quick)``, or one row saying it is still to do."""
    if importlib.util.find_spec("attnlab.bench.vit") is not None:
        vit_rows = getattr(importlib.import_module("attnlab.bench.vit"), "vit_rows", None)
        if vit_rows is not None:
            return vit_rows(quick=quick)
    return [{"figure": "vit_step", "status": VIT_TODO}]


def run_vision(quick: bool = False) -> list[dict]:
    """The whole suite: the non-local rows, then the ViT rows (or their TODO row)."""
    return [*non_local_rows(VisionSizes.quick() if quick else None), *vit_rows_or_todo(quick)]


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        str(row["pairwise"]) + (" (subsampled)" if row.get("subsample") else ""),
        f"{1e3 * row['attnlab_s']:,.1f}",
        f"{1e3 * row['naive_s']:,.1f}",
        f"{row['speedup']:.2f}x",
        f"{row['attnlab_peak_mib']:,.1f}",
        f"{row['naive_peak_mib']:,.1f}",
        f"{row['memory_ratio']:.3f}",
        f"{row['max_abs_error']:.1e}",
    ]


def _goal_line(row: dict[str, Any]) -> str:
    memory = "met" if row["memory_ratio"] <= GOAL_MEMORY else "missed"
    speed = "met" if row["speedup"] >= GOAL_SPEEDUP else "missed"
    return (
        f"Embedded Gaussian: memory {row['memory_ratio']:.3f}x the naive twin's (goal <= "
        f"{GOAL_MEMORY}x: {memory}), {row['speedup']:.2f}x faster (goal >= {GOAL_SPEEDUP}x: "
        f"{speed})."
    )


def markdown_section(rows: list[dict[str, Any]]) -> list[str]:
    """The non-local table with its goal line, then the ViT rows (or their TODO line).

    Example:
        >>> markdown_section([{"figure": "vit_step", "status": "TODO: later"}])
        ['## ViT-Tiny training step vs timm', '', 'TODO: later', '']
    """
    lines: list[str] = []
    found = [r for r in rows if r.get("figure") == FIGURE]
    if found:
        r0 = found[0]
        header = ["pairwise", "attnlab (ms)", "naive (ms)", "speedup", "attnlab peak (MiB)"]
        header += ["naive peak (MiB)", "memory attnlab / naive", "max abs error"]
        lines += [
            f"## Non-local block vs the naive twin: {r0['channels']} channels on "
            f"{r0['height']} x {r0['width']} (HW = {r0['positions']:,}), batch {r0['batch']}, "
            "forward+backward, float32",
            "",
            *markdown_table(header, [_cells(r) for r in found]),
            "",
            "naive = the (HW x HW') matrix materialised, as popular repositories write it; "
            "speedup = naive time / attnlab, median of per-round ratios; peak = extra resident "
            "memory of one step, a fresh process per side.",
            "",
            *(_goal_line(r) for r in found if r["pairwise"] == "embedded-gaussian"),
            "",
        ]
    return lines + _vit_section(rows)


def _vit_section(rows: list[dict[str, Any]]) -> list[str]:
    todo = [str(r["status"]) for r in rows if r.get("figure") == "vit_step" and "status" in r]
    if todo:
        return ["## ViT-Tiny training step vs timm", "", *todo, ""]
    found = [r for r in rows if r.get("figure") in VIT_FIGURES]
    if not found:
        return []
    body = [
        [
            VIT_FIGURES[r["figure"]],
            str(r.get("config", "")),
            str(r.get("batch", "")),
            _number(r.get("attnlab_s", r.get("attnlab_mib")), r["figure"]),
            _number(r.get("timm_s", r.get("timm_mib")), r["figure"]),
            "—" if r.get("vs_timm") is None else f"{r['vs_timm']:.2f}x",
        ]
        for r in found
    ]
    header = ["figure", "model", "batch", "attnlab", "timm", "attnlab / timm"]
    notes = sorted({str(r["note"]) for r in found if r.get("note")})
    return [
        "## ViT training step vs timm (forward, cross-entropy, backward, SGD update)",
        "",
        *markdown_table(header, body),
        "",
        *(f"Note: {n}." for n in notes),
        *([""] if notes else []),
    ]


# The rows of attnlab.bench.vit.vit_rows, by figure, and how the table names them.
VIT_FIGURES = {"vit_train_step": "step time (ms)", "vit_memory": "peak memory (MiB)"}


def _number(value: object, figure: str) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{1e3 * value:,.1f}" if figure == "vit_train_step" else f"{value:,.1f}"


if __name__ == "__main__":
    child_main(run_memory_point)
