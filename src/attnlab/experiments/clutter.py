"""Cluttered Fashion-MNIST: does attention find the item, and does it help to classify it?

Each 64x64 canvas holds one Fashion-MNIST item at a random place among crops of other
items (:func:`~attnlab.data.image_worlds.make_clutter`, in the spirit of cluttered
MNIST, Mnih et al. 2014); the label is the item's class and its tight box is known.
Besides test accuracy, each model with a spatial attention map is scored on
**localisation**: the share of that map's mass inside the item's box
(:func:`~attnlab.data.image_worlds.attention_in_box`), averaged over the test canvases,
beside the share a uniform map gets (``localisation_uniform``, the box's share of the
canvas, :func:`~attnlab.data.image_worlds.uniform_box_share`). The map scored is the
deepest one each model has:

- ``cnn``: :class:`~attnlab.models.convnet.ConvNet`, no attention (localisation n/a);
- ``cnn-cbam``: the same CNN with CBAM (Woo et al. 2018) after every stage; scored: the
  spatial map of the last CBAM (16x16); every stage's map is drawn;
- ``gated``: :class:`~attnlab.models.gated_classifier.GatedClassifier` (Jetley et al.
  2018, Schlemper et al. 2019) on the same trunk, gates on its last two stages driven
  by the last stage's global feature; scored: the coefficients alpha of the gate on
  the last stage (16x16);
- ``vit``: a Vision Transformer (Dosovitskiy et al. 2021), patch 8 (an 8x8 grid);
  scored: the attention rollout (Abnar & Zuidema 2020) from the class token over the
  patches.

Every map's score is in ``results.json`` (``localisation_by_map_runs``).

Recipe (the defaults): the training world has 10,000 canvases of training-split items,
the validation world 2,000 of held-out training items (best epoch), the test world
2,000 of test-split items only, each with its own seed. CNN widths 16-32-64, dropout
0.1, CBAM reduction 4; ViT width 64, depth 4, 4 heads, class token; AdamW (rate 2e-3,
ViT 1e-3, weight decay 0.05), batch 128, 5% warm-up then linear decay to zero at 30
epochs or at the end of the run's share of the budget; 2-pixel shifts and horizontal
flips. The four models x 3 seeds share 85% of ``--budget-minutes`` (default 30), 127 s
of training and validation each; making the worlds, testing, scoring and drawing take
the rest, so the whole run takes about 30 minutes on 2 cores. Measured with
OMP_NUM_THREADS=2 on the 2-core machine this was written on: seconds per training
epoch over 10,000 canvases, CNN 24-29, CBAM 45, gated 27-33, ViT 12-18 when the
machine was idle; CNN 130, CBAM 275, ViT 150 while other work shared it (load about
3). So the default budget buys each model 4-5 epochs on the idle machine, about one
on the busy one. A 3-minute run (``--seeds 1 --budget-minutes 3``: 38 s per model,
1-3 epochs) gave the gated classifier 70.3% test accuracy and a localisation of 0.81
(6.5 times the uniform 0.126), the plain CNN 50.1%, CBAM 49.6% and 0.13, the ViT
20.3% and 0.16. A larger budget buys more.

Run: ``attnlab run clutter [--models cnn gated ...] [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from attnlab.data.fashion_mnist import CLASSES
from attnlab.data.image_worlds import (
    ClutterWorld,
    attention_in_box,
    make_clutter,
    uniform_box_share,
)
from attnlab.experiments import (
    ExperimentSpec,
    ModelResult,
    Outcome,
    RunDir,
    SeedResult,
    register,
)
from attnlab.experiments import _checks as checks
from attnlab.experiments._images import (
    CLASSIFY,
    ImageTraining,
    predict,
    seed_budget,
    train_models,
    train_seed,
)
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
from attnlab.interpret.vit import patch_rollout
from attnlab.models.convnet import ConvNet
from attnlab.models.gated_classifier import GatedClassifier
from attnlab.models.vit import VisionTransformer
from attnlab.vision.cbam import CBAM

__all__ = ["MODELS", "ClutterConfig", "Variant", "attention_maps", "prepare", "run"]

CANVAS = 64
_MAP_BATCH = 250


@dataclass(frozen=True)
class ClutterConfig(ImageTraining, WorldSettings):
    """Settings of the clutter experiment (training: ImageTraining; worlds: WorldSettings).

    Attributes:
        models: which models to train: cnn, cnn-cbam, gated, vit.
        clutter: crops of other items per canvas.
        widths: channels of the CNN stages (all CNNs and the gated classifier).
        dropout: dropout before the CNNs' linear heads.
        reduction: CBAM reduction ratio r (hidden width C // r).
        vit_patch: ViT patch size in pixels (must divide 64).
        vit_dim: ViT width.
        vit_depth: ViT encoder layers.
        vit_heads: ViT attention heads.
        vit_lr: AdamW peak learning rate of the ViT.
        vit_weight_decay: AdamW weight decay of the ViT.
    """

    models: tuple[str, ...] = ("cnn", "cnn-cbam", "gated", "vit")
    clutter: int = 6
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.1
    reduction: int = 4
    vit_patch: int = 8
    vit_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    vit_lr: float = 1e-3
    vit_weight_decay: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", tuple(MODELS))
        checks.at_least(self, 0, "clutter", "vit_weight_decay")
        checks.at_least(self, 1, "reduction", "vit_patch", "vit_dim", "vit_depth", "vit_heads")
        checks.positive(self, "vit_lr")
        checks.fraction(self, "dropout")
        check_widths(self, CANVAS)
        if self.reduction > min(self.widths):
            raise ValueError(
                f"--reduction {self.reduction} is larger than the narrowest stage "
                f"({min(self.widths)} channels); use at most {min(self.widths)}"
            )
        if CANVAS % self.vit_patch:
            raise ValueError(
                f"--vit-patch {self.vit_patch} does not divide the {CANVAS}-pixel canvas; "
                "use 4, 8, 16 or 32"
            )
        checks.multiple_of(self, "vit_dim", self.vit_heads, "--vit-heads")


MapFn = Callable[[nn.Module, Tensor], dict[str, Tensor]]
"""``maps(model, inputs)``: label -> spatial attention ``(B, h, w)``, deepest last."""


@dataclass(frozen=True)
class Variant:
    """A model the experiment trains.

    Attributes:
        description: One line for the report.
        build: ``build(config)`` gives the model (10 classes).
        maps: Its spatial attention maps, the one scored last; None for no attention.
    """

    description: str
    build: Callable[[ClutterConfig], nn.Module]
    maps: MapFn | None = None


def _stage(name: str) -> str:
    return f"stage {int(name.split('.')[1]) + 1}"  # "stages.2.block.spatial" -> "stage 3"


def _cbam_maps(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    with capture(model, layers="stages.*.block.spatial") as seen:
        model(x)
    return {f"CBAM {_stage(name)}": seen[name][:, 0] for name in seen.names}


def _gate_maps(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    _, alphas = model.forward_with_weights(x)
    return {f"gate on stage {s + 1}": a[:, 0] for s, a in zip(model.gate_at, alphas)}


def _rollout(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    with capture(model) as seen:
        model(x)
    return {"rollout": patch_rollout(seen.attentions, model.grid, prefix_tokens=1)}


def _cnn(cfg: ClutterConfig, block: Callable[..., nn.Module] | None = None) -> nn.Module:
    return ConvNet(1, len(CLASSES), widths=cfg.widths, block=block, dropout=cfg.dropout)


# The names people type (--models) -> the model each builds and its attention maps.
MODELS: dict[str, Variant] = {
    "cnn": Variant("plain CNN (no attention)", _cnn),
    "cnn-cbam": Variant(
        "CBAM after every stage; last spatial map scored",
        lambda cfg: _cnn(cfg, partial(CBAM, reduction=cfg.reduction)),
        _cbam_maps,
    ),
    "gated": Variant(
        "attention-gated classifier; last stage's gate scored",
        lambda cfg: GatedClassifier(1, len(CLASSES), widths=cfg.widths, dropout=cfg.dropout),
        _gate_maps,
    ),
    "vit": Variant(
        "Vision Transformer from scratch; class-token rollout scored",
        lambda cfg: VisionTransformer(
            CANVAS,
            cfg.vit_patch,
            1,
            len(CLASSES),
            dim=cfg.vit_dim,
            depth=cfg.vit_depth,
            heads=cfg.vit_heads,
        ),
        _rollout,
    ),
}


def prepare(cfg: ClutterConfig) -> Worlds[ClutterWorld]:
    """The train, validation and test clutter worlds, from disjoint Fashion-MNIST items."""
    make = partial(make_clutter, canvas=CANVAS, clutter=cfg.clutter)
    return world_splits(cfg, make, lambda w: w.labels, classes=CLASSES)


def attention_maps(
    maps: MapFn, model: nn.Module, worlds: Worlds, images: Tensor
) -> dict[str, Tensor]:
    """A model's spatial maps of ``images`` (eval mode, no gradients, in batches), on the CPU.

    Returns:
        label -> ``(N, h, w)``, deepest last.
    """
    device = next(iter(model.parameters())).device
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for x in images.split(_MAP_BATCH):
            for label, m in maps(model, worlds.splits.prepare(x, device)).items():
                parts.setdefault(label, []).append(m.float().cpu())
    return {label: torch.cat(ms) for label, ms in parts.items()}


def _draw(
    cfg: ClutterConfig, worlds: Worlds, model: nn.Module, name: str, run: RunDir, maps: dict
) -> list[str]:
    """The seed-0 pictures: test canvases with the scored map, one canvas with every map."""
    n, test = min(cfg.examples, len(worlds.splits.test)), worlds.splits.test
    images, labels = test.images[:n], test.targets[:n]
    predicted = predict(model, worlds.splits, images).argmax(-1)
    scored = list(maps)[-1]
    shares = attention_in_box(maps[scored][:n], worlds.test.boxes[:n], canvas=CANVAS)
    titles = [
        f"{CLASSES[int(t)]} -> {CLASSES[int(p)]}, {s:.2f} in box"
        for t, p, s in zip(labels, predicted, shares.tolist(), strict=True)
    ]
    grid, single = f"attention_{name}.png", f"maps_{name}.png"
    plot_attention_grid(
        images,
        maps[scored][:n],
        titles,
        run.path / grid,
        suptitle=f"{name}: {scored} (true -> predicted, share in the box)",
    )
    plot_image_maps(
        images[0],
        {k: v[0] for k, v in maps.items()},
        run.path / single,
        title=f"{name}: {titles[0]}",
    )
    keep_maps(run, name, {k: v[:n] for k, v in maps.items()})
    return [grid, single]


def train_one(
    cfg: ClutterConfig, worlds: Worlds[ClutterWorld], name: str, seed: int, run: RunDir
) -> SeedResult:
    """Train and test one model under one seed; score its localisation; draw seed 0."""
    variant, vit = MODELS[name], name == "vit"
    model, result = train_seed(
        lambda: variant.build(cfg),
        worlds.splits,
        CLASSIFY,
        cfg,
        name=name,
        seed=seed,
        budget_seconds=seed_budget(cfg, len(cfg.models) * cfg.seeds),
        checkpoint_dir=run.checkpoints / name / f"seed{seed}",
        lr=cfg.vit_lr if vit else None,
        weight_decay=cfg.vit_weight_decay if vit else None,
    )
    if variant.maps is None:
        return result
    maps = attention_maps(variant.maps, model, worlds, worlds.splits.test.images)
    boxes = worlds.test.boxes
    by_map = {k: float(attention_in_box(m, boxes, canvas=CANVAS).mean()) for k, m in maps.items()}
    metrics = {
        **result.metrics,
        "localisation": by_map[list(maps)[-1]],
        "localisation_uniform": float(uniform_box_share(boxes, canvas=CANVAS).mean()),
    }
    pictures = _draw(cfg, worlds, model, name, run, maps) if seed == 0 and cfg.examples else []
    return dataclasses.replace(
        result,
        metrics=metrics,
        pictures=pictures,
        extra={**result.extra, "localisation_by_map": by_map},
    )


def run(cfg: ClutterConfig, run_dir: RunDir) -> Outcome[Worlds[ClutterWorld]]:
    """Train every model over every seed; draw the seed-0 attention models and the page."""
    worlds = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, worlds, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_accuracy", "localisation_by_map"),
    )
    if cfg.examples:
        n = min(cfg.examples, len(worlds.splits.test))
        labels = [CLASSES[int(t)] for t in worlds.splits.test.targets[:n]]
        title = "clutter: attention over cluttered Fashion-MNIST test canvases"
        write_page(run_dir, cfg.models, worlds.splits.test.images[:n], labels, title=title)
    return Outcome(results, worlds)


def _goal(results: Sequence[ModelResult]) -> list[str]:
    """The goal line: CBAM's or the gate's localisation >= 0.5 with accuracy above the CNN."""
    means = {r.model: {k: sum(v) / len(v) for k, v in r.metrics.items()} for r in results}
    if "cnn" not in means:
        return []
    cnn = means["cnn"]["test_accuracy"]
    found = [
        f"{name} {m['localisation']:.3f} ({m['localisation'] / m['localisation_uniform']:.1f}x "
        f"uniform) at {100 * m['test_accuracy']:.2f}% accuracy"
        for name, m in means.items()
        if name in ("cnn-cbam", "gated")
    ]
    if not found:
        return []
    return [
        "Goal: CBAM's or the gate's localisation at least 0.5 (three times the uniform share "
        f"or more) with accuracy above the plain CNN's ({100 * cnn:.2f}%). Measured: "
        + "; ".join(found)
        + ".",
        "",
    ]


def _report(cfg: ClutterConfig, outcome: Outcome[Worlds[ClutterWorld]], run_dir: RunDir) -> str:
    worlds, results = outcome.data, outcome.results
    splits, items = worlds.splits, worlds.items
    budget = seed_budget(cfg, len(cfg.models) * cfg.seeds)
    uniform = float(uniform_box_share(worlds.test.boxes, canvas=CANVAS).mean())
    lines = [
        "",
        f"Worlds: {CANVAS}x{CANVAS} canvases, one Fashion-MNIST item among {cfg.clutter} crops "
        f"of other items; {len(splits.train):,} training canvases ({items[0]:,} training "
        f"items), {len(splits.val):,} validation ({items[1]:,} held-out training items), "
        f"{len(splits.test):,} test ({items[2]:,} test items), seeds {cfg.world_seed}, "
        f"{cfg.world_seed + 1}, {cfg.world_seed + 2}.",
        "",
        "Localisation: the share of a model's spatial attention mass inside the item's tight "
        "box, mean over the test canvases; the deepest map of each model is scored (CBAM: "
        "the last stage's spatial map; gated: alpha of the last stage's gate; ViT: class-token "
        f"rollout). A uniform map scores the box's share of the canvas: {uniform:.3f} on "
        "this test world (`localisation_uniform`).",
        "",
        f"Recipe: widths {'-'.join(map(str, cfg.widths))}, dropout {cfg.dropout}, CBAM "
        f"reduction {cfg.reduction}; ViT patch {cfg.vit_patch}, width {cfg.vit_dim}, depth "
        f"{cfg.vit_depth}, {cfg.vit_heads} heads. AdamW (rate {cfg.lr:g}, ViT {cfg.vit_lr:g}), "
        f"batch {cfg.batch_size}; {budget:.0f} s of training and validation per (model, seed) "
        f"on {torch.get_num_threads()} thread(s) (85% of {cfg.budget_minutes:g} min over "
        f"{len(cfg.models) * cfg.seeds} runs).",
        "",
        *_goal(results),
        "| model | what | epochs | best epoch | localisation of every map (seed 0) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        epochs = "/".join(map(str, r.extra["epochs_runs"]))
        best = "/".join(map(str, r.extra["best_epoch_runs"]))
        by_map = r.extra.get("localisation_by_map_runs", [{}])[0]
        shares = ", ".join(f"{k}: {v:.3f}" for k, v in by_map.items()) or "n/a"
        lines.append(
            f"| {r.model} | {MODELS[r.model].description} | {epochs} | {best} | {shares} |"
        )
    lines.append("")
    for r in results:
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])]
    if (run_dir.path / PAGE).is_file():
        lines += ["", f"- [test canvases with every model's attention maps]({PAGE})"]
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="clutter",
        description="Cluttered Fashion-MNIST: accuracy and localisation of CBAM, gates, ViT",
        config=ClutterConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist-clutter",
        report=_report,
        explain_image=explain_hook(prepare, lambda cfg, name: MODELS[name].build(cfg)),
    )
)
