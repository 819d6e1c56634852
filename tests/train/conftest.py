"""Tiny, fast fixtures for the training tests: a separable toy problem and an MLP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnlab.train import make_generator

FEATURES, CLASSES = 8, 2


def toy_data(n: int, seed: int) -> TensorDataset:
    """Linearly separable two-class data; a local generator keeps global RNG untouched."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    direction = torch.linspace(-1.0, 1.0, FEATURES)
    y = (x @ direction > 0).long()
    return TensorDataset(x, y)


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # Dropout makes training consume the global RNG, so resume tests check it is restored.
    return nn.Sequential(
        nn.Linear(FEATURES, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, CLASSES)
    )


Loaders = tuple[DataLoader, DataLoader]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run these tiny models on one thread: thread hand-offs cost more than the math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_loaders(seed: int = 0) -> Loaders:
    """Shuffled train loader driven by its own seeded generator, plain val loader."""
    train = DataLoader(
        toy_data(256, seed=1), batch_size=32, shuffle=True, generator=make_generator(seed)
    )
    return train, DataLoader(toy_data(128, seed=2), batch_size=64)


@pytest.fixture
def make_loaders() -> Callable[[int], Loaders]:
    """Factory for the toy loaders; `make_loaders(seed)` seeds the shuffling."""
    return toy_loaders


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    """Factory for the toy MLP; `make_model(seed)` fixes its initial weights."""
    return toy_model


def adam(model: nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
