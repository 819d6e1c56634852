"""The caption experiment: a smoke run on tiny scenes, scores of hand-made captions, settings."""

import json
import math
from functools import partial

import pytest
import torch

import attnlab.experiments.caption as caption
from attnlab.data.bleu import reference_bleu
from attnlab.data.image_worlds import uniform_box_share
from attnlab.data.scenes import make_scenes, scene_vocab
from attnlab.experiments import run_experiment
from attnlab.experiments._caption_eval import (
    CaptionData,
    caption_batches,
    noun_grounding,
    score_captions,
)
from attnlab.models.search import Hypothesis
from experiments._fake_items import TINY, fake_fashion_mnist

SMALL = {**TINY, "embedding_dim": 8, "hidden_size": 12, "attention_size": 6}
SMALL |= {"examples": 3, "figures": 1}


@pytest.fixture
def fake_items(monkeypatch):
    """Every scene of the experiment is drawn from the fake Fashion-MNIST."""
    monkeypatch.setattr(caption, "load_fashion_mnist", fake_fashion_mnist)


@pytest.mark.usefixtures("fake_items")
def test_smoke_run_writes_results_report_pictures_and_page(tmp_path):
    cfg = caption.CaptionConfig(**SMALL)
    out = run_experiment("caption", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "caption"
    assert results["dataset"] == "fashion-mnist-scenes"
    entries = {r["model"]: r for r in results["results"]}
    assert list(entries) == ["soft", "hard", "none"]
    for name, entry in entries.items():
        metrics = entry["metrics"]
        assert list(metrics) == [
            "test_bleu", "test_exact_match_accuracy", "test_true_caption_accuracy",
            "grounding", "grounding_uniform", "seconds_per_epoch",
        ]  # fmt: skip
        assert 0 <= metrics["test_bleu"]["mean"] <= 100
        assert 0 <= metrics["test_true_caption_accuracy"]["mean"] <= 1
        nouns = entry["grounded_nouns_runs"][0]
        if nouns:  # an untrained model may name no object at all
            assert 0 <= metrics["grounding"]["mean"] <= 1
        if name == "none" and nouns:  # the mean-pooled grid is a uniform map
            uniform = metrics["grounding_uniform"]["mean"]
            assert metrics["grounding"]["mean"] == pytest.approx(uniform)
        assert len(entry["samples_runs"][0]) == 3
    for name in ("soft", "hard"):
        pictures = entries[name]["pictures"]
        assert pictures == [f"caption_{name}_0.png", f"attention_{name}.png"]
        for picture in pictures:
            assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    assert "pictures" not in entries["none"]
    page = (out / "attention.html").read_text()
    assert "soft: noun 1" in page and "hard: mean over words" in page and "none:" not in page
    assert "soft says: " in page
    report = (out / "report.md").read_text()
    assert "attnlab run caption" in report and "grounding" in report
    assert "Goal 1: soft attention's grounding at least 0.6. Measured: " in report
    assert "Goal 2: soft attention's BLEU-4 above the no-attention baseline" in report


def _scenes():
    toy = fake_fashion_mnist("train")
    return make_scenes(toy, 6, seed=3, canvas=64, captions=3, questions=0)


def test_scores_of_hand_made_captions_and_attention():
    world, vocab = _scenes(), scene_vocab()
    hyps = []
    for i in range(len(world)):
        cap = world.captions[i][0]
        words = cap.text.split()
        weights = torch.full((len(words) + 1, 64, 64), 1.0)  # uniform at every other word
        for t, k in cap.links:  # each noun looks at one pixel of its object's box
            x0, y0, _, _ = world.boxes[i, k].tolist()
            weights[t] = 0.0
            weights[t, y0, x0] = 1.0
        hyps.append(Hypothesis([vocab.id(w) for w in words], 0.0, weights))
    scores = score_captions(hyps, world, vocab, canvas=64)
    assert scores["test_bleu"] == pytest.approx(100.0)
    assert scores["test_exact_match_accuracy"] == 1.0
    assert scores["test_true_caption_accuracy"] == 1.0
    assert scores["grounding"] == pytest.approx(1.0)
    links = [(i, k) for i in range(len(world)) for _, k in world.captions[i][0].links]
    assert scores["grounded_nouns"] == len(links)
    boxes = torch.stack([world.boxes[i, k] for i, k in links])
    assert scores["grounding_uniform"] == pytest.approx(float(uniform_box_share(boxes).mean()))
    # attention spread evenly at the nouns scores exactly the uniform share
    flat = [Hypothesis(h.tokens, 0.0, torch.ones_like(h.weights)) for h in hyps]
    scores = score_captions(flat, world, vocab, canvas=64)
    assert scores["grounding"] == pytest.approx(scores["grounding_uniform"])
    # a wrong caption: not a reference, not true, lower BLEU
    swapped = world.captions[0][0].text.replace(" a ", " a zebra ", 1)
    wrong = [Hypothesis([vocab.id(w) for w in swapped.split()], 0.0, None)] + hyps[1:]
    scores = score_captions(wrong, world, vocab, canvas=64)
    assert scores["test_exact_match_accuracy"] == pytest.approx(5 / 6)
    assert scores["test_true_caption_accuracy"] == pytest.approx(5 / 6)
    assert scores["test_bleu"] < 100


def test_grounding_on_a_coarse_grid_counts_cells_partly_inside_the_box():
    # 2x2 grid over a 64-pixel canvas; the box covers the top-left cell and half the
    # top-right one: 0.5 (top left) + 0.5 * 0.25 (half of the top right) = 0.625
    maps = torch.tensor([[[0.5, 0.25], [0.25, 0.0]]]).expand(3, 2, 2)
    boxes = torch.tensor([[[0, 0, 48, 32], [0, 0, 1, 1]]])
    shares, uniform = noun_grounding([maps], [[(1, 0)]], boxes, canvas=64)
    assert shares.tolist() == [pytest.approx(0.625)]
    assert uniform.tolist() == [pytest.approx(48 * 32 / 64**2)]
    empty, _ = noun_grounding([maps], [[]], boxes, canvas=64)
    assert len(empty) == 0
    with pytest.raises(ValueError, match="one attention stack, link list and box row per"):
        noun_grounding([maps, maps], [[]], boxes, canvas=64)


def test_bleu_uses_every_reference_of_a_scene():
    refs = [["a red bag above a blue boot", "a blue boot below a red bag"], ["a red coat"]]
    assert reference_bleu(["a blue boot below a red bag", "a red coat"], refs) == pytest.approx(100)
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        reference_bleu(["a red coat"], refs)


@pytest.mark.usefixtures("fake_items")
@pytest.mark.parametrize("pretrain_share", [0.05, 0.0])
def test_batches_hold_one_caption_per_scene_and_replay_from_the_seed(pretrain_share):
    cfg = caption.CaptionConfig(**SMALL, pretrain_share=pretrain_share)
    data = caption.prepare(cfg)
    batches = partial(caption_batches, data, 16, seed=1, augmented=True)
    first = list(batches(epoch=1))
    assert sum(len(x) for x, _ in first) == len(data.worlds.train)
    for (x, ids), (x2, ids2) in zip(first, batches(epoch=1), strict=True):
        assert torch.equal(x, x2) and torch.equal(ids, ids2)
    bos, eos = data.vocab.id("<bos>"), data.vocab.id("<eos>")
    inputs, ids = first[0]
    if pretrain_share:  # the frozen encoder's grid, the cells' x and y appended
        cells = 64 // 2 ** (len(cfg.widths) - 1)
        assert inputs.shape == (16, cfg.widths[-1] + 2, cells, cells)
        assert torch.equal(inputs[0, -2, 0], torch.linspace(-1, 1, cells + 1)[:-1] + 1 / cells)
    else:  # normalised images
        assert inputs.shape == (16, 3, 64, 64) and inputs.dtype == torch.float32
    assert (ids[:, 0] == bos).all() and ((ids == eos).sum(1) == 1).all()
    texts = {c.text for caps in data.worlds.train.captions for c in caps}
    for row in ids:
        words = data.vocab.decode(row[1:])
        assert " ".join(words[: words.index("<eos>")]) in texts
    assert not math.isnan(data.mean) and data.std > 0


def test_training_captions_longer_than_max_len_are_cut_with_one_warning():
    cfg = caption.CaptionConfig(**SMALL)
    data = caption.prepare(cfg)
    assert int((data.ids != data.vocab.pad_id).sum(1).max()) - 2 > 4  # words, no BOS/EOS
    with pytest.warns(UserWarning, match=r"training captions are longer than --max-len 4 words"):
        cut = CaptionData.build(data.worlds, data.vocab, data.items, max_len=4)
    assert cut.ids.shape == (len(data.ids), 4 + 2)
    for full, short in zip(data.ids, cut.ids, strict=True):
        words = data.vocab.decode(full[1:])
        words = words[: words.index("<eos>")]
        assert data.vocab.decode(short[1:])[: min(len(words), 4) + 1] == [*words[:4], "<eos>"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"models": ("soft", "cnn")}, ValueError, "--models cnn is unknown; choose from soft, "),
        ({"models": ("soft", "soft")}, ValueError, "--models names soft twice"),
        ({"widths": (8,)}, ValueError, "--widths must be 2 to 7 channel counts"),
        ({"beam_size": 0}, ValueError, "--beam-size must be at least 1, got 0"),
        ({"max_len": 5}, ValueError, "--max-len must be at least 10"),
        ({"grad_clip": 0.0}, ValueError, "--grad-clip must be > 0"),
        ({"dropout": 1.0}, ValueError, r"--dropout must be in \[0, 1\)"),
        ({"seeds": "3"}, TypeError, "--seeds must be an integer, got '3'"),
    ],
)
def test_bad_settings_are_one_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        caption.CaptionConfig(**kwargs)
