"""What experiments hand back: seed results, model results, and the outcome of a run.

One :class:`SeedResult` per (model, seed), one :class:`ModelResult` per model, and an
:class:`Outcome` carrying the results and what the report reads besides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from torch import nn

__all__ = ["ModelResult", "Outcome", "SeedResult", "count_parameters"]

_RESERVED = ("model", "metrics", "parameters", "seconds")

D = TypeVar("D")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model`` (frozen ones, such as a probed encoder's, excluded).

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
class SeedResult:
    """What one model achieved under one seed: one step of the experiment loop.

    ``train_one(model, seed)`` returns it to
    :func:`~attnlab.experiments._framework.run_models`, which prints it, records it
    (when the run keeps records) and gathers the seeds into a :class:`ModelResult`.

    Attributes:
        metrics: Metric name to this seed's value; accuracies as fractions in [0, 1].
        parameters: Trainable parameter count (:func:`count_parameters`).
        seconds: Wall-clock seconds of training; None means the loop's time of the whole
            ``train_one`` call (building, training, testing, drawing).
        pictures: Files this seed drew into the run folder (names relative to it).
        extra: More JSON-ready facts of this seed (best epoch, samples) for the summary.
        note: A few words for the progress line, e.g. ``"best epoch 3 of 5"``.
    """

    metrics: dict[str, float]
    parameters: int
    seconds: float | None = None
    pictures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("a SeedResult needs at least one metric, e.g. test_accuracy")
        bad = [k for k, v in self.metrics.items() if not isinstance(v, (int, float))]
        if bad or isinstance(self.parameters, bool) or not isinstance(self.parameters, int):
            what = f"metric {bad[0]!r}" if bad else "parameters"
            raise TypeError(f"SeedResult {what} must be a number, got {self!r:.200}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record of this seed (see :meth:`from_json`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> SeedResult:
        """Read back a record written by :meth:`to_json`.

        Raises:
            ValueError: If ``doc`` is not such a record (another version's, or damaged).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(doc, dict) or set(doc) != names or not isinstance(doc["metrics"], dict):
            raise ValueError(f"not a seed record: expected the keys {sorted(names)}")
        try:
            record = cls(**{**doc, "metrics": {k: float(v) for k, v in doc["metrics"].items()}})
        except (TypeError, ValueError) as err:
            raise ValueError(f"not a seed record: {err}") from None
        if record.seconds is not None and not math.isfinite(record.seconds):
            raise ValueError(f"not a seed record: seconds is {record.seconds}")
        return record


@dataclass(frozen=True)
class Outcome(Generic[D]):
    """What an experiment's ``run`` returns: its results, and what its report reads besides.

    The framework hands the whole outcome to the experiment's ``report``, so data
    prepared in ``run`` (split sizes, a vocabulary) reaches the report explicitly,
    without a cache between the two calls.

    Attributes:
        results: One result per model, in the order of the table.
        data: Anything the report needs (the experiment's prepared data), or None.
    """

    results: list[ModelResult]
    data: D | None = None
