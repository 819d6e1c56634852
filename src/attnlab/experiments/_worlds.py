"""What the experiments on worlds of real items share: world sizes, splits, the saved maps.

The clutter, same-different and segment experiments train on worlds made from
Fashion-MNIST items (:mod:`attnlab.data.image_worlds`). :func:`world_splits` builds the
three worlds from disjoint items, each with its own seed: the training world from the
training split minus one sixth of its items (10,000 of 60,000, held out), the
validation world from those held-out items, the test world from the test split alone,
so no item of a test canvas, nor of its clutter, was trained on. The canvases are kept
as uint8 (the worlds are drawn from uint8 items, so nothing is lost) in an
:class:`~attnlab.experiments._images.ImageSplits` for the shared training code.

Each seed-0 model's attention maps of the drawn test canvases are kept in the run
(:func:`keep_maps`, under ``checkpoints/NAME/maps.pt``, so a resumed run still has
them) and gathered into one HTML page at the end (:func:`write_page`).
:func:`explain_hook` gives each experiment its ``attnlab explain --image`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from attnlab.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from attnlab.experiments import _checks as checks
from attnlab.experiments._image_data import ImageSplits, Split, holdout
from attnlab.experiments._image_explain import explain_run
from attnlab.experiments._rundir import RunDir
from attnlab.experiments._settings import Checked
from attnlab.interpret.image_page import image_attention_page

__all__ = [
    "PAGE",
    "WorldSettings",
    "Worlds",
    "check_widths",
    "explain_hook",
    "keep_maps",
    "uint8_images",
    "world_splits",
    "write_page",
]

PAGE = "attention.html"
_MAPS = "maps.pt"

W = TypeVar("W")
C = TypeVar("C")


@dataclass(frozen=True)
class WorldSettings(Checked):
    """Sizes and seeds of the train, validation and test worlds, and the pictures.

    Attributes:
        train_size: canvases in the training world (items of the training split).
        val_size: canvases in the validation world (held-out training items).
        test_size: canvases in the test world (items of the test split only).
        world_seed: seed of the held-out items and of the worlds (train, validation
            and test worlds: world_seed, +1, +2).
        examples: test canvases drawn for each model with attention (0: no pictures).
        data_dir: folder with fashion-mnist/ (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    train_size: int = 10000
    val_size: int = 2000
    test_size: int = 2000
    world_seed: int = 0
    examples: int = 12
    data_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "train_size", "val_size", "test_size")
        checks.at_least(self, 0, "world_seed", "examples")
        checks.folder(self, "data_dir")


@dataclass(frozen=True, eq=False)
class Worlds(Generic[W]):
    """The splits the models train on, and the test world with its ground truth.

    Attributes:
        splits: train / validation / test canvases (uint8) and their targets.
        test: the test world as made (boxes, sizes, ...), in the order of ``splits.test``.
        items: how many source items each world was drawn from (train, val, test).
    """

    splits: ImageSplits
    test: W
    items: tuple[int, int, int]


def check_widths(cfg: Any, canvas: int) -> None:
    """``cfg.widths``: 2 stages or more, each >= 1, a 2x2 pool between them on ``canvas`` pixels.

    Raises:
        ValueError: ``--widths must be 2 to 7 channel counts of at least 1 (...), got (8,)``.
    """
    widths, most = cfg.widths, canvas.bit_length()  # the deepest stage keeps >= 1 pixel
    if not 2 <= len(widths) <= most or min(widths) < 1:
        raise ValueError(
            f"--widths must be 2 to {most} channel counts of at least 1 (one per stage, a "
            f"2x2 pool between stages on {canvas}x{canvas} canvases), got {widths}"
        )


def uint8_images(images: Tensor) -> Tensor:
    """A world's float canvases in [0, 1] as the uint8 grey levels they were drawn from."""
    return (images * 255).round_().to(torch.uint8)


def world_splits(
    cfg: WorldSettings,
    make: Callable[..., W],
    targets: Callable[[W], Tensor],
    *,
    classes: Sequence[str] = (),
) -> Worlds[W]:
    """Load Fashion-MNIST and make the three worlds from disjoint items.

    Args:
        cfg: The sizes, the seed and the data folder.
        make: ``make(items, n, seed=...)`` makes a world (e.g. :func:`make_clutter` with
            its options bound).
        targets: What a model learns from a world (its labels, or its masks).
        classes: The class names the report shows.

    Returns:
        The splits and the test world.
    """
    train = load_fashion_mnist("train", data_dir=cfg.data_dir or None)
    test = load_fashion_mnist("test", data_dir=cfg.data_dir or None)
    kept, held = holdout(len(train), len(train) // 6, seed=cfg.world_seed)
    pools: tuple[FashionMNIST, ...] = (train.subset(kept), train.subset(held), test)
    sizes = (cfg.train_size, cfg.val_size, cfg.test_size)
    worlds = [
        make(items, n, seed=cfg.world_seed + k) for k, (items, n) in enumerate(zip(pools, sizes))
    ]
    split = [Split(uint8_images(w.images), targets(w)) for w in worlds]
    mean, std = ImageSplits.pixel_stats(split[0].images)
    splits = ImageSplits(split[0], split[1], split[2], mean, std, tuple(classes))
    return Worlds(splits, worlds[2], tuple(len(p) for p in pools))


def keep_maps(run: RunDir, name: str, maps: Mapping[str, Tensor]) -> None:
    """Keep a model's maps of the drawn test canvases for the page (``{label: (N, h, w)}``)."""
    folder = run.checkpoints / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.float().cpu() for k, v in maps.items()}, folder / _MAPS)


def write_page(
    run: RunDir,
    models: Sequence[str],
    images: Tensor,
    labels: Sequence[Any],
    *,
    title: str,
    first: Mapping[str, Tensor] | None = None,
) -> bool:
    """One page of the drawn test canvases with a tab per model and map (:data:`PAGE`).

    Args:
        run: The run; the maps are those :func:`keep_maps` kept for ``models``.
        models: The run's models, in order (those without kept maps are skipped).
        images: The drawn test canvases ``(N, 1, H, W)``.
        labels: A caption per canvas (the true class, or same/different).
        title: The page title.
        first: Maps shown before the models' (e.g. the true masks), ``{label: (N, h, w)}``.

    Returns:
        Whether a page was written (some model had maps).
    """
    maps: dict[str, Tensor] = {}
    for name in models:
        path = run.checkpoints / name / _MAPS
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            maps |= {f"{name}: {label}": m for label, m in saved.items()}
    if not maps:
        return False
    maps = {**(first or {}), **maps}
    n = len(next(iter(maps.values())))
    image_attention_page(images[:n], maps, list(labels)[:n], run.path / PAGE, title=title)
    return True


def explain_hook(
    prepare: Callable[[C], Worlds[W]],
    build: Callable[[C, str], nn.Module],
    *,
    query_points: Callable[[Worlds[W], int], list[tuple[int, int]]] | None = None,
) -> Callable[[C, Path, str, Path], list[Path]]:
    """A world experiment's ``explain_image`` hook (``attnlab explain --model RUN --image ...``).

    The hook rebuilds the run's worlds from its Config (the test canvases are what an
    index names) and draws each trained model's attention with
    :func:`~attnlab.experiments._image_explain.explain_run`.

    Args:
        prepare: ``prepare(config)`` makes the experiment's worlds.
        build: ``build(config, name)`` makes an untrained model of that name.
        query_points: ``query_points(worlds, index)``: the query pixels of non-local maps
            for test canvas ``index``; None (and any PNG) queries the centre.

    Returns:
        ``explain(config, run_folder, image, out) -> files written``.
    """

    def explain(cfg: C, folder: Path, image: str, out: Path) -> list[Path]:
        worlds = prepare(cfg)
        points = None if query_points is None else partial(query_points, worlds)
        return explain_run(
            folder,
            image,
            out,
            data=worlds.splits,
            names=cfg.models,  # type: ignore[attr-defined]
            build=partial(build, cfg),
            query_points=points,
        )

    return explain
