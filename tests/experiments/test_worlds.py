"""world_splits: three worlds from disjoint items, each its own seed, kept as uint8."""

import functools

import pytest
import torch

from attnlab.data.image_worlds import make_clutter
from attnlab.experiments._worlds import WorldSettings, check_widths, uint8_images, world_splits
from experiments._fake_items import fake_fashion_mnist, fake_items  # noqa: F401 (fixture)


@pytest.mark.usefixtures("fake_items")
def test_the_worlds_come_from_disjoint_items_with_their_own_seeds():
    cfg = WorldSettings(train_size=40, val_size=12, test_size=10, world_seed=3)
    worlds = world_splits(cfg, functools.partial(make_clutter, clutter=2), lambda w: w.labels)
    splits = worlds.splits
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 12, 10)
    assert worlds.items == (250, 50, 100)  # a sixth of the training items held out
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (1, 64, 64)
    # The test world is the one made from the test split with seed world_seed + 2.
    again = make_clutter(fake_fashion_mnist("test"), 10, seed=5, clutter=2)
    assert torch.equal(worlds.test.boxes, again.boxes)
    assert torch.equal(splits.test.images, uint8_images(again.images))
    assert torch.equal(splits.test.targets, again.labels)
    mean, std = splits.mean, splits.std
    assert 0 < mean < 1 and std > 0


def test_uint8_images_keep_every_grey_level():
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(uint8_images(levels.float() / 255), levels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"train_size": 0}, "--train-size must be at least 1, got 0"),
        ({"examples": -1}, "--examples must be at least 0, got -1"),
        ({"data_dir": "/nowhere/at/all"}, "--data-dir /nowhere/at/all is not a folder"),
    ],
)
def test_bad_world_settings_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WorldSettings(**kwargs)


@pytest.mark.parametrize("widths", [(8,), (1, 2, 3, 4, 5, 6, 7, 8), (8, 0)])
def test_widths_that_do_not_fit_the_canvas_are_one_line(widths):
    cfg = type("Cfg", (), {"widths": widths})
    with pytest.raises(ValueError, match=r"--widths must be 2 to 7 channel counts of at least 1"):
        check_widths(cfg, 64)
