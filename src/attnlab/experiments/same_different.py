r"""Same or different: a CNN against the same CNN with a non-local block.

Each 64x64 canvas holds two Fashion-MNIST items far apart
(:func:`~attnlab.data.image_worlds.make_same_different`: frames of 28 px that do not
overlap, centres at least ``min_distance`` = 30 px apart); the label says whether they
are of the same class. Both models are :class:`~attnlab.models.convnet.ConvNet` of the
same depth and widths (16-32-64 by default), global average pooling and a linear head:

- ``cnn``: no attention. Its receptive field is 32x32 px: each stage's two 3x3
  convolutions add 4 steps of its stride and each 2x2 pool 1 (1 + 4(1 + 2 + 4) +
  (1 + 2) = 32 for three stages; :func:`receptive_field`). Seeing both items whole takes
  at least 30 + 28 = 58 px, so no unit sees both before the global pooling; and a
  linear head on the pooled sum of per-item features :math:`\phi(a) + \phi(b)` cannot
  tell :math:`a = b` from :math:`a \ne b` (were :math:`w^\top(\phi(a) + \phi(a)) > c`
  and :math:`w^\top(\phi(b) + \phi(b)) > c`, their mean :math:`w^\top(\phi(a) +
  \phi(b))` would be too). It can only guess from what one unit sees of both.
- ``cnn-nonlocal``: the same network with one non-local block (Wang et al. 2018,
  embedded Gaussian) after the convolutions of the last stage (16x16 positions whose
  features each see up to 32 px, about one item): every position gathers the features
  of the positions it resembles, the other item's included, before the pooling, and
  how much it finds there depends on how alike the two items are. (After stage 2, at
  32x32 positions, it learned no faster per step and each step took longer.)

Besides test accuracy, ``attention_to_partner`` is the share of the non-local
attention that a query at one item's centre puts inside the *other* item's box (mean
over the two items of every test canvas), beside what uniform attention gives
(``attention_to_partner_uniform``, the box's share of the canvas).

Recipe (the defaults): a training world of 10,000 canvases, a validation world of
2,000 (held-out training items) and a test world of 2,000 (test-split items only),
each its own seed, exactly half "same"; dropout 0.1; AdamW (rate 2e-3, weight decay
0.05), batch 128, 5% warm-up then linear decay to zero at 30 epochs or at the end of
the run's share of ``--budget-minutes``; 2-pixel shifts and horizontal flips. The two
models x 3 seeds share 85% of the budget (default 30 minutes, 255 s of training each;
the whole run about 30 minutes on 2 cores). Measured with OMP_NUM_THREADS=2 on the
2-core machine this was written on, shared with other work (load about 3): an epoch
over 10,000 canvases took about 125 s for the CNN and 170 s with the non-local block,
28 s and 29 s when the machine was idle. The non-local model stays at chance for its
first 150 or so steps of 128 canvases (two epochs), then learns; a 10-minute run
(``--seeds 1 --budget-minutes 10``: the default's 255 s per model, 9 epochs each on
the idle machine) gave it 84.4%
test accuracy against the CNN's 51.1%. The default budget buys each model 2 epochs
on the busy machine, 9 on the idle one.

Run: ``attnlab run same-different [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from attnlab.data.image_worlds import SameDifferentWorld, attention_in_box, make_same_different
from attnlab.data.image_worlds import uniform_box_share as box_share
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
from attnlab.interpret.images import plot_attention_grid, plot_query_attention
from attnlab.models.convnet import ConvNet
from attnlab.vision.non_local import NonLocalBlock

__all__ = ["MODELS", "SameDifferentConfig", "partner_attention", "prepare", "receptive_field"]

CANVAS = 64
CLASSES = ("different", "same")
MODELS = ("cnn", "cnn-nonlocal")
_BATCH = 25  # canvases per pass when the (HW x HW) weights are materialised


@dataclass(frozen=True)
class SameDifferentConfig(ImageTraining, WorldSettings):
    """Settings of the same-different experiment (training: ImageTraining; worlds: WorldSettings).

    Attributes:
        models: cnn, cnn-nonlocal.
        min_distance: least distance in pixels between the two items' centres.
        clutter: crops of other items per canvas (none by default).
        widths: channels of the CNN stages (both models).
        dropout: dropout before the linear head.
        nonlocal_stage: the stage (0-based) whose convolutions the non-local block
            follows (none: the last stage).
    """

    models: tuple[str, ...] = MODELS
    min_distance: float = 30.0
    clutter: int = 0
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.1
    nonlocal_stage: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", MODELS)
        checks.at_least(self, 0, "min_distance", "clutter")
        checks.fraction(self, "dropout")
        check_widths(self, CANVAS)
        if self.nonlocal_stage is not None:
            checks.between(self, "nonlocal_stage", 0, len(self.widths) - 1)

    @property
    def block_stage(self) -> int:
        """The stage the non-local block follows (``nonlocal_stage``, by default the last)."""
        return len(self.widths) - 1 if self.nonlocal_stage is None else self.nonlocal_stage


def receptive_field(stages: int) -> int:
    """Receptive field in pixels of the last stage of a :class:`ConvNet` with ``stages`` stages.

    Example:
        >>> [receptive_field(n) for n in (1, 2, 3, 4)]
        [5, 14, 32, 68]
    """
    field, jump = 1, 1
    for stage in range(stages):
        field += 4 * jump  # two 3x3 convolutions
        if stage < stages - 1:  # a 2x2 pool, then twice the stride
            field, jump = field + jump, 2 * jump
    return field


def _build(cfg: SameDifferentConfig, name: str) -> nn.Module:
    with_block = name == "cnn-nonlocal"
    return ConvNet(
        1,
        len(CLASSES),
        widths=cfg.widths,
        block=NonLocalBlock if with_block else None,
        block_at=(cfg.block_stage,) if with_block else None,
        dropout=cfg.dropout,
    )


def prepare(cfg: SameDifferentConfig) -> Worlds[SameDifferentWorld]:
    """The train, validation and test worlds, from disjoint Fashion-MNIST items."""
    make = partial(
        make_same_different, canvas=CANVAS, min_distance=cfg.min_distance, clutter=cfg.clutter
    )
    return world_splits(cfg, make, lambda w: w.labels, classes=CLASSES)


def _centres(boxes: Tensor) -> Tensor:
    """(row, col) pixel of each box's centre, ``(..., 2)``."""
    rows, cols = (boxes[..., 1] + boxes[..., 3]) // 2, (boxes[..., 0] + boxes[..., 2]) // 2
    return torch.stack([rows, cols], -1)


def _item_centres(worlds: Worlds[SameDifferentWorld], index: int) -> list[tuple[int, int]]:
    """Where ``explain --image INDEX`` queries the non-local block: both items' centres."""
    return [(int(r), int(c)) for r, c in _centres(worlds.test.boxes[index]).tolist()]


def partner_attention(
    model: ConvNet, worlds: Worlds[SameDifferentWorld], count: int
) -> tuple[Tensor, Tensor]:
    """Where the non-local block looks from each item's centre, over the first test canvases.

    Returns:
        ``(maps, shares)``: the attention rows of the query cells holding the two item
        centres, as key-grid maps ``(N, 2, h', w')``, and the share of each inside the
        *other* item's box ``(N, 2)``.
    """
    device = next(iter(model.parameters())).device
    images, boxes = worlds.splits.test.images[:count], worlds.test.boxes[:count]
    side = CANVAS >> next(i for i, b in enumerate(model.blocks) if b is not None)
    centres = _centres(boxes)  # (N, 2 items, (row, col))
    cells = (centres[..., 0] * side // CANVAS) * side + centres[..., 1] * side // CANVAS
    rows = []
    model.eval()
    with torch.no_grad():
        for x, c in zip(images.split(_BATCH), cells.split(_BATCH)):
            with capture(model, layers="stages.*.block") as seen:
                model(worlds.splits.prepare(x, device))
            weights = seen.attentions[0].float().cpu()  # (n, HW, HW')
            rows.append(weights[torch.arange(len(x))[:, None], c])  # (n, 2, HW')
    keys = round(rows[0].shape[-1] ** 0.5)
    maps = torch.cat(rows).reshape(len(images), 2, keys, keys)
    shares = torch.stack(
        [attention_in_box(maps[:, k], boxes[:, 1 - k], canvas=CANVAS) for k in range(2)], 1
    )
    return maps, shares


def _draw(
    cfg: SameDifferentConfig, worlds: Worlds, model: nn.Module, name: str, run: RunDir
) -> list[str]:
    """Seed 0 of cnn-nonlocal: attention from item 1's centre; one canvas, both queries."""
    n = min(cfg.examples, len(worlds.splits.test))
    test = worlds.splits.test
    images, labels = test.images[:n], test.targets[:n]
    maps, shares = partner_attention(model, worlds, n)
    predicted = predict(model, worlds.splits, images).argmax(-1)
    titles = [
        f"{CLASSES[int(t)]} -> {CLASSES[int(p)]}, {s:.2f} on item 2"
        for t, p, s in zip(labels, predicted, shares[:, 0].tolist(), strict=True)
    ]
    grid, query = f"attention_{name}.png", f"query_{name}.png"
    plot_attention_grid(
        images,
        maps[:, 0],
        titles,
        run.path / grid,
        suptitle=f"{name}: attention from item 1's centre (true -> predicted)",
    )
    points = [tuple(p) for p in _centres(worlds.test.boxes[0]).tolist()]
    with torch.no_grad(), capture(model, layers="stages.*.block") as seen:
        model.eval()(worlds.splits.prepare(images[:1], next(model.parameters()).device))
    weights = seen.attentions[0][0].float().cpu()
    side = round(weights.shape[0] ** 0.5)
    plot_query_attention(
        images[0],
        weights,
        (side, side),
        points,
        run.path / query,
        title=f"{name}: non-local attention from each item's centre",
    )
    keep_maps(run, name, {"from item 1": maps[:, 0], "from item 2": maps[:, 1]})
    return [grid, query]


def train_one(
    cfg: SameDifferentConfig, worlds: Worlds[SameDifferentWorld], name: str, seed: int, run: RunDir
) -> SeedResult:
    """Train and test one model under one seed; for the non-local one, where it looks."""
    model, result = train_seed(
        lambda: _build(cfg, name),
        worlds.splits,
        CLASSIFY,
        cfg,
        name=name,
        seed=seed,
        budget_seconds=seed_budget(cfg, len(cfg.models) * cfg.seeds),
        checkpoint_dir=run.checkpoints / name / f"seed{seed}",
    )
    if name != "cnn-nonlocal":
        return result
    _, shares = partner_attention(model, worlds, len(worlds.splits.test))
    boxes = worlds.test.boxes
    uniform = (box_share(boxes[:, 0], canvas=CANVAS) + box_share(boxes[:, 1], canvas=CANVAS)) / 2
    metrics = {
        **result.metrics,
        "attention_to_partner": float(shares.mean()),
        "attention_to_partner_uniform": float(uniform.mean()),
    }
    pictures = _draw(cfg, worlds, model, name, run) if seed == 0 and cfg.examples else []
    return dataclasses.replace(result, metrics=metrics, pictures=pictures)


def run(cfg: SameDifferentConfig, run_dir: RunDir) -> Outcome[Worlds[SameDifferentWorld]]:
    """Train both models over every seed; draw the seed-0 non-local attention and the page."""
    worlds = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, worlds, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_accuracy"),
    )
    if cfg.examples:
        n = min(cfg.examples, len(worlds.splits.test))
        labels = [CLASSES[int(t)] for t in worlds.splits.test.targets[:n]]
        title = "same-different: non-local attention from each item's centre"
        write_page(run_dir, cfg.models, worlds.splits.test.images[:n], labels, title=title)
    return Outcome(results, worlds)


def _goal(results: list[ModelResult]) -> list[str]:
    """The goal line: the non-local model at least 10 points above the CNN."""
    acc = {
        r.model: sum(r.metrics["test_accuracy"]) / len(r.metrics["test_accuracy"]) for r in results
    }
    if set(acc) != set(MODELS):
        return []
    gap = 100 * (acc["cnn-nonlocal"] - acc["cnn"])
    return [
        f"Goal: the non-local model at least 10 points above the CNN. Measured: {gap:+.2f} "
        f"points ({100 * acc['cnn-nonlocal']:.2f}% against {100 * acc['cnn']:.2f}%).",
        "",
    ]


def _report(
    cfg: SameDifferentConfig, outcome: Outcome[Worlds[SameDifferentWorld]], run_dir: RunDir
) -> str:
    worlds, results = outcome.data, outcome.results
    splits, items = worlds.splits, worlds.items
    budget = seed_budget(cfg, len(cfg.models) * cfg.seeds)
    field = receptive_field(len(cfg.widths))
    lines = [
        "",
        f"Worlds: {CANVAS}x{CANVAS} canvases, two Fashion-MNIST items (28x28 frames) with "
        f"centres at least {cfg.min_distance:g} px apart, {cfg.clutter} crops of clutter; "
        f"half the canvases 'same'. {len(splits.train):,} training canvases ({items[0]:,} "
        f"items), {len(splits.val):,} validation ({items[1]:,} held-out items), "
        f"{len(splits.test):,} test ({items[2]:,} test items).",
        "",
        f"Both models: widths {'-'.join(map(str, cfg.widths))}, receptive field of the last "
        f"stage {field}x{field} px against at least {cfg.min_distance + 28:g} px to see both "
        f"items whole; global average pooling and a linear head. cnn-nonlocal adds one "
        f"non-local block (embedded Gaussian) after stage {cfg.block_stage + 1}'s "
        f"convolutions. AdamW (rate {cfg.lr:g}), batch {cfg.batch_size}; {budget:.0f} s of "
        f"training and validation per (model, seed) on {torch.get_num_threads()} thread(s).",
        "",
        "attention_to_partner: share of the non-local attention from one item's centre "
        "that falls inside the other item's box (uniform attention: "
        "attention_to_partner_uniform).",
        "",
        *_goal(results),
        "| model | epochs | best epoch |",
        "|---|---|---|",
    ]
    for r in results:
        epochs = "/".join(map(str, r.extra["epochs_runs"]))
        lines.append(f"| {r.model} | {epochs} | {'/'.join(map(str, r.extra['best_epoch_runs']))} |")
    lines.append("")
    for r in results:
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])]
    if (run_dir.path / PAGE).is_file():
        lines += ["", f"- [test canvases with the non-local attention]({PAGE})"]
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="same-different",
        description="Two items far apart, same class or not: CNN vs CNN + non-local block",
        config=SameDifferentConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist-same-different",
        report=_report,
        explain_image=explain_hook(prepare, _build, query_points=_item_centres),
    )
)
