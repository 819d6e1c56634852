"""The frozen pretrained grid encoder of the scene experiments: labels, pretraining, grids."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnlab.data.scenes import COLOURS, make_scenes
from attnlab.experiments._scene_features import (
    PrecomputedGrid,
    budget_split,
    cell_labels,
    grid_features,
    pretrain_grid_encoder,
)
from attnlab.models.stacked_attention import ConvGridEncoder, StackedAttentionNetwork
from experiments._fake_items import fake_fashion_mnist


def _world(n=24, seed=0):
    return make_scenes(fake_fashion_mnist("train"), n, seed=seed, captions=1, questions=1)


def test_cell_labels_name_the_object_covering_most_of_each_cell():
    world = _world()
    classes, colours = cell_labels(world, 8)
    background_class, background_colour = len(world.class_names), len(COLOURS)
    for i in range(len(world)):
        for r in range(8):
            for c in range(8):
                patch = world.segments[i, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8].long()
                counts = torch.bincount(patch.flatten() + 1, minlength=5)
                k = int(counts.argmax()) - 1  # ties go to the lower index, as argmax does
                want = (
                    (background_class, background_colour)
                    if k < 0
                    else (int(world.classes[i, k]), int(world.colours[i, k]))
                )
                assert (int(classes[i, r, c]), int(colours[i, r, c])) == want
    assert (classes < background_class).any() and (classes == background_class).any()
    with pytest.raises(ValueError, match="do not tile"):
        cell_labels(world, 7)


def test_pretraining_freezes_the_encoder_and_learns_the_colours():
    train, val = _world(64, seed=0), _world(16, seed=1)
    encoder = ConvGridEncoder(3, widths=(8, 16, 16))

    def prepare(images):
        return images.float() / 255

    done = pretrain_grid_encoder(
        encoder, train, val, prepare, seconds=600.0, seed=0, max_steps=60, batch_size=16
    )
    assert done.encoder is encoder and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert done.steps == 60 and 0 <= done.class_accuracy <= 1
    # Tints are plain RGB: a few steps name most object cells' colours (chance 1/6).
    assert done.colour_accuracy > 0.5
    grids = grid_features(encoder, val.images, prepare)
    assert grids.shape == (16, 16 + 2, 8, 8)
    centres = torch.tensor([-7, -5, -3, -1, 1, 3, 5, 7]) / 8
    assert torch.equal(grids[3, -2, 5], centres) and torch.equal(grids[3, -1, :, 2], centres)


def test_a_model_reads_precomputed_grids_through_the_identity_encoder():
    grid = torch.randn(2, 6, 4, 4)
    assert PrecomputedGrid(6)(grid) is grid
    with pytest.raises(ValueError, match="channel"):
        PrecomputedGrid(5)(grid)
    san = StackedAttentionNetwork(20, 4, in_channels=6, image_encoder=PrecomputedGrid, hops=2)
    ids, lengths = torch.randint(1, 20, (2, 5)), torch.tensor([5, 3])
    assert san(grid, ids, lengths).shape == (2, 4)
    assert isinstance(san.image_encoder, PrecomputedGrid) and not isinstance(
        san.image_encoder, nn.Identity
    )


def test_the_budget_goes_to_pretraining_first_and_the_rest_to_the_runs():
    cfg = SimpleNamespace(budget_minutes=10, pretrain_share=0.1, models=("a", "b"), seeds=2)
    pretrain, each = budget_split(cfg)
    assert pretrain == pytest.approx(60.0) and each == pytest.approx(600 * 0.75 / 4)
    assert budget_split(SimpleNamespace(**{**vars(cfg), "pretrain_share": 0.0}))[0] == 0
