import json
from types import SimpleNamespace

import pytest
import torch

import attnlab.experiments.han as han
from attnlab.data.documents import synthetic_documents
from attnlab.experiments import run_experiment
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.nn.pooling import FeedForwardPooling, LastStatePooling


def _toy_corpus(name="movie-reviews", data_dir=None):
    corpus, _ = synthetic_documents(120, sentences=(2, 5), words=(2, 5), filler=10, seed=0)
    return corpus


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(han, "load_documents", _toy_corpus)


TINY = dict(embedding_dim=8, hidden_size=6, attention_size=8, batch_size=16, min_freq=1)


def test_smoke_run_writes_results_report_and_page(toy, tmp_path):
    cfg = han.HANConfig(seeds=2, epochs=2, examples=3, **TINY)
    out = run_experiment("han", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "han" and results["dataset"] == "movie-reviews"
    assert [r["model"] for r in results["results"]] == list(han.MODELS)
    for r in results["results"]:
        runs = r["metrics"]["test_accuracy"]["runs"]
        assert len(runs) == 2 and all(0.0 <= a <= 1.0 for a in runs)
        assert r["parameters"] > 0
    report = (out / "report.md").read_text()
    assert "flat-attention" in report and "attnlab run han" in report
    assert "attention_han.html" in report and "train 84, val 12, test 24" in report
    page = (out / "attention_han.html").read_text()
    assert page.count('class="example"') == 3 and 'class="sentence"' in page


def test_sample_is_balanced_and_fixed():
    labels = [0] * 30 + [1] * 10
    sample = han._sample(labels, 9, seed=0)
    assert sample == han._sample(labels, 9, seed=0) and len(sample) == 9
    assert sum(labels[i] for i in sample) == 4  # 5 + 4 over the two classes
    assert han._sample(labels, 0, seed=0) == list(range(40))


def test_bucket_batches_cover_every_document_once_and_replay():
    lengths = torch.randint(1, 50, (300,))
    batches = list(han._BucketBatches(lengths, 16, torch.Generator().manual_seed(0)))
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert len(batches) == len(han._BucketBatches(lengths, 16, torch.Generator()))
    again = list(han._BucketBatches(lengths, 16, torch.Generator().manual_seed(0)))
    assert again == batches


def test_bad_config_is_one_clear_line():
    with pytest.raises(ValueError, match="--models lstm is unknown"):
        han.HANConfig(models=("lstm",))
    with pytest.raises(ValueError, match="--documents must be 0 or at least 20, got -1"):
        han.HANConfig(documents=-1)
    # Fewer documents would leave a split without documents of some class, after training.
    with pytest.raises(ValueError, match="--documents must be 0 or at least 20, got 19"):
        han.HANConfig(documents=19)
    assert han.HANConfig(documents=20).documents == 20


def test_cli_flags_from_the_config(toy, tmp_path):
    from attnlab.cli.main import main

    out = tmp_path / "cli-run"
    argv = ["run", "han", "--seeds", "1", "--epochs", "1", "--models", "no-attention"]
    argv += ["--hidden-size", "6", "--embedding-dim", "8", "--documents", "60", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["documents"] == 60 and results["config"]["hidden_size"] == 6
    assert [r["model"] for r in results["results"]] == ["no-attention"]


def test_each_model_is_built_from_its_entry_in_the_table():
    cfg = han.HANConfig(**TINY)
    data = SimpleNamespace(vocab=range(20), corpus=SimpleNamespace(classes=["neg", "pos"]))
    built = {name: han.build(cfg, name, data) for name in han.MODELS}
    assert type(built["han"]) is HANClassifier
    flat, last = built["flat-attention"], built["no-attention"]
    assert type(flat) is FlatClassifier and type(last) is FlatClassifier
    assert type(flat.encoder.pooling) is FeedForwardPooling and flat.encoder.pooling.query
    assert flat.encoder.pooling.attention.hidden_size == cfg.attention_size
    assert type(last.encoder.pooling) is LastStatePooling
    with pytest.raises(ValueError, match="unknown HAN experiment model 'lstm'; known: "):
        han.build(cfg, "lstm", data)
