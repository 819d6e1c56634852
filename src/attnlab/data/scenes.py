"""Scenes of tinted Fashion-MNIST items with captions and questions: a world with words.

Each scene is an RGB canvas (default 64x64) holding 2 to 4 real items of a
:class:`~attnlab.data.fashion_mnist.FashionMNIST` split, each scaled to a side from
``sizes``, tinted in one of :data:`COLOURS` and placed at a random spot inside its own
cell of a ``grid x grid`` board (so items never overlap), with

- each object's class, colour, tight box ``(x0, y0, x1, y1)`` (ends exclusive, as in
  :mod:`attnlab.data.image_worlds`), grid cell and mask (:meth:`SceneWorld.masks`);
- captions of a small grammar (:mod:`attnlab.data._scene_language`), e.g. "a red bag to
  the left of a blue sneaker", each with the object every noun names, for grounding
  (attention inside that object's box while the noun is said, Xu et al., "Show, Attend
  and Tell", ICML 2015);
- questions with one-word answers from :data:`ANSWERS`, of one hop ("how many shoes are
  there?") and two ("what colour is the item below the shirt?"), for Stacked Attention
  Networks (Yang et al., CVPR 2016).

Held-out combinations: :data:`HELD_OUT` (class, colour) pairs never occur in a
``combos="train"`` world, and every scene of a ``combos="test"`` world holds at least one
of them, so a model cannot answer a test question from pairs it memorised (in the spirit
of CLEVR's CoGenT split, Johnson et al., CVPR 2017). Every class and every colour still
occurs in training, with other partners.

A pixel of object ``k`` is its scaled grey level ``g`` in the channels its colour lights
(``COLOURS`` values are 0 or 255) and 0 in the others; its mask is where ``g > 0``.
Randomness comes from ``numpy.random.default_rng(seed)`` only: the same seed gives the
same scenes, 10,000 of them in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import as_positive, as_size, lookup
from attnlab.data._canvas import paste, rescale, tight_boxes
from attnlab.data._scene_language import (
    ANSWERS,
    BOS,
    COLOURS,
    COUNTS,
    EOS,
    NOUNS,
    QUESTION_HOPS,
    Caption,
    Question,
    SceneFacts,
    caption_links,
    caption_true,
    parse_caption,
    scene_captions,
    scene_questions,
    scene_vocab,
)
from attnlab.data.fashion_mnist import FashionMNIST

__all__ = [
    "ANSWERS",
    "BOS",
    "COLOURS",
    "EOS",
    "HELD_OUT",
    "NOUNS",
    "QUESTION_HOPS",
    "Caption",
    "Question",
    "SceneFacts",
    "SceneSplits",
    "SceneWorld",
    "caption_links",
    "caption_true",
    "make_scenes",
    "parse_caption",
    "scene_splits",
    "scene_vocab",
]

_COLOUR_NAMES = tuple(COLOURS)
HELD_OUT: tuple[tuple[int, str], ...] = tuple(
    (c, _COLOUR_NAMES[c % len(_COLOUR_NAMES)]) for c in range(len(NOUNS))
)
"""(class, colour) pairs kept for test scenes: class c in colour ``c mod 5`` (a tshirt in
red, a trouser in green, ..., a boot in white), one colour per class, two classes per colour."""

# Colours light whole channels (each RGB value is 0 or 255), so a tinted pixel is the
# grey level itself in the lit channels: bit ch of _RGB_BITS[c] = channel ch lit.
_RGB_BITS = np.array([sum(1 << i for i, v in enumerate(rgb) if v) for rgb in COLOURS.values()])
_COMBOS = {"train": "train", "test": "test", "all": "all"}
_ANSWER_ID = {w: j for j, w in enumerate(ANSWERS)}


@dataclass(frozen=True, eq=False)
class SceneWorld:
    """Scenes of up to K objects; object slots past a scene's count hold -1 (boxes 0).

    Attributes:
        images: RGB values 0..255 (``images.float() / 255`` for [0, 1]); background 0.
        segments: The object index each pixel shows, -1 for background.
        counts: Objects per scene.
        classes: Class of each object (index into ``class_names`` and :data:`NOUNS`).
        colours: Colour id of each object (index into :data:`COLOURS`).
        boxes: Tight box of each object's mask ``(x0, y0, x1, y1)``, ends exclusive.
        cells: ``(row, col)`` of each object's grid cell; objects come in reading order.
        origins: ``(x, y)`` of each scaled item frame's top-left corner.
        sides: Side in pixels each item's frame was scaled to.
        items: Index of each object's item in the source :class:`FashionMNIST`.
        captions: Per scene, its captions with their noun -> object links.
        questions: Per scene, its questions with answers, kinds and hops.
        grid: Cells per side of the board.
        combos: ``"train"``, ``"test"`` or ``"all"``: which (class, colour) pairs it uses.
        class_names: The source's class names.

    Shapes:
        images: (n, 3, S, S) uint8; segments: (n, S, S) int8; counts: (n,);
        classes, colours, sides, items: (n, K) int64; boxes: (n, K, 4);
        cells, origins: (n, K, 2).
    """

    images: Tensor
    segments: Tensor
    counts: Tensor
    classes: Tensor
    colours: Tensor
    boxes: Tensor
    cells: Tensor
    origins: Tensor
    sides: Tensor
    items: Tensor
    captions: tuple[tuple[Caption, ...], ...]
    questions: tuple[tuple[Question, ...], ...]
    grid: int
    combos: str
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.counts)

    def masks(self) -> Tensor:
        """Each object's mask, ``(n, K, S, S)`` bool (all False for empty slots)."""
        slots = torch.arange(self.classes.shape[1], dtype=self.segments.dtype)
        return self.segments[:, None] == slots[None, :, None, None]

    def facts(self, index: int) -> SceneFacts:
        """Scene ``index``'s objects as plain Python values, for the language helpers."""
        k = int(self.counts[index])
        return SceneFacts(
            self.classes[index, :k].tolist(),
            self.colours[index, :k].tolist(),
            self.boxes[index, :k].tolist(),
            self.cells[index, :k].tolist(),
            self.grid,
        )

    def caption_table(self) -> tuple[Tensor, list[str]]:
        """Every caption as ``(scene index (m,), texts)``, scene by scene."""
        rows = [(i, c.text) for i, caps in enumerate(self.captions) for c in caps]
        return torch.tensor([i for i, _ in rows], dtype=torch.int64), [t for _, t in rows]

    def question_table(self) -> tuple[Tensor, list[str], Tensor, list[str], Tensor]:
        """Every question as ``(scene (m,), texts, answer ids (m,), kinds, hops (m,))``.

        Answer ids index :data:`ANSWERS`.
        """
        rows = [(i, q) for i, qs in enumerate(self.questions) for q in qs]
        return (
            torch.tensor([i for i, _ in rows], dtype=torch.int64),
            [q.text for _, q in rows],
            torch.tensor([_ANSWER_ID[q.answer] for _, q in rows], dtype=torch.int64),
            [q.kind for _, q in rows],
            torch.tensor([q.hops for _, q in rows], dtype=torch.int64),
        )


class SceneSplits(NamedTuple):
    """Train, validation and test scenes drawn from disjoint items (:func:`scene_splits`)."""

    train: SceneWorld
    val: SceneWorld
    test: SceneWorld


def make_scenes(
    items: FashionMNIST,
    n: int,
    *,
    seed: int,
    canvas: int = 64,
    grid: int = 2,
    objects: tuple[int, int] = (2, 4),
    sizes: Sequence[int] = (20, 24, 28),
    combos: Literal["train", "test", "all"] = "all",
    held_out: Sequence[tuple[int, str]] = HELD_OUT,
    captions: int = 4,
    questions: int = 1,
) -> SceneWorld:
    """Draw ``n`` scenes of tinted items with their captions and questions.

    Per scene: a count ``K ~ U{lo..hi}``; K distinct cells of the grid; K distinct
    (class, colour) pairs allowed by ``combos``; for each object a random item of its
    class, scaled by area averaging to a side from ``sizes`` and placed uniformly inside
    its cell (cells of ``canvas // grid`` pixels).

    Args:
        items: The source items (a Fashion-MNIST split); classes absent from it are not used.
        n: Number of scenes.
        seed: Seed of the world; the same seed gives the same scenes.
        canvas: Side S of the square canvas.
        grid: Cells per side; an item's side must fit a cell.
        objects: Fewest and most objects per scene ``(lo, hi)``, 1 <= lo <= hi <= grid^2.
        sizes: Sides the 28x28 items may be scaled to.
        combos: ``"train"``: no pair of ``held_out``; ``"test"``: at least one pair of
            ``held_out`` per scene; ``"all"``: any pair.
        held_out: The (class index, colour name) pairs of the test combinations.
        captions: Captions per scene (fewer when a scene has fewer true ones).
        questions: Questions of each kind per scene (fewer when fewer are determined).

    Returns:
        The world.

    Shapes:
        images: (n, 3, S, S) uint8; boxes: (n, hi, 4).

    Example:
        >>> toy = FashionMNIST(torch.full((20, 8, 8), 200, dtype=torch.uint8),
        ...                    torch.arange(20) % 10)
        >>> world = make_scenes(toy, 3, seed=0, canvas=32, sizes=(8, 12))
        >>> world.images.shape, world.boxes.shape, world.counts.tolist()
        (torch.Size([3, 3, 32, 32]), torch.Size([3, 4, 4]), [4, 3, 3])
        >>> world.captions[0][0]
        Caption(text='a yellow dress above a green pullover', links=((2, 1), (6, 3)))
        >>> world.questions[0][0].text, world.questions[0][0].answer
        ('what is in the bottom right corner?', 'pullover')
    """
    n, seed = as_positive("n", n), as_size("seed", seed)
    if not isinstance(items, FashionMNIST):
        raise TypeError(f"items must be a FashionMNIST, got {type(items).__name__}")
    canvas, grid = as_positive("canvas", canvas), as_positive("grid", grid)
    lo, hi = _object_range(objects, grid)
    sides = np.array([as_positive("sizes", s) for s in sizes], np.int64)
    cell = canvas // grid
    if not len(sides) or sides.max() > cell:
        raise ValueError(
            f"sizes must be 1 or more sides of at most {cell} (canvas={canvas} split into "
            f"{grid}x{grid} cells), got {tuple(sizes)}; enlarge the canvas or lower the sizes"
        )
    combos = lookup(_COMBOS, combos, "combos (which class-colour pairs scenes use)")
    captions, questions = as_size("captions", captions), as_size("questions", questions)
    labels = items.labels.cpu().numpy()
    rng = np.random.default_rng(seed)

    count = rng.integers(lo, hi + 1, n)
    active = np.arange(hi)[None, :] < count[:, None]
    pair = _pairs(rng, n, hi, np.bincount(labels, minlength=len(NOUNS)), combos, held_out)
    # K random distinct cells; each slot keeps its pair, then objects go in reading order.
    slot_cell = np.argsort(rng.random((n, grid * grid)), 1)[:, :hi]
    order = np.argsort(np.where(active, slot_cell, grid * grid), 1, kind="stable")
    slot_cell = np.take_along_axis(slot_cell, order, 1)
    pair = np.take_along_axis(pair, order, 1)
    cls, col = pair // len(COLOURS), pair % len(COLOURS)
    item = _items_of(rng, labels, cls)
    side = sides[rng.integers(0, len(sides), (n, hi))]
    row, column = slot_cell // grid, slot_cell % grid
    x = column * cell + rng.integers(0, cell - side + 1)
    y = row * cell + rng.integers(0, cell - side + 1)
    cap_keys = rng.random((n, 2 * hi * hi))
    q_keys = rng.random((n, 3 + 10 * hi))

    images, segments, boxes = _draw(
        items.images.cpu().numpy(), item, side, x, y, col, active, canvas
    )
    blank = ~active
    for a in (cls, col, item, side, x, y, row, column):
        a[blank] = -1
    cells = np.stack([row, column], -1)
    facts = [
        SceneFacts(c[:k], o[:k], b[:k], e[:k], grid)
        for k, c, o, b, e in zip(
            count.tolist(), cls.tolist(), col.tolist(), boxes.tolist(), cells.tolist()
        )
    ]
    cap_keys, q_keys = cap_keys.tolist(), q_keys.tolist()
    arrays = (images, segments, count, cls, col, boxes, cells, np.stack([x, y], -1), side, item)
    return SceneWorld(
        *map(torch.from_numpy, arrays),
        tuple(tuple(scene_captions(f, k, captions)) for f, k in zip(facts, cap_keys)),
        tuple(tuple(scene_questions(f, k, questions)) for f, k in zip(facts, q_keys)),
        grid,
        combos,
        items.classes,
    )


def _object_range(objects: tuple[int, int], grid: int) -> tuple[int, int]:
    if len(tuple(objects)) != 2:
        raise ValueError(f"objects must be (lo, hi), got {objects!r}")
    lo, hi = (as_size("objects", k) for k in objects)
    most = min(grid * grid, len(COUNTS) - 1)
    if not 1 <= lo <= hi <= most:
        raise ValueError(
            f"objects must be (lo, hi) with 1 <= lo <= hi <= {most} (one object per cell of "
            f"the {grid}x{grid} grid), got {tuple(objects)}"
        )
    return lo, hi


def _pairs(rng, n: int, k: int, per_class: np.ndarray, combos: str, held_out) -> np.ndarray:
    """(n, k) distinct (class, colour) pair ids ``class * C + colour`` per scene.

    Each scene sorts every pair by a random key and keeps the first k; pairs a world may
    not use get key 2 (after all others); a test scene's first pair is forced held out.
    """
    c = len(COLOURS)
    held = np.zeros(len(NOUNS) * c, bool)
    for pair in held_out:
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], int)
        if not ok or not 0 <= pair[0] < len(NOUNS) or pair[1] not in COLOURS:
            raise ValueError(
                f"held_out must hold (class 0..{len(NOUNS) - 1}, colour in "
                f"{', '.join(COLOURS)}) pairs, got {pair!r}"
            )
        held[pair[0] * c + _COLOUR_NAMES.index(pair[1])] = True
    usable = np.repeat(per_class[: len(NOUNS)] > 0, c)
    allowed = usable & ~held if combos == "train" else usable
    if allowed.sum() < k or (combos == "test" and not (usable & held).any()):
        raise ValueError(
            f"the items allow {int(allowed.sum())} class-colour pairs for combos={combos!r} "
            f"({int((usable & held).sum())} held out), fewer than the {k} objects a scene may "
            f"need; lower objects or use items with more classes"
        )
    keys = rng.random((n, len(allowed)))
    keys[:, ~allowed] = 2.0
    if combos == "test":
        # one held-out pair first: its key drops below every other (-1)
        choice = np.flatnonzero(usable & held)
        first = choice[rng.integers(0, len(choice), n)]
        keys[np.arange(n), first] = -1.0
    return np.argsort(keys, 1, kind="stable")[:, :k]


def _items_of(rng, labels: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """A uniformly random item of each requested class."""
    counts = np.bincount(labels, minlength=len(NOUNS))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(labels, kind="stable")
    return order[starts[cls] + rng.integers(0, counts[cls])]


def _draw(source, item, side, x, y, colour, active, size):
    """RGB canvases, object maps and tight boxes, pasting each slot in one vectorised call.

    Each pixel is drawn as one uint16 code ``(slot + 1) << 11 | rgb << 8 | grey`` (0 =
    background; ``rgb`` holds one bit per lit channel of the object's colour), so one
    paste per slot places the object, its colour and its grey level at once.
    """
    n, k = item.shape
    big = int(side.max())
    pad = size + big  # a scaled frame never leaves its cell; the margin holds padding only
    board = np.zeros((n, pad, pad), np.uint16)
    boxes = np.zeros((n, k, 4), np.int64)
    for slot in range(k):
        scaled = np.zeros((n, big, big), np.uint8)
        for s in np.unique(side[:, slot]):
            pick = side[:, slot] == s
            scaled[pick, :s, :s] = rescale(source[item[pick, slot]], int(s))
        scaled[~active[:, slot]] = 0  # an empty slot pastes nothing
        tag = ((slot + 1) << 11 | _RGB_BITS[colour[:, slot]] << 8).astype(np.uint16)
        code = np.where(scaled > 0, tag[:, None, None] | scaled, 0).astype(np.uint16)
        xs, ys = x[:, slot], y[:, slot]
        paste(board, code, xs, ys, over=True)
        box = tight_boxes(scaled) + np.stack([xs, ys, xs, ys], 1)
        boxes[:, slot] = box * active[:, slot, None]
    board = board[:, :size, :size]
    images = np.empty((n, 3, size, size), np.uint8)
    grey = (board & 255).astype(np.uint8)
    for ch in range(3):
        images[:, ch] = grey * ((board >> (8 + ch)) & 1).astype(np.uint8)
    return images, ((board >> 11).astype(np.int8) - 1), boxes


def scene_splits(
    train_items: FashionMNIST,
    test_items: FashionMNIST,
    sizes: tuple[int, int, int] = (10000, 2000, 2000),
    *,
    seed: int = 0,
    make: Callable[..., SceneWorld] = make_scenes,
) -> SceneSplits:
    """Train, validation and test scenes from disjoint items, with held-out pairs for test.

    One sixth of ``train_items`` (a fixed random part, drawn from ``seed``) is kept for
    the validation scenes; the training scenes use the rest and ``combos="train"``; the
    validation scenes also use ``combos="train"`` (model selection never sees a held-out
    pair); the test scenes use ``test_items`` only and ``combos="test"``. Seeds: ``seed``,
    ``seed + 1``, ``seed + 2``.

    Args:
        train_items: The training split of Fashion-MNIST.
        test_items: The test split.
        sizes: Scenes in the train, validation and test worlds.
        seed: Seed of the held-out items and of the worlds.
        make: ``make(items, n, seed=..., combos=...)``, e.g. :func:`make_scenes` with
            options bound by :func:`functools.partial`.

    Returns:
        The three worlds.

    Example:
        >>> toy = FashionMNIST(torch.full((60, 8, 8), 99, dtype=torch.uint8),
        ...                    torch.arange(60) % 10)
        >>> from functools import partial
        >>> splits = scene_splits(toy, toy, (4, 2, 2), make=partial(make_scenes, canvas=32,
        ...                                                          sizes=(8,)))
        >>> [len(w) for w in splits], splits.test.combos
        ([4, 2, 2], 'test')
    """
    if len(tuple(sizes)) != 3:
        raise ValueError(f"sizes must be (train, val, test) scene counts, got {sizes!r}")
    n_train, n_val, n_test = (as_positive("sizes", s) for s in sizes)
    total = len(train_items)
    held = total // 6
    if held < 1:
        raise ValueError(
            f"train_items must hold at least 6 items to keep 1/6 for validation, got {total}"
        )
    order = np.random.default_rng(as_size("seed", seed)).permutation(total)
    kept, val = np.sort(order[held:]), np.sort(order[:held])
    return SceneSplits(
        make(train_items.subset(kept), n_train, seed=seed, combos="train"),
        make(train_items.subset(val), n_val, seed=seed + 1, combos="train"),
        make(test_items, n_test, seed=seed + 2, combos="test"),
    )
