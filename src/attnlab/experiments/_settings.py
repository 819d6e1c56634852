"""Typed settings that several experiments' Configs share, as frozen base dataclasses.

A Config inherits the pieces it uses, so the command line stays flat (one flag per
field, the same for every experiment that has it) while functions are typed against the
piece they read: :func:`~attnlab.experiments._classify.fit_and_score` takes a
:class:`TrainingSettings`, not "any object with an ``lr``". A Config overrides a default
by declaring the field again (``epochs: int = 8``), and words a field's help its own way
in its ``Attributes:`` section; the rest is inherited.

Every piece checks its own fields in ``__post_init__`` and calls ``super().__post_init__()``
first, so a Config built from several pieces runs every check once, type checks first.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class ToyConfig(TrainingSettings):
    ...     hidden: int = 16
    ...     def __post_init__(self) -> None:
    ...         super().__post_init__()
    ...         checks.at_least(self, 1, "hidden")
    >>> ToyConfig(epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: --epochs must be at least 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnlab.experiments import _checks as checks

__all__ = ["Checked", "EarlyStopping", "TrainingSettings"]


@dataclass(frozen=True)
class Checked:
    """Root of the settings pieces: every field holds a value of its annotated type."""

    def __post_init__(self) -> None:
        checks.field_types(self)


@dataclass(frozen=True)
class TrainingSettings(Checked):
    """Training by epochs over several seeds, with Adam-style optimisers.

    Attributes:
        seeds: training runs per model (seeds 0..N-1), all on the same split.
        epochs: maximum epochs per run.
        batch_size: examples per batch.
        lr: Adam learning rate.
        weight_decay: L2 penalty (Adam's weight_decay).
        monitor: validation metric that picks the best epoch.
    """

    seeds: int = 5
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    monitor: Literal["loss", "accuracy"] = "loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "seeds", "epochs", "batch_size")
        checks.at_least(self, 0, "weight_decay")
        checks.positive(self, "lr")


@dataclass(frozen=True)
class EarlyStopping(TrainingSettings):
    """:class:`TrainingSettings` that stop when the monitored metric stops improving.

    Attributes:
        patience: epochs without improvement of the monitored metric before stopping.
    """

    patience: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "patience")
