"""The caption experiment's data, scores and pictures (see :mod:`attnlab.experiments.caption`).

- :class:`CaptionData`: the train, validation and test scenes
  (:func:`~attnlab.data.scenes.scene_splits`), every training caption as ``BOS ... EOS``
  ids, the references of each scene, and the pixel statistics the models see;
  :func:`caption_batches` draws an epoch's batches (one random caption per scene).
- :func:`decode`: beam search over a split in batches, with the attention per word.
- BLEU-4 of each caption against *all* references of its scene
  (:func:`~attnlab.data.bleu.reference_bleu`); :func:`noun_grounding`: the attention
  mass inside the box of the object each generated noun names, beside the uniform
  share; :func:`score_captions`: every test metric of one model.
- :func:`draw_captions`: the classic figure of Xu et al. 2015 (the image, then the
  attention over it while each word was chosen) and a grid of the nouns' attention.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from attnlab.data.bleu import reference_bleu
from attnlab.data.image_worlds import attention_in_box, uniform_box_share
from attnlab.data.scenes import (
    BOS,
    EOS,
    NOUNS,
    SceneSplits,
    SceneWorld,
    caption_links,
    caption_true,
)
from attnlab.data.text import Vocab, tokenize
from attnlab.experiments._image_data import as_float, augment
from attnlab.experiments._scene_features import Pretrained
from attnlab.interpret.images import plot_attention_grid, plot_image_maps
from attnlab.models.search import Hypothesis
from attnlab.models.show_attend_tell import ShowAttendTell, decode_captions

__all__ = [
    "CaptionData",
    "caption_batches",
    "caption_text",
    "decode",
    "draw_captions",
    "noun_grounding",
    "noun_maps",
    "references",
    "score_captions",
]

_DECODE_BATCH = 250
_NOUN_WORDS = frozenset(NOUNS)


@dataclass(frozen=True, eq=False)
class CaptionData:
    """The scenes a run trains, validates and tests on, and their captions as ids.

    Attributes:
        worlds: The train, validation and test scenes (disjoint items; test scenes hold
            held-out class-colour pairs).
        vocab: :func:`~attnlab.data.scenes.scene_vocab`.
        ids: Every training caption as ``BOS words EOS``, right-padded with ``pad_id``
            ``(m, T)``, scene by scene.
        first: Index into ``ids`` of each training scene's first caption ``(n,)``.
        counts: Captions of each training scene ``(n,)``.
        mean: Mean training pixel value in [0, 1] units.
        std: Its standard deviation.
        items: Source items of the train, validation and test scenes.
        grids: The frozen pretrained encoder's grid of every ``"train"``, ``"val"`` and
            ``"test"`` scene (:mod:`~attnlab.experiments._scene_features`), what the
            models read; None: they read the normalised images (:meth:`prepare`).
        pretrained: How that encoder's pretraining went (its encoder dropped), or None.
    """

    worlds: SceneSplits
    vocab: Vocab
    ids: Tensor
    first: Tensor
    counts: Tensor
    mean: float
    std: float
    items: tuple[int, int, int]
    grids: dict[str, Tensor] | None = None
    pretrained: Pretrained | None = None

    @classmethod
    def build(
        cls,
        worlds: SceneSplits,
        vocab: Vocab,
        items: tuple[int, int, int],
        *,
        max_len: int | None = None,
    ) -> CaptionData:
        """Encode the training captions and measure the training pixels.

        A caption of more than ``max_len`` words is cut to its first ``max_len`` (then
        EOS), with one warning that counts them: the decoder never learns a caption it
        could not say within ``--max-len``.
        """
        scene, texts = worlds.train.caption_table()
        bos, eos = vocab.id(BOS), vocab.id(EOS)
        words = [tokenize(t) for t in texts]
        if max_len is not None and (long := sum(len(w) > max_len for w in words)):
            warnings.warn(
                f"{long} of {len(words)} training captions are longer than --max-len "
                f"{max_len} words; they are cut to their first {max_len}",
                stacklevel=2,
            )
            words = [w[:max_len] for w in words]
        rows = [[bos, *(vocab.id(w) for w in ws), eos] for ws in words]
        ids = torch.full((len(rows), max(map(len, rows))), vocab.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        counts = torch.bincount(scene, minlength=len(worlds.train))
        first = torch.cumsum(counts, 0) - counts
        x = as_float(worlds.train.images)
        return cls(worlds, vocab, ids, first, counts, float(x.mean()), float(x.std()), items)

    def prepare(self, images: Tensor, device: torch.device | None = None) -> Tensor:
        """uint8 scenes -> normalised float, channels-last (faster CPU convolutions)."""
        x = (as_float(images) - self.mean) / self.std
        return x.to(device, memory_format=torch.channels_last)

    def inputs(self, split: str, index: Tensor | slice) -> Tensor:
        """What the models read of the ``split`` scenes at ``index``: grids or images (CPU)."""
        if self.grids is not None:
            return self.grids[split][index]
        return self.prepare(getattr(self.worlds, split).images[index])


def caption_batches(
    data: CaptionData, batch_size: int, *, seed: int, epoch: int, augmented: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """An epoch's ``(inputs, ids (B, T))`` batches, drawn from ``(seed, epoch)`` alone.

    Each training scene comes once per epoch with one of its captions at random; rows
    are trimmed to the batch's longest caption. The inputs are
    :meth:`CaptionData.inputs`: the precomputed grids, or the normalised images, which
    ``augmented`` shifts by up to 2 pixels each (no flips: a mirror image would make "to
    the left of" false; grids computed beforehand are never shifted).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    scenes = torch.nonzero(data.counts > 0).flatten()
    scenes = scenes[torch.randperm(len(scenes), generator=generator)]
    pick = torch.rand(len(scenes), generator=generator)
    rows = data.first[scenes] + (pick * data.counts[scenes]).long()
    images = data.worlds.train.images
    for index, row in zip(scenes.split(batch_size), rows.split(batch_size), strict=True):
        ids = data.ids[row]
        ids = ids[:, : int((ids != data.vocab.pad_id).sum(1).max())]
        if data.grids is not None:
            yield data.grids["train"][index], ids
            continue
        x = images[index]
        if augmented:
            x = augment([x], generator, flip=False)[0]
        yield data.prepare(x), ids


def caption_text(vocab: Vocab, tokens: Sequence[int]) -> str:
    """The words of generated ids, joined by spaces (what BLEU and the grammar read)."""
    return " ".join(vocab.itos[t] for t in tokens)


def decode(
    model: ShowAttendTell,
    data: CaptionData,
    split: str,
    *,
    beam_size: int,
    max_len: int,
    need_weights: bool,
    count: int | None = None,
) -> list[Hypothesis]:
    """Caption the first ``count`` scenes of ``split`` (``"val"``, ``"test"``; all if None)."""
    device = next(model.parameters()).device
    n = len(getattr(data.worlds, split))
    n = n if count is None else min(count, n)
    bos, eos = data.vocab.id(BOS), data.vocab.id(EOS)
    hyps: list[Hypothesis] = []
    for index in torch.arange(n).split(_DECODE_BATCH):
        hyps += decode_captions(
            model,
            data.inputs(split, index).to(device),
            bos_id=bos,
            eos_id=eos,
            beam_size=beam_size,
            max_len=max_len,
            need_weights=need_weights,
        )
    return [
        h if h.weights is None else Hypothesis(h.tokens, h.score, h.weights.cpu()) for h in hyps
    ]


def references(world: SceneWorld, count: int | None = None) -> list[list[str]]:
    """Every reference caption of each of the first ``count`` scenes."""
    return [[c.text for c in caps] for caps in world.captions[:count]]


def _words(vocab: Vocab, hyp: Hypothesis) -> tuple[str, list[str]]:
    words = [vocab.itos[t] for t in hyp.tokens]
    return " ".join(words), words


def noun_grounding(
    maps: Sequence[Tensor],
    links: Sequence[Sequence[tuple[int, int]]],
    boxes: Tensor,
    *,
    canvas: int,
) -> tuple[Tensor, Tensor]:
    """Attention inside the named object's box at each linked noun, and a uniform map's.

    Args:
        maps: Per caption, its attention per generated word ``(n_i, h, w)``.
        links: Per caption, ``(word index, object index)`` of each noun
            (:func:`~attnlab.data.scenes.caption_links`).
        boxes: Each scene's object boxes ``(N, K, 4)``.
        canvas: The canvas side in pixels.

    Returns:
        ``(shares, uniform)``, one value per linked noun (float64, empty if none).

    Example:
        >>> spot = torch.zeros(2, 2, 2); spot[1, 0, 1] = 1.0  # word 1 looks top right
        >>> noun_grounding([spot], [[(1, 0)]], torch.tensor([[[32, 0, 64, 32]]]), canvas=64)
        (tensor([1.], dtype=torch.float64), tensor([0.2500], dtype=torch.float64))
    """
    if len(maps) != len(links) or len(maps) != len(boxes):
        raise ValueError(
            f"give one attention stack, link list and box row per caption, got {len(maps)}, "
            f"{len(links)} and {len(boxes)}"
        )
    picked = [(m[t], boxes[i, k]) for i, (m, row) in enumerate(zip(maps, links)) for t, k in row]
    if not picked:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, empty
    stack = torch.stack([m.float() for m, _ in picked])
    where = torch.stack([b for _, b in picked])
    return (
        attention_in_box(stack, where, canvas=canvas),
        uniform_box_share(where, canvas=canvas),
    )


def _links(world: SceneWorld, index: int, text: str, words: list[str]) -> tuple:
    # A generated special token (<unk>) splits into several tokens when read back, so
    # word indices would no longer match the attention rows: no links for that caption.
    if tokenize(text) != words:
        return ()
    return caption_links(world.facts(index), text)


def score_captions(
    hyps: Sequence[Hypothesis], world: SceneWorld, vocab: Vocab, *, canvas: int
) -> dict[str, float]:
    """BLEU-4, exact matches, true captions and grounding of captions of ``world``'s scenes.

    Returns:
        ``test_bleu`` (0-100), ``test_exact_match_accuracy`` (the caption is one of the
        scene's references), ``test_true_caption_accuracy`` (it is true of the scene),
        ``grounding`` and ``grounding_uniform`` (means over linked nouns; NaN if the
        captions name no object) and ``grounded_nouns``.
    """
    refs = references(world, len(hyps))
    texts, links, maps = [], [], []
    exact = true = 0
    for i, hyp in enumerate(hyps):
        text, words = _words(vocab, hyp)
        texts.append(text)
        exact += text in refs[i]
        true += caption_true(world.facts(i), text)
        links.append(_links(world, i, text, words) if hyp.weights is not None else ())
        maps.append(hyp.weights if hyp.weights is not None else torch.zeros(0, 1, 1))
    shares, uniform = noun_grounding(maps, links, world.boxes[: len(hyps)], canvas=canvas)
    n = len(hyps)
    return {
        "test_bleu": reference_bleu(texts, refs),
        "test_exact_match_accuracy": exact / n,
        "test_true_caption_accuracy": true / n,
        "grounding": float(shares.mean()) if len(shares) else math.nan,
        "grounding_uniform": float(uniform.mean()) if len(uniform) else math.nan,
        "grounded_nouns": float(len(shares)),
    }


def noun_maps(hyps: Sequence[Hypothesis], vocab: Vocab) -> dict[str, Tensor]:
    """Per caption, the attention at its first and second noun and the mean over its words.

    A caption with one noun repeats it as the second; one without nouns shows the mean.

    Returns:
        ``{"noun 1", "noun 2", "mean over words"}`` -> ``(N, h, w)``.
    """
    first, second, mean = [], [], []
    for hyp in hyps:
        assert hyp.weights is not None
        words = [vocab.itos[t] for t in hyp.tokens]
        at = [i for i, w in enumerate(words) if w in _NOUN_WORDS]
        avg = hyp.weights.float().mean(0)
        first.append(hyp.weights[at[0]].float() if at else avg)
        second.append(hyp.weights[at[min(1, len(at) - 1)]].float() if at else avg)
        mean.append(avg)
    return {
        "noun 1": torch.stack(first),
        "noun 2": torch.stack(second),
        "mean over words": torch.stack(mean),
    }


def draw_captions(
    hyps: Sequence[Hypothesis],
    world: SceneWorld,
    vocab: Vocab,
    name: str,
    folder: Path,
    *,
    figures: int,
) -> list[str]:
    """The classic figure for the first ``figures`` scenes, and a grid at the first noun.

    Returns:
        The PNG names written into ``folder``.
    """
    files = []
    for i, hyp in enumerate(hyps[:figures]):
        assert hyp.weights is not None
        words = [vocab.itos[t] for t in hyp.tokens] + [EOS]
        maps = {f"{t + 1}. {w}": hyp.weights[t] for t, w in enumerate(words[: len(hyp.weights)])}
        files.append(f"caption_{name}_{i}.png")
        plot_image_maps(
            world.images[i], maps, folder / files[-1], title=f"{name}: {_words(vocab, hyp)[0]}"
        )
    nouns = noun_maps(hyps, vocab)["noun 1"]
    files.append(f"attention_{name}.png")
    plot_attention_grid(
        world.images[: len(hyps)],
        nouns,
        [_words(vocab, h)[0] for h in hyps],
        folder / files[-1],
        ncols=3,
        suptitle=f"{name}: attention at the first noun of each generated caption",
    )
    return files
