"""A pretrained, frozen grid encoder for the scene experiments (caption and vqa).

Both papers attend over the grid of a CNN trained beforehand on another task and kept
fixed (Xu et al. 2015: VGG's conv5_4 map; Yang et al. 2016: VGG's last pooling layer,
both trained on ImageNet's object labels). Our stand-in: the experiment's own small CNN,
trained for a share of the run's budget to name, at every cell of its grid, the class
and the colour of the object covering most of that cell (background: one more label),
on the training scenes only (:func:`pretrain_grid_encoder`). Its grid for every scene is
then computed once (:func:`grid_features`) with two coordinate channels appended, the
cell centre's ``x`` and ``y`` in ``[-1, 1]``, so that a region vector says where it is:
what a model reads through attention then carries the location ("to the left of",
"top left corner"), while a model that averages the grid gets only the mean position,
a constant. Every model of a run (and every seed) reads the same features through
:class:`PrecomputedGrid`, so the comparison is between what they do with the grid.

Training only the decoders on fixed features also buys many more epochs under the
budget than training the CNN with each model (the CPU's time goes to the LSTMs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.data.scenes import COLOURS, SceneSplits, SceneWorld
from attnlab.experiments._images import TRAINING_SHARE
from attnlab.nn._checks import as_positive, factory_kwargs
from attnlab.vision._checks import check_image

__all__ = [
    "Pretrained",
    "PrecomputedGrid",
    "budget_split",
    "cell_labels",
    "check_pretrain_share",
    "encoder_line",
    "frozen_grids",
    "grid_features",
    "pretrain_grid_encoder",
]

_BATCH = 250


class PrecomputedGrid(nn.Module):
    """The image encoder of a model whose inputs are grids computed beforehand: identity.

    Called as the ``image_encoder(in_channels, device=, dtype=)`` factory of
    :class:`~attnlab.models.stacked_attention.StackedAttentionNetwork`, or passed as
    ``encoder`` (with ``feature_size=in_channels``) to
    :class:`~attnlab.models.show_attend_tell.ShowAttendTell`.

    Shapes:
        ``(B, C, h, w)`` -> the same tensor.

    Example:
        >>> PrecomputedGrid(5)(torch.randn(2, 5, 4, 4)).shape
        torch.Size([2, 5, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs(device, dtype)  # the factory's signature; nothing to create
        self.in_channels = self.out_channels = as_positive("in_channels", in_channels)

    def forward(self, grid: Tensor) -> Tensor:
        """``grid`` itself, once its channels are checked."""
        return check_image(grid, self.in_channels, "grid", owner=self)

    def extra_repr(self) -> str:
        """The channel count."""
        return f"channels={self.in_channels}"


def cell_labels(world: SceneWorld, cells: int) -> tuple[Tensor, Tensor]:
    """Per grid cell, the class and colour of the object covering most of its pixels.

    Background cells (no object pixel outnumbers the background's) get the extra labels
    ``len(world.class_names)`` and ``len(COLOURS)``.

    Returns:
        ``(classes, colours)``, each ``(n, cells, cells)`` int64.

    Example:
        >>> from attnlab.data.scenes import make_scenes
        >>> from attnlab.data.fashion_mnist import FashionMNIST
        >>> items = FashionMNIST(torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8),
        ...                      torch.arange(40) % 10)
        >>> world = make_scenes(items, 3, canvas=64, seed=0, captions=1, questions=0)
        >>> classes, colours = cell_labels(world, 8)
        >>> classes.shape, bool((classes <= 10).all())
        (torch.Size([3, 8, 8]), True)
    """
    n, side = len(world), world.segments.shape[-1]
    if side % cells:
        raise ValueError(f"{cells} cells do not tile {side}-pixel canvases evenly")
    k = world.classes.shape[1]
    backgrounds = [(len(world.class_names), world.classes), (len(COLOURS), world.colours)]
    out: list[list[Tensor]] = [[], []]
    for start in range(0, n, _BATCH):
        seg = world.segments[start : start + _BATCH].long() + 1  # 0: background
        shares = F.avg_pool2d(F.one_hot(seg, k + 1).permute(0, 3, 1, 2).float(), side // cells)
        which = shares.argmax(1).flatten(1)  # (b, cells * cells): 0 or object slot + 1
        for row, (background, table) in zip(out, backgrounds, strict=True):
            chunk = table[start : start + _BATCH]
            padded = torch.cat([torch.full_like(chunk[:, :1], background), chunk], 1)
            row.append(padded.gather(1, which).view(-1, cells, cells))
    classes, colours = (torch.cat(row) for row in out)
    return classes, colours


@dataclass(frozen=True)
class Pretrained:
    """A pretrained encoder and how it did.

    Attributes:
        encoder: The encoder, in eval mode, its parameters frozen; None where only the
            figures are kept (:func:`frozen_grids`).
        steps: Optimizer steps taken.
        seconds: Wall-clock seconds of pretraining.
        class_accuracy: Share of the validation world's object cells whose class it names.
        colour_accuracy: Same for their colour.
    """

    encoder: nn.Module | None
    steps: int
    seconds: float
    class_accuracy: float
    colour_accuracy: float


def pretrain_grid_encoder(
    encoder: nn.Module,
    train: SceneWorld,
    val: SceneWorld,
    prepare: Callable[[Tensor], Tensor],
    *,
    seconds: float,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    max_steps: int | None = None,
) -> Pretrained:
    """Train ``encoder`` (images -> ``(B, C, h, w)``) to name each cell's object, then freeze it.

    A 1x1 convolution on the grid predicts each cell's class and colour
    (:func:`cell_labels`; loss: the sum of both cross-entropies); AdamW for ``seconds`` of
    wall clock or ``max_steps`` steps, whichever ends first, the rate decaying linearly to
    zero with the share of either spent. ``prepare`` maps uint8 canvases to the encoder's
    input. The head is thrown away afterwards.
    """
    torch.manual_seed(seed)
    with torch.no_grad():  # in eval mode, so the probe leaves batch-norm statistics alone
        probe = encoder.eval()(prepare(train.images[:1]))
    encoder.train()
    channels, cells = probe.shape[1], probe.shape[-1]
    n_classes, n_colours = len(train.class_names) + 1, len(COLOURS) + 1
    head = nn.Conv2d(channels, n_classes + n_colours, 1)
    classes, colours = cell_labels(train, cells)
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    start, steps = time.perf_counter(), 0

    def spent() -> float:
        share = (time.perf_counter() - start) / seconds if seconds > 0 else 1.0
        return max(share, steps / max_steps) if max_steps else share

    while spent() < 1:
        for index in torch.randperm(len(train), generator=generator).split(batch_size):
            if (progress := spent()) >= 1:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - progress)
            logits = head(encoder(prepare(train.images[index])))
            loss = F.cross_entropy(logits[:, :n_classes], classes[index]) + F.cross_entropy(
                logits[:, n_classes:], colours[index]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    encoder.eval().requires_grad_(False)
    head.eval()
    val_classes, val_colours = cell_labels(val, cells)
    hits, total = torch.zeros(2), 0
    with torch.no_grad():
        for index in torch.arange(len(val)).split(_BATCH):
            logits = head(encoder(prepare(val.images[index])))
            objects = val_classes[index] < n_classes - 1
            hits[0] += (logits[:, :n_classes].argmax(1) == val_classes[index])[objects].sum()
            hits[1] += (logits[:, n_classes:].argmax(1) == val_colours[index])[objects].sum()
            total += int(objects.sum())
    accuracy = (hits / max(total, 1)).tolist()
    return Pretrained(encoder, steps, time.perf_counter() - start, *accuracy)


def grid_features(
    encoder: nn.Module, images: Tensor, prepare: Callable[[Tensor], Tensor]
) -> Tensor:
    """The frozen encoder's grid of every canvas, with the cell-centre coordinates appended.

    Returns:
        ``(n, C + 2, h, w)`` float, on the CPU: channels ``C`` and ``C + 1`` hold each
        cell centre's ``x`` and ``y``, ``-1`` at the left (top) edge, ``+1`` at the right
        (bottom).
    """
    encoder.eval()
    with torch.no_grad():
        grid = torch.cat([encoder(prepare(x)).float().cpu() for x in images.split(_BATCH)])
    n, _, h, w = grid.shape
    ys = (torch.arange(h, dtype=grid.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=grid.dtype) + 0.5) / w * 2 - 1
    coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, h, w): x then y
    return torch.cat([grid, coords.expand(n, -1, -1, -1)], dim=1).contiguous()


def check_pretrain_share(cfg: object) -> None:
    """``cfg.pretrain_share`` in ``[0, TRAINING_SHARE)``: what is left must train the models."""
    share = getattr(cfg, "pretrain_share")
    if not 0 <= share < TRAINING_SHARE:
        raise ValueError(
            f"--pretrain-share must be at least 0 and below {TRAINING_SHARE} (the share of "
            f"the budget for all training), got {share}"
        )


def budget_split(cfg: Any) -> tuple[float, float]:
    """Seconds of encoder pretraining, and of training for each (model, seed) of ``cfg``.

    ``cfg`` has ``budget_minutes``, ``pretrain_share``, ``models`` and ``seeds``.

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(budget_minutes=30, pretrain_share=0.05, models="abc", seeds=3)
        >>> [round(seconds, 6) for seconds in budget_split(cfg)]
        [90.0, 160.0]
    """
    total, runs = cfg.budget_minutes * 60, len(cfg.models) * cfg.seeds
    return total * cfg.pretrain_share, total * (TRAINING_SHARE - cfg.pretrain_share) / runs


def frozen_grids(
    encoder: nn.Module,
    worlds: SceneSplits,
    prepare: Callable[[Tensor], Tensor],
    *,
    seconds: float,
    seed: int,
) -> tuple[Pretrained, dict[str, Tensor]]:
    """Pretrain ``encoder`` on ``worlds.train`` and compute every split's grid features.

    Returns:
        How the pretraining went (the encoder dropped: its grids are all that is read),
        and :func:`grid_features` of the ``"train"``, ``"val"`` and ``"test"`` scenes.
    """
    pretrained = pretrain_grid_encoder(
        encoder, worlds.train, worlds.val, prepare, seconds=seconds, seed=seed
    )
    grids = {
        name: grid_features(encoder, getattr(worlds, name).images, prepare)
        for name in ("train", "val", "test")
    }
    return replace(pretrained, encoder=None), grids


def encoder_line(pretrained: Pretrained | None) -> str:
    """The report's sentence on the encoder the models read."""
    if pretrained is None:
        return (
            "Encoder: each model trains its own CNN from its task (no pretraining, "
            "--pretrain-share 0); the grid carries no coordinates."
        )
    return (
        f"Encoder: pretrained once for this run ({pretrained.seconds:.0f} s, "
        f"{pretrained.steps:,} steps on the training scenes) to name each grid cell's object, "
        f"then frozen; on the validation scenes it names the class of "
        f"{pretrained.class_accuracy:.1%} of the object cells and the colour of "
        f"{pretrained.colour_accuracy:.1%}. Every model reads its grid with the cells' x "
        "and y appended."
    )
