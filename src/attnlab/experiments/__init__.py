"""Reproducible experiments: a frozen Config dataclass and a run function per experiment.

Each experiment lives in its own module (``attnlab.experiments.sentiment``) and
registers an :class:`ExperimentSpec`. :func:`run_experiment` (and ``attnlab run NAME``)
opens the output folder, runs it and writes ``results.json`` and ``report.md`` in one
stable shape. The shipped experiments are imported on first lookup
(:func:`get_experiment`, :func:`available`), so :data:`EXPERIMENTS` alone lists only
those registered so far.

Example:
    >>> from attnlab.experiments import available
    >>> sorted(available())  # doctest: +SKIP
    ['sentiment']
"""

from attnlab.experiments._fields import FieldFlag, command_line, config_fields
from attnlab.experiments._framework import (
    BUILTIN,
    EXPERIMENTS,
    ExperimentSpec,
    ModelResult,
    available,
    get_experiment,
    register,
    run_experiment,
)
from attnlab.experiments._rundir import RunDir

__all__ = [
    "BUILTIN",
    "EXPERIMENTS",
    "ExperimentSpec",
    "FieldFlag",
    "ModelResult",
    "RunDir",
    "available",
    "command_line",
    "config_fields",
    "get_experiment",
    "register",
    "run_experiment",
]
