"""When training stops, and which epochs count: the policies of the one training loop.

The loop asks every policy after each epoch whether it is `reached`, and after each
optimizer step whether it `interrupts` the epoch in progress (only a wall-clock budget
does; that epoch is then validated like any other). Policies combine: the run stops at
the first one reached, in the order given, and records its `reason` (`"epochs"`,
`"patience"`, `"budget"`). Every run has exactly one `Epochs`, its most epochs.

An `Improvement` rule judges each epoch: whether it `improved` (the patience counter
restarts) and whether it is the `best` (its weights are kept). The default judges the
monitored metric alone; `AnyImproves` judges several (the GAT paper's early stopping).

Example:
    >>> stop = (Epochs(20), Patience(3))  # at most 20 epochs, 3 without improvement
    >>> budgeted = (Budget(600.0), Epochs(50), Patience(5))
    >>> gat = AnyImproves(maximize=("accuracy",), minimize=("loss",))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from attnlab.train._fitstate import better
from attnlab.train._integrity import is_int

if TYPE_CHECKING:
    from attnlab.train._fitstate import FitState

__all__ = [
    "AnyImproves",
    "Budget",
    "Epochs",
    "Improvement",
    "Patience",
    "StopPolicy",
    "Verdict",
    "check_policies",
    "most_epochs",
    "stop_reason",
]

# The reasons attnlab's own policies record; a checkpoint holding another one is damaged.
REASONS = ("budget", "epochs", "patience")


class StopPolicy:
    """Base of the stopping policies: never stops. Subclasses say when to.

    Attributes:
        reason: The word the run records as `stopped_by` when this policy stops it.
    """

    reason: ClassVar[str] = ""

    def reached(self, state: FitState) -> bool:
        """Tell whether the run is over after its latest epoch.

        Args:
            state: The run's progress (history, patience counter, seconds).

        Returns:
            True to stop before another epoch.
        """
        return False

    def interrupts(self, elapsed: float) -> bool:
        """Tell whether to end the epoch in progress after this optimizer step.

        Args:
            elapsed: Seconds of training and validation so far, resumed sessions included.

        Returns:
            True to stop training this epoch now (it is then validated).
        """
        return False

    def settings(self) -> dict[str, Any]:
        """The policy's arguments, recorded in checkpoints for reference.

        Returns:
            Its dataclass fields by name (empty for the base class).
        """
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


@dataclasses.dataclass(frozen=True)
class Epochs(StopPolicy):
    """Stop after `epochs` epochs (counting resumed ones).

    Attributes:
        epochs: Most epochs, a positive int.
    """

    epochs: int
    reason: ClassVar[str] = "epochs"

    def __post_init__(self) -> None:
        if not is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int; got {self.epochs!r}")

    def reached(self, state: FitState) -> bool:
        """All epochs have run."""
        return len(state.history) >= self.epochs


@dataclasses.dataclass(frozen=True)
class Patience(StopPolicy):
    """Stop after `patience` epochs in a row without improving the monitored metric.

    Attributes:
        patience: Epochs without improvement allowed, a positive int.
    """

    patience: int
    reason: ClassVar[str] = "patience"

    def __post_init__(self) -> None:
        if not is_int(self.patience) or self.patience < 1:
            raise ValueError(
                "patience must be a positive int (epochs without improvement) or None; "
                f"got {self.patience!r}"
            )

    def reached(self, state: FitState) -> bool:
        """The monitored metric has not improved for `patience` epochs."""
        return state.bad_epochs >= self.patience


@dataclasses.dataclass(frozen=True)
class Budget(StopPolicy):
    """Stop when `budget_seconds` of training and validation have passed.

    Checked after every optimizer step: the epoch in progress then stops early and is
    validated, so the run ends with a validated epoch a little past the budget.

    Attributes:
        budget_seconds: Wall-clock limit in seconds, resumed sessions included.
    """

    budget_seconds: float
    reason: ClassVar[str] = "budget"

    def __post_init__(self) -> None:
        value = self.budget_seconds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"budget_seconds must be a positive number of seconds; got {value!r}")

    def reached(self, state: FitState) -> bool:
        """The budget is spent."""
        return state.seconds >= self.budget_seconds

    def interrupts(self, elapsed: float) -> bool:
        """The budget ran out during the epoch."""
        return elapsed >= self.budget_seconds


def check_policies(stop: Sequence[StopPolicy]) -> tuple[StopPolicy, ...]:
    """Check the stopping policies of a run.

    Args:
        stop: The policies, in the order they are asked.

    Returns:
        Them as a tuple.

    Raises:
        TypeError: If one is not a `StopPolicy`.
        ValueError: If there is not exactly one `Epochs`.
    """
    policies = tuple(stop)
    for policy in policies:
        if not isinstance(policy, StopPolicy):
            raise TypeError(
                f"stop must hold StopPolicy objects (Epochs, Patience, Budget); "
                f"got {type(policy).__name__}"
            )
    count = sum(isinstance(p, Epochs) for p in policies)
    if count != 1:
        raise ValueError(
            f"stop must hold exactly one Epochs(n), the most epochs of the run; got {count}"
        )
    return policies


def most_epochs(policies: Sequence[StopPolicy]) -> int:
    """The epoch limit of checked policies.

    Args:
        policies: Policies that passed `check_policies`.

    Returns:
        The `epochs` of their `Epochs`.
    """
    return next(p.epochs for p in policies if isinstance(p, Epochs))


def stop_reason(policies: Sequence[StopPolicy], state: FitState) -> str | None:
    """Why the run stops now, or None if it goes on.

    Args:
        policies: The run's policies, in order of precedence.
        state: Its progress after the latest epoch.

    Returns:
        The `reason` of the first policy reached, or None.
    """
    return next((p.reason for p in policies if p.reached(state)), None)


class Verdict(NamedTuple):
    """How an epoch compares with those before it.

    Attributes:
        improved: It counts as progress: the patience counter restarts.
        best: Its weights become the ones the run keeps (an epoch that is best improved).
    """

    improved: bool
    best: bool


class Improvement:
    """The default rule: an epoch improves, and is the best, when the monitor is strictly better.

    `val_<monitor>` is compared in the run's `mode` with its value at the best epoch so
    far: ties keep the earlier epoch, NaN never improves, anything beats a NaN best.
    Subclasses judge otherwise (`AnyImproves`).
    """

    def metrics(self, monitor: str) -> tuple[str, ...]:
        """The validation metrics (without `val_`) the rule reads.

        Args:
            monitor: The run's monitored metric.

        Returns:
            `(monitor,)` for this rule.
        """
        return (monitor,)

    def judge(self, state: FitState, record: Mapping[str, float]) -> Verdict:
        """Judge a finished epoch against the run so far.

        Args:
            state: The run's progress before this epoch (history, best epoch and value).
            record: The epoch's metrics, with `val_<name>` for each of `metrics()`.

        Returns:
            Whether it improved and whether it is the new best.
        """
        value = record[f"val_{state.monitor}"]
        new = state.best_value is None or better(value, state.best_value, state.mode)
        return Verdict(improved=new, best=new)

    def settings(self) -> dict[str, Any]:
        """The rule's arguments, recorded in checkpoints for reference.

        Returns:
            Its dataclass fields by name (empty for the default rule).
        """
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def _names(value: object, what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"{what} must be a tuple of metric names (without 'val_'); got {value!r}")
    return tuple(names)


@dataclasses.dataclass(frozen=True)
class AnyImproves(Improvement):
    """Improved when any metric is at its best so far, best when all are (GAT's rule).

    Velickovic et al. 2018's early stopping (the authors' code): an epoch counts as
    progress when validation accuracy is at least its highest so far or validation loss
    at most its lowest so far, ties included, and the weights kept are those of the last
    epoch at which both were. "So far" covers every epoch before, best or not; a NaN is
    never at its best and does not move the running best.

    Attributes:
        maximize: Metrics (without `val_`) for which higher is better.
        minimize: Metrics for which lower is better.

    Example:
        >>> rule = AnyImproves(maximize=("accuracy",), minimize=("loss",))
        >>> rule.metrics("loss")
        ('accuracy', 'loss')
    """

    maximize: tuple[str, ...] = ()
    minimize: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        maximize, minimize = _names(self.maximize, "maximize"), _names(self.minimize, "minimize")
        both = set(maximize) & set(minimize)
        if both or not maximize + minimize:
            raise ValueError(
                "AnyImproves needs at least one metric, each in maximize or minimize, not both; "
                f"got maximize={maximize}, minimize={minimize}"
            )
        object.__setattr__(self, "maximize", maximize)
        object.__setattr__(self, "minimize", minimize)

    def metrics(self, monitor: str) -> tuple[str, ...]:
        """The metrics judged (the monitor only names the value recorded as best)."""
        return self.maximize + self.minimize

    def judge(self, state: FitState, record: Mapping[str, float]) -> Verdict:
        """Each metric against its running best over every earlier epoch."""
        at_best = [
            _at_best(f"val_{name}", higher, state.history, record)
            for names, higher in ((self.maximize, True), (self.minimize, False))
            for name in names
        ]
        return Verdict(improved=any(at_best), best=all(at_best))


def _at_best(
    key: str, higher: bool, history: Sequence[Mapping[str, float]], record: Mapping[str, float]
) -> bool:
    """Whether `record[key]` is at least as good as every earlier non-NaN value of it."""
    value = record[key]
    if math.isnan(value):
        return False
    earlier = [r[key] for r in history if not math.isnan(r[key])]
    if not earlier:
        return True
    return value >= max(earlier) if higher else value <= min(earlier)
