"""A tiny stand-in for Fashion-MNIST, so the experiments on worlds of items run in seconds.

Each item is grey noise with a bright bar whose row gives its class, so a model can
learn something from a few steps; every class has plenty of items in both splits.
"""

import pytest
import torch

import attnlab.experiments._worlds as worlds
from attnlab.data.fashion_mnist import FashionMNIST

SIZES = {"train": 300, "test": 100}


def fake_fashion_mnist(split, *, data_dir=None):
    """300 training or 100 test items of 28x28, classes 0..9 in turn."""
    n = SIZES[split]
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for k in range(n):
        row = 2 + 2 * int(labels[k])
        images[k, row : row + 3, 4:24] = 250
    return FashionMNIST(images, labels)


@pytest.fixture
def fake_items(monkeypatch):
    """Every world of the experiments is drawn from :func:`fake_fashion_mnist`."""
    monkeypatch.setattr(worlds, "load_fashion_mnist", fake_fashion_mnist)


# Small worlds and one short epoch: what every smoke test trains on.
TINY = {
    "seeds": 1,
    "epochs": 1,
    "batch_size": 16,
    "budget_minutes": 1.0,
    "train_size": 48,
    "val_size": 16,
    "test_size": 16,
    "examples": 4,
    "widths": (4, 8),
    "device": "cpu",
}
