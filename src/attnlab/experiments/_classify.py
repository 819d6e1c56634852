"""Train one classifier for one seed and score it on the test split (shared by experiments)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from attnlab.experiments._rundir import RunDir
from attnlab.train import evaluate, fit, load_checkpoint


def fit_and_test(
    model: nn.Module,
    loaders: tuple[Iterable[Any], Iterable[Any], Iterable[Any]],
    cfg: Any,
    *,
    model_name: str,
    seed: int,
    run: RunDir,
    optimizer: torch.optim.Optimizer | None = None,
    epochs: int | None = None,
    grad_clip: float = 5.0,
) -> tuple[float, float]:
    """Train with early stopping, resumably; return the best epoch's test accuracy.

    The model is left holding the best epoch's weights.

    Args:
        model: the classifier, freshly built under ``seed``.
        loaders: ``(train, val, test)``.
        cfg: the experiment's Config, with ``monitor`` and, unless given below, ``lr``
            and ``weight_decay`` (for Adam) and ``epochs``; ``patience`` if it has one.
        model_name: names the checkpoint folder and the progress bar.
        seed: the run's seed.
        run: the run folder; checkpoints go under ``run.checkpoints/model/seedN``.
        optimizer: replaces Adam (e.g. with a learning-rate schedule of its own).
        epochs: replaces ``cfg.epochs``.
        grad_clip: gradient-norm clipping.

    Returns:
        ``(test accuracy, training seconds)``.
    """
    train, val, test = loaders
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = run.checkpoints / model_name / f"seed{seed}"
    config = {"model": model_name, "seed": seed, **asdict(cfg)}
    start = time.perf_counter()
    result = fit(
        model,
        train,
        val,
        optimizer=optimizer,
        epochs=cfg.epochs if epochs is None else epochs,
        patience=getattr(cfg, "patience", None),
        monitor=cfg.monitor,
        checkpoint_dir=ckpt,
        resume=True,
        grad_clip=grad_clip,
        desc=f"{model_name} seed {seed}",
        config=config,
    )
    # The best epoch's weights, also when this seed had finished before a --resume; a
    # best/ that another run (another config) left there is refused, never mixed in.
    load_checkpoint(ckpt / "best", model=model, config=config)
    accuracy = evaluate(model, test)["accuracy"]
    tqdm.write(
        f"{model_name} seed {seed}: test accuracy {100 * accuracy:.2f}% "
        f"(best epoch {result.best_epoch} of {result.epochs_run})"
    )
    return accuracy, result.seconds or (time.perf_counter() - start)
