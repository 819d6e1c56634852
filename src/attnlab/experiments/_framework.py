"""Experiment specs, the registry, and :func:`run_experiment`, which writes every run's files.

An experiment module defines a frozen Config dataclass and a ``run(config, run_dir)``
that returns one :class:`ModelResult` per model, then registers an
:class:`ExperimentSpec`. Everything around it (the output folder, resuming, the
``results.json`` shape, the report table, the environment) is done here, once.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnlab.bench.harness import environment
from attnlab.experiments._fields import command_line, config_fields
from attnlab.experiments._report import results_entries, results_table
from attnlab.experiments._rundir import RunDir

__all__ = [
    "BUILTIN",
    "EXPERIMENTS",
    "ExperimentSpec",
    "ModelResult",
    "RunDir",
    "available",
    "get_experiment",
    "register",
    "run_experiment",
]

# Modules that register the shipped experiments when imported; see `_load_builtin`.
BUILTIN: tuple[str, ...] = (
    "attnlab.experiments.gat",
    "attnlab.experiments.han",
    "attnlab.experiments.minilm",
    "attnlab.experiments.sentiment",
    "attnlab.experiments.translate",
)

_RESERVED = ("model", "metrics", "parameters", "seconds")


@dataclass
class ModelResult:
    """What one model achieved over the seeds of a run.

    Attributes:
        model: The model's name as shown in the report.
        metrics: Metric name (spelled out: ``test_accuracy``, ``perplexity``) to one
            value per seed; accuracies as fractions in [0, 1].
        parameters: Trainable parameter count.
        seconds: Mean wall-clock seconds per seed.
        extra: More JSON-ready fields for this model's entry in ``results.json``.
    """

    model: str
    metrics: dict[str, list[float]]
    parameters: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        empty = [name for name, runs in self.metrics.items() if len(runs) == 0]
        if empty:
            raise ValueError(
                f"model {self.model!r}: metric {empty[0]!r} has no runs; give one value per seed"
            )
        clash = [k for k in self.extra if k in _RESERVED]
        if clash:
            raise ValueError(f"model {self.model!r}: extra key {clash[0]!r} is reserved; rename it")


@dataclass(frozen=True)
class ExperimentSpec:
    """A reproducible experiment as the framework and the CLI see it.

    Attributes:
        name: Command-line name (``attnlab run NAME``): lowercase letters, digits, ``-``, ``_``.
        description: One line for ``attnlab list``.
        config: The frozen Config dataclass class; the CLI derives one flag per field.
        run: ``run(config, run_dir)`` trains and evaluates, returning one result per model.
            It writes pictures into ``run_dir.path`` and checkpoints under
            ``run_dir.checkpoints`` so that an interrupted run can be resumed.
        dataset: ``dataset(config)`` names the dataset for ``results.json``.
        report: Optional ``report(config, results, run_dir)`` returning markdown that is
            appended to ``report.md`` (figures, notes).
        explain: Optional ``explain(config, run_folder, text)`` returning the
            :class:`~attnlab.interpret.explain.AttentionTrace` of one sentence through the
            run's trained model (``attnlab explain TEXT --model RUN_FOLDER``).
    """

    name: str
    description: str
    config: type
    run: Callable[[Any, RunDir], list[ModelResult]]
    dataset: Callable[[Any], str]
    report: Callable[[Any, list[ModelResult], RunDir], str] | None = None
    explain: Callable[[Any, Path, str], Any] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError(
                f"experiment name {self.name!r} must be lowercase letters, digits, "
                "'-' or '_', starting with a letter"
            )
        params = getattr(self.config, "__dataclass_params__", None)
        if not isinstance(self.config, type) or params is None or not params.frozen:
            raise TypeError(
                f"experiment {self.name!r}: config must be a frozen dataclass "
                f"class, got {self.config!r}"
            )
        config_fields(self.config)  # fail at registration if the CLI cannot express a field


EXPERIMENTS: dict[str, ExperimentSpec] = {}


def register(spec: ExperimentSpec) -> ExperimentSpec:
    """Add an experiment to :data:`EXPERIMENTS`.

    Args:
        spec: The experiment.

    Returns:
        ``spec``, so a module can write ``SPEC = register(ExperimentSpec(...))``.

    Raises:
        ValueError: If another experiment already has this name.
    """
    existing = EXPERIMENTS.get(spec.name)
    if existing is not None and existing is not spec:
        raise ValueError(
            f"an experiment named {spec.name!r} is already registered; pick another name"
        )
    EXPERIMENTS[spec.name] = spec
    return spec


def _load_builtin() -> None:
    """Import the shipped experiment modules, which register themselves.

    A module that does not exist (yet) is skipped; any other import error, including a
    missing dependency inside an existing module, propagates.
    """
    for module in BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def available() -> dict[str, ExperimentSpec]:
    """Every experiment, the shipped ones loaded.

    Returns:
        Name to spec, sorted by name.
    """
    _load_builtin()
    return dict(sorted(EXPERIMENTS.items()))


def get_experiment(name: str) -> ExperimentSpec:
    """Look up an experiment by name.

    Args:
        name: The registered name.

    Returns:
        The experiment's spec.

    Raises:
        ValueError: If no experiment has this name.
    """
    experiments = available()
    if name not in experiments:
        names = ", ".join(experiments) or "none"
        raise ValueError(f"unknown experiment {name!r}; available: {names} (see `attnlab list`)")
    return experiments[name]


def _device(config: Any) -> str:
    device = str(getattr(config, "device", "auto"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _environment(config: Any) -> dict[str, Any]:
    env = environment(device=_device(config))
    return {key: env[key] for key in ("torch", "python", "threads", "device", "commit")}


def _check_results(name: str, results: Any) -> list[ModelResult]:
    if not isinstance(results, list) or not results:
        raise TypeError(
            f"experiment {name!r} returned {type(results).__name__}; "
            "run() must return a non-empty list of ModelResult"
        )
    bad = [r for r in results if not isinstance(r, ModelResult)]
    if bad:
        raise TypeError(
            f"experiment {name!r} returned a {type(bad[0]).__name__}; "
            "run() must return ModelResult items"
        )
    return results


def _report_md(spec: ExperimentSpec, command: str, table: str, extra: str) -> str:
    parts = [
        f"# {spec.name}: {spec.description}",
        "",
        "Reproduce with:",
        "",
        "```bash",
        command,
        "```",
        "",
        table.rstrip("\n"),
    ]
    if extra.strip():
        parts += ["", extra.strip()]
    return "\n".join(parts) + "\n"


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
        results = _check_results(name, spec.run(config, run))
        entries = results_entries(results)
        document = {
            "experiment": name,
            "dataset": spec.dataset(config),
            "config": config_dict,
            "environment": env,
            "command": command,
            "results": entries,
        }
        table = results_table(entries)
        extra = spec.report(config, results, run) if spec.report is not None else ""
        path = run.finish(document, _report_md(spec, command, table, extra))
    except BaseException:
        run.abandon()
        raise
    print(table, end="")
    return path
