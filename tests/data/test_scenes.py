import hashlib
import re

import numpy as np
import pytest
import torch

from attnlab.data._canvas import rescale
from attnlab.data.fashion_mnist import FashionMNIST
from attnlab.data.scenes import (
    ANSWERS,
    COLOURS,
    HELD_OUT,
    NOUNS,
    QUESTION_HOPS,
    SceneFacts,
    caption_links,
    caption_true,
    make_scenes,
    parse_caption,
    scene_splits,
    scene_vocab,
)
from attnlab.data.text import tokenize

COLOUR_NAMES = tuple(COLOURS)
CORNER_CELLS = {"top left": (0, 0), "top right": (0, -1), "bottom left": (-1, 0)}
CORNER_CELLS["bottom right"] = (-1, -1)
RELATION = {"to the left of": "left", "to the right of": "right", "above": "above"}
RELATION["below"] = "below"


def fake_items(count: int = 400, seed: int = 0) -> FashionMNIST:
    """Random items: noise 1..255 inside a random rectangle, 0 around it; classes in turn."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    for i in range(count):
        h, w, y, x = torch.randint(0, 12, (4,), generator=g).tolist()
        patch = torch.randint(1, 256, (h + 14, w + 14), generator=g, dtype=torch.uint8)
        images[i, y : y + h + 14, x : x + w + 14] = patch[: 28 - y, : 28 - x]
    return FashionMNIST(images, torch.arange(count) % 10)


@pytest.fixture(scope="module")
def items():
    return fake_items()


@pytest.fixture(scope="module")
def world(items):
    return make_scenes(items, 300, seed=3)


def left_of(a, b):  # strictly: a's box ends where b's begins or before
    return a[2] <= b[0]


def is_rel(rel, a, b):
    return {
        "left": left_of(a, b),
        "right": left_of(b, a),
        "above": a[3] <= b[1],
        "below": b[3] <= a[1],
    }[rel]


def find(f: SceneFacts, colour, noun):
    return [
        k
        for k in range(len(f.classes))
        if NOUNS[f.classes[k]] == noun and (colour is None or COLOUR_NAMES[f.colours[k]] == colour)
    ]


# ---------------------------------------------------------------- layout and pixels


def test_shapes_and_padding(world):
    n, k = len(world), 4
    assert world.images.shape == (n, 3, 64, 64) and world.images.dtype == torch.uint8
    assert world.segments.shape == (n, 64, 64) and world.segments.dtype == torch.int8
    assert world.boxes.shape == (n, k, 4) and world.cells.shape == (n, k, 2)
    assert world.masks().shape == (n, k, 64, 64) and world.masks().dtype == torch.bool
    assert set(world.counts.tolist()) == {2, 3, 4}
    empty = torch.arange(k)[None] >= world.counts[:, None]
    for field in (world.classes, world.colours, world.items, world.sides):
        assert (field[empty] == -1).all() and (field[~empty] >= 0).all()
    assert (world.boxes[empty] == 0).all() and not world.masks()[empty].any()


def test_items_drawn_tinted_inside_boxes_and_cells(world, items):
    source = items.images.numpy()
    images, segments = world.images.numpy(), world.segments.numpy()
    cell = 64 // world.grid
    for i in range(len(world)):
        lit = images[i].max(0) > 0
        assert np.array_equal(lit, segments[i] >= 0)  # every lit pixel is some object's
        for k in range(int(world.counts[i])):
            x, y = world.origins[i, k].tolist()
            s = int(world.sides[i, k])
            scaled = rescale(source[world.items[i, k] : world.items[i, k] + 1], s)[0]
            assert int(world.classes[i, k]) == int(items.labels[world.items[i, k]])
            # the object's mask is exactly its scaled item's nonzero pixels
            mask = np.zeros((64, 64), bool)
            mask[y : y + s, x : x + s] = scaled > 0
            assert np.array_equal(segments[i] == k, mask)
            # each channel shows the grey level where the colour lights it, 0 elsewhere
            rgb = COLOURS[COLOUR_NAMES[world.colours[i, k]]]
            for ch in range(3):
                want = scaled if rgb[ch] else np.zeros_like(scaled)
                assert np.array_equal(
                    images[i, ch, y : y + s, x : x + s][scaled > 0], want[scaled > 0]
                )
            # the tight box holds the mask and is no larger
            ys, xs = mask.nonzero()
            assert world.boxes[i, k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            # the frame lies inside the object's own cell
            row, col = world.cells[i, k].tolist()
            assert col * cell <= x and x + s <= (col + 1) * cell
            assert row * cell <= y and y + s <= (row + 1) * cell


def test_no_two_objects_overlap_or_repeat_a_pair(world):
    for i in range(len(world)):
        f = world.facts(i)
        cells = [tuple(c) for c in f.cells]
        assert len(set(cells)) == len(cells) and cells == sorted(cells)  # reading order
        pairs = list(zip(f.classes, f.colours))
        assert len(set(pairs)) == len(pairs)  # "the red bag" is always one object
        for a in range(len(pairs)):
            for b in range(a + 1, len(pairs)):
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = f.boxes[a], f.boxes[b]
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def test_same_seed_same_scenes(items):
    a, b, c = (make_scenes(items, 40, seed=s) for s in (7, 7, 8))
    for field in vars(a):
        x, y = getattr(a, field), getattr(b, field)
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    assert not torch.equal(a.images, c.images)
    # the same scenes on any machine; if numpy's Generator streams ever move, re-pin on purpose
    digest = hashlib.sha256(a.images.numpy().tobytes()).hexdigest()
    assert digest == "ec36fd706673057e47acec6b734e9df3fc1fe8408fd825356e97d2271f0847eb"


# ---------------------------------------------------------------- captions


def test_captions_parse_back_to_true_facts(world):
    seen = set()
    for i in range(len(world)):
        f = world.facts(i)
        texts = [c.text for c in world.captions[i]]
        assert len(texts) == 4 and len(set(texts)) == 4
        for text in texts:
            fact = parse_caption(text)
            assert fact is not None and caption_true(f, text)
            (a,) = find(f, *fact.subject)
            seen.add(fact.relation)
            if fact.relation == "in":
                row, col = CORNER_CELLS[fact.target]
                assert f.cells[a] == [row % f.grid, col % f.grid]
            else:
                (b,) = find(f, *fact.target)
                assert a != b and is_rel(fact.relation, f.boxes[a], f.boxes[b])
    assert seen == {"in", "left", "right", "above", "below"}


def test_noun_links_point_at_the_named_objects(world):
    for i in range(len(world)):
        f = world.facts(i)
        for cap in world.captions[i]:
            tokens = tokenize(cap.text)
            nouns = [j for j, t in enumerate(tokens) if t in NOUNS]
            assert [j for j, _ in cap.links] == nouns  # every noun linked, in order
            for j, k in cap.links:
                assert tokens[j] == NOUNS[f.classes[k]]
                assert tokens[j - 1] == COLOUR_NAMES[f.colours[k]]
            assert caption_links(f, cap.text) == cap.links


def test_false_or_foreign_captions_are_rejected():
    f = SceneFacts([8, 7], [0, 2], [[0, 0, 9, 9], [40, 0, 49, 9]], [[0, 0], [0, 1]], 2)
    assert caption_true(f, "a red bag to the left of a blue sneaker")
    assert caption_true(f, "a blue sneaker in the top right corner")
    for text in (
        "a red bag to the right of a blue sneaker",  # wrong relation
        "a red bag above a blue sneaker",  # side by side: neither above
        "a blue bag to the left of a blue sneaker",  # no blue bag
        "a red bag in the bottom left corner",
        "a zebra",
        "",
        "a red bag to the left of a blue",
    ):
        assert not caption_true(f, text), text
    # a generated caption naming the same object twice, or an unknown noun: no crash
    assert caption_links(f, "the bag near a blue sneaker and a zebra") == ((1, 0), (5, 1))


# ---------------------------------------------------------------- questions


def answer_from_facts(f: SceneFacts, text: str) -> tuple[str, str]:
    """Recompute (kind, answer) from the scene facts, asserting the question is unambiguous."""
    rel = "|".join(RELATION)

    def anchor(desc: str) -> int:
        words = desc.split()
        found = find(f, words[0] if len(words) == 2 else None, words[-1])
        assert len(found) == 1, text
        return found[0]

    def related(words: str, a: int) -> int:
        found = [
            b
            for b in range(len(f.classes))
            if b != a and is_rel(RELATION[words], f.boxes[b], f.boxes[a])
        ]
        assert len(found) == 1, text
        return found[0]

    if m := re.fullmatch(r"what is in the (\w+ \w+) corner\?", text):
        row, col = CORNER_CELLS[m[1]]
        (k,) = [k for k, c in enumerate(f.cells) if c == [row % f.grid, col % f.grid]]
        return "corner", NOUNS[f.classes[k]]
    if m := re.fullmatch(r"how many (.+) are there\?", text):
        group = m[1]
        if group == "shoes":
            hits = [c for c in f.classes if NOUNS[c] in ("sandal", "sneaker", "boot")]
        elif group.endswith(" items"):
            hits = [c for c in f.colours if COLOUR_NAMES[c] == group.split()[0]]
        else:
            hits = [c for c in f.classes if NOUNS[c] in (group[:-1], group[:-2])]
        words = ["zero", "one", "two", "three", "four"]
        return "count", words[len(hits)]
    if m := re.fullmatch(rf"what colour is the item ({rel}) the (.+)\?", text):
        return "relation_colour", COLOUR_NAMES[f.colours[related(m[1], anchor(m[2]))]]
    if m := re.fullmatch(r"what colour is the (\w+)\?", text):
        assert len(find(f, None, m[1])) == 1  # the colour is asked only of a unique class
        return "colour", COLOUR_NAMES[f.colours[anchor(m[1])]]
    if m := re.fullmatch(rf"what is ({rel}) the (.+)\?", text):
        return "relation", NOUNS[f.classes[related(m[1], anchor(m[2]))]]
    raise AssertionError(f"not a question of the grammar: {text!r}")


def test_every_answer_recomputed_from_the_scene(world):
    kinds = {}
    for i in range(len(world)):
        f = world.facts(i)
        for q in world.questions[i]:
            kind, answer = answer_from_facts(f, q.text)
            assert (q.kind, q.answer) == (kind, answer), q
            assert q.hops == QUESTION_HOPS[q.kind] and q.answer in ANSWERS
            if q.hops == 2:  # the anchor, then the object the answer is about
                a, b = q.objects
                assert q.answer in (NOUNS[f.classes[b]], COLOUR_NAMES[f.colours[b]])
            kinds[kind] = kinds.get(kind, 0) + 1
        assert len({q.kind for q in world.questions[i]}) == len(world.questions[i])  # 1 per kind
    assert set(kinds) == set(QUESTION_HOPS) and min(kinds.values()) > len(world) // 3
    answers = {q.answer for qs in world.questions for q in qs}
    assert {"zero", "one", "two"} <= answers and len(answers & set(NOUNS)) == 10


def test_tables_and_vocab(world):
    scene, texts = world.caption_table()
    assert len(texts) == len(scene) == 4 * len(world) and texts[5] == world.captions[1][1].text
    scene, texts, answers, kinds, hops = world.question_table()
    assert len(texts) == len(answers) == len(kinds) == len(hops) == sum(map(len, world.questions))
    q = world.questions[int(scene[7])]
    assert ANSWERS[int(answers[7])] in [x.answer for x in q] and texts[7] in [x.text for x in q]
    vocab = scene_vocab()
    words = {t for text in texts + world.caption_table()[1] for t in tokenize(text)}
    assert all(w in vocab for w in words)  # the grammar's words are all known
    ids, _ = vocab.encode(["what colour is the zebra ?"], max_len=10)
    assert ids[0, 4].item() == vocab.unk_id  # unknown words map to <unk>, no crash


# ---------------------------------------------------------------- held-out combinations


def test_held_out_pairs_never_in_train_always_in_test(items):
    held = {(c, COLOUR_NAMES.index(colour)) for c, colour in HELD_OUT}
    assert len(held) == 10 and {c for c, _ in held} == set(range(10))

    def pairs(w, i):
        return set(zip(w.classes[i].tolist(), w.colours[i].tolist())) - {(-1, -1)}

    train = make_scenes(items, 300, seed=1, combos="train")
    test = make_scenes(items, 300, seed=2, combos="test")
    everything = make_scenes(items, 300, seed=3, combos="all")
    assert not any(pairs(train, i) & held for i in range(300))
    assert all(pairs(test, i) & held for i in range(300))
    assert any(pairs(everything, i) & held for i in range(300))
    # every class and every colour is still seen in training
    assert set(train.classes[train.classes >= 0].tolist()) == set(range(10))
    assert set(train.colours[train.colours >= 0].tolist()) == set(range(5))


def test_splits_use_disjoint_items(items):
    seen = {}

    def make(pool, n, *, seed, combos):
        seen.setdefault("pools", []).append({bytes(im.numpy()) for im in pool.images})
        return make_scenes(pool, n, seed=seed, combos=combos, canvas=64)

    test_items = fake_items(100, seed=1)
    splits = scene_splits(items, test_items, (30, 10, 10), seed=4, make=make)
    train_pool, val_pool, test_pool = seen["pools"]
    assert len(train_pool) + len(val_pool) == 400 and not train_pool & val_pool
    assert not (train_pool | val_pool) & test_pool
    assert [w.combos for w in splits] == ["train", "train", "test"]
    assert [len(w) for w in splits] == [30, 10, 10]


def test_ten_thousand_scenes(items):
    world = make_scenes(items, 10_000, seed=0, captions=2, questions=1)
    assert len(world) == 10_000 and len(world.captions) == len(world.questions) == 10_000


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"canvas": 40}, ValueError, "enlarge the canvas"),
        ({"objects": (0, 2)}, ValueError, "1 <= lo <= hi <= 4"),
        ({"objects": (2, 5)}, ValueError, "1 <= lo <= hi <= 4"),
        ({"objects": (3, 2)}, ValueError, "1 <= lo <= hi"),
        ({"objects": (2,)}, ValueError, "objects must be (lo, hi)"),
        ({"n": 0}, ValueError, "n must be >= 1"),
        ({"sizes": ()}, ValueError, "sizes must be 1 or more"),
        ({"combos": "cogent"}, ValueError, "unknown combos"),
        ({"held_out": [(10, "red")]}, ValueError, "held_out must hold"),
        ({"held_out": [(0, "pink")]}, ValueError, "held_out must hold"),
        ({"held_out": ["bag"]}, ValueError, "held_out must hold"),
        ({"captions": -1}, ValueError, "captions must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_input_one_line(items, kwargs, error, words):
    args = {"n": 4, "seed": 0, **kwargs}
    with pytest.raises(error, match=re.escape(words)) as info:
        make_scenes(items, **args)
    assert "\n" not in str(info.value)


def test_too_few_classes_or_wrong_items(items):
    one_class = FashionMNIST(items.images[:20], torch.zeros(20, dtype=torch.int64))
    assert len(make_scenes(one_class, 4, seed=0, combos="train")) == 4  # 5 colours - 1 held out
    with pytest.raises(ValueError, match="fewer than the 4 objects") as info:
        make_scenes(one_class, 4, seed=0, combos="train", held_out=[(0, "red"), (0, "blue")])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="0 held out"):
        make_scenes(one_class, 4, seed=0, combos="test", held_out=[(3, "red")])
    with pytest.raises(TypeError, match="items must be a FashionMNIST"):
        make_scenes(items.images, 4, seed=0)
    with pytest.raises(ValueError, match="at least 6 items"):
        scene_splits(FashionMNIST(items.images[:5], items.labels[:5]), items, (2, 2, 2))
    with pytest.raises(ValueError, match=r"sizes must be \(train, val, test\)"):
        scene_splits(items, items, (2, 2))
