"""The vqa experiment: a smoke run on tiny scenes, unknown words, the scores, bad settings."""

import json

import pytest
import torch

import attnlab.experiments.vqa as vqa
from attnlab.data.fashion_mnist import FashionMNIST
from attnlab.data.scenes import QUESTION_HOPS, make_scenes, scene_vocab
from attnlab.experiments import run_experiment
from attnlab.experiments._results import ModelResult
from attnlab.experiments._vqa_data import QuestionSplit, accuracy_by, hop_grounding
from attnlab.experiments._vqa_report import goal
from experiments._fake_items import TINY, fake_items  # noqa: F401 (fixture)

SMALL = {"embedding_dim": 8, "hidden_size": 16, "attention_size": 8}


@pytest.mark.usefixtures("fake_items")
def test_smoke_run_writes_results_report_pictures_and_page(tmp_path):
    cfg = vqa.VQAConfig(**TINY, **SMALL)
    out = run_experiment("vqa", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "vqa" and results["dataset"] == "fashion-mnist-scenes"
    entries = {r["model"]: r for r in results["results"]}
    assert list(entries) == ["question-only", "cnn-lstm", "san-1", "san-2"]
    data = vqa.prepare(cfg)
    kinds = [k for k in QUESTION_HOPS if k in data.test.kinds]
    assert {"corner", "relation"} <= set(kinds)
    per_kind = [f"test_accuracy_{k}" for k in kinds]
    for name, entry in entries.items():
        metrics = entry["metrics"]
        for metric in ["test_accuracy", *per_kind, "test_accuracy_hops_1", "test_accuracy_hops_2"]:
            assert 0 <= metrics[metric]["mean"] <= 1, (name, metric)
        assert ("last_hop_on_answer" in metrics) == name.startswith("san")
    assert 0 < entries["san-2"]["metrics"]["answer_box_share"]["mean"] < 1
    for name in ("san-1", "san-2"):
        assert entries[name]["pictures"] == [f"{name}_question{i}.png" for i in range(4)]
        for picture in entries[name]["pictures"]:
            assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    assert "pictures" not in entries["cnn-lstm"]
    page = (out / "attention.html").read_text()
    assert "san-2: hop 2" in page and "san-1: hop 1" in page and "cnn-lstm" not in page
    assert data.test.texts[0].replace("?", "") in page
    report = (out / "report.md").read_text()
    assert "attnlab run vqa" in report and "| 2 hops |" in report
    assert "Goal (issue 15): SAN-2 at least 10 points above CNN + LSTM" in report
    assert "on two-hop questions (" in report
    assert report.count("Goal reached.") + report.count("Goal not reached.") == 1


def test_unknown_words_become_unk_and_the_model_still_answers():
    vocab = scene_vocab()
    texts = ["what is beside the zebra?", "", "WHAT colour is the bag?"]
    ids, lengths = vqa.encode_questions(texts)
    unknown = [i for i, t in enumerate(ids[0].tolist()) if t == vocab.unk_id]
    assert unknown == [2, 4]  # "beside" and "zebra"; the grammar's words keep their ids
    assert lengths.tolist() == [6, 1, 6] and int(ids[1, 0]) == vocab.unk_id
    assert int(ids[2, 0]) == vocab.id("what")  # lowercased, so known
    cfg = vqa.VQAConfig(**TINY, **SMALL)
    model = vqa.build(cfg, "san-2").eval()
    logits = model(torch.rand(3, 3, 64, 64), ids, lengths)
    assert logits.shape == (3, len(vqa.ANSWERS)) and torch.isfinite(logits).all()
    with pytest.raises(TypeError, match="not one str"):
        vqa.encode_questions("what is in the top left corner?")


def test_accuracy_by_kind_and_hop_and_the_goal_line():
    correct = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    scores = accuracy_by(
        correct,
        ["corner", "count", "relation", "relation_colour", "relation"],
        torch.tensor([1, 1, 2, 2, 2]),
    )
    assert scores["test_accuracy"] == pytest.approx(0.6)
    assert scores["test_accuracy_hops_2"] == pytest.approx(1 / 3)
    assert scores["test_accuracy_relation"] == 0.5 and "test_accuracy_colour" not in scores

    def result(name, two, overall):
        return ModelResult(
            name, {"test_accuracy": [overall] * 2, "test_accuracy_hops_2": two}, 1, 1.0
        )

    lines = goal(
        [
            result("cnn-lstm", [0.40, 0.42], 0.6),
            result("san-1", [0.5, 0.5], 0.7),
            result("san-2", [0.55, 0.53], 0.72),
        ]
    )
    assert "SAN-2 54.00% against CNN + LSTM 41.00% on two-hop questions (+13.00 points)" in lines[0]
    assert "against SAN-1 50.00%" in lines[0] and lines[0].endswith("Goal reached.")
    lines = goal([result("cnn-lstm", [0.5], 0.6), result("san-2", [0.55], 0.6)])
    assert "(+5.00 points): not reached" in lines[0] and lines[0].endswith("Goal not reached.")
    assert goal([result("cnn-lstm", [0.5], 0.6)]) == []


def test_hop_grounding_scores_the_named_and_the_answer_objects():
    toy = FashionMNIST(torch.full((40, 8, 8), 200, dtype=torch.uint8), torch.arange(40) % 10)
    world = make_scenes(toy, 30, seed=0, canvas=64, sizes=(16,))
    split = QuestionSplit.from_world(world)
    objects = [q.objects for qs in world.questions for q in qs]
    maps = torch.zeros(len(split), 2, 64, 64)  # pixel maps: hop 1 on the named object,
    for i, objs in enumerate(objects):  # hop 2 on the answer (its last object)
        if split.hops[i] == 2:
            for hop, k in enumerate(objs):
                x0, y0, x1, y1 = world.boxes[split.scene[i], k].tolist()
                maps[i, hop, y0:y1, x0:x1] = 1.0
    scores = hop_grounding(maps, world, split, canvas=64)
    assert scores["first_hop_on_reference"] == pytest.approx(1.0)
    assert scores["last_hop_on_answer"] == pytest.approx(1.0)
    assert 0 < scores["answer_box_share"] < 0.1  # a 16-pixel box of a 64-pixel canvas
    swapped = hop_grounding(maps.flip(1), world, split, canvas=64)
    assert swapped["last_hop_on_answer"] < 0.2  # the named object is not the answer


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"models": ("san-2", "san-3")}, ValueError, "--models san-3 is unknown; choose from "),
        ({"models": ("san-1", "san-1")}, ValueError, "--models names san-1 twice"),
        ({"widths": (8,)}, ValueError, "--widths must be 2 to 7 channel counts"),
        ({"questions": 0}, ValueError, "--questions must be at least 1, got 0"),
        ({"dropout": 1.0}, ValueError, r"--dropout must be in \[0, 1\)"),
        ({"hidden_size": 0}, ValueError, "--hidden-size must be at least 1"),
        ({"budget_minutes": 0.0}, ValueError, "--budget-minutes must be > 0"),
        ({"seeds": "3"}, TypeError, "--seeds must be an integer, got '3'"),
    ],
)
def test_bad_settings_are_one_line(kwargs, error, match):
    with pytest.raises(error, match=match):
        vqa.VQAConfig(**kwargs)
