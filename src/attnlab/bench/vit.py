"""One ViT training step: attnlab's :class:`~attnlab.models.vit.VisionTransformer` vs timm's.

The ViT-Tiny configuration (Touvron et al. 2021: depth 12, width 192, 3 heads, patch
16, 224x224 images, 1000 classes), float32, batch 8 by default; a step is forward,
cross-entropy, backward and a plain SGD update.

* ``vit_train_step``: seconds per step of each, timed side by side (every round runs
  both, in rotating order); ``vs_timm`` is the median over rounds of ``attnlab / timm``
  (below 1 = faster). attnlab's model is loaded from timm's (``from_timm``), so both
  compute the same function; ``max_abs_difference`` is their logits' gap before the
  first step.
* ``vit_memory``: peak extra resident memory of one step of each, each in a fresh
  process (``python -m attnlab.bench.vit '{...}'``); ``vs_timm`` is their ratio.

timm is the reference, not a dependency: it is imported on use, and it imports
torchvision, which must be built for the installed torch. Where it cannot be imported
the rows give attnlab's figures and say how to get timm's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.bench.harness import paired_ratio, peak_memory_mib, time_interleaved
from attnlab.bench.probe import child_main, peak_of
from attnlab.models.vit import VisionTransformer

__all__ = ["TIMM_HINT", "VitSizes", "run_memory_point", "timm_problem", "vit_rows"]

IMPLEMENTATIONS = ("attnlab", "timm")
TIMM_HINT = (
    "install timm with a torchvision built for this torch (`pip install attnlab[timm]`, or "
    "`make test-timm` which sets up .venv-timm) and run `attnlab bench --suite vision` there"
)


@dataclass(frozen=True)
class VitSizes:
    """The model and batch of the step; ``quick`` keeps them and runs fewer rounds."""

    image_size: int = 224
    patch_size: int = 16
    dim: int = 192
    depth: int = 12
    heads: int = 3
    num_classes: int = 1000
    batch: int = 8
    rounds: int = 7
    warmup: int = 2

    @classmethod
    def quick(cls) -> VitSizes:
        """Same model and batch, fewer rounds, for ``--quick``."""
        return cls(rounds=3, warmup=1)

    @property
    def model(self) -> dict[str, int]:
        """The sizes of the model and batch (what a memory child is given)."""
        return {k: v for k, v in asdict(self).items() if k not in ("rounds", "warmup")}

    def describe(self) -> str:
        """``"ViT depth 12, width 192, 3 heads, 224x224, patch 16"``."""
        return (
            f"ViT depth {self.depth}, width {self.dim}, {self.heads} heads, "
            f"{self.image_size}x{self.image_size}, patch {self.patch_size}"
        )


def timm_problem() -> str | None:
    """Why timm cannot be imported here (one line), or None when it can."""
    try:
        import timm.models.vision_transformer  # noqa: F401
    except Exception as err:  # torchvision built for another torch fails in many ways
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"timm is not importable here ({type(err).__name__}: {first[:120]})"
    return None


def _timm_model(
    image_size: int, patch_size: int, dim: int, depth: int, heads: int, num_classes: int
) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

    return TimmVisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
    )


def _attnlab_model(
    image_size: int, patch_size: int, dim: int, depth: int, heads: int, num_classes: int
) -> nn.Module:
    return VisionTransformer(
        image_size, patch_size, 3, num_classes, dim=dim, depth=depth, heads=heads
    )


def _inputs(sizes: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    side, batch = sizes["image_size"], sizes["batch"]
    images = torch.randn(batch, 3, side, side, generator=g)
    return images, torch.randint(0, sizes["num_classes"], (batch,), generator=g)


def _train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Callable:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def run_memory_point(
    impl: str,
    image_size: int,
    patch_size: int,
    dim: int,
    depth: int,
    heads: int,
    num_classes: int,
    batch: int,
) -> float:
    """One training step of ``impl`` (``"attnlab"`` or ``"timm"``); the peak extra MiB."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {', '.join(IMPLEMENTATIONS)}, got {impl!r}")
    build = _attnlab_model if impl == "attnlab" else _timm_model
    torch.manual_seed(0)
    model = build(image_size, patch_size, dim, depth, heads, num_classes).train()
    images, labels = _inputs({"image_size": image_size, "num_classes": num_classes, "batch": batch})
    return peak_of(_train_step(model, images, labels))


def _timing_row(sizes: VitSizes, problem: str | None) -> dict:
    row: dict = {"figure": "vit_train_step", "config": sizes.describe(), "batch": sizes.batch}
    images, labels = _inputs(sizes.model)
    if problem is not None:
        torch.manual_seed(0)
        ours = _attnlab_model(**_arch(sizes)).train()
        t = time_interleaved(
            {"attnlab": _train_step(ours, images, labels)},
            rounds=sizes.rounds,
            warmup=sizes.warmup,
        )
        return {
            **row,
            "attnlab_s": t["attnlab"].median,
            "timm_s": None,
            "vs_timm": None,
            "note": f"{problem}; {TIMM_HINT}",
        }
    torch.manual_seed(0)
    theirs = _timm_model(**_arch(sizes)).train()
    ours = VisionTransformer.from_timm(theirs)
    with torch.no_grad():
        gap = float((ours(images) - theirs(images)).abs().max())
    t = time_interleaved(
        {
            "attnlab": _train_step(ours, images, labels),
            "timm": _train_step(theirs, images, labels),
        },
        rounds=sizes.rounds,
        warmup=sizes.warmup,
    )
    return {
        **row,
        "attnlab_s": t["attnlab"].median,
        "timm_s": t["timm"].median,
        "vs_timm": paired_ratio(t["attnlab"], t["timm"]),
        "max_abs_difference": gap,
    }


def _arch(sizes: VitSizes) -> dict[str, int]:
    return {k: v for k, v in sizes.model.items() if k != "batch"}


def _memory_row(sizes: VitSizes, problem: str | None, timeout: float) -> dict:
    row: dict = {"figure": "vit_memory", "config": sizes.describe(), "batch": sizes.batch}
    peaks = {
        impl: peak_memory_mib(
            {"impl": impl, **sizes.model}, module="attnlab.bench.vit", timeout=timeout
        )
        for impl in IMPLEMENTATIONS
        if impl == "attnlab" or problem is None
    }
    if problem is not None:
        return {
            **row,
            "attnlab_mib": peaks["attnlab"],
            "timm_mib": None,
            "vs_timm": None,
            "note": f"{problem}; {TIMM_HINT}",
        }
    return {
        **row,
        "attnlab_mib": peaks["attnlab"],
        "timm_mib": peaks["timm"],
        "vs_timm": peaks["attnlab"] / peaks["timm"] if peaks["timm"] > 0 else None,
    }


def vit_rows(
    quick: bool = False,
    sizes: VitSizes | None = None,
    *,
    memory: bool = True,
    timeout: float = 600.0,
) -> list[dict]:
    """The ``vit_train_step`` row and (with ``memory``) the ``vit_memory`` row.

    Args:
        quick: fewer timing rounds (same model and batch).
        sizes: model, batch and rounds (default :class:`VitSizes`, or its ``quick``).
        memory: also measure peak memory, one fresh process per implementation.
        timeout: seconds before a memory child is abandoned.

    Returns:
        Rows with ``attnlab_*``, ``timm_*`` and ``vs_timm`` (attnlab / timm); where timm
        cannot be imported, its figures are None and ``note`` says how to get them.
    """
    sizes = sizes or (VitSizes.quick() if quick else VitSizes())
    problem = timm_problem()
    rows = [_timing_row(sizes, problem)]
    if memory:
        rows.append(_memory_row(sizes, problem, timeout))
    return rows


if __name__ == "__main__":
    child_main(run_memory_point)
