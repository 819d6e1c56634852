"""Show, Attend and Tell on scenes of tinted Fashion-MNIST items: captions and grounding.

Each 64x64 RGB scene holds 2 to 4 real Fashion-MNIST items, scaled, tinted and placed
in the cells of a 2x2 board, with up to four true captions of a small grammar ("a red
bag to the left of a blue boot", "a white coat in the top left corner";
:mod:`attnlab.data.scenes`). The captioner of Xu et al. (ICML 2015,
:class:`~attnlab.models.show_attend_tell.ShowAttendTell`) encodes the scene into a grid
of annotation vectors with a small CNN and writes a caption with an LSTM whose context
at each word is attention over that grid:

- ``soft``: deterministic soft attention (the additive score of Bahdanau et al.);
- ``hard``: one sampled location per word, trained by REINFORCE with a moving-average
  baseline and an entropy bonus (``hard-gumbel``: Gumbel straight-through instead);
- ``none``: the no-attention baseline; every word sees the mean-pooled grid.

Scored on the test scenes (items of the test split only; every test scene holds a
class-colour pair never seen in training) after beam search (beam 3): sacreBLEU BLEU-4
against all reference captions of the scene (``test_bleu``), the share of captions equal
to one of them (``test_exact_match_accuracy``), the share true of the scene
(``test_true_caption_accuracy``, :func:`~attnlab.data.scenes.caption_true`), and
**grounding**: at each generated noun that names one object of the scene
(:func:`~attnlab.data.scenes.caption_links`), the share of that word's attention mass
inside the object's box (:func:`~attnlab.data.image_worlds.attention_in_box`), mean over
the nouns, beside the share a uniform map gets (``grounding_uniform``, box area / canvas
area). The no-attention model scores the uniform share by construction.

Recipe (the defaults): 10,000 training scenes (training items minus a held-out sixth),
1,000 validation scenes (the held-out items, training pairs only; the best epoch by
greedy BLEU-4 on them), 2,000 test scenes. The encoder, as in the paper (VGG trained
on ImageNet, then fixed), is trained beforehand and frozen: a CNN of widths 8-16-32-64
(an 8x8 grid of 8-pixel cells; an item covers about 3x3 of them) spends 5% of the
budget learning to name each cell's object (class and colour) on the training scenes,
and every model reads its grid with the cells' x and y appended
(:mod:`~attnlab.experiments._scene_features`; ``--pretrain-share 0``: each model
trains its CNN from the captions instead). Word embedding 64, LSTM 128, attention 64;
teacher forcing on one random caption per scene per epoch; loss = cross-entropy per
word + the doubly stochastic penalty with lambda 0.1 (+ the REINFORCE terms for
``hard``): the paper's lambda 1 weighs a penalty per caption against a log-likelihood
summed over the caption's words, ours a mean per word, so 1 / (about 11 words per
caption with EOS) keeps the paper's balance. AdamW (rate 2e-3, weight decay 0.01),
batch 64, gradient norm clipped at 5, 5% warm-up then linear decay to zero at 30
epochs or at the end of the run's share of ``--budget-minutes``. The three models x 3
seeds share 80% of the budget after the pretraining (default 30 minutes: 90 s of
pretraining, then 160 s of training and validation each); making the scenes, decoding
the test scenes, scoring and drawing take the rest.

Why the frozen encoder: trained from scratch with each captioner, the CNN had 170 s
(about 10 epochs) to learn the items from captions alone; a probe of soft attention
(``--models soft --seeds 1 --budget-minutes 3.3 --val-size 300 --test-size 400
--pretrain-share 0``, 2 threads, idle machine) wrote 4.5% true captions with grounding
0.140 (uniform 0.098). On the frozen grid (``--models soft none --seeds 1
--budget-minutes 7 --pretrain-share 0.214 --val-size 300 --test-size 400``: 90 s of
pretraining naming the class of 80% of the validation object cells and the colour of
97%, then 134 s per model, about 6 s an epoch): soft 25.5% true captions, BLEU-4 59.6,
grounding 0.154; none 3.8% and 55.3. With lambda 0 and 0.02 (165 s, soft only)
grounding was 0.226 and 0.219: the maps follow the objects but stay wide.

Run: ``attnlab run caption [--models soft hard none] [--seeds N] [--budget-minutes M]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

import torch
from torch import Tensor

from attnlab.data.bleu import reference_bleu
from attnlab.data.fashion_mnist import load_fashion_mnist
from attnlab.data.scenes import make_scenes, scene_splits, scene_vocab
from attnlab.experiments import ExperimentSpec, Outcome, RunDir, SeedResult, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._caption_eval import (
    CaptionData,
    caption_batches,
    caption_text,
    decode,
    draw_captions,
    noun_maps,
    references,
    score_captions,
)
from attnlab.experiments._images import (
    TRAINING_SHARE,
    Fitted,
    ImageTraining,
    fit_budgeted,
    train_models,
)
from attnlab.experiments._report import summarise
from attnlab.experiments._results import ModelResult, count_parameters
from attnlab.experiments._scene_features import (
    PrecomputedGrid,
    budget_split,
    check_pretrain_share,
    encoder_line,
    frozen_grids,
)
from attnlab.experiments._worlds import PAGE, WorldSettings, check_widths, keep_maps, write_page
from attnlab.models._caption_decoder import default_trunk
from attnlab.models.show_attend_tell import CAPTION_ATTENTIONS, ShowAttendTell
from attnlab.nn._checks import factory_kwargs
from attnlab.train import seed_everything

__all__ = ["MODELS", "CaptionConfig", "build", "prepare", "run", "train_one"]

CANVAS = 64
MODELS: tuple[str, ...] = tuple(CAPTION_ATTENTIONS)  # soft, hard, hard-gumbel, none


@dataclass(frozen=True)
class CaptionConfig(ImageTraining, WorldSettings):
    """Settings of the caption experiment (training: ImageTraining; scenes: WorldSettings).

    Attributes:
        models: which attentions to train: soft, hard, hard-gumbel, none.
        batch_size: scenes per batch (one caption each).
        lr: AdamW peak learning rate.
        weight_decay: AdamW's decoupled weight decay (not on biases and norms).
        val_size: validation scenes (held-out training items); greedy BLEU-4 on them
            picks the best epoch.
        augment: random 2-pixel shifts of training scenes (never flips); only with
            --pretrain-share 0 (precomputed grids are never shifted).
        widths: channels of the CNN encoder's stages (a 2x2 pool between stages).
        embedding_dim: word embedding size m.
        hidden_size: LSTM size n.
        attention_size: hidden width of the additive attention score.
        dropout: dropout on the word embeddings and before the output layer.
        doubly_stochastic: lambda of the penalty sum_i (1 - sum_t alpha_ti)^2.
        entropy_weight: entropy bonus of hard attention's REINFORCE term.
        grad_clip: clip the gradient norm to this.
        beam_size: beam of the test decoding.
        max_len: most words of a decoded caption.
        captions: reference captions per scene (fewer where fewer are true).
        figures: test scenes drawn as the classic figure (a PNG each) per seed-0 model;
            at most examples.
        pretrain_share: share of the budget spent once per run pretraining the CNN to
            name each grid cell's object (class and colour) on the training scenes; the
            models then read its frozen grid with cell coordinates appended
            (:mod:`~attnlab.experiments._scene_features`). 0: each model trains its own
            CNN from the captions (shifted images when augment).
    """

    models: tuple[str, ...] = ("soft", "hard", "none")
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    val_size: int = 1000
    augment: bool = True
    widths: tuple[int, ...] = (8, 16, 32, 64)
    embedding_dim: int = 64
    hidden_size: int = 128
    attention_size: int = 64
    dropout: float = 0.0
    doubly_stochastic: float = 0.1
    entropy_weight: float = 0.01
    grad_clip: float = 5.0
    beam_size: int = 3
    max_len: int = 16
    captions: int = 4
    figures: int = 3
    pretrain_share: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", MODELS)
        checks.at_least(
            self, 1, "embedding_dim", "hidden_size", "attention_size", "beam_size", "captions"
        )
        checks.at_least(self, 0, "doubly_stochastic", "entropy_weight", "figures")
        checks.positive(self, "grad_clip")
        checks.fraction(self, "dropout")
        check_widths(self, CANVAS)
        check_pretrain_share(self)
        if self.max_len < 10:  # "a red bag to the left of a blue sneaker" has 10 words
            raise ValueError(
                f"--max-len must be at least 10 (the longest caption has 10 words), "
                f"got {self.max_len}"
            )


def prepare(cfg: CaptionConfig) -> CaptionData:
    """The train, validation and test scenes from disjoint items, and the training captions."""
    train = load_fashion_mnist("train", data_dir=cfg.data_dir or None)
    test = load_fashion_mnist("test", data_dir=cfg.data_dir or None)
    make = partial(make_scenes, canvas=CANVAS, captions=cfg.captions, questions=0)
    sizes = (cfg.train_size, cfg.val_size, cfg.test_size)
    worlds = scene_splits(train, test, sizes, seed=cfg.world_seed, make=make)
    held = len(train) // 6
    items = (len(train) - held, held, len(test))
    data = CaptionData.build(worlds, scene_vocab(), items, max_len=cfg.max_len)
    seconds, _ = budget_split(cfg)
    if not seconds:
        return data
    trunk = default_trunk(3, cfg.widths, factory_kwargs(None, None))
    pretrained, grids = frozen_grids(
        trunk, worlds, data.prepare, seconds=seconds, seed=cfg.world_seed
    )
    return replace(data, grids=grids, pretrained=pretrained)


def build(cfg: CaptionConfig, name: str, vocab_size: int, grid: int = 0) -> ShowAttendTell:
    """The captioner with attention ``name`` (a key of ``CAPTION_ATTENTIONS``).

    ``grid``: the channels of precomputed grids it reads (:class:`PrecomputedGrid`); 0:
    it reads images through its own CNN of ``cfg.widths``.
    """
    size = grid or cfg.widths[-1]
    attention = CAPTION_ATTENTIONS[name](cfg.hidden_size, size, cfg.attention_size)
    frozen = {"encoder": PrecomputedGrid(grid), "feature_size": grid, "in_channels": grid}
    return ShowAttendTell(
        vocab_size,
        **(frozen if grid else {"in_channels": 3, "image_size": CANVAS, "widths": cfg.widths}),
        attention=attention,
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        attention_size=cfg.attention_size,
        dropout=cfg.dropout,
        doubly_stochastic=cfg.doubly_stochastic,
        entropy_weight=cfg.entropy_weight,
    )


def _fit(
    cfg: CaptionConfig, data: CaptionData, model: ShowAttendTell, name: str, seed: int, run: RunDir
) -> Fitted:
    """Teacher-forced training under the budget; the best epoch by greedy validation BLEU-4."""
    device = next(model.parameters()).device
    _, budget = budget_split(cfg)
    val = data.worlds.val

    def step(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        inputs, ids = batch
        ids = ids.to(device)
        terms = model.loss_terms(inputs.to(device), ids[:, :-1], ids[:, 1:])
        n = len(ids)
        return terms.total, {
            "loss": terms.total.detach() * n,
            "cross_entropy": terms.cross_entropy.detach() * n,
            "penalty": terms.doubly_stochastic.detach() * n,
            "count": n,
        }

    def summarize(sums: dict[str, Any]) -> dict[str, float]:
        n = sums["count"]
        return {k: float(sums[k]) / n for k in ("loss", "cross_entropy", "penalty")}

    def validate() -> dict[str, float]:
        hyps = decode(model, data, "val", beam_size=1, max_len=cfg.max_len, need_weights=False)
        texts = [caption_text(data.vocab, h.tokens) for h in hyps]
        return {"val_bleu": reference_bleu(texts, references(val))}

    config = {"model": name, "seed": seed, "budget_seconds": budget, **asdict(cfg)}
    return fit_budgeted(
        model,
        cfg,
        batches=lambda epoch: caption_batches(
            data, cfg.batch_size, seed=seed, epoch=epoch, augmented=cfg.augment
        ),
        steps_per_epoch=math.ceil(int((data.counts > 0).sum()) / cfg.batch_size),
        step=step,
        validate=validate,
        monitor="bleu",
        summarize=summarize,
        grad_clip=cfg.grad_clip,
        budget_seconds=budget,
        checkpoint_dir=run.checkpoints / name / f"seed{seed}",
        config=config,
        desc=f"{name} seed {seed}",
    )


def train_one(
    cfg: CaptionConfig, data: CaptionData, name: str, seed: int, run: RunDir
) -> SeedResult:
    """Train one captioner under one seed, score its test captions, draw seed 0's."""
    seed_everything(seed)
    grid = 0 if data.grids is None else data.grids["train"].shape[1]
    model = build(cfg, name, len(data.vocab), grid).to(cfg.torch_device())
    fitted = _fit(cfg, data, model, name, seed, run)
    model.eval()
    test = data.worlds.test
    hyps = decode(
        model, data, "test", beam_size=cfg.beam_size, max_len=cfg.max_len, need_weights=True
    )
    metrics = score_captions(hyps, test, data.vocab, canvas=CANVAS)
    nouns = metrics.pop("grounded_nouns")
    metrics["seconds_per_epoch"] = fitted.seconds_per_epoch
    n = min(cfg.examples, len(test))
    pictures: list[str] = []
    samples = [caption_text(data.vocab, h.tokens) for h in hyps[:n]]
    if seed == 0 and n and name != "none":
        pictures = draw_captions(hyps[:n], test, data.vocab, name, run.path, figures=cfg.figures)
        keep_maps(run, name, noun_maps(hyps[:n], data.vocab))
    return SeedResult(
        metrics=metrics,
        parameters=count_parameters(model),
        seconds=fitted.seconds,
        pictures=pictures,
        extra={
            **fitted.extras("bleu"),
            "grounded_nouns": int(nouns),
            "samples": samples,
        },
        note=fitted.note,
    )


def run(cfg: CaptionConfig, run_dir: RunDir) -> Outcome[CaptionData]:
    """Train every captioner over every seed; draw seed 0's figures and the page."""
    data = prepare(cfg)
    results = train_models(
        cfg.models,
        cfg.seeds,
        lambda name, seed: train_one(cfg, data, name, seed, run_dir),
        run_dir,
        recorded=("epochs", "best_epoch", "stopped_by", "val_bleu", "grounded_nouns", "samples"),
    )
    n = min(cfg.examples, len(data.worlds.test))
    if n:
        test = data.worlds.test
        said = {r.model: r.extra["samples_runs"][0] for r in results}
        labels = [
            "; ".join([test.captions[i][0].text] + [f"{m} says: {s[i]}" for m, s in said.items()])
            for i in range(n)
        ]
        title = "caption: where each captioner looks at the nouns it writes (test scenes)"
        write_page(run_dir, cfg.models, test.images[:n], labels, title=title)
    return Outcome(results, data)


def _mean(r: ModelResult, key: str) -> dict[str, float]:
    return summarise(r.metrics[key])


def _goal(results: Sequence[ModelResult]) -> list[str]:
    """The goals: soft grounding >= 0.6; soft BLEU-4 above none's by more than one std."""
    by = {r.model: r for r in results}
    if "soft" not in by:
        return []
    soft, lines = by["soft"], []
    g, u = _mean(soft, "grounding"), _mean(soft, "grounding_uniform")
    reached = "reached" if g["mean"] >= 0.6 else "not reached"
    lines.append(
        f"Goal 1: soft attention's grounding at least 0.6. Measured: {g['mean']:.3f} ± "
        f"{g['std']:.3f} (uniform {u['mean']:.3f}): {reached}."
    )
    if "none" in by:
        s, b = _mean(soft, "test_bleu"), _mean(by["none"], "test_bleu")
        margin = s["mean"] - b["mean"]
        reached = "reached" if margin > max(s["std"], b["std"]) else "not reached"
        lines.append(
            f"Goal 2: soft attention's BLEU-4 above the no-attention baseline's by more than "
            f"one standard deviation. Measured: {s['mean']:.2f} ± {s['std']:.2f} against "
            f"{b['mean']:.2f} ± {b['std']:.2f} (margin {margin:.2f}): {reached}."
        )
    return [*lines, ""]


def _report(cfg: CaptionConfig, outcome: Outcome[CaptionData], run_dir: RunDir) -> str:
    data, results = outcome.data, outcome.results
    assert data is not None
    w, items = data.worlds, data.items
    _, budget = budget_split(cfg)
    refs = sum(len(c) for c in w.test.captions) / len(w.test)
    lines = [
        "",
        f"Scenes: {CANVAS}x{CANVAS} RGB canvases of 2 to 4 tinted Fashion-MNIST items; "
        f"{len(w.train):,} training scenes ({items[0]:,} training items), {len(w.val):,} "
        f"validation ({items[1]:,} held-out items), {len(w.test):,} test ({items[2]:,} test "
        f"items; every test scene holds a class-colour pair never seen in training), "
        f"{refs:.2f} reference captions per test scene.",
        "",
        f"Scores on the test scenes after beam search (beam {cfg.beam_size}): test_bleu is "
        "sacreBLEU BLEU-4 (default settings) against all references of each scene; "
        "exact match: the caption is one of them; true caption: the caption is true of the "
        "scene. Grounding: at each generated noun naming one object, the share of that "
        "word's attention inside the object's box, mean over nouns; grounding_uniform is a "
        "uniform map's share of the same boxes (the no-attention model scores it).",
        "",
        *_goal(results),
        encoder_line(data.pretrained),
        "",
        f"Recipe: CNN widths {'-'.join(map(str, cfg.widths))}, embedding "
        f"{cfg.embedding_dim}, LSTM {cfg.hidden_size}, attention {cfg.attention_size}; "
        f"lambda {cfg.doubly_stochastic:g}; AdamW (rate {cfg.lr:g}), batch {cfg.batch_size}, "
        f"clip {cfg.grad_clip:g}; {budget:.0f} s of training and validation per (model, "
        f"seed) on {torch.get_num_threads()} thread(s) "
        f"({TRAINING_SHARE - cfg.pretrain_share:.0%} of {cfg.budget_minutes:g} min "
        f"over {len(cfg.models) * cfg.seeds} runs).",
        "",
        "| model | epochs | best epoch | validation BLEU-4 | nouns scored | seed-0 captions |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r.extra
        runs = "/".join
        samples = "; ".join(f"“{s}”" for s in e["samples_runs"][0][:2])
        lines.append(
            f"| {r.model} | {runs(map(str, e['epochs_runs']))} | "
            f"{runs(map(str, e['best_epoch_runs']))} | "
            f"{runs(f'{v:.1f}' for v in e['val_bleu_runs'])} | "
            f"{runs(map(str, e['grounded_nouns_runs']))} | {samples} |"
        )
    lines.append("")
    for r in results:
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])]
    if (run_dir.path / PAGE).is_file():
        lines += ["", f"- [test scenes with each model's attention at its nouns]({PAGE})"]
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="caption",
        description="Show, Attend and Tell on scenes: BLEU-4 and grounding, soft/hard/none",
        config=CaptionConfig,
        run=run,
        dataset=lambda cfg: "fashion-mnist-scenes",
        report=_report,
    )
)
