import hashlib
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnlab.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from attnlab.data.image_worlds import (
    attention_in_box,
    make_clutter,
    make_same_different,
    make_segment,
    uniform_box_share,
)

_ENV = os.environ.get("ATTNLAB_DATA_DIR")
REAL_DATA_DIR = Path(_ENV) if _ENV else Path(__file__).resolve().parents[3] / "shared" / "data"
needs_real = pytest.mark.skipif(
    not any(
        (REAL_DATA_DIR / "fashion-mnist" / f"t10k-{kind}").is_file()
        for kind in ("images-idx3-ubyte", "images-idx3-ubyte.gz")
    ),
    reason=f"Fashion-MNIST test split not in {REAL_DATA_DIR}/fashion-mnist "
    "(set ATTNLAB_DATA_DIR to a folder holding fashion-mnist/)",
)


def toy_items(count: int = 40, seed: int = 0) -> FashionMNIST:
    """Items with one filled rectangle each, of a value unique to the item (6 * (i + 1))."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    for i in range(count):
        h, w = torch.randint(14, 25, (2,), generator=g).tolist()
        y, x = (
            torch.randint(0, 28 - h + 1, (1,), generator=g).item(),
            torch.randint(0, 28 - w + 1, (1,), generator=g).item(),
        )
        images[i, y : y + h, x : x + w] = 6 * (i + 1)
    return FashionMNIST(images, torch.arange(count) % 10)


@pytest.fixture(scope="module")
def toy():
    return toy_items()


def tight_box(item: torch.Tensor) -> list[int]:
    ys, xs = item.nonzero(as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def check_item_drawn(image, item, origin, box):
    """The item's nonzero pixels are on the canvas unchanged, inside its tight box."""
    x, y = origin.tolist()
    frame = image[0, y : y + item.shape[0], x : x + item.shape[1]]
    on = item > 0
    assert torch.equal(frame[on], item[on].float() / 255)
    assert box.tolist() == [a + b for a, b in zip(tight_box(item), [x, y, x, y])]


# ---------------------------------------------------------------- clutter


def test_clutter_world_ground_truth(toy):
    world = make_clutter(toy, 24, seed=3)
    assert world.images.shape == (24, 1, 64, 64) and world.images.dtype == torch.float32
    assert 0 <= world.images.min() and world.images.max() <= 1
    assert world.boxes.shape == (24, 4) and world.boxes.dtype == torch.int64
    assert torch.equal(world.labels, toy.labels[world.items]) and world.classes == toy.classes
    assert len(set(world.items.tolist())) == 24  # no item twice while n <= len(items)
    for i in range(24):
        item = toy.images[world.items[i]]
        check_item_drawn(world.images[i], item, world.origins[i], world.boxes[i])
        # Every other lit pixel is clutter from other items: never the item's own value.
        own = int(item.max())
        outside = world.images[i, 0].clone()
        x, y = world.origins[i].tolist()
        outside[y : y + 28, x : x + 28][item > 0] = 0
        values = set((outside[outside > 0] * 255).round().int().tolist())
        assert values and own not in values
        assert values <= {6 * (j + 1) for j in range(40)}


def test_clutter_uses_every_item_once_per_round(toy):
    world = make_clutter(toy, 80, seed=0)
    assert torch.bincount(world.items, minlength=40).tolist() == [2] * 40
    assert torch.bincount(world.labels, minlength=10).tolist() == [8] * 10


def test_clutter_count_and_no_clutter(toy):
    bare = make_clutter(toy, 8, seed=1, clutter=0)
    for i in range(8):
        lit = bare.images[i, 0] > 0
        x0, y0, x1, y1 = bare.boxes[i].tolist()
        assert lit.sum() == lit[y0:y1, x0:x1].sum()  # nothing outside the item's box


# ---------------------------------------------------------------- determinism


WORLDS = {
    "clutter": lambda items, seed: make_clutter(items, 16, seed=seed),
    "same-different": lambda items, seed: make_same_different(items, 16, seed=seed, clutter=3),
    "segment": lambda items, seed: make_segment(items, 16, seed=seed),
}
# sha256 of the images of each world above on toy_items(), seed 7: the same world on any
# machine. If a change of numpy's Generator streams ever moves them, re-pin on purpose.
PINNED = {
    "clutter": "909096c91247bb688437892c1c4bdb559e3187fd80c8aac4ba8031f385efa1b7",
    "same-different": "2865f057ad4efb70b7b459a88d8b07901bb056ca3659e728e0101dcb94cee2b5",
    "segment": "b4461b4b428b5973ac98a508795b972d8339b81d952c68e1881381e0d4164bad",
}


@pytest.mark.parametrize("name", list(WORLDS))
def test_same_seed_same_world(toy, name):
    a, b, c = (WORLDS[name](toy, seed) for seed in (7, 7, 8))
    for field in vars(a):
        x, y = getattr(a, field), getattr(b, field)
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    assert not torch.equal(a.images, c.images)
    assert hashlib.sha256(a.images.numpy().tobytes()).hexdigest() == PINNED[name]


# ---------------------------------------------------------------- same-different


def test_same_different_ground_truth(toy):
    n = 31
    world = make_same_different(toy, n, seed=5)
    assert world.images.shape == (n, 1, 64, 64) and world.boxes.shape == (n, 2, 4)
    assert int(world.labels.sum()) == n // 2  # balanced: 15 same, 16 different
    pair_labels = toy.labels[world.items]
    assert torch.equal(world.item_labels, pair_labels)
    assert torch.equal(world.labels, (pair_labels[:, 0] == pair_labels[:, 1]).long())
    assert (world.items[:, 0] != world.items[:, 1]).all()  # "same" is two different images
    gap = (world.origins[:, 0] - world.origins[:, 1]).abs()
    assert ((gap[:, 0] >= 28) | (gap[:, 1] >= 28)).all()  # frames do not overlap
    assert (gap.double().norm(dim=1) >= 30).all()  # centres far apart
    for i in range(n):
        for k in range(2):
            item = toy.images[world.items[i, k]]
            check_item_drawn(world.images[i], item, world.origins[i, k], world.boxes[i, k])
        assert world.images[i].count_nonzero() == (toy.images[world.items[i]] > 0).sum()


def test_same_different_min_distance_and_impossible_layouts(toy):
    world = make_same_different(toy, 20, seed=0, min_distance=45)
    assert (world.origins[:, 0] - world.origins[:, 1]).double().norm(dim=1).min() >= 45
    with pytest.raises(ValueError, match="cannot be placed apart on a canvas of 50"):
        make_same_different(toy, 4, seed=0, canvas=50)
    with pytest.raises(ValueError, match=r"min_distance=60.0 \(at most 50.9\)"):
        make_same_different(toy, 4, seed=0, min_distance=60)


def test_same_different_needs_two_images_per_class():
    images = torch.ones(3, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"at least 2 classes with at least 2 images each"):
        make_same_different(FashionMNIST(images, torch.tensor([0, 0, 1])), 4, seed=0)
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        make_same_different(FashionMNIST(images, torch.tensor([2, 2, 2])), 4, seed=0)


# ---------------------------------------------------------------- segment


def test_segment_masks_match_the_drawn_item(toy):
    world = make_segment(toy, 24, seed=2, sizes=(14, 28), threshold=0.1)
    assert world.masks.shape == (24, 1, 64, 64) and world.masks.dtype == torch.bool
    assert torch.bincount(world.sizes).tolist()[14::14] == [12, 12]  # sizes balanced
    for i in range(24):
        item = toy.images[world.items[i]].double()
        s = int(world.sizes[i])
        # 28 -> 14 area averaging is a 2x2 mean, rounded half to even like torch.round.
        scaled = item if s == 28 else F.avg_pool2d(item[None, None], 2)[0, 0].round()
        x, y = world.origins[i].tolist()
        expected = torch.zeros(64, 64, dtype=torch.bool)
        expected[y : y + s, x : x + s] = scaled > 25.5
        assert torch.equal(world.masks[i, 0], expected)
        assert torch.equal(world.images[i, 0][expected], (scaled[scaled > 25.5] / 255).float())
        empty = [x, y, x, y]  # a dim item may have no pixel above the threshold
        assert world.boxes[i].tolist() == (tight_box(expected) if expected.any() else empty)


def test_segment_sizes_and_threshold(toy):
    world = make_segment(toy, 40, seed=0)
    assert sorted(set(world.sizes.tolist())) == [10, 16, 22, 28]
    assert torch.bincount(world.sizes)[[10, 16, 22, 28]].tolist() == [10] * 4
    side = world.masks.flatten(1).sum(1).double().sqrt()
    assert (side <= world.sizes).all()
    dim = make_segment(toy, 40, seed=0, threshold=0.99)
    assert not dim.masks.any()  # no toy pixel is above 252


# ---------------------------------------------------------------- localisation helpers


def test_uniform_box_share_golden():
    boxes = torch.tensor([[0, 0, 64, 64], [10, 20, 42, 36], [5, 5, 5, 30]])
    assert uniform_box_share(boxes).tolist() == [1.0, 32 * 16 / 4096, 0.0]
    assert uniform_box_share(boxes[None], canvas=64).shape == (1, 3)


@pytest.mark.parametrize("cells", [64, 8, 5, 1])
def test_uniform_map_scores_the_uniform_share(cells):
    boxes = torch.tensor([[3, 7, 40, 61], [0, 0, 64, 64], [13, 0, 14, 1]])
    maps = torch.ones(3, cells, cells)
    got, want = attention_in_box(maps, boxes), uniform_box_share(boxes)
    assert got.dtype == want.dtype == torch.float64 and (got - want).abs().max() < 1e-12


def test_attention_in_box_golden_and_edge_cases():
    boxes = torch.tensor([[16, 16, 48, 48], [16, 16, 48, 48], [0, 0, 8, 8], [0, 0, 64, 64]])
    maps = torch.zeros(4, 1, 4, 4)
    maps[0, 0, 1:3, 1:3] = 1  # all mass in the four cells the box covers exactly
    maps[1, 0, 0, 0] = 1  # all mass outside
    maps[2, 0, 0, 0] = 4  # the box covers a quarter of that cell
    assert attention_in_box(maps, boxes).tolist() == [1.0, 0.0, 0.25, 0.0]  # zero map: 0
    with pytest.raises(ValueError, match=r"boxes must satisfy 0 <= x0 <= x1 <= 64"):
        attention_in_box(maps, torch.tensor([[0, 0, 65, 8]] * 4))
    with pytest.raises(ValueError, match=r"maps must be \(n, h, w\) or \(n, 1, h, w\)"):
        attention_in_box(maps[:, 0, 0], boxes)
    with pytest.raises(ValueError, match=r"boxes must be a \(\.\.\., 4\) tensor"):
        uniform_box_share(torch.zeros(3, 2))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: make_clutter(t.images, 4, seed=0), TypeError, "items must be a FashionMNIST"),
        (lambda t: make_clutter(t, 0, seed=0), ValueError, "n must be >= 1"),
        (lambda t: make_clutter(t, 4, seed=-1), ValueError, "seed must be >= 0"),
        (lambda t: make_clutter(t, 4, seed=0.5), TypeError, "seed must be an int"),
        (lambda t: make_clutter(t, 4, seed=0, canvas=20), ValueError, "do not fit on a canvas"),
        (lambda t: make_clutter(t, 4, seed=0, clutter=-1), ValueError, "clutter must be >= 0"),
        (
            lambda t: make_clutter(t, 4, seed=0, clutter_size=(8, 30)),
            ValueError,
            r"lo <= hi <= the item side 28",
        ),
        (lambda t: make_clutter(t, 4, seed=0, clutter_size=(8,)), ValueError, r"\(lo, hi\)"),
        (lambda t: make_clutter(t.subset([0]), 4, seed=0), ValueError, "at least 2 images"),
        (lambda t: make_segment(t, 4, seed=0, sizes=(70,)), ValueError, "at most canvas=64"),
        (lambda t: make_segment(t, 4, seed=0, sizes=()), ValueError, "1 or more sides"),
        (lambda t: make_segment(t, 4, seed=0, threshold=1.5), ValueError, "threshold must be"),
    ],
)
def test_bad_arguments_are_one_clear_line(toy, call, error, message):
    with pytest.raises(error, match=message) as err:
        call(toy)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- real items


@pytest.fixture(scope="module")
def real_test():
    return load_fashion_mnist("test", data_dir=REAL_DATA_DIR)


@needs_real
def test_real_worlds_hold_real_items_with_their_ground_truth(real_test):
    clutter = make_clutter(real_test, 32, seed=0)
    pairs = make_same_different(real_test, 32, seed=1)
    segment = make_segment(real_test, 32, seed=2)
    for i in range(32):
        item = real_test.images[clutter.items[i]]
        check_item_drawn(clutter.images[i], item, clutter.origins[i], clutter.boxes[i])
        for k in range(2):
            item = real_test.images[pairs.items[i, k]]
            check_item_drawn(pairs.images[i], item, pairs.origins[i, k], pairs.boxes[i, k])
        mask = segment.masks[i, 0]
        assert mask.any() and (segment.images[i, 0][mask] > 0.1).all()
        x0, y0, x1, y1 = segment.boxes[i].tolist()
        assert mask.sum() == mask[y0:y1, x0:x1].sum()
    assert int(pairs.labels.sum()) == 16
    assert torch.equal(clutter.labels, real_test.labels[clutter.items])
    # The items' tight boxes cover about an eighth of the canvas: the chance level.
    assert 0.05 < uniform_box_share(clutter.boxes).mean() < 0.25
    assert math.isclose(float(uniform_box_share(torch.tensor([0, 0, 28, 28]))), 784 / 4096)
