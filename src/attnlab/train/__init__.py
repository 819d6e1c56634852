"""Training utilities: a fit/evaluate loop, safetensors checkpoints and seeding.

- `fit` trains a classifier with validation after every epoch, early stopping on a
  monitored validation metric, the best weights restored at the end, and optional
  per-epoch checkpoints from which an interrupted run resumes exactly.
- `evaluate` gives mean loss and accuracy over a loader.
- `save_checkpoint` / `load_checkpoint` write and validate checkpoint directories
  (`model.safetensors`, `optimizer.safetensors`, `checkpoint.json`) atomically.
- `seed_everything` and friends make runs reproducible.
"""

from attnlab.train._integrity import CheckpointDamagedError
from attnlab.train.checkpoint import (
    CheckpointInfo,
    CheckpointMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from attnlab.train.loop import FitResult, evaluate, fit
from attnlab.train.seeding import (
    capture_rng_state,
    make_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
)

__all__ = [
    "CheckpointDamagedError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "FitResult",
    "capture_rng_state",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_generator",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
]
