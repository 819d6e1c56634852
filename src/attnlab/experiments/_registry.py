"""The registry of experiments: :class:`ExperimentSpec`, :func:`register` and the lookups.

An experiment module defines a frozen Config dataclass and a ``run(config, run_dir)``,
then registers an :class:`ExperimentSpec`; ``attnlab run NAME`` and ``attnlab list``
find it here. The shipped experiments are imported on first lookup (:func:`available`,
:func:`get_experiment`), so :data:`EXPERIMENTS` alone lists only those registered so far.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnlab.experiments._fields import config_fields

if TYPE_CHECKING:
    from attnlab.experiments._results import ModelResult, Outcome
    from attnlab.experiments._rundir import RunDir

__all__ = ["BUILTIN", "EXPERIMENTS", "ExperimentSpec", "available", "get_experiment", "register"]

# Modules that register the shipped experiments when imported; see `_load_builtin`.
BUILTIN: tuple[str, ...] = (
    "attnlab.experiments.caption",
    "attnlab.experiments.clutter",
    "attnlab.experiments.draw",
    "attnlab.experiments.gat",
    "attnlab.experiments.han",
    "attnlab.experiments.image_classify",
    "attnlab.experiments.minilm",
    "attnlab.experiments.same_different",
    "attnlab.experiments.segment",
    "attnlab.experiments.sentiment",
    "attnlab.experiments.translate",
    "attnlab.experiments.vqa",
)


@dataclass(frozen=True)
class ExperimentSpec:
    """A reproducible experiment as the framework and the CLI see it.

    Attributes:
        name: Command-line name (``attnlab run NAME``): lowercase letters, digits, ``-``, ``_``.
        description: One line for ``attnlab list``.
        config: The frozen Config dataclass class; the CLI derives one flag per field.
        run: ``run(config, run_dir)`` trains and evaluates, returning an
            :class:`~attnlab.experiments.Outcome` (the results, one per model, and the
            data the report reads) or just the list of results. It writes pictures into
            ``run_dir.path`` and checkpoints under ``run_dir.checkpoints`` so that an
            interrupted run can be resumed; the models x seeds loop is
            :func:`~attnlab.experiments.run_models`.
        dataset: ``dataset(config)`` names the dataset for ``results.json``.
        report: Optional ``report(config, outcome, run_dir)`` returning markdown that is
            appended to ``report.md`` (figures, notes); ``outcome`` is what ``run`` returned.
        explain: Optional ``explain(config, run_folder, text)`` returning the
            :class:`~attnlab.interpret.explain.AttentionTrace` of one sentence through the
            run's trained model (``attnlab explain TEXT --model RUN_FOLDER``).
        explain_image: Optional ``explain_image(config, run_folder, image, out)``: draws
            what the run's trained models attend to in one image (``image`` is a test
            index or a PNG path, as typed after ``attnlab explain --image``) into the new
            folder ``out``, and returns the paths written.
    """

    name: str
    description: str
    config: type
    run: Callable[[Any, RunDir], list[ModelResult] | Outcome[Any]]
    dataset: Callable[[Any], str]
    report: Callable[[Any, Outcome[Any], RunDir], str] | None = None
    explain: Callable[[Any, Path, str], Any] | None = None
    explain_image: Callable[[Any, Path, str, Path], list[Path]] | None = None

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
