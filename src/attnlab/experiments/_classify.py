"""Train one classifier for one seed and score it on the test split (shared by experiments).

:func:`fit_and_score` is the ``train_one`` core of the sentence and document classifier
experiments; :func:`draw_text_attention` draws their attention over tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from attnlab.experiments._results import SeedResult, count_parameters
from attnlab.experiments._rundir import RunDir
from attnlab.experiments._settings import EarlyStopping, TrainingSettings
from attnlab.interpret import TextAttentionExample, plot_token_weights, write_highlight_html
from attnlab.train import evaluate, fit, load_checkpoint
from attnlab.train.schedules import SchedulerArg

__all__ = ["LengthBatches", "draw_text_attention", "fit_and_score"]

Loaders = tuple[Iterable[Any], Iterable[Any], Iterable[Any]]


def fit_and_score(
    model: nn.Module,
    loaders: Loaders,
    training: TrainingSettings,
    *,
    model_name: str,
    seed: int,
    run: RunDir,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: SchedulerArg = None,
    epochs: int | None = None,
    grad_clip: float = 5.0,
) -> SeedResult:
    """Train resumably, with early stopping where the settings have a patience; test the best.

    The model is left holding the best epoch's weights.

    Args:
        model: The classifier, freshly built under ``seed``.
        loaders: ``(train, val, test)``.
        training: The experiment's Config: ``monitor``, and unless given below, ``lr`` and
            ``weight_decay`` (for Adam) and ``epochs``; an :class:`EarlyStopping` Config
            also stops after ``patience`` epochs without improvement. The whole Config is
            recorded in the checkpoints, so a resumed seed is never mixed with another.
        model_name: Names the checkpoint folder and the progress bar.
        seed: The run's seed.
        run: The run folder; checkpoints go under ``run.checkpoints/model/seedN``.
        optimizer: Replaces Adam (e.g. with per-part learning rates).
        lr_scheduler: Learning-rate schedule(s) of ``optimizer``, saved with the checkpoints.
        epochs: Replaces ``training.epochs``.
        grad_clip: Gradient-norm clipping.

    Returns:
        The test accuracy (``test_accuracy``), the trainable parameter count and the
        training seconds.
    """
    train, val, test = loaders
    if optimizer is None:
        optimizer = torch.optim.Adam(
            model.parameters(), lr=training.lr, weight_decay=training.weight_decay
        )
    ckpt = run.checkpoints / model_name / f"seed{seed}"
    config = {"model": model_name, "seed": seed, **asdict(training)}
    start = time.perf_counter()
    result = fit(
        model,
        train,
        val,
        optimizer=optimizer,
        epochs=training.epochs if epochs is None else epochs,
        patience=training.patience if isinstance(training, EarlyStopping) else None,
        monitor=training.monitor,
        checkpoint_dir=ckpt,
        resume=True,
        grad_clip=grad_clip,
        lr_scheduler=lr_scheduler,
        desc=f"{model_name} seed {seed}",
        config=config,
    )
    # The best epoch's weights, also when this seed had finished before a --resume; a
    # best/ that another run (another config) left there is refused, never mixed in.
    load_checkpoint(ckpt / "best", model=model, config=config)
    accuracy = evaluate(model, test)["accuracy"]
    return SeedResult(
        metrics={"test_accuracy": accuracy},
        parameters=count_parameters(model),
        seconds=result.seconds or (time.perf_counter() - start),
        note=f"best epoch {result.best_epoch} of {result.epochs_run}",
    )


class LengthBatches(Sampler[list[int]]):
    """Shuffled batches of examples of similar length, so little compute goes to padding.

    Each epoch: a random order (:meth:`order`), cut into pools of ``pool`` batches, each
    pool sorted by length and cut into batches, then the batches shuffled; every draw
    comes from ``generator``.

    Args:
        lengths: The length of each example ``(N,)``.
        batch_size: Examples per batch.
        generator: The source of every random draw (so a resumed run replays it).
        pool: Batches per pool that are sorted together.
    """

    def __init__(
        self, lengths: Tensor, batch_size: int, generator: torch.Generator, *, pool: int = 16
    ) -> None:
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator
        self.pool = pool

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def order(self) -> Tensor:
        """This epoch's random order of the examples."""
        return torch.randperm(len(self.lengths), generator=self.generator)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        batches, pool = [], self.pool * self.batch_size
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [batch.tolist() for batch in chunk.split(self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def draw_text_attention(
    tokens: Sequence[list[str]],
    weights: Tensor,
    logits: Tensor,
    labels: Tensor,
    classes: Sequence[str],
    out: Path,
    *,
    name: str,
    title: str,
    page_title: str,
) -> list[str]:
    """A bar picture and a highlight page of a classifier's attention over tokens.

    Args:
        tokens: The tokens of each example (as many as it has weights to show).
        weights: Attention over tokens ``(N, L)``, ``L`` at least the longest example.
        logits: The classifier's scores ``(N, C)``.
        labels: The true classes ``(N,)``.
        classes: Class names.
        out: The folder to draw into.
        name: Names the files: ``attention_{name}.png`` and ``.html``.
        title: The picture's title.
        page_title: The page's title.

    Returns:
        The names of the two files.
    """
    probs = logits.softmax(-1).cpu()
    rows, examples = [], []
    for i, words in enumerate(tokens):
        pred, true = int(probs[i].argmax()), classes[int(labels[i])]
        caption = f"true: {true}, predicted: {classes[pred]} ({float(probs[i, pred]):.2f})"
        w = weights[i, : len(words)].tolist()
        rows.append((words, w, caption))
        examples.append(TextAttentionExample(words, w, caption, true))
    png = plot_token_weights(rows, out / f"attention_{name}.png", title)
    page = write_highlight_html(examples, out / f"attention_{name}.html", title=page_title)
    return [png.name, page.name]
