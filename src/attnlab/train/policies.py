"""When training stops: the stopping policies of the one training loop.

The loop asks every policy after each epoch whether it is `reached`, and after each
optimizer step whether it `interrupts` the epoch in progress (only a wall-clock budget
does; that epoch is then validated like any other). Policies combine: the run stops at
the first one reached, in the order given, and records its `reason` (`"epochs"`,
`"patience"`, `"budget"`). Every run has exactly one `Epochs`, its most epochs.

Example:
    >>> stop = (Epochs(20), Patience(3))  # at most 20 epochs, 3 without improvement
    >>> budgeted = (Budget(600.0), Epochs(50), Patience(5))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from attnlab.train._integrity import is_int

if TYPE_CHECKING:
    from attnlab.train._fitstate import FitState

__all__ = [
    "Budget",
    "Epochs",
    "Patience",
    "StopPolicy",
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
