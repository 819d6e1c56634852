"""Reproducible experiments: a frozen Config dataclass and a run function per experiment.

Each experiment lives in its own module (``attnlab.experiments.sentiment``) and
registers an :class:`ExperimentSpec`. Its ``run`` prepares the data and hands
:func:`run_models` a ``train_one(model, seed)``; the loop over models and seeds, the
progress lines and the per-seed records are the framework's. :func:`run_experiment`
(and ``attnlab run NAME``) opens the output folder, runs it and writes
``results.json`` and ``report.md`` in one stable shape. Configs share typed settings
by inheriting them (:class:`TrainingSettings`). The shipped experiments are imported on
first lookup (:func:`get_experiment`, :func:`available`), so :data:`EXPERIMENTS` alone
lists only those registered so far.

Example:
    >>> from attnlab.experiments import available
    >>> sorted(available())  # doctest: +SKIP
    ['gat', 'han', 'minilm-sentiment', 'sentiment', 'translate']
"""

from attnlab.experiments._fields import FieldFlag, command_line, config_fields
from attnlab.experiments._framework import record_path, run_experiment, run_models
from attnlab.experiments._registry import (
    BUILTIN,
    EXPERIMENTS,
    ExperimentSpec,
    available,
    get_experiment,
    register,
)
from attnlab.experiments._results import ModelResult, Outcome, SeedResult, count_parameters
from attnlab.experiments._rundir import RunDir
from attnlab.experiments._settings import EarlyStopping, TrainingSettings

__all__ = [
    "BUILTIN",
    "EXPERIMENTS",
    "EarlyStopping",
    "ExperimentSpec",
    "FieldFlag",
    "ModelResult",
    "Outcome",
    "RunDir",
    "SeedResult",
    "TrainingSettings",
    "available",
    "command_line",
    "config_fields",
    "count_parameters",
    "get_experiment",
    "record_path",
    "register",
    "run_experiment",
    "run_models",
]
