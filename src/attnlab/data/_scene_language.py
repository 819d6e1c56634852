"""The words of the scene world (:mod:`attnlab.data.scenes`): grammar, captions, questions.

A scene is a handful of tinted items, each in its own cell of a ``grid x grid`` board.
Its facts (:class:`SceneFacts`) are enough to say everything below; no pixels needed.

Captions come from one small grammar, every caption true of its scene::

    caption  := NP RELATION NP | NP "in the" CORNER "corner"
    NP       := "a" COLOUR NOUN
    RELATION := "to the left of" | "to the right of" | "above" | "below"
    CORNER   := "top left" | "top right" | "bottom left" | "bottom right"

Relations are strict and read from the tight boxes ``(x0, y0, x1, y1)``: A is to the
left of B when ``A.x1 <= B.x0`` (the boxes do not share a column of pixels), above B when
``A.y1 <= B.y0``; corners are the corner cells of the grid. A scene never holds two
items of the same class *and* colour, so "the red bag" always names one object.

Questions have one-word answers from :data:`ANSWERS` and are generated only where the
answer is determined (:data:`QUESTION_HOPS` gives each kind's hop count):

- ``corner`` (1 hop): "what is in the top left corner?" -> a noun;
- ``count`` (1 hop): "how many shoes are there?", "how many red items are there?" -> a
  count word (shoes are sandals, sneakers and boots);
- ``colour`` (1 hop): "what colour is the bag?", only when one bag is in the scene;
- ``relation`` (2 hops): "what is to the right of the red bag?", only when exactly one
  object is to its right -> a noun;
- ``relation_colour`` (2 hops): "what colour is the item below the shirt?" -> a colour.

Objects are named by the shortest unique description: "the bag" when the class is
unique in the scene, else "the red bag".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from attnlab.data.text import PAD, UNK, Vocab, tokenize

__all__ = [
    "ANSWERS",
    "BOS",
    "COLOURS",
    "CORNERS",
    "COUNTS",
    "EOS",
    "NOUNS",
    "PLURALS",
    "QUESTION_HOPS",
    "RELATIONS",
    "SHOES",
    "Caption",
    "Fact",
    "Question",
    "SceneFacts",
    "caption_links",
    "caption_true",
    "holds",
    "parse_caption",
    "scene_captions",
    "scene_questions",
    "scene_vocab",
]

BOS, EOS = "<bos>", "<eos>"

NOUNS: tuple[str, ...] = (
    "tshirt",  # class 0 "T-shirt/top": one token, unlike "t-shirt"; "top" is a position word
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",  # class 9 "Ankle boot"
)
"""One word per Fashion-MNIST class, in label order."""

PLURALS: tuple[str, ...] = tuple(w + ("es" if w.endswith("s") else "s") for w in NOUNS)
SHOES: frozenset[int] = frozenset({5, 7, 9})
"""The classes "how many shoes" counts: sandal, sneaker, boot."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
}
"""Colour name -> the channels it lights (255) or leaves dark (0); colour ids in this order."""

RELATIONS: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
"""Relation key -> its words."""

CORNERS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
COUNTS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)  # fmt: skip
ANSWERS: tuple[str, ...] = (*NOUNS, *COLOURS, *COUNTS)
"""The fixed answer vocabulary: every question's answer is one of these words."""

QUESTION_HOPS: dict[str, int] = {
    "corner": 1,
    "count": 1,
    "colour": 1,
    "relation": 2,
    "relation_colour": 2,
}
"""Question kind -> the objects a reader must find in turn (1 or 2 hops)."""

_COLOUR_NAMES = tuple(COLOURS)
_NOUN_ID = {w: i for i, w in enumerate(NOUNS)}
_COLOUR_ID = {w: i for i, w in enumerate(_COLOUR_NAMES)}
_GROUPS = (*PLURALS, "shoes", *(f"{c} items" for c in _COLOUR_NAMES))
_WORDS = {key: len(words.split()) for key, words in RELATIONS.items()}
_RELATION_KEY = {tuple(words.split()): key for key, words in RELATIONS.items()}


class SceneFacts(NamedTuple):
    """What one scene holds, as plain Python values (object ``k`` at position ``k``).

    Attributes:
        classes: Class index of each object.
        colours: Colour id of each object (an index into :data:`COLOURS`).
        boxes: Tight box ``(x0, y0, x1, y1)`` of each object, ends exclusive.
        cells: ``(row, col)`` of each object's grid cell.
        grid: Cells per side of the board.
    """

    classes: list[int]
    colours: list[int]
    boxes: list[list[int]]
    cells: list[list[int]]
    grid: int


class Caption(NamedTuple):
    """One caption and the object each of its nouns names.

    Attributes:
        text: The caption, e.g. ``"a red bag to the left of a blue sneaker"``.
        links: ``(token index, object index)`` for every noun; token indices count the
            words of :func:`attnlab.data.text.tokenize` (= :meth:`Vocab.tokens`).
    """

    text: str
    links: tuple[tuple[int, int], ...]


class Question(NamedTuple):
    """One question with its one-word answer.

    Attributes:
        text: The question, e.g. ``"what is to the right of the red bag?"``.
        answer: A word of :data:`ANSWERS`.
        kind: A key of :data:`QUESTION_HOPS`.
        hops: 1 or 2.
        objects: The objects a reader visits, in order: the anchor then the answer's
            object for two hops; the one object asked about; the counted objects.
    """

    text: str
    answer: str
    kind: str
    hops: int
    objects: tuple[int, ...]


class Fact(NamedTuple):
    """A parsed caption: ``subject`` is ``relation`` ``target``.

    ``subject`` and an object ``target`` are ``(colour, noun)`` word pairs; for
    ``relation == "in"`` the target is a corner name (``"top left"``).
    """

    subject: tuple[str, str]
    relation: str
    target: tuple[str, str] | str


def holds(relation: str, a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether box ``a`` is ``relation`` (left/right/above/below) of box ``b``, strictly.

    Example:
        >>> holds("left", [0, 0, 10, 10], [10, 30, 20, 40]), holds("above", [0, 0, 10, 10],
        ...                                                       [5, 5, 20, 20])
        (True, False)
    """
    if relation == "left":
        return a[2] <= b[0]
    if relation == "right":
        return b[2] <= a[0]
    if relation == "above":
        return a[3] <= b[1]
    if relation == "below":
        return b[3] <= a[1]
    raise ValueError(f"relation must be one of {', '.join(RELATIONS)}, got {relation!r}")


def _corner(cell: Sequence[int], grid: int) -> str | None:
    row, col = cell
    edge = grid - 1
    if row in (0, edge) and col in (0, edge):
        return f"{'top' if row == 0 else 'bottom'} {'left' if col == 0 else 'right'}"
    return None


def _np(f: SceneFacts, k: int) -> str:
    return f"a {_COLOUR_NAMES[f.colours[k]]} {NOUNS[f.classes[k]]}"


def _the(f: SceneFacts, k: int) -> str:
    """The shortest unique description: "the bag", or "the red bag" when bags repeat."""
    if f.classes.count(f.classes[k]) == 1:
        return f"the {NOUNS[f.classes[k]]}"
    return f"the {_COLOUR_NAMES[f.colours[k]]} {NOUNS[f.classes[k]]}"


def _pick(candidates: list, keys: Sequence[float], count: int) -> list:
    """``count`` candidates in the order of their random keys (all of them if fewer)."""
    order = sorted(range(len(candidates)), key=keys.__getitem__)
    return [candidates[i] for i in order[:count]]


def scene_captions(f: SceneFacts, keys: Sequence[float], count: int) -> list[Caption]:
    """Up to ``count`` distinct true captions of a scene, chosen by the random ``keys``.

    ``keys`` holds at least ``2 K^2`` uniform numbers (the most candidates K objects have).
    """
    found: list[Caption] = []
    n = len(f.classes)
    for a in range(n):
        for b in range(n):
            if a != b:
                # nouns at tokens 2 and 5 + r: "a red bag" + r relation words + "a blue boot"
                found += [
                    Caption(f"{_np(f, a)} {words} {_np(f, b)}", ((2, a), (5 + _WORDS[rel], b)))
                    for rel, words in RELATIONS.items()
                    if holds(rel, f.boxes[a], f.boxes[b])
                ]
        corner = _corner(f.cells[a], f.grid)
        if corner is not None:
            found.append(Caption(f"{_np(f, a)} in the {corner} corner", ((2, a),)))
    return _pick(found, keys, count)


def scene_questions(f: SceneFacts, keys: Sequence[float], per_kind: int) -> list[Question]:
    """Up to ``per_kind`` questions of each kind whose answer the scene determines.

    Counts are always determined, so each scene gets one count question (none if
    ``per_kind`` is 0).

    ``keys`` holds at least ``3 + 10 K`` uniform numbers; the kinds come in the order of
    :data:`QUESTION_HOPS`.
    """
    n, colour_of = len(f.classes), [_COLOUR_NAMES[c] for c in f.colours]
    kinds: dict[str, list[Question]] = {kind: [] for kind in QUESTION_HOPS}
    for k in range(n):
        corner = _corner(f.cells[k], f.grid)
        if corner is not None:
            q = f"what is in the {corner} corner?"
            kinds["corner"].append(Question(q, NOUNS[f.classes[k]], "corner", 1, (k,)))
        if f.classes.count(f.classes[k]) == 1:
            q = f"what colour is {_the(f, k)}?"
            kinds["colour"].append(Question(q, colour_of[k], "colour", 1, (k,)))
        for rel, words in RELATIONS.items():
            found = [b for b in range(n) if b != k and holds(rel, f.boxes[b], f.boxes[k])]
            if len(found) == 1:
                (b,) = found
                q = f"what is {words} {_the(f, k)}?"
                kinds["relation"].append(Question(q, NOUNS[f.classes[b]], "relation", 2, (k, b)))
                q = f"what colour is the item {words} {_the(f, k)}?"
                kinds["relation_colour"].append(
                    Question(q, colour_of[b], "relation_colour", 2, (k, b))
                )
    kinds["count"] = [_count_question(f, keys[0], keys[1])]
    chosen: list[Question] = []
    at = 2
    for kind in QUESTION_HOPS:
        found = kinds[kind]
        chosen += _pick(found, keys[at : at + len(found)], per_kind)
        at += len(found)
    return chosen


def _count_question(f: SceneFacts, coin: float, which: float) -> Question:
    """A count over a group present in the scene (3 times in 4), else over an absent one."""
    present: dict[str, list[int]] = {}
    for k, (c, colour) in enumerate(zip(f.classes, f.colours)):
        for group in (PLURALS[c], "shoes" if c in SHOES else "", f"{_COLOUR_NAMES[colour]} items"):
            if group:
                present.setdefault(group, []).append(k)
    absent = [g for g in _GROUPS if g not in present]
    pool = list(present) if coin < 0.75 or not absent else absent
    group = pool[min(int(which * len(pool)), len(pool) - 1)]
    objects = tuple(present.get(group, ()))
    return Question(f"how many {group} are there?", COUNTS[len(objects)], "count", 1, objects)


def parse_caption(text: str) -> Fact | None:
    """Read a caption of the grammar back into a :class:`Fact`; None if it is not one.

    Example:
        >>> parse_caption("a red bag to the left of a blue sneaker")
        Fact(subject=('red', 'bag'), relation='left', target=('blue', 'sneaker'))
        >>> parse_caption("a white boot in the top left corner").target
        'top left'
        >>> parse_caption("a bag") is None
        True
    """
    t = tokenize(text)

    def phrase(i: int) -> tuple[str, str] | None:
        ok = len(t) >= i + 3 and t[i] == "a" and t[i + 1] in _COLOUR_ID and t[i + 2] in _NOUN_ID
        return (t[i + 1], t[i + 2]) if ok else None

    subject = phrase(0)
    if subject is None:
        return None
    rest = t[3:]
    if len(rest) == 5 and rest[0:2] == ["in", "the"] and rest[4] == "corner":
        corner = " ".join(rest[2:4])
        return Fact(subject, "in", corner) if corner in CORNERS else None
    for words, key in _RELATION_KEY.items():
        target = phrase(3 + len(words))
        if tuple(rest[: len(words)]) == words and target and len(rest) == len(words) + 3:
            return Fact(subject, key, target)
    return None


def _find(f: SceneFacts, colour: str | None, noun: str) -> int | None:
    """The one object of this noun (and colour, if given); None if none or several."""
    cls, col = _NOUN_ID[noun], _COLOUR_ID.get(colour) if colour else None
    found = [
        k for k in range(len(f.classes)) if f.classes[k] == cls and col in (None, f.colours[k])
    ]
    return found[0] if len(found) == 1 else None


def caption_true(f: SceneFacts, text: str) -> bool:
    """Whether ``text`` is a caption of the grammar that is true of the scene.

    Use it to score generated captions: a fluent caption naming absent objects or a wrong
    relation is false.
    """
    fact = parse_caption(text)
    if fact is None:
        return False
    a = _find(f, *fact.subject)
    if a is None:
        return False
    if fact.relation == "in":
        return _corner(f.cells[a], f.grid) == fact.target
    b = _find(f, *fact.target)
    return b is not None and b != a and holds(fact.relation, f.boxes[a], f.boxes[b])


def caption_links(f: SceneFacts, text: str) -> tuple[tuple[int, int], ...]:
    """``(token index, object index)`` for each noun of ``text`` that names one object.

    A noun right after a colour word names the object of that class and colour; a bare
    noun names the object of its class when the scene has one. Works on any text (a
    generated caption); nouns naming no object, or several, get no link.

    Example:
        >>> f = SceneFacts([8, 7], [0, 2], [[0, 0, 9, 9], [40, 0, 49, 9]], [[0, 0], [0, 1]], 2)
        >>> caption_links(f, "a red bag to the left of a blue sneaker")
        ((2, 0), (9, 1))
    """
    t = tokenize(text)
    links = []
    for i, word in enumerate(t):
        if word in _NOUN_ID:
            colour = t[i - 1] if i and t[i - 1] in _COLOUR_ID else None
            k = _find(f, colour, word)
            if k is not None:
                links.append((i, k))
    return tuple(links)


def scene_vocab() -> Vocab:
    """Every word the captions and questions use, after ``<pad>``, ``<unk>``, BOS, EOS.

    Fixed by the grammar (not counted from data), so every split shares one vocabulary
    and any other word maps to ``<unk>``.

    Example:
        >>> vocab = scene_vocab()
        >>> vocab.itos[:4], vocab.id("bag") > 3, vocab.id("zebra") == vocab.unk_id
        (['<pad>', '<unk>', '<bos>', '<eos>'], True, True)
    """
    words = {"a", "the", "in", "corner", "what", "is", "colour", "item", "items", "how"}
    words |= {"many", "are", "there", "?", "shoes", *NOUNS, *PLURALS, *COLOURS, *COUNTS}
    for phrase in (*RELATIONS.values(), *CORNERS):
        words.update(phrase.split())
    return Vocab([PAD, UNK, BOS, EOS, *sorted(words)])
