"""The experiment loop, :func:`run_models`, and :func:`run_experiment`, which writes the files.

An experiment prepares its data, then calls :func:`run_models` with a
``train_one(model, seed)`` that builds, trains and scores one model under one seed.
The loop, its progress lines, the timing, the per-seed records that let ``--resume``
skip finished seeds, and the gathering of seeds into one :class:`ModelResult` per
model are written here, once. Everything around a run (the output folder, resuming,
the ``results.json`` shape, the report table, the environment) is done by
:func:`run_experiment`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from attnlab.bench.harness import environment
from attnlab.experiments._fields import command_line
from attnlab.experiments._registry import get_experiment
from attnlab.experiments._report import format_metric, report_md, results_entries, results_table
from attnlab.experiments._results import ModelResult, Outcome, SeedResult
from attnlab.experiments._rundir import RunDir, write_atomic

__all__ = ["TrainOne", "Summary", "record_path", "run_experiment", "run_models"]

TrainOne = Callable[[str, int], SeedResult]
"""``train_one(model, seed)``: build, train and score one model under one seed."""

Summary = Callable[[str, list[SeedResult]], dict[str, Any]]
"""``summary(model, seed_results)``: the model's extra ``results.json`` fields."""


def record_path(run: RunDir, model: str, seed: int) -> Path:
    """Where :func:`run_models` keeps the record of a finished (model, seed)."""
    return run.checkpoints / model / f"seed{seed}.json"


def _recorded(run: RunDir | None, model: str, seed: int) -> SeedResult | None:
    """The record of a seed finished before an interruption, if it is complete.

    A record whose pictures are missing, or that this version cannot read, is ignored,
    so the seed is trained (and drawn) again.
    """
    if run is None or not (path := record_path(run, model, seed)).is_file():
        return None
    try:
        record = SeedResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as err:  # JSONDecodeError included
        print(f"attnlab: {path} is unreadable ({err}); training again", file=sys.stderr)
        return None
    if not all((run.path / picture).is_file() for picture in record.pictures):
        return None
    return record


def _progress(model: str, seed: int, result: SeedResult, recorded: bool) -> None:
    scores = ", ".join(f"{name} {format_metric(name, v)}" for name, v in result.metrics.items())
    notes = [result.note] if result.note else []
    notes.append("recorded before" if recorded else f"{result.seconds:.1f} s")
    tqdm.write(f"{model} seed {seed}: {scores} ({', '.join(notes)})")


def _one_seed(train_one: TrainOne, model: str, seed: int, run: RunDir | None) -> SeedResult:
    recorded = _recorded(run, model, seed)
    if recorded is not None:
        _progress(model, seed, recorded, recorded=True)
        return recorded
    start = time.perf_counter()
    result = train_one(model, seed)
    if not isinstance(result, SeedResult):
        raise TypeError(
            f"train_one({model!r}, {seed}) returned {type(result).__name__}; return a SeedResult"
        )
    if result.seconds is None:
        result = dataclasses.replace(result, seconds=time.perf_counter() - start)
    if run is not None:
        path = record_path(run, model, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(result.to_json(), indent=1) + "\n")
    _progress(model, seed, result, recorded=False)
    return result


def _gather(model: str, runs: list[SeedResult], summary: Summary | None) -> ModelResult:
    names = list(runs[0].metrics)
    odd = [r for r in runs if list(r.metrics) != names]
    if odd:
        raise ValueError(
            f"model {model!r}: seeds report different metrics ({names} and "
            f"{list(odd[0].metrics)}); give every seed the same ones"
        )
    extra = dict(summary(model, runs)) if summary is not None else {}
    pictures = [picture for r in runs for picture in r.pictures]
    if pictures:
        extra["pictures"] = pictures
    seconds = [float(r.seconds or 0.0) for r in runs]
    return ModelResult(
        model=model,
        metrics={name: [r.metrics[name] for r in runs] for name in names},
        parameters=runs[-1].parameters,
        seconds=sum(seconds) / len(seconds),
        extra=extra,
    )


def run_models(
    models: Sequence[str],
    seeds: Iterable[int],
    train_one: TrainOne,
    *,
    records: RunDir | None = None,
    summary: Summary | None = None,
) -> list[ModelResult]:
    """Train every model under every seed: the loop every experiment shares.

    Each (model, seed) is trained by ``train_one``, timed, and reported in one progress
    line; the seeds of a model become one :class:`ModelResult` (one value per seed for
    each metric, the mean seconds, the last seed's parameter count, every seed's pictures
    under ``"pictures"``, and ``summary``'s fields).

    Args:
        models: The model names, in the order of the table.
        seeds: The seeds each model trains under.
        train_one: ``train_one(model, seed) -> SeedResult``; it seeds, builds, trains,
            scores and draws. Its own checkpoints (under ``run.checkpoints``) make an
            interrupted seed resumable.
        records: The run folder in which to keep one record per finished seed
            (:func:`record_path`); a resumed run reads them back instead of training
            again. None keeps none (the experiment resumes through its own checkpoints).
        summary: ``summary(model, seed_results)`` gives the model's extra
            ``results.json`` fields (e.g. per-seed best epochs); None gives none.

    Returns:
        One result per model, in ``models`` order.

    Raises:
        TypeError: If ``train_one`` returns something other than a :class:`SeedResult`.
        ValueError: If ``seeds`` is empty or the seeds of a model report different metrics.

    Example:
        >>> def train_one(model, seed):
        ...     return SeedResult({"test_accuracy": 0.5 + seed / 10}, parameters=10)
        >>> [r.metrics for r in run_models(["a"], [0, 1], train_one)]  # doctest: +SKIP
        [{'test_accuracy': [0.5, 0.6]}]
    """
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("run_models needs at least one seed")
    results = []
    for model in models:
        runs = [_one_seed(train_one, model, seed, records) for seed in seeds]
        results.append(_gather(model, runs, summary))
    return results


def _device(config: Any) -> str:
    device = str(getattr(config, "device", "auto"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _environment(config: Any) -> dict[str, Any]:
    env = environment(device=_device(config))
    return {key: env[key] for key in ("torch", "python", "threads", "device", "commit")}


def _outcome(name: str, returned: Any) -> Outcome[Any]:
    """What ``run`` returned, as an :class:`Outcome` with a non-empty list of results."""
    outcome = returned if isinstance(returned, Outcome) else Outcome(returned)
    results = outcome.results
    if not isinstance(results, list) or not results:
        raise TypeError(
            f"experiment {name!r} returned {type(results).__name__}; "
            "run() must return an Outcome or a non-empty list of ModelResult"
        )
    bad = [r for r in results if not isinstance(r, ModelResult)]
    if bad:
        raise TypeError(
            f"experiment {name!r} returned a {type(bad[0]).__name__}; "
            "run() must return ModelResult items"
        )
    return outcome


def run_experiment(
    name: str,
    config: Any = None,
    *,
    out: Path | str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Run a registered experiment and write ``results.json`` and ``report.md``.

    Args:
        name: The experiment name.
        config: An instance of the experiment's Config; None means its defaults.
        out: The run folder; None means ``runs/<name>/<YYYYmmdd-HHMMSS>``.
        resume: Continue the unfinished run in ``out``.
        overwrite: Replace the run in ``out`` once this one finishes.
        command: The command recorded as reproducing the run; by default the
            ``attnlab run`` command line equivalent to ``config``.

    Returns:
        The finished run folder.

    Raises:
        ValueError: Unknown experiment, conflicting flags, or a resume that does not match.
        TypeError: If ``config`` is not the experiment's Config.
        FileExistsError: If ``out`` holds a run these flags do not allow touching.

    Example:
        >>> run_experiment("sentiment", out="runs/demo", overwrite=True)  # doctest: +SKIP
    """
    spec = get_experiment(name)
    config = spec.config() if config is None else config
    if not isinstance(config, spec.config):
        raise TypeError(
            f"experiment {name!r} takes a {spec.config.__name__}, got {type(config).__name__}"
        )
    command = command or command_line(name, config)
    config_dict = dataclasses.asdict(config)
    env = _environment(config)
    run = RunDir.open(out, name, resume=resume, overwrite=overwrite)
    try:
        run.begin(name, config_dict)
        outcome = _outcome(name, spec.run(config, run))
        entries = results_entries(outcome.results)
        document = {
            "experiment": name,
            "dataset": spec.dataset(config),
            "config": config_dict,
            "environment": env,
            "command": command,
            "results": entries,
        }
        table = results_table(entries)
        extra = spec.report(config, outcome, run) if spec.report is not None else ""
        title = f"{spec.name}: {spec.description}"
        path = run.finish(document, report_md(title, command, table, extra))
    except BaseException:
        run.abandon()
        raise
    print(table, end="")
    return path
