"""Seeding and random-number-generator state: reproducible runs and exact resumption.

`seed_everything` seeds every generator a training run touches; `capture_rng_state`
and `restore_rng_state` snapshot them into plain JSON so a checkpointed run can
continue with exactly the random stream it would have drawn without interruption.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "capture_rng_state",
    "make_generator",
    "restore_rng_state",
    "seed_everything",
    "seed_worker",
]

# numpy's legacy global seeder only accepts 32-bit seeds; holding every generator to
# the same range keeps one seed meaning the same thing everywhere.
_MAX_SEED = 2**32 - 1


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**32 - 1]; got {seed!r}")
    return seed


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Make a `torch.Generator` seeded with `seed`, e.g. for a shuffling DataLoader.

    A DataLoader given its own generator draws both its shuffle order and its worker
    seeds from it, so the order depends only on `seed`, not on unrelated global draws.

    Args:
        seed: Integer seed in [0, 2**32 - 1].
        device: Device of the generator; DataLoader samplers need a CPU generator.

    Returns:
        A fresh generator whose state is fully determined by `seed`.

    Example:
        >>> g = make_generator(0)
        >>> loader = torch.utils.data.DataLoader(range(8), shuffle=True, generator=g)
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(_check_seed(seed))
    return generator


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's `random`, numpy's global generator and torch (CPU and all GPUs).

    Args:
        seed: Integer seed in [0, 2**32 - 1].

    Returns:
        A CPU `torch.Generator` seeded with `seed`, ready to pass to a DataLoader.

    Example:
        >>> g = seed_everything(0)
        >>> first = torch.rand(2)
        >>> _ = seed_everything(0)
        >>> torch.equal(first, torch.rand(2))
        True
    """
    _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return make_generator(seed)


def seed_worker(worker_id: int) -> None:
    """Seed `random` and numpy inside a DataLoader worker; pass as `worker_init_fn`.

    torch already gives each worker a distinct seed derived from the loader's
    generator; this copies it into the other libraries so augmentations that use
    them are reproducible too.

    Args:
        worker_id: Index of the worker (unused; torch's per-worker seed already differs).
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    raw = bytearray(base64.b64decode(text.encode("ascii")))
    return torch.frombuffer(raw, dtype=torch.uint8).clone()


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot Python, numpy, torch (CPU and initialised GPUs) and named generators.

    Args:
        generators: Extra generators to include, by a stable name (e.g. a
            DataLoader's shuffling generator).

    Returns:
        A JSON-serialisable dict for `restore_rng_state`.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _encode(torch.get_rng_state()),
        "generators": {name: _encode(g.get_state()) for name, g in (generators or {}).items()},
    }
    # Only touch CUDA if the run already did: querying it would initialise a context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore a snapshot taken by `capture_rng_state`.

    Args:
        state: The dict returned by `capture_rng_state` (possibly via JSON).
        generators: Generators to restore by the names used at capture time.

    Raises:
        ValueError: If a generator name given here is missing from the snapshot.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([_decode(s) for s in saved])
    stored = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in stored:
            raise ValueError(
                f"RNG snapshot has no generator {name!r} (it has {sorted(stored)}); "
                "pass the same generators that were captured"
            )
        generator.set_state(_decode(stored[name]))
