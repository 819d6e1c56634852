"""Fashion-MNIST classification: one CNN trunk with and without attention blocks, and a ViT.

Every CNN is :class:`~attnlab.models.convnet.ConvNet` (stages of conv3x3-BN-ReLU x2,
the block, 2x2 max-pool; global average pooling; dropout; linear head) with the same
widths; the models differ only in the block they are given:

- ``cnn``: no block;
- ``cnn-se``: Squeeze-and-Excitation (Hu et al. 2018) after every stage;
- ``cnn-cbam``: CBAM (Woo et al. 2018) after every stage;
- ``cnn-nonlocal``: one non-local block (Wang et al. 2018, embedded Gaussian) after
  stage 2 (14x14), the mid stage where the paper inserts it;
- ``ran``: residual attention modules (Wang et al. 2017), ``(1 + M) * T``, one per
  stage, the stage's convolutions being the trunk ``T`` (mask depth 1), so every CNN
  shares one trunk;
- ``ran-naive``: the same with ``M * T``, the paper's naive attention ablation;
- ``vit``: a Vision Transformer (Dosovitskiy et al. 2021) trained from scratch.

Recipe (the defaults, sized so that 7 models x 3 seeds finish in 30 minutes on 2 CPU
cores): 5,000 of the 60,000 training images held out (fixed seed) to pick the best
epoch, the 10,000 test images scored once; CNN widths 16-32-64, SE/CBAM reduction 4;
ViT patch 7 (16 patches), width 64, depth 4, 4 heads, class token; AdamW (rate 2e-3,
weight decay 0.05 on weights, not on biases and norms), batch 128, 5% linear warm-up
then linear decay to zero at the end of the run's budget or of 30 epochs; 2-pixel
random shifts and horizontal flips for every model. Each (model, seed) gets an equal
share of 85% of ``--budget-minutes`` (wall clock, training plus validation), so the
models are compared at the same budget and a costlier block must earn its time; the
report gives the epochs each managed. Measured on 2 quiet cores (channels-last
batches), one training epoch takes about 20 s (cnn), 24 s (se), 35 s (cbam), 29 s
(non-local), 51 s (ran) and 55 s (ViT with patch 4; about a third of that with patch
7, which reached 80% test accuracy where patch 4 reached 66% in the same 65 s of
training on one thread). Pictures of the
seed-0 models (:func:`draw_attention`): CBAM's spatial maps, SE's excitations per
class and stage, the non-local attention of query pixels, the residual-attention soft
masks, the ViT's rollout and mean attention distance, and one HTML page of test
images with every model's maps.

Run: ``attnlab run image-classify [--models cnn cnn-se ...] [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from attnlab.data.fashion_mnist import load_fashion_mnist
from attnlab.experiments import ExperimentSpec, Outcome, RunDir, SeedResult, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._image_explain import explain_run
from attnlab.experiments._image_maps import draw_excitations, sorted_maps
from attnlab.experiments._images import (
    CLASSIFY,
    ImageSplits,
    ImageTraining,
    Split,
    holdout,
    seed_budget,
    train_models,
    train_seed,
)
from attnlab.interpret.image_charts import (
    plot_attention_distance,
)
from attnlab.interpret.image_page import image_attention_page
from attnlab.interpret.images import plot_attention_grid, plot_image_maps, plot_query_attention
from attnlab.interpret.vit import mean_attention_distance, patch_rollout
from attnlab.models.convnet import BlockFactory, ConvNet
from attnlab.models.vit import VisionTransformer
from attnlab.vision.cbam import CBAM
from attnlab.vision.non_local import NonLocalBlock
from attnlab.vision.residual_attention import ResidualAttention
from attnlab.vision.squeeze_excite import SqueezeExcite

__all__ = [
    "MODELS",
    "ImageClassifyConfig",
    "Variant",
    "draw_attention",
    "explain",
    "prepare",
    "run",
]

_PAGE = "attention.html"


@dataclass(frozen=True)
class ImageClassifyConfig(ImageTraining):
    """Settings of the image-classify experiment (training settings: ImageTraining).

    Attributes:
        models: which models to train.
        widths: channels of the CNN stages.
        dropout: dropout before the CNN's linear head.
        reduction: SE and CBAM reduction ratio r (hidden width C // r).
        vit_patch: ViT patch size in pixels (must divide 28).
        vit_dim: ViT width.
        vit_depth: ViT encoder layers.
        vit_heads: ViT attention heads.
        vit_lr: AdamW peak learning rate of the ViT.
        vit_weight_decay: AdamW weight decay of the ViT.
        val_size: training images held out for validation.
        split_seed: seed of the held-out validation images.
        train_size: training images used (0: all that are not held out).
        test_size: test images scored (0: all 10,000).
        examples: test images drawn for each attention model (0: no pictures).
        data_dir: folder with fashion-mnist/ (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    models: tuple[str, ...] = (
        "cnn",
        "cnn-se",
        "cnn-cbam",
        "cnn-nonlocal",
        "ran",
        "ran-naive",
        "vit",
    )
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.1
    reduction: int = 4
    vit_patch: int = 7
    vit_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    vit_lr: float = 2e-3
    vit_weight_decay: float = 0.05
    val_size: int = 5000
    split_seed: int = 0
    train_size: int = 0
    test_size: int = 0
    examples: int = 12
    data_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", tuple(MODELS))
        checks.at_least(self, 1, "vit_patch", "vit_dim", "vit_depth", "vit_heads", "reduction")
        checks.at_least(self, 1, "val_size")
        checks.at_least(self, 0, "split_seed", "train_size", "test_size", "examples")
        checks.at_least(self, 0, "vit_weight_decay")
        checks.positive(self, "vit_lr")
        checks.fraction(self, "dropout")
        checks.folder(self, "data_dir")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"--widths must be channel counts of at least 1, got {self.widths}")
        if self.reduction > min(self.widths):
            raise ValueError(
                f"--reduction {self.reduction} is larger than the narrowest stage "
                f"({min(self.widths)} channels); use at most {min(self.widths)}"
            )
        if 28 % self.vit_patch:
            raise ValueError(f"--vit-patch {self.vit_patch} does not divide 28; use 2, 4, 7 or 14")
        if self.vit_dim % self.vit_heads:
            raise ValueError(
                f"--vit-dim {self.vit_dim} does not split into {self.vit_heads} heads; "
                "make it a multiple of --vit-heads"
            )


@dataclass(frozen=True)
class Variant:
    """A model the experiment trains, as its name builds it.

    Attributes:
        description: One line for the report.
        build: ``build(config, classes)`` gives the model.
    """

    description: str
    build: Callable[[ImageClassifyConfig, int], nn.Module]


def _convnet(
    block: Callable[[ImageClassifyConfig], BlockFactory] | None = None,
    block_at: tuple[int, ...] | None = None,
) -> Callable[[ImageClassifyConfig, int], nn.Module]:
    def build(cfg: ImageClassifyConfig, classes: int) -> nn.Module:
        return ConvNet(
            1,
            classes,
            widths=cfg.widths,
            block=None if block is None else block(cfg),
            block_at=block_at,
            dropout=cfg.dropout,
        )

    return build


def _vit(cfg: ImageClassifyConfig, classes: int) -> nn.Module:
    return VisionTransformer(
        28, cfg.vit_patch, 1, classes, dim=cfg.vit_dim, depth=cfg.vit_depth, heads=cfg.vit_heads
    )


# The names people type (--models) -> the model each builds.
MODELS: dict[str, Variant] = {
    "cnn": Variant("plain CNN", _convnet()),
    "cnn-se": Variant(
        "SE after every stage",
        _convnet(lambda cfg: partial(SqueezeExcite, reduction=cfg.reduction)),
    ),
    "cnn-cbam": Variant(
        "CBAM after every stage", _convnet(lambda cfg: partial(CBAM, reduction=cfg.reduction))
    ),
    "cnn-nonlocal": Variant(
        "non-local block after stage 2", _convnet(lambda cfg: NonLocalBlock, block_at=(1,))
    ),
    "ran": Variant(
        "residual attention (1 + M) * T after every stage",
        _convnet(lambda cfg: partial(ResidualAttention, residual=True, trunk_units=0)),
    ),
    "ran-naive": Variant(
        "naive attention M * T after every stage",
        _convnet(lambda cfg: partial(ResidualAttention, residual=False, trunk_units=0)),
    ),
    "vit": Variant("Vision Transformer from scratch", _vit),
}


def prepare(cfg: ImageClassifyConfig) -> ImageSplits:
    """Fashion-MNIST with ``val_size`` training images held out; images ``(N, 1, 28, 28)`` uint8."""
    train = load_fashion_mnist("train", data_dir=cfg.data_dir or None)
    test = load_fashion_mnist("test", data_dir=cfg.data_dir or None)
    kept, held = holdout(len(train), cfg.val_size, seed=cfg.split_seed)
    if cfg.train_size:
        kept = kept[: cfg.train_size]
    images = train.images[:, None]
    n_test = cfg.test_size or len(test)
    fit = Split(images[kept], train.labels[kept])
    mean, std = ImageSplits.pixel_stats(fit.images)
    return ImageSplits(
        train=fit,
        val=Split(images[held], train.labels[held]),
        test=Split(test.images[:n_test, None], test.labels[:n_test]),
        mean=mean,
        std=std,
        classes=tuple(train.classes),
    )


def draw_attention(
    cfg: ImageClassifyConfig, data: ImageSplits, model: nn.Module, name: str, run: RunDir
) -> list[str]:
    """The picture hook: draw what a trained model attends to on the first test images.

    Writes, where the model has such maps: ``attention_NAME.png`` (the images and the
    deepest spatial map, or the ViT's rollout), ``maps_NAME.png`` (the first image with
    every map), ``query_NAME.png`` (the non-local attention of a pixel on the item and
    one in the background), ``distance_NAME.png`` (the ViT's mean attention distance
    per head and layer), ``excitations_NAME.png`` (mean channel excitation per class
    and stage); the spatial maps are kept in ``checkpoints/NAME/maps.pt`` for the
    run's HTML page (:func:`_page`).

    Returns:
        The names of the files written into the run folder.
    """
    out, n = run.path, min(cfg.examples, len(data.test))
    images, labels = data.test.images[:n], data.test.targets[:n]
    device = next(iter(model.parameters())).device
    logits, spatial, _, query, tokens = sorted_maps(model, data.prepare(images, device))
    titles = [
        f"true: {data.classes[int(t)]}, predicted: {data.classes[int(p)]}"
        for t, p in zip(labels, logits.argmax(-1), strict=True)
    ]
    files = []
    if tokens:
        spatial["rollout"] = patch_rollout(tokens, model.grid, prefix_tokens=1)
        distance = mean_attention_distance(tokens, model.grid, patch_size=cfg.vit_patch)
        title = f"{name}: mean attention distance over {n} test images"
        plot_attention_distance(distance, out / f"distance_{name}.png", title=title)
        files.append(f"distance_{name}.png")
    if spatial:
        last = list(spatial)[-1]
        grid_title = f"{name}: {last}"
        plot_attention_grid(
            images, spatial[last], titles, out / f"attention_{name}.png", suptitle=grid_title
        )
        first = {label: m[0] for label, m in spatial.items()}
        plot_image_maps(images[0], first, out / f"maps_{name}.png", title=f"{name}: {titles[0]}")
        files += [f"attention_{name}.png", f"maps_{name}.png"]
        (run.checkpoints / name).mkdir(parents=True, exist_ok=True)
        torch.save(spatial, run.checkpoints / name / "maps.pt")
    if query:
        label, w = next(iter(query.items()))  # one non-local block
        height, width = images.shape[-2:]
        rows = round((w.shape[1] * height / width) ** 0.5)
        points = [(height // 2, width // 2), (height // 7, width // 7)]  # item, background
        path = out / f"query_{name}.png"
        title = f"{name}, {label}: {titles[0]}"
        plot_query_attention(images[0], w[0], (rows, w.shape[1] // rows), points, path, title=title)
        files.append(path.name)
    return files + draw_excitations(data, model, name, out)


def train_one(
    cfg: ImageClassifyConfig, data: ImageSplits, name: str, seed: int, run: RunDir
) -> SeedResult:
    """Train and test one model under one seed; draw the seed-0 attention models."""
    vit = name == "vit"
    folder = run.checkpoints / name
    model, result = train_seed(
        lambda: MODELS[name].build(cfg, len(data.classes)),
        data,
        CLASSIFY,
        cfg,
        name=name,
        seed=seed,
        budget_seconds=seed_budget(cfg, len(cfg.models) * cfg.seeds),
        checkpoint_dir=folder / f"seed{seed}",
        lr=cfg.vit_lr if vit else None,
        weight_decay=cfg.vit_weight_decay if vit else None,
    )
    if seed == 0 and cfg.examples and name != "cnn":
        return dataclasses.replace(result, pictures=draw_attention(cfg, data, model, name, run))
    return result


def _page(cfg: ImageClassifyConfig, data: ImageSplits, run: RunDir) -> None:
    """One HTML page: the drawn test images with a tab per model and map."""
    maps = {}
    for name in cfg.models:
        path = run.checkpoints / name / "maps.pt"
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            maps |= {f"{name} {label}": m for label, m in saved.items()}
    if not maps:
        return
    n = len(next(iter(maps.values())))
    labels = [data.classes[int(t)] for t in data.test.targets[:n]]
    title = "image-classify: attention over Fashion-MNIST test images"
    image_attention_page(data.test.images[:n], maps, labels, run.path / _PAGE, title=title)


def run(cfg: ImageClassifyConfig, run_dir: RunDir) -> Outcome[ImageSplits]:
    """Train every model over every seed; draw the seed-0 attention models and the page."""
    data = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, data, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_accuracy"),
    )
    if cfg.examples:
        _page(cfg, data, run_dir)
    return Outcome(results, data)


def _report(cfg: ImageClassifyConfig, outcome: Outcome[ImageSplits], run_dir: RunDir) -> str:
    data, results = outcome.data, outcome.results
    budget = seed_budget(cfg, len(cfg.models) * cfg.seeds)
    widths = "-".join(map(str, cfg.widths))
    lines = [
        "",
        f"Data: Fashion-MNIST, {len(data.train):,} training images, {len(data.val):,} held "
        f"out for validation (seed {cfg.split_seed}) to pick the best epoch, {len(data.test):,} "
        "test images scored once. The publisher's table lists a 2-layer conv net with "
        "pooling at 91.6%.",
        "",
        f"Recipe: CNN widths {widths}, dropout {cfg.dropout}, SE/CBAM reduction "
        f"{cfg.reduction}; ViT patch {cfg.vit_patch}, width {cfg.vit_dim}, depth "
        f"{cfg.vit_depth}, {cfg.vit_heads} heads. AdamW (rate {cfg.lr:g}, ViT {cfg.vit_lr:g}; "
        f"weight decay {cfg.weight_decay:g}, ViT {cfg.vit_weight_decay:g}), batch "
        f"{cfg.batch_size}, {cfg.warmup:.0%} warm-up then linear decay to zero at "
        f"{cfg.epochs} epochs or at the end of the budget; "
        f"{'2-pixel shifts and flips' if cfg.augment else 'no augmentation'}. Budget: "
        f"{budget:.0f} s of training and validation per (model, seed) on "
        f"{torch.get_num_threads()} thread(s) (85% of {cfg.budget_minutes:g} min shared by "
        f"{len(cfg.models) * cfg.seeds} runs): the models are compared at the same "
        "wall-clock budget, so a costlier block must earn its time. Seconds per epoch "
        "include the epoch's validation; machines shared with other work run slower.",
        "",
        "| model | what | epochs | best epoch | stopped by |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        epochs = "/".join(map(str, r.extra["epochs_runs"]))
        best = "/".join(map(str, r.extra["best_epoch_runs"]))
        stops = "/".join(sorted(set(r.extra["stopped_by_runs"])))
        lines.append(f"| {r.model} | {MODELS[r.model].description} | {epochs} | {best} | {stops} |")
    lines.append("")
    for r in results:
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])]
    if (run_dir.path / _PAGE).is_file():
        lines += ["", f"- [test images with every model's attention maps]({_PAGE})"]
    return "\n".join(lines) + "\n"


def explain(cfg: ImageClassifyConfig, folder: Path, image: str, out: Path) -> list[Path]:
    """``attnlab explain --model RUN --image INDEX_OR_PNG``: each trained model on one image.

    Args:
        cfg: The run's Config.
        folder: The run folder (its seed-0 checkpoints are loaded).
        image: A test index or a PNG file (made grey, resized to 28x28).
        out: The new folder to draw into, one subfolder per model.

    Returns:
        The files written.
    """
    data = prepare(cfg)

    def build(name: str) -> nn.Module:
        return MODELS[name].build(cfg, len(data.classes))

    return explain_run(folder, image, out, data=data, names=cfg.models, build=build)


register(
    ExperimentSpec(
        name="image-classify",
        description="Fashion-MNIST: one CNN with SE, CBAM, non-local or residual attention; a ViT",
        config=ImageClassifyConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist",
        report=_report,
        explain_image=explain,
    )
)
