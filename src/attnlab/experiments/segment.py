"""Segmenting one item among clutter: U-Net against Attention U-Net, by target size.

Each 64x64 canvas holds one Fashion-MNIST item scaled to a side of 10, 16, 22 or 28 px
(each size a quarter of the canvases) among crops of other items at full scale
(:func:`~attnlab.data.image_worlds.make_segment`); the target is the item's mask. The
small targets are the hard ones: the clutter is larger than they are, and a pixel
classifier must tell the item from crops of the same kind of texture. Attention U-Net
(Oktay et al. 2018) was proposed for exactly this: gates on the skip connections,
driven by the coarser decoder map, suppress the features of irrelevant regions.

- ``unet``: :class:`~attnlab.models.unet.UNet` (Ronneberger et al. 2015), widths
  16-32-64 by default;
- ``attention-unet``: the same U-Net with an
  :class:`~attnlab.vision.attention_gate.AttentionGate` on each skip connection.

Metrics: the hard Dice (predicted mask = logit > 0) per test canvas, mean over the test
world (``test_dice``) and over the canvases of each target size (``test_dice_size_10``
...; the smallest is the headline), mean +/- std over seeds; ``report.md`` has the table
by size.

Recipe (the defaults): a training world of 10,000 canvases, a validation world of 2,000
(held-out training items; the best epoch by validation Dice) and a test world of 2,000
(test-split items only), each its own seed; loss = binary cross-entropy + (1 - soft
Dice) per image (the Dice term keeps small targets from being ignored); AdamW (rate
2e-3, weight decay 0.05), batch 128, 5% warm-up then linear decay to zero at 30 epochs
or at the end of the run's share of ``--budget-minutes``; 2-pixel shifts and horizontal
flips of canvas and mask together. The two models x 3 seeds share 85% of the budget
(default 30 minutes, 255 s of training each; the whole run about 30 minutes on 2
cores). Measured with OMP_NUM_THREADS=2 on the 2-core machine this was written on: an
epoch over 10,000 canvases took 80-100 s for either model when the machine was quiet,
about 345 s (U-Net) and 410 s (Attention U-Net) while other work shared it (load
about 3), so the default budget buys each model 3-4 epochs, or under one. A 10-minute
run (``--seeds 1 --budget-minutes 10``: the default's 255 s per model; 3 and 4 epochs)
gave Dice 0.861 (U-Net) and 0.876 (Attention U-Net), 0.731 and 0.763 on the 10-px
targets. A larger budget buys more.

Pictures of the seed-0 models: test canvases with the predicted mask (probability) and
the gate coefficients of the finest and coarser scales laid over them, one canvas with
every map, and one HTML page with a tab per model and map (true mask first).

Run: ``attnlab run segment [--models unet attention-unet] [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from attnlab.data.image_worlds import SegmentWorld, make_segment
from attnlab.experiments import ExperimentSpec, Outcome, RunDir, SeedResult, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._images import (
    SEGMENT,
    ImageTraining,
    predict,
    seed_budget,
    train_models,
    train_seed,
)
from attnlab.experiments._report import summarise
from attnlab.experiments._worlds import (
    PAGE,
    Worlds,
    WorldSettings,
    check_widths,
    explain_hook,
    keep_maps,
    world_splits,
    write_page,
)
from attnlab.interpret.capture import capture
from attnlab.interpret.images import plot_attention_grid, plot_image_maps
from attnlab.models.unet import UNet
from attnlab.vision.attention_gate import AttentionGate

__all__ = ["MODELS", "SegmentConfig", "dice_by_size", "gate_maps", "prepare", "run"]

CANVAS = 64
MODELS = ("unet", "attention-unet")
_BATCH = 250


@dataclass(frozen=True)
class SegmentConfig(ImageTraining, WorldSettings):
    """Settings of the segment experiment (training: ImageTraining; worlds: WorldSettings).

    Attributes:
        models: unet, attention-unet.
        sizes: sides in pixels the item is scaled to (each an equal share of the canvases).
        clutter: crops of other items per canvas.
        widths: channels of each U-Net level, finest first (both models).
    """

    models: tuple[str, ...] = MODELS
    sizes: tuple[int, ...] = (10, 16, 22, 28)
    clutter: int = 6
    widths: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", MODELS)
        checks.at_least(self, 0, "clutter")
        check_widths(self, CANVAS)
        if not self.sizes or not all(1 <= s <= CANVAS for s in self.sizes):
            raise ValueError(f"--sizes must be sides of 1 to {CANVAS} pixels, got {self.sizes}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"--sizes names a side twice, got {self.sizes}; give each once")


def _build(cfg: SegmentConfig, name: str) -> nn.Module:
    return UNet(1, 1, widths=cfg.widths, gate=AttentionGate if name == "attention-unet" else None)


def prepare(cfg: SegmentConfig) -> Worlds[SegmentWorld]:
    """The train, validation and test worlds, from disjoint Fashion-MNIST items."""
    make = partial(make_segment, canvas=CANVAS, sizes=cfg.sizes, clutter=cfg.clutter)
    return world_splits(cfg, make, lambda w: w.masks)


def dice_by_size(dice: Tensor, sizes: Tensor) -> dict[int, float]:
    """Mean Dice of the canvases of each target size, smallest size first.

    Example:
        >>> dice = torch.tensor([0.5, 1.0, 0.7], dtype=torch.float64)
        >>> dice_by_size(dice, torch.tensor([16, 10, 16]))
        {10: 1.0, 16: 0.6}
    """
    return {int(s): float(dice[sizes == s].mean()) for s in sizes.unique()}


def gate_maps(model: UNet, inputs: Tensor) -> dict[str, Tensor]:
    """Each gate's coefficients on ``inputs``, finest scale first: label -> ``(B, h, w)``."""
    with capture(model) as seen:
        model(inputs)
    return {
        f"gate {k + 1} ({a.shape[-2]}x{a.shape[-1]})": a[:, 0].float().cpu()
        for k, a in enumerate(seen.attentions)
    }


def _draw(
    cfg: SegmentConfig, worlds: Worlds, model: nn.Module, name: str, run: RunDir, dice: Tensor
) -> list[str]:
    """Seed-0 pictures: predicted masks, the gates (if any), one canvas with every map."""
    n = min(cfg.examples, len(worlds.splits.test))
    order = torch.sort(worlds.test.sizes[:n], stable=True).indices  # smallest targets first
    images = worlds.splits.test.images[order]
    masks = worlds.splits.test.targets[order, 0].float()
    sizes, dice = worlds.test.sizes[order], dice[order]
    probs = torch.sigmoid(predict(model, worlds.splits, images))[:, 0]
    maps = {"predicted mask": probs}
    if model.gates is not None:
        with torch.no_grad():
            device = next(model.parameters()).device
            maps |= gate_maps(model.eval(), worlds.splits.prepare(images, device))
    titles = [f"{int(s)} px, Dice {float(d):.2f}" for s, d in zip(sizes, dice, strict=True)]
    files = [f"masks_{name}.png", f"maps_{name}.png"]
    plot_attention_grid(
        images,
        probs,
        titles,
        run.path / files[0],
        suptitle=f"{name}: predicted mask (target side, Dice)",
    )
    if len(maps) > 1:
        files.append(f"attention_{name}.png")
        finest = list(maps)[1]
        plot_attention_grid(
            images,
            maps[finest],
            titles,
            run.path / files[-1],
            suptitle=f"{name}: {finest} coefficients",
        )
    single = {"true mask": masks[0]} | {k: v[0] for k, v in maps.items()}
    plot_image_maps(images[0], single, run.path / files[1], title=f"{name}: {titles[0]}")
    keep_maps(run, name, maps)
    return files


def train_one(
    cfg: SegmentConfig, worlds: Worlds[SegmentWorld], name: str, seed: int, run: RunDir
) -> SeedResult:
    """Train and test one model under one seed; Dice by target size; draw seed 0."""
    model, result = train_seed(
        lambda: _build(cfg, name),
        worlds.splits,
        SEGMENT,
        cfg,
        name=name,
        seed=seed,
        budget_seconds=seed_budget(cfg, len(cfg.models) * cfg.seeds),
        checkpoint_dir=run.checkpoints / name / f"seed{seed}",
    )
    test = worlds.splits.test
    dice = SEGMENT.score(predict(model, worlds.splits, test.images), test.targets)
    by_size = dice_by_size(dice, worlds.test.sizes)
    metrics = {"test_dice": result.metrics["test_dice"]}
    metrics |= {f"test_dice_size_{s}": d for s, d in by_size.items()}
    metrics["seconds_per_epoch"] = result.metrics["seconds_per_epoch"]
    pictures = _draw(cfg, worlds, model, name, run, dice) if seed == 0 and cfg.examples else []
    return dataclasses.replace(result, metrics=metrics, pictures=pictures)


def run(cfg: SegmentConfig, run_dir: RunDir) -> Outcome[Worlds[SegmentWorld]]:
    """Train both models over every seed; draw the seed-0 masks, gates and the page."""
    worlds = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, worlds, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_dice"),
    )
    if cfg.examples:
        n = min(cfg.examples, len(worlds.splits.test))
        order = torch.sort(worlds.test.sizes[:n], stable=True).indices
        truth = {"true mask": worlds.splits.test.targets[order, 0].float()}
        labels = [f"target {int(s)} px" for s in worlds.test.sizes[order]]
        write_page(
            run_dir,
            cfg.models,
            worlds.splits.test.images[order],
            labels,
            title="segment: predicted masks and gate coefficients",
            first=truth,
        )
    return Outcome(results, worlds)


def _report(cfg: SegmentConfig, outcome: Outcome[Worlds[SegmentWorld]], run_dir: RunDir) -> str:
    worlds, results = outcome.data, outcome.results
    splits, items = worlds.splits, worlds.items
    budget = seed_budget(cfg, len(cfg.models) * cfg.seeds)
    sizes = sorted(int(s) for s in worlds.test.sizes.unique())
    counts = [int((worlds.test.sizes == s).sum()) for s in sizes]
    lines = [
        "",
        f"Worlds: {CANVAS}x{CANVAS} canvases, one Fashion-MNIST item scaled to a side of "
        f"{', '.join(map(str, cfg.sizes))} px among {cfg.clutter} crops of other items; "
        f"{len(splits.train):,} training canvases ({items[0]:,} items), {len(splits.val):,} "
        f"validation ({items[1]:,} held-out items), {len(splits.test):,} test ({items[2]:,} "
        "test items).",
        "",
        "Hard Dice (mask = logit > 0) by target side, mean ± std over seeds:",
        "",
        "| model | " + " | ".join(f"{s} px ({c} canvases)" for s, c in zip(sizes, counts)) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for r in results:
        cells = []
        for s in sizes:
            stats = summarise(r.metrics[f"test_dice_size_{s}"])
            cells.append(f"{stats['mean']:.4f} ± {stats['std']:.4f}")
        lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    smallest = f"test_dice_size_{sizes[0]}"
    dice = {r.model: summarise(r.metrics[smallest])["mean"] for r in results}
    if set(dice) == set(MODELS):
        lines += [
            "",
            f"Goal: Attention U-Net's Dice at least the U-Net's on the smallest targets "
            f"({sizes[0]} px). Measured: {dice['attention-unet']:.4f} against "
            f"{dice['unet']:.4f}.",
        ]
    lines += [
        "",
        f"Recipe: widths {'-'.join(map(str, cfg.widths))}; loss BCE + (1 - soft Dice); AdamW "
        f"(rate {cfg.lr:g}), batch {cfg.batch_size}; {budget:.0f} s of training and "
        f"validation per (model, seed) on {torch.get_num_threads()} thread(s) (85% of "
        f"{cfg.budget_minutes:g} min over {len(cfg.models) * cfg.seeds} runs); epochs "
        + ", ".join(f"{r.model} {'/'.join(map(str, r.extra['epochs_runs']))}" for r in results)
        + ".",
        "",
    ]
    for r in results:
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])]
    if (run_dir.path / PAGE).is_file():
        lines += ["", f"- [test canvases with the true and predicted masks and the gates]({PAGE})"]
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="segment",
        description="One item among clutter: U-Net vs Attention U-Net, Dice by target size",
        config=SegmentConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist-segment",
        report=_report,
        explain_image=explain_hook(prepare, _build),
    )
)
