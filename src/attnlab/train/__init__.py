"""Training utilities: one training loop, safetensors checkpoints and seeding.

- `train_loop` trains any model: a step function gives the loss of a batch, stopping
  policies (`Epochs`, `Patience`, `Budget`) end the run, learning-rate schedulers
  (`LinearWarmup`, `PlateauDecay`, any `torch.optim.lr_scheduler`) step per optimizer
  step or per epoch; it keeps the best weights and writes per-epoch checkpoints from
  which an interrupted run resumes exactly (RNG and schedules included).
- `fit` trains a classifier on it: validation after every epoch, early stopping on a
  monitored validation metric, the best weights restored at the end.
- `fit_budget` trains a model that computes its own loss under a wall-clock budget,
  with linear warm-up and decay on a plateau.
- `evaluate` gives mean loss and accuracy over a loader.
- `save_checkpoint` / `load_checkpoint` write and validate checkpoint directories
  (`model.safetensors`, `optimizer.safetensors`, `checkpoint.json`) atomically.
- `seed_everything` and friends make runs reproducible.
"""

from attnlab.train._integrity import CheckpointDamagedError
from attnlab.train.budget import BudgetResult, fit_budget
from attnlab.train.checkpoint import (
    CheckpointInfo,
    CheckpointMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from attnlab.train.engine import train_loop
from attnlab.train.loop import FitResult, evaluate, fit
from attnlab.train.policies import (
    AnyImproves,
    Budget,
    Epochs,
    Improvement,
    Patience,
    StopPolicy,
    Verdict,
)
from attnlab.train.schedules import BudgetDecay, LinearWarmup, PlateauDecay, Scheduled
from attnlab.train.seeding import (
    capture_rng_state,
    make_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
)

__all__ = [
    "AnyImproves",
    "Improvement",
    "Verdict",
    "Budget",
    "BudgetResult",
    "CheckpointDamagedError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "Epochs",
    "FitResult",
    "BudgetDecay",
    "LinearWarmup",
    "Patience",
    "PlateauDecay",
    "Scheduled",
    "StopPolicy",
    "capture_rng_state",
    "evaluate",
    "fit",
    "fit_budget",
    "load_checkpoint",
    "make_generator",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
    "train_loop",
]
