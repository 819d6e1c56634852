import json
import random
from types import SimpleNamespace

import pytest
import torch

import attnlab.experiments.translate as translate
from attnlab.data import ParallelCorpus
from attnlab.experiments import RunDir, _translate_eval, run_experiment
from attnlab.models import SEQ2SEQ_ATTENTIONS

LEXICON = {
    "ein": "a",
    "hund": "dog",
    "mann": "man",
    "kind": "child",
    "läuft": "runs",
    "sitzt": "sits",
    "rot": "red",
    "im": "in the",
    "park": "park",
    "haus": "house",
}


def _toy(split, src="de", tgt="en", data_dir=None):
    rng = random.Random({"train": 0, "val": 1, "test_2016_flickr": 2}[split])
    n = {"train": 200, "val": 30, "test_2016_flickr": 30}[split]
    words = list(LEXICON)
    source = [" ".join(rng.choices(words, k=rng.randint(3, 6))) for _ in range(n)]
    target = [" ".join(LEXICON[w] for w in s.split()) for s in source]
    return ParallelCorpus(source, target, src, tgt, split)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setattr(translate, "load_multi30k", _toy)
    monkeypatch.setenv("ATTNLAB_HOME", str(tmp_path / "home"))


def _cfg(**kw):
    base = dict(
        budget_minutes=0.05,
        max_epochs=2,
        embedding_dim=8,
        hidden_size=8,
        vocab_size=320,
        batch_size=32,
        beam_size=2,
        examples=1,
        max_len=12,
    )
    return translate.TranslateConfig(**(base | kw))


def test_single_variant_writes_results_report_and_alignments(toy, tmp_path):
    out = run_experiment("translate", _cfg(attention="local-p"), out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "multi30k-de-en"
    (entry,) = results["results"]
    assert entry["model"] == "local-p"
    for metric in ("bleu", "bleu_greedy", "perplexity", "training_minutes"):
        assert metric in entry["metrics"]
    assert entry["metrics"]["training_minutes"]["mean"] < 0.5
    assert (out / "alignment-local-p-0.png").stat().st_size > 0
    assert "sacreBLEU" in (out / "report.md").read_text()


def test_compare_trains_every_variant_and_draws_them_side_by_side(toy, tmp_path):
    cfg = _cfg(compare=True, variants=("none", "bahdanau", "hard-reinforce"), max_epochs=1)
    out = run_experiment("translate", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["results"]] == list(cfg.variants)
    assert (out / "alignments-compared.png").stat().st_size > 0


def test_resume_reuses_finished_models(toy, tmp_path, monkeypatch):
    cfg = _cfg(attention="luong-dot", max_epochs=1)
    out = run_experiment("translate", cfg, out=tmp_path / "run")
    first = json.loads((out / "results.json").read_text())["results"][0]["metrics"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(translate, "fit_budget", no_training)
    (again,) = translate.run(cfg, RunDir(out, out, resumed=True)).results
    assert again.metrics["bleu"] == [first["bleu"]["mean"]]


def test_bad_config_says_what_is_valid():
    with pytest.raises(ValueError, match="--attention luong-cosine is unknown; choose from none"):
        translate.TranslateConfig(attention="luong-cosine")
    with pytest.raises(ValueError, match="must differ"):
        translate.TranslateConfig(src="en", tgt="en")
    assert set(translate.TranslateConfig().variants) == set(SEQ2SEQ_ATTENTIONS)


def test_explained_stack_is_the_transformer_encoder():
    cfg = translate.TranslateConfig(model="transformer", transformer_layers=2, heads=8)
    assert cfg.explained_stack() == (2, 8)
    with pytest.raises(ValueError, match="only a Transformer run has self-attention"):
        translate.TranslateConfig(attention="bahdanau").explained_stack()


def test_no_more_alignments_are_drawn_than_the_test_split_holds(monkeypatch, tmp_path):
    # More --examples than test sentences used to fail after training, indexing past the end.
    drawn = []
    monkeypatch.setattr(_translate_eval, "_word_alignment", lambda *a: (None, ["a"], ["b"]))
    monkeypatch.setattr(_translate_eval, "plot_alignment", lambda *a, path, **k: drawn.append(path))
    data = SimpleNamespace(tensors={"test_2016_flickr": (None, torch.ones(2), None, None)})
    cfg = SimpleNamespace(examples=5, beam_size=1, src="de", tgt="en")
    names = _translate_eval.draw_alignments(None, data, "x", cfg, tmp_path)
    assert names == ["alignment-x-0.png", "alignment-x-1.png"] and len(drawn) == 2


def test_long_sentences_are_truncated_with_a_warning(toy):
    cfg = _cfg(max_len=4)
    with pytest.warns(UserWarning, match="truncated"):
        data = translate.prepare(cfg)
    assert data.tensors["train"][0].shape[1] <= 4


def test_transformer_run_is_scored_and_explained_from_its_folder(toy, tmp_path, capsys):
    from attnlab.cli.main import main

    cfg = _cfg(model="transformer", d_model=16, heads=2, ff_dim=32, transformer_layers=2)
    out = run_experiment("translate", cfg, out=tmp_path / "run")
    (entry,) = json.loads((out / "results.json").read_text())["results"]
    assert entry["model"] == "transformer" and "bleu" in entry["metrics"]
    assert (out / "alignment-transformer-0.png").stat().st_size > 0
    explained = tmp_path / "explained"
    code = main(["explain", "ein hund läuft im park", "--model", str(out), "--out", str(explained)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((explained / "explain.json").read_text())
    assert summary["layers"] == 2 and summary["heads"] == 2
    assert (explained / "attention.html").stat().st_size > 0


def test_an_rnn_run_cannot_be_explained(toy, tmp_path, capsys):
    from attnlab.cli.main import main

    out = run_experiment("translate", _cfg(attention="luong-dot", max_epochs=1), out=tmp_path / "r")
    assert main(["explain", "ein hund", "--model", str(out), "--out", str(tmp_path / "x")]) == 2
    assert "only a Transformer run has self-attention" in capsys.readouterr().err
