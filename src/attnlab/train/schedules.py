"""Learning-rate schedules for the training loop, as `torch.optim.lr_scheduler` objects.

The loop steps each scheduler after every optimizer step or after every epoch, as the
scheduler declares: wrap it in `Scheduled(scheduler, "step")`, or give its class an
`interval` attribute; any other scheduler is stepped per epoch, as torch's own
documentation does. A `ReduceLROnPlateau` is stepped with the monitored validation
metric. Their states are saved in `last/` and restored on resume, so a resumed run
continues the schedule exactly.

- `LinearWarmup`: the rate rises linearly to its peak over the first optimizer steps,
  then stays there, or with `total_steps` falls linearly to zero (BERT's schedule).
- `PlateauDecay`: after an epoch whose metric did not improve, every rate is multiplied
  by `factor` (Luong et al. 2015 halve it); a warm-up given to it decays its peak too.
- `BudgetDecay`: warm-up, then linear decay to zero at the end of the steps or of a
  wall-clock budget, whichever comes first (models compared at the same budget).

Example:
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> warmup = LinearWarmup(opt, warmup_steps=4)
    >>> [round(g["lr"], 3) for g in opt.param_groups]  # the rate of step 1
    [0.025]
    >>> schedules = [warmup, PlateauDecay(opt, 0.5, warmup=warmup)]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from attnlab.train._integrity import is_int

__all__ = [
    "BudgetDecay",
    "LinearWarmup",
    "PlateauDecay",
    "Scheduled",
    "SchedulerArg",
    "as_schedules",
]

Interval = Literal["step", "epoch"]
_INTERVALS = ("step", "epoch")


class LinearWarmup(LRScheduler):
    """Linear warm-up: optimizer step `n` (1-based) runs at `peak * n / warmup_steps`.

    After the warm-up the rate stays at its peak or, with `total_steps`, falls linearly
    to zero at step `total_steps`: `peak * (total - n) / (total - warmup)`. The peaks are
    the rates the optimizer's param groups hold when the scheduler is built.

    Attributes:
        interval: `"step"`: the loop steps it after every optimizer step.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        total_steps: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        """Build the schedule; the optimizer's rates become those of step 1.

        Args:
            optimizer: The optimizer whose rates it sets.
            warmup_steps: Steps of the linear rise (0: none).
            total_steps: Step at which a linear decay after the warm-up reaches zero, or
                None to keep the peak.
            last_epoch: Steps already taken, as `LRScheduler` counts them (-1 to start).

        Raises:
            ValueError: If the step counts are not ints, negative or out of order.
        """
        if not is_int(warmup_steps) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0; got {warmup_steps!r}")
        if total_steps is not None and (not is_int(total_steps) or total_steps < warmup_steps):
            raise ValueError(
                f"total_steps must be None or an int >= warmup_steps ({warmup_steps}); "
                f"got {total_steps!r}"
            )
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiple of the peak that optimizer step `step` (1-based) runs at.

        Args:
            step: The step, counted from 1.

        Returns:
            A number in [0, 1].
        """
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        if self.total_steps is None:
            return 1.0
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))

    def get_lr(self) -> list[Any]:
        """The rates of the next optimizer step (`last_epoch` steps were taken).

        Returns:
            One rate per param group.
        """
        scale = self.factor(self.last_epoch + 1)
        return [base * scale for base in self.base_lrs]

    def rescale(self, factor: float) -> None:
        """Multiply the peaks by `factor` and set the next step's rates from them.

        Args:
            factor: E.g. `PlateauDecay`'s factor.
        """
        self.base_lrs = [base * factor for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class PlateauDecay(ReduceLROnPlateau):
    """Multiply every rate by `factor` after each epoch whose metric did not improve.

    A `ReduceLROnPlateau` with no patience and no threshold: the metric improves when
    it is strictly better than the best so far. A `warmup` running alongside keeps its
    peaks in step, so a plateau during the warm-up lowers the rest of the ramp too.

    Attributes:
        interval: `"epoch"`: the loop steps it after every validation, with the metric.
    """

    interval = "epoch"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        factor: float = 0.5,
        *,
        mode: Literal["min", "max"] = "min",
        warmup: LinearWarmup | None = None,
    ) -> None:
        """Build the decay.

        Args:
            optimizer: The optimizer whose rates it lowers.
            factor: Multiplier on a plateau, in [0, 1).
            mode: `"min"` when lower metrics are better, `"max"` when higher are.
            warmup: A warm-up on the same optimizer whose peaks decay with the rates.

        Raises:
            ValueError: If `factor` is outside [0, 1) or `warmup` drives another optimizer.
        """
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < 1:
            raise ValueError(f"factor must be in [0, 1) (1 keeps the rate); got {factor!r}")
        if warmup is not None and warmup.optimizer is not optimizer:
            raise ValueError("warmup drives another optimizer; build both on the same one")
        super().__init__(optimizer, mode=mode, factor=factor, patience=0, threshold=0.0, eps=0.0)
        self._warmup = warmup

    def _reduce_lr(self, epoch: int) -> None:
        # Multiply in place, with no floor or tolerance, as the rate was always decayed.
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * self.factor
        if self._warmup is not None:
            self._warmup.rescale(self.factor)

    def state_dict(self) -> dict[str, Any]:
        """The state to save, without the warm-up (saved on its own).

        Returns:
            `ReduceLROnPlateau`'s state.
        """
        return {k: v for k, v in super().state_dict().items() if k != "_warmup"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by `state_dict`, keeping the warm-up given here.

        Args:
            state_dict: The saved state.
        """
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_warmup"})


Scheduler = Union[LRScheduler, ReduceLROnPlateau]


_CLOCK_STATE = ("_clock", "_origin", "_offset")


class BudgetDecay(LRScheduler):
    r"""Linear warm-up, then linear decay to zero at the end of the steps or of the budget.

    The rate of each step is ``peak * f(p)`` with progress ``p = max(step / total_steps,
    elapsed / budget_seconds)``: ``f(p) = p / warmup`` during the warm-up, then
    ``(1 - p) / (1 - warmup)``. Training to a wall-clock budget works best when the
    rate reaches zero as the budget runs out (Li, Yumer & Ramanan 2020, "Budgeted
    Training: Rethinking Deep Neural Network Training Under Resource Constraints").
    The elapsed seconds are saved with the state, so a resumed run continues its clock.

    Attributes:
        interval: ``"step"``: the loop steps it after every optimizer step.

    Example:
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> now = [0.0]
        >>> schedule = BudgetDecay(opt, total_steps=100, budget_seconds=60.0, clock=lambda: now[0])
        >>> now[0] = 45.0  # three quarters of the budget gone after one step
        >>> opt.step(); schedule.step(); opt.param_groups[0]["lr"]
        0.25
    """

    interval = "step"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        budget_seconds: float,
        warmup: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Build the schedule; the optimizer's rates are the peaks.

        Args:
            optimizer: The optimizer whose rates it sets.
            total_steps: Steps at which the rate reaches zero.
            budget_seconds: Seconds at which the rate reaches zero.
            warmup: Share of the progress spent warming up, in [0, 1).
            clock: Seconds now (tests pass a fake clock).
        """
        self.total_steps, self.budget_seconds, self.warmup = total_steps, budget_seconds, warmup
        self.elapsed = 0.0
        self._clock, self._origin, self._offset = clock, clock(), 0.0
        super().__init__(optimizer)

    def progress(self, step: int) -> float:
        """How far optimizer step ``step`` (1-based) is through the schedule, in [0, 1]."""
        return min(1.0, max(step / self.total_steps, self.elapsed / self.budget_seconds))

    def get_lr(self) -> list[float]:
        """The rates of the next optimizer step."""
        self.elapsed = self._offset + self._clock() - self._origin
        p = self.progress(self.last_epoch + 1)
        if p < self.warmup:
            factor = p / self.warmup
        else:
            factor = (1.0 - p) / (1.0 - self.warmup)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The state to save (JSON-ready: the clock itself is not saved, its reading is)."""
        return {k: v for k, v in super().state_dict().items() if k not in _CLOCK_STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved state; the clock goes on from the saved elapsed seconds."""
        super().load_state_dict(state_dict)
        self._offset, self._origin = self.elapsed, self._clock()


@dataclasses.dataclass(frozen=True)
class Scheduled:
    """A scheduler and how often the loop steps it.

    Attributes:
        scheduler: Any `torch.optim.lr_scheduler` object on the run's optimizer.
        interval: `"step"` (after every optimizer step) or `"epoch"` (after validation).
    """

    scheduler: Scheduler
    interval: Interval

    def __post_init__(self) -> None:
        if self.interval not in _INTERVALS:
            raise ValueError(f"interval must be one of {_INTERVALS}; got {self.interval!r}")
        if isinstance(self.scheduler, ReduceLROnPlateau) and self.interval != "epoch":
            raise ValueError(
                f"{type(self.scheduler).__name__} needs the validation metric, so it steps per "
                'epoch; use interval="epoch"'
            )

    def step(self, metric: float | None = None) -> None:
        """Step the scheduler, with the monitored metric if it takes one.

        Args:
            metric: The epoch's monitored validation metric (None per step).
        """
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(metric)
        else:
            self.scheduler.step()


SchedulerArg = Union[Scheduler, Scheduled, Sequence[Union[Scheduler, Scheduled]], None]


def as_schedules(lr_scheduler: SchedulerArg, optimizer: torch.optim.Optimizer) -> list[Scheduled]:
    """Turn the loop's `lr_scheduler` argument into a checked list of `Scheduled`.

    Args:
        lr_scheduler: None, a scheduler, a `Scheduled`, or a list of them.
        optimizer: The run's optimizer; every scheduler must drive it.

    Returns:
        One `Scheduled` per scheduler, in the order given (the order they step in).

    Raises:
        TypeError: If an item is not a learning-rate scheduler.
        ValueError: If a scheduler drives another optimizer.
    """
    if lr_scheduler is None:
        return []
    items = lr_scheduler if isinstance(lr_scheduler, (list, tuple)) else [lr_scheduler]
    schedules = []
    for item in items:
        if not isinstance(item, Scheduled):
            if not isinstance(item, (LRScheduler, ReduceLROnPlateau)):
                raise TypeError(
                    "lr_scheduler must be a torch.optim.lr_scheduler object, a Scheduled or a "
                    f"list of them; got {type(item).__name__}"
                )
            item = Scheduled(item, getattr(item, "interval", "epoch"))
        if item.scheduler.optimizer is not optimizer:
            raise ValueError(
                f"lr_scheduler {type(item.scheduler).__name__} drives another optimizer; "
                "build it on the optimizer passed to the training loop"
            )
        schedules.append(item)
    return schedules
