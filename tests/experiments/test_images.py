"""The shared image-experiment code: splits, augmentation, budgeted training, scores."""

import math

import pytest
import torch
from torch import nn

from attnlab.experiments._images import (
    CLASSIFY,
    SEGMENT,
    ImageSplits,
    ImageTraining,
    Split,
    augment,
    dice_per_image,
    epoch_batches,
    fit_images,
    holdout,
    seed_budget,
    train_seed,
)


def test_holdout_is_a_fixed_partition():
    kept, held = holdout(50, 7, seed=3)
    assert len(held) == 7 and len(kept) == 43
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(50))
    again = holdout(50, 7, seed=3)
    assert torch.equal(again[1], held) and not torch.equal(holdout(50, 7, seed=4)[1], held)
    with pytest.raises(ValueError, match="held-out part must have 1..49 of 50"):
        holdout(50, 50, seed=0)


def test_augment_moves_masks_with_their_images():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 9, 7, generator=g)
    masks = images > 0.5
    moved_images, moved_masks = augment([images, masks], torch.Generator().manual_seed(1))
    assert moved_masks.dtype == torch.bool and moved_masks.shape == masks.shape
    # Same shift and flip for both: the moved mask is the moved image thresholded
    # (zero padding is below the threshold, as outside the mask).
    assert torch.equal(moved_masks, moved_images > 0.5)
    assert not torch.equal(moved_images, images)


def test_augment_shifts_within_pad_and_flips_exactly():
    x = torch.zeros(64, 1, 11, 11)
    x[:, :, 5, 5] = 1.0  # one bright pixel in the middle
    x[:, :, 5, 6] = 0.5  # and a dimmer one to its right
    out = augment([x], torch.Generator().manual_seed(0), pad=2)[0]
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing cut off
    bright = out.flatten(1).argmax(1)
    rows, cols = bright // 11, bright % 11
    assert rows.sub(5).abs().max() <= 2 and cols.sub(5).abs().max() <= 2
    dim = out[torch.arange(64), 0, rows, cols + torch.where(cols < 10, 1, 0)]
    flipped = dim != 0.5  # the dim pixel went to the left of the bright one
    assert 0 < flipped.sum() < 64  # some mirrored, some not
    same = augment([x], torch.Generator().manual_seed(0), pad=0, flip=False)[0]
    assert torch.equal(same, x)


def test_epoch_batches_depend_on_seed_and_epoch_only():
    split = Split(torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10))

    def order(seed, epoch):
        batches = list(epoch_batches(split, 4, seed=seed, epoch=epoch, augmented=False))
        assert [len(t) for _, t in batches] == [4, 4, 2]
        return torch.cat([t for _, t in batches]).tolist()

    assert order(0, 1) == order(0, 1) and sorted(order(0, 1)) == list(range(10))
    assert order(0, 2) != order(0, 1) and order(1, 1) != order(0, 1)


def test_dice_of_perfect_disjoint_and_empty_predictions():
    masks = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[1, 0, 1:3, 1:3] = True
    torch.testing.assert_close(dice_per_image(masks, masks), torch.ones(3))  # 3rd: both empty
    torch.testing.assert_close(dice_per_image(~masks[:2], masks[:2], eps=0.0), torch.zeros(2))
    logits = torch.where(masks, 5.0, -5.0)
    torch.testing.assert_close(SEGMENT.score(logits, masks), torch.ones(3))


def _toy(n=96, seed=0):
    """Bright blobs on the left (class 0) or the right (class 1), and their masks."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.rand(n, 1, 8, 8, generator=g) * 0.2
    masks = torch.zeros(n, 1, 8, 8, dtype=torch.bool)
    for i, y in enumerate(labels.tolist()):
        masks[i, 0, 2:6, (1 if y == 0 else 5) : (3 if y == 0 else 7)] = True
    images = (images + masks * 0.8).clamp(0, 1)
    return images, labels, masks


def _splits(targets):
    images, labels, masks = _toy()
    y = labels if targets == "labels" else masks
    mean, std = ImageSplits.pixel_stats(images[:64])
    parts = [Split(images[a:b], y[a:b]) for a, b in ((0, 64), (64, 80), (80, 96))]
    return ImageSplits(*parts, mean=mean, std=std, classes=("left", "right"))


def _classifier():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 2))


def test_fit_classifies_and_reports_seconds_per_epoch(tmp_path):
    data = _splits("labels")
    settings = ImageTraining(epochs=6, batch_size=16, lr=1e-2, augment=False, device="cpu")
    model, result = train_seed(
        _classifier, data, CLASSIFY, settings, name="toy", seed=0, budget_seconds=600.0,
        checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    assert set(result.metrics) == {"test_accuracy", "seconds_per_epoch"}
    assert result.metrics["test_accuracy"] >= 0.8 and result.extra["stopped_by"] == "epochs"
    assert result.extra["epochs"] == 6 and 1 <= result.extra["best_epoch"] <= 6
    assert 0 < result.metrics["seconds_per_epoch"] < math.inf
    assert result.parameters == sum(p.numel() for p in model.parameters())
    # A finished run is read back from its checkpoints, same weights, no training.
    again, second = train_seed(
        _classifier, data, CLASSIFY, settings, name="toy", seed=0, budget_seconds=600.0,
        checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    assert second.metrics["test_accuracy"] == result.metrics["test_accuracy"]
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_budget_cuts_the_epoch_short():
    data = _splits("labels")
    settings = ImageTraining(epochs=50, batch_size=8, device="cpu")
    fitted = fit_images(_classifier(), data, CLASSIFY, settings, seed=0, budget_seconds=1e-9)
    assert fitted.stopped_by == "budget" and fitted.epochs == 1 and fitted.steps == 1
    assert fitted.seconds_per_epoch > fitted.seconds  # one step of eight


def test_segmenter_trains_on_masks_with_dice():
    data = _splits("masks")
    settings = ImageTraining(epochs=8, batch_size=16, lr=3e-2, device="cpu")

    def segmenter():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))

    _, result = train_seed(
        segmenter, data, SEGMENT, settings, name="seg", seed=0, budget_seconds=600.0
    )
    assert set(result.metrics) == {"test_dice", "seconds_per_epoch"}
    assert result.metrics["test_dice"] > 0.8


def test_seed_budget_shares_the_run():
    settings = ImageTraining(budget_minutes=10.0)
    assert seed_budget(settings, 4) == pytest.approx(600 * 0.85 / 4)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"budget_minutes": 0.0}, ValueError, "--budget-minutes must be"),
        ({"warmup": 1.0}, ValueError, "--warmup must be in [0, 1)"),
        ({"device": "gpu"}, ValueError, "--device gpu is not a device"),
        ({"seeds": 0}, ValueError, "--seeds must be at least 1"),
        ({"augment": 1}, TypeError, "--augment must be true or false"),
    ],
)
def test_training_settings_refuse_bad_values(kwargs, error, words):
    with pytest.raises(error) as info:
        ImageTraining(**kwargs)
    assert words in str(info.value)
