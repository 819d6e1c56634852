r"""Visual questions about scenes of real items: Stacked Attention Networks against baselines.

Each 64x64 scene holds 2 to 4 tinted Fashion-MNIST items on a 2 x 2 board
(:func:`~attnlab.data.scenes.make_scenes`) and comes with questions with one-word
answers: one hop ("what is in the top left corner?", "how many shoes are there?", "what
colour is the bag?") and two ("what is to the right of the red bag?", "what colour is
the item below the shirt?"). Every (scene, question) pair is an example. The models
(Yang et al., "Stacked Attention Networks for Image Question Answering", CVPR 2016) are
all :class:`~attnlab.models.stacked_attention.StackedAttentionNetwork`:

- ``question-only``: the question LSTM alone (what the words give away);
- ``cnn-lstm``: CNN grid features mean-pooled and added to the question, no attention;
- ``san-1``, ``san-2``: one or two attention hops over the 8 x 8 grid, each hop adding
  what it found to the query, :math:`u^k = u^{k-1} + \sum_i p^k_i v_i`.

Metrics: test accuracy overall, per question kind (``test_accuracy_corner`` ...
``test_accuracy_relation_colour``) and per hop count (``test_accuracy_hops_1``,
``test_accuracy_hops_2``), mean +/- std over seeds; for the SANs, where the hops look on
the two-hop questions (``first_hop_on_reference``: the first hop's mass in the box of
the object the question names; ``last_hop_on_answer``: the last hop's mass in the
answer object's box; ``answer_box_share``: that box's share of the canvas, what a
uniform map scores). The goal of issue 15: SAN-2 at least 10 points above CNN + LSTM on
two-hop questions, and above SAN-1.

Recipe (the defaults): 10,000 training scenes (training items, no held-out
class-colour pair), 1,000 validation scenes (held-out training items; the best epoch by
validation accuracy), 2,000 test scenes (test items; every scene holds a held-out pair),
one question of each kind a scene determines (about 4.3 per scene: 42,986 training,
8,624 test questions, 2,684 of them two-hop). The image encoder, as in the paper (VGG's
last pooling layer, trained on ImageNet), is trained beforehand and frozen: a CNN of
widths 16-32-64 (a 2x2 pool after each stage: an 8 x 8 grid of 8-pixel cells, each
seeing about 30 pixels, its own item's quadrant) spends 5% of the budget learning to
name each cell's object (class and colour) on the training scenes, and every model
reads its grid with the cells' x and y appended
(:mod:`~attnlab.experiments._scene_features`; ``--pretrain-share 0``: each model trains
its own CNN from the answers, on 2-pixel shifts). Embeddings 64, LSTM and region size
128, attention size 64, dropout 0.1; AdamW (rate 2e-3, weight decay 0.05), gradient
norm clipped at 5, batch 128, 5% warm-up then linear decay to zero at 30 epochs or at
the end of the run's share of the budget. The four models x 3 seeds share 80% of
``--budget-minutes`` after the pretraining (default 30: 90 s, then 120 s each).

Why the frozen encoder: trained with each model, the CNN ran once per question, and
two 43-second probes (``--seeds 1``, 0.12 epoch, from scratch) left CNN + LSTM and
SAN-2 at the answer priors (37.3% and 37.6%). On frozen grids (a probe with ``--models
cnn-lstm san-1 san-2 --seeds 1 --budget-minutes 8 --pretrain-share 0.1875 --val-size
300 --test-size 500``, one thread beside another run; the encoder named the class of
69% of the object cells): CNN + LSTM 40.6% (two-hop 39.7%), SAN-1 55.4% (52.4%), SAN-2
56.2% (52.1%), 6 to 12 epochs each.

Why cells that see little beyond their own item: a full default run with a deeper trunk
(8-16-32-64, a pool between stages, each cell seeing about 60 pixels, nearly the whole
canvas; ``--widths 8 16 32 64`` does not build it: it was ``ConvGridEncoder(pool_last=
False)``) gave the mean-pooled baseline the relations for free (CNN + LSTM two-hop
45.6%, SAN-2 54.4%, SAN-1 59.2%), and the SANs' first hop went straight to the answer:
a cell that sees its neighbour answers "what is to the right of the shirt?" alone.

Pictures of the seed-0 SANs: for a few test questions (every kind in turn), the scene
with each hop's attention laid over it, the question and the predicted and true answers
in the title; one HTML page with a tab per model and hop.

Run: ``attnlab run vqa [--models san-1 san-2 ...] [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.data.scenes import ANSWERS, QUESTION_HOPS, scene_vocab
from attnlab.experiments import ExperimentSpec, Outcome, RunDir, SeedResult, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._image_data import augment
from attnlab.experiments._images import (
    Fitted,
    ImageTraining,
    fit_budgeted,
    train_models,
)
from attnlab.experiments._results import count_parameters
from attnlab.experiments._scene_features import PrecomputedGrid, budget_split, check_pretrain_share
from attnlab.experiments._vqa_data import (
    QuestionSplit,
    VQAData,
    accuracy_by,
    encode_questions,
    hop_grounding,
    load_scenes,
)
from attnlab.experiments._vqa_report import report
from attnlab.experiments._worlds import PAGE, WorldSettings, check_widths, keep_maps, write_page
from attnlab.interpret.images import plot_image_maps
from attnlab.models.stacked_attention import ConvGridEncoder, StackedAttentionNetwork
from attnlab.train import seed_everything

__all__ = [
    "CANVAS",
    "MODELS",
    "VQAConfig",
    "build",
    "encode_questions",
    "predict",
    "prepare",
    "run",
]

CANVAS = 64
MODELS: dict[str, int | None] = {"question-only": None, "cnn-lstm": 0, "san-1": 1, "san-2": 2}
"""The names people type (--models) -> attention hops (None: the model sees no image)."""

_BATCH = 500
_GRAD_CLIP = 5.0


@dataclass(frozen=True)
class VQAConfig(ImageTraining, WorldSettings):
    """Settings of the vqa experiment (training: ImageTraining; scenes: WorldSettings).

    Attributes:
        models: which models to train: question-only, cnn-lstm, san-1, san-2.
        questions: questions of each kind per scene (where the scene determines one).
        widths: channels of the CNN stages (a 2x2 pool after each; 3 stages: 8x8 grid).
        embedding_dim: word embedding size.
        hidden_size: LSTM state and region vector size d.
        attention_size: size of each hop's tanh layer.
        dropout: dropout on the final query before the answer layer.
        pretrain_share: share of the budget spent once per run pretraining the CNN to
            name each grid cell's object (class and colour) on the training scenes; the
            models then read its frozen grid with cell coordinates appended
            (:mod:`~attnlab.experiments._scene_features`). 0: each model trains its own
            CNN from the answers (shifted images when augment; precomputed grids are
            never shifted).
    """

    models: tuple[str, ...] = tuple(MODELS)
    val_size: int = 1000  # validation runs every epoch: 4,300 questions, not 8,600
    questions: int = 1
    widths: tuple[int, ...] = (16, 32, 64)
    embedding_dim: int = 64
    hidden_size: int = 128
    attention_size: int = 64
    dropout: float = 0.1
    pretrain_share: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", tuple(MODELS))
        checks.at_least(self, 1, "questions", "embedding_dim", "hidden_size", "attention_size")
        checks.fraction(self, "dropout")
        check_widths(self, CANVAS)
        check_pretrain_share(self)


def prepare(cfg: VQAConfig) -> VQAData:
    """The train, validation and test scenes and their questions, from disjoint items."""
    sizes = (cfg.train_size, cfg.val_size, cfg.test_size)
    seconds, _ = budget_split(cfg)
    return load_scenes(
        sizes,
        seed=cfg.world_seed,
        canvas=CANVAS,
        questions=cfg.questions,
        data_dir=cfg.data_dir,
        encoder=ConvGridEncoder(3, widths=cfg.widths) if seconds else None,
        pretrain_seconds=seconds,
    )


def build(cfg: VQAConfig, name: str, grid: int = 0) -> StackedAttentionNetwork:
    """An untrained model of that name (see :data:`MODELS`).

    ``grid``: the channels of precomputed grids it reads (:class:`PrecomputedGrid`); 0:
    it reads images through its own CNN of ``cfg.widths``.
    """
    hops = MODELS[name]
    encoder = PrecomputedGrid if grid else partial(ConvGridEncoder, widths=cfg.widths)
    return StackedAttentionNetwork(
        len(scene_vocab()),
        len(ANSWERS),
        in_channels=grid or 3,
        hops=hops or 0,
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        attention_size=cfg.attention_size,
        image_encoder=None if hops is None else encoder,
        image_size=CANVAS // 2 ** len(cfg.widths) if grid else CANVAS,
        dropout=cfg.dropout,
    )


def _inputs(
    model: StackedAttentionNetwork,
    data: VQAData,
    split: QuestionSplit,
    index: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """A batch's images (None for the question-only model), token ids and lengths."""
    device = next(model.parameters()).device
    lengths = split.lengths[index]
    ids = split.ids[index, : int(lengths.max())].to(device)  # trim the batch's padding
    if model.image_encoder is None:
        return None, ids, lengths.to(device)
    if split.grids is not None:  # computed beforehand by the frozen encoder: never shifted
        return split.grids[split.scene[index]].to(device), ids, lengths.to(device)
    images = split.images[split.scene[index]]
    if generator is not None:  # shifts only: a mirrored scene would swap left and right
        images = augment([images], generator, flip=False)[0]
    return data.prepare(images, device), ids, lengths.to(device)


def predict(
    model: StackedAttentionNetwork, data: VQAData, split: QuestionSplit, *, maps: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Answer logits ``(m, A)`` of every question (eval mode, no gradients), on the CPU.

    With ``maps``, also every hop's attention ``(m, K, h, w)`` (None without hops).
    """
    model.eval()
    logits, found = [], []
    with torch.no_grad():
        for index in torch.arange(len(split)).split(_BATCH):
            out, weights = model.forward_with_weights(
                *_inputs(model, data, split, index), need_weights=maps
            )
            logits.append(out.float().cpu())
            if weights is not None and weights.shape[1]:
                found.append(weights.float().cpu())
    return torch.cat(logits), (torch.cat(found) if found else None)


def _fit(
    cfg: VQAConfig, model: StackedAttentionNetwork, data: VQAData, seed: int, **kw: Any
) -> Fitted:
    """:func:`fit_budgeted` on the training questions; the best epoch by validation accuracy."""
    device = next(model.parameters()).device

    def batches(epoch: int) -> Iterator[tuple[Tensor, torch.Generator | None]]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(data.train), generator=generator)
        for index in order.split(cfg.batch_size):
            yield index, (generator if cfg.augment else None)

    def step(batch: tuple[Tensor, torch.Generator | None]) -> tuple[Tensor, dict[str, Any]]:
        index, generator = batch
        answers = data.train.answers[index].to(device)
        logits = model(*_inputs(model, data, data.train, index, generator=generator))
        loss = F.cross_entropy(logits, answers)
        right = (logits.detach().argmax(-1) == answers).sum()
        return loss, {"loss": loss.detach() * len(index), "right": right, "count": len(index)}

    def summarize(sums: dict[str, Any]) -> dict[str, float]:
        n = sums["count"]
        return {"train_loss": float(sums["loss"]) / n, "train_accuracy": float(sums["right"]) / n}

    def validate() -> dict[str, float]:
        logits, _ = predict(model, data, data.val)
        model.train()
        return {
            "val_loss": float(F.cross_entropy(logits, data.val.answers)),
            "val_accuracy": float((logits.argmax(-1) == data.val.answers).float().mean()),
        }

    return fit_budgeted(
        model,
        cfg,
        batches=batches,
        steps_per_epoch=math.ceil(len(data.train) / cfg.batch_size),
        step=step,
        validate=validate,
        monitor="accuracy",
        summarize=summarize,
        grad_clip=_GRAD_CLIP,
        **kw,
    )


def _examples(split: QuestionSplit, n: int) -> list[int]:
    """``n`` test questions, every kind in turn (first of each kind, then the second...)."""
    by_kind = [[i for i, k in enumerate(split.kinds) if k == kind] for kind in QUESTION_HOPS]
    picked = [i for row in zip(*by_kind, strict=False) for i in row]
    rest = [i for i in range(len(split)) if i not in set(picked)]
    return (picked + rest)[:n]


def _draw(
    cfg: VQAConfig, data: VQAData, name: str, run: RunDir, logits: Tensor, maps: Tensor
) -> list[str]:
    """Seed-0 pictures: per example question, the scene and each hop's map over it."""
    test, files = data.test, []
    chosen = _examples(test, cfg.examples)
    for n, i in enumerate(chosen):
        predicted, true = ANSWERS[int(logits[i].argmax())], ANSWERS[int(test.answers[i])]
        hops = {f"hop {k + 1}": maps[i, k] for k in range(maps.shape[1])}
        files.append(f"{name}_question{n}.png")
        plot_image_maps(
            test.images[test.scene[i]],
            hops,
            run.path / files[-1],
            title=f"{test.texts[i]}\npredicted: {predicted}, true: {true}",
        )
    index = torch.tensor(chosen, dtype=torch.int64)
    keep_maps(run, name, {f"hop {k + 1}": maps[index, k] for k in range(maps.shape[1])})
    return files


def train_one(cfg: VQAConfig, data: VQAData, name: str, seed: int, run: RunDir) -> SeedResult:
    """Train and test one model under one seed: accuracy by kind and hop; draw seed 0."""
    seed_everything(seed)
    grid = 0 if data.train.grids is None else data.train.grids.shape[1]
    model = build(cfg, name, grid).to(cfg.torch_device())
    _, budget = budget_split(cfg)
    fitted = _fit(
        cfg,
        model,
        data,
        seed,
        budget_seconds=budget,
        checkpoint_dir=run.checkpoints / name / f"seed{seed}",
        config={"model": name, "seed": seed, "budget_seconds": budget, **asdict(cfg)},
        desc=f"{name} seed {seed}",
    )
    test = data.test
    logits, maps = predict(model, data, test, maps=True)
    metrics = accuracy_by((logits.argmax(-1) == test.answers).float(), test.kinds, test.hops)
    if maps is not None:
        metrics |= hop_grounding(maps, data.test_world, test, canvas=CANVAS)
    metrics["seconds_per_epoch"] = fitted.seconds_per_epoch
    draw = seed == 0 and cfg.examples and maps is not None
    return SeedResult(
        metrics=metrics,
        parameters=count_parameters(model),
        seconds=fitted.seconds,
        pictures=_draw(cfg, data, name, run, logits, maps) if draw else [],
        extra=fitted.extras("accuracy"),
        note=fitted.note,
    )


def run(cfg: VQAConfig, run_dir: RunDir) -> Outcome[VQAData]:
    """Train every model over every seed; draw the seed-0 SANs' hops and the page."""
    data = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, data, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_accuracy"),
    )
    if cfg.examples:
        test, chosen = data.test, _examples(data.test, cfg.examples)
        labels = [f"{ANSWERS[int(test.answers[i])]} ({test.texts[i]})" for i in chosen]
        images = test.images[test.scene[torch.tensor(chosen, dtype=torch.int64)]]
        title = "vqa: where each hop of the SANs looks, per test question"
        write_page(run_dir, cfg.models, images, labels, title=title)
    return Outcome(results, data)


def _report(cfg: VQAConfig, outcome: Outcome[VQAData], run_dir: RunDir) -> str:
    page = (run_dir.path / PAGE).is_file()
    _, budget = budget_split(cfg)
    return report(cfg, outcome, budget=budget, page=page)


register(
    ExperimentSpec(
        name="vqa",
        description="Questions about scenes of items: SAN-2, SAN-1, CNN+LSTM, question-only",
        config=VQAConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist-scenes",
        report=_report,
    )
)
