"""The data side of the ``vqa`` experiment: scenes, encoded questions, scores by kind and hop.

The scene worlds (:mod:`attnlab.data.scenes`) are drawn from disjoint Fashion-MNIST
items by :func:`~attnlab.data.scenes.scene_splits` (every test scene holds a class-colour
pair no training scene has, see :data:`~attnlab.data.scenes.HELD_OUT`); every
(scene, question) pair is one example. A :class:`QuestionSplit` keeps each scene's
canvas once (uint8) and, per question, the index of its scene, so a batch of questions
looks its images up instead of copying them. Questions are encoded with the grammar's
fixed vocabulary (:func:`~attnlab.data.scenes.scene_vocab`): any other word becomes
``<unk>`` (:func:`encode_questions`), never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor, nn

from attnlab.data.image_worlds import attention_in_box, uniform_box_share
from attnlab.data.scenes import QUESTION_HOPS, SceneWorld, make_scenes, scene_splits, scene_vocab
from attnlab.data.text import Vocab
from attnlab.experiments import _worlds
from attnlab.experiments._image_data import as_float
from attnlab.experiments._scene_features import Pretrained, frozen_grids

__all__ = [
    "MAX_WORDS",
    "QuestionSplit",
    "VQAData",
    "accuracy_by",
    "encode_questions",
    "hop_grounding",
    "load_scenes",
]

MAX_WORDS = 16
"""Most tokens of a question; the grammar's longest has 12 ("what colour is the item to
the right of the red pullover?"), so nothing it says is cut."""

_VOCAB = scene_vocab()


def encode_questions(
    texts: Sequence[str], vocab: Vocab | None = None, *, max_len: int = MAX_WORDS
) -> tuple[Tensor, Tensor]:
    """Questions as right-padded token ids and lengths; unknown words become ``<unk>``.

    Args:
        texts: The questions.
        vocab: Their vocabulary; default the scene grammar's (:func:`scene_vocab`).
        max_len: Keep at most this many leading tokens.

    Returns:
        ``(ids (m, L) long, lengths (m,) long)``; a blank question is one ``<unk>``.

    Raises:
        TypeError: If ``texts`` is one string rather than a sequence of them.

    Example:
        >>> ids, lengths = encode_questions(["what is in the top left corner?", "zebra?"])
        >>> ids.shape, lengths.tolist(), int(ids[1, 0]) == scene_vocab().unk_id
        (torch.Size([2, 8]), [8, 2], True)
    """
    return (_VOCAB if vocab is None else vocab).encode(texts, max_len)


@dataclass(frozen=True, eq=False)
class QuestionSplit:
    """The questions of one scene world, each pointing at its scene's canvas.

    Attributes:
        images: Each scene's canvas, ``(n, 3, S, S)`` uint8.
        scene: The scene of each question, ``(m,)``.
        ids: Token ids ``(m, L)`` (0 = padding).
        lengths: Tokens per question ``(m,)``.
        answers: Answer ids ``(m,)`` (indices into :data:`~attnlab.data.scenes.ANSWERS`).
        hops: Hops of each question ``(m,)`` (1 or 2).
        kinds: Each question's kind (a key of :data:`~attnlab.data.scenes.QUESTION_HOPS`).
        texts: Each question's text.
        grids: Each scene's grid from the frozen pretrained encoder, ``(n, C, h, w)``
            float (:mod:`~attnlab.experiments._scene_features`), what the models read;
            None: they read the images.
    """

    images: Tensor
    scene: Tensor
    ids: Tensor
    lengths: Tensor
    answers: Tensor
    hops: Tensor
    kinds: tuple[str, ...]
    texts: tuple[str, ...]
    grids: Tensor | None = None

    def __len__(self) -> int:
        return len(self.scene)

    @classmethod
    def from_world(cls, world: SceneWorld) -> QuestionSplit:
        """Every question of ``world``, encoded with the grammar's vocabulary."""
        scene, texts, answers, kinds, hops = world.question_table()
        ids, lengths = encode_questions(texts)
        return cls(world.images, scene, ids, lengths, answers, hops, tuple(kinds), tuple(texts))


@dataclass(frozen=True, eq=False)
class VQAData:
    """The three question splits, the normalisation, and the test world's ground truth.

    Attributes:
        train: Training questions (training items, no held-out pair).
        val: Validation questions (held-out training items; picks the best epoch).
        test: Test questions (test items; every scene holds a held-out pair).
        test_world: The test scenes as made (boxes, objects of each question).
        mean: Mean pixel value of the training canvases, in [0, 1].
        std: Their standard deviation.
        items: Source items of the train, validation and test worlds.
        pretrained: How the frozen encoder's pretraining went (its encoder dropped), or
            None when the models read images.
    """

    train: QuestionSplit
    val: QuestionSplit
    test: QuestionSplit
    test_world: SceneWorld
    mean: float
    std: float
    items: tuple[int, int, int]
    pretrained: Pretrained | None = None

    def prepare(self, images: Tensor, device: torch.device | None = None) -> Tensor:
        """uint8 canvases as normalised float images on ``device``: a model's input."""
        return ((as_float(images) - self.mean) / self.std).to(device)


def load_scenes(
    sizes: tuple[int, int, int],
    *,
    seed: int,
    canvas: int,
    questions: int,
    data_dir: str = "",
    encoder: nn.Module | None = None,
    pretrain_seconds: float = 0.0,
) -> VQAData:
    """Load Fashion-MNIST and draw the train, validation and test scenes with their questions.

    Args:
        sizes: Scenes in the train, validation and test worlds.
        seed: Seed of the held-out items and of the worlds (seed, +1, +2), and of the
            encoder's pretraining.
        canvas: Side of the square canvases (a 2 x 2 board of cells).
        questions: Questions of each kind per scene.
        data_dir: Folder with fashion-mnist/ ("" for the default chain).
        encoder: When given, pretrained for ``pretrain_seconds`` and frozen; every split
            then holds its scenes' grids
            (:func:`~attnlab.experiments._scene_features.frozen_grids`).
        pretrain_seconds: Wall-clock seconds of that pretraining.
    """
    # Through the module, so tests can swap the loader for a fake (_fake_items.py).
    train = _worlds.load_fashion_mnist("train", data_dir=data_dir or None)
    test = _worlds.load_fashion_mnist("test", data_dir=data_dir or None)
    make = partial(make_scenes, canvas=canvas, questions=questions)
    worlds = scene_splits(train, test, sizes, seed=seed, make=make)
    splits = [QuestionSplit.from_world(w) for w in worlds]
    pixels = as_float(worlds.train.images)
    held = len(train) // 6
    items = (len(train) - held, held, len(test))
    data = VQAData(*splits, worlds.test, float(pixels.mean()), float(pixels.std()), items)
    if encoder is None:
        return data
    pretrained, grids = frozen_grids(
        encoder, worlds, data.prepare, seconds=pretrain_seconds, seed=seed
    )
    return replace(
        data,
        **{name: replace(getattr(data, name), grids=grids[name]) for name in grids},
        pretrained=pretrained,
    )


def accuracy_by(correct: Tensor, kinds: Sequence[str], hops: Tensor) -> dict[str, float]:
    """Accuracy overall, per question kind and per hop count (kinds and hops absent: left out).

    Example:
        >>> correct = torch.tensor([1.0, 0.0, 1.0, 1.0])
        >>> accuracy_by(correct, ["corner", "relation", "relation", "count"],
        ...             torch.tensor([1, 2, 2, 1]))  # doctest: +NORMALIZE_WHITESPACE
        {'test_accuracy': 0.75, 'test_accuracy_corner': 1.0, 'test_accuracy_count': 1.0,
         'test_accuracy_relation': 0.5, 'test_accuracy_hops_1': 1.0, 'test_accuracy_hops_2': 0.5}
    """
    correct = correct.double()
    out = {"test_accuracy": float(correct.mean())}
    kind_of = list(kinds)
    for kind in QUESTION_HOPS:
        pick = torch.tensor([k == kind for k in kind_of], dtype=torch.bool)
        if pick.any():
            out[f"test_accuracy_{kind}"] = float(correct[pick].mean())
    for h in sorted(set(QUESTION_HOPS.values())):
        if (hops == h).any():
            out[f"test_accuracy_hops_{h}"] = float(correct[hops == h].mean())
    return out


def hop_grounding(
    maps: Tensor, world: SceneWorld, split: QuestionSplit, *, canvas: int
) -> dict[str, float]:
    """Where a SAN's hops look on two-hop questions: attention mass in each object's box.

    A two-hop question names a reference object and asks about the one related to it
    ("what is to the right of the red bag?": the bag, then the answer). Scored over the
    two-hop questions: the share of the first hop's mass in the reference's box, of the
    last hop's mass in the answer object's box, and the answer box's share of the canvas
    (what a uniform map scores).

    Args:
        maps: Each question's hop maps ``(m, K, h, w)``, ``K >= 1``.
        world: The scenes of ``split`` (boxes and each question's objects).
        split: The questions, in ``world.question_table()`` order.
        canvas: Side of the canvases.

    Returns:
        ``first_hop_on_reference``, ``last_hop_on_answer``, ``answer_box_share``; empty
        when ``split`` has no two-hop question.
    """
    objects = [q.objects for qs in world.questions for q in qs]
    two = torch.nonzero(split.hops == 2).flatten()
    if not len(two):
        return {}
    scenes = split.scene[two]
    ref = torch.tensor([objects[int(i)][0] for i in two])
    answer = torch.tensor([objects[int(i)][1] for i in two])
    ref_boxes, answer_boxes = world.boxes[scenes, ref], world.boxes[scenes, answer]
    first = attention_in_box(maps[two, 0], ref_boxes, canvas=canvas)
    last = attention_in_box(maps[two, -1], answer_boxes, canvas=canvas)
    uniform = uniform_box_share(answer_boxes, canvas=canvas)
    return {
        "first_hop_on_reference": float(first.mean()),
        "last_hop_on_answer": float(last.mean()),
        "answer_box_share": float(uniform.mean()),
    }
