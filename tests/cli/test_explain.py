"""attnlab explain on the real pretrained MiniLM (offline: the package is a dev dependency)."""

import json
from pathlib import Path

import pytest
import torch

import attnlab.experiments.minilm as minilm
import attnlab.experiments.translate as translate
from attnlab.cli._explain import read_run
from attnlab.cli.main import main
from attnlab.models.bert import BertEncoder

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def test_explain_minilm_writes_every_picture(tmp_path, capsys):
    out = tmp_path / "explain"
    assert main(["explain", "The film was surprisingly good.", "--out", str(out)]) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert summary["tokens"][0] == "[CLS]" and summary["tokens"][-1] == "[SEP]"
    assert summary["layers"] == 6 and summary["heads"] == 12
    assert abs(sum(summary["rollout"]) - 1) < 1e-3
    for name in ("heads.png", "rollout.png", "flow.png", "attention.html"):
        assert (out / name).stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "   "], "explain needs a sentence"),
        (["explain", "fine", "--model", "no/such/run"], "is not a run folder"),
    ],
)
def test_bad_explain_input_is_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_explain_refuses_a_folder_that_holds_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["explain", "fine", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_long_input_is_cut_at_the_position_limit_with_a_note(tmp_path, capsys):
    text = " ".join(["the plot wanders but the music is lovely"] * 80)  # ~640 word pieces
    out = tmp_path / "long"
    argv = ["explain", text, "--no-flow", "--layers", "5", "--heads", "0,1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MiniLM reads the first 512" in printed
    summary = json.loads((out / "explain.json").read_text())
    assert len(summary["tokens"]) == 512 and "flow" not in summary["files"]
    assert "first 128 of 512 tokens shown" in (out / "attention.html").read_text()


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if any model's weights load: the flags must be refused before."""

    def loaded(*args, **kwargs):
        raise AssertionError("weights were loaded before the flags were checked")

    monkeypatch.setattr(BertEncoder, "from_pretrained", loaded)
    monkeypatch.setattr(translate, "prepare", loaded)
    monkeypatch.setattr(minilm, "load_checkpoint", loaded)


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("attnlab: error: "), err
    return err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-tokens", "-1"], "--max-tokens must be at least 2, got -1"),
        (["--max-tokens", "1"], "--max-tokens must be at least 2, got 1"),
        (["--layers", "99"], "--layers 99: all-MiniLM-L6-v2 has 6 layers; use 0..5 (or -6..-1"),
        (["--layers", "0,-7"], "--layers 0,-7: all-MiniLM-L6-v2 has 6 layers"),
        (["--layers", ","], "--layers (no index): all-MiniLM-L6-v2 has 6 layers"),
        (["--heads", "99"], "--heads 99: all-MiniLM-L6-v2 has 12 heads; use 0..11"),
        (["--data-dir", "/no/such/dir"], "--data-dir /no/such/dir is not a folder"),
    ],
)
def test_bad_flags_are_refused_before_the_model_loads(flags, message, no_weights, tmp_path, capsys):
    assert main(["explain", "fine", *flags, "--out", str(tmp_path / "o")]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "o").exists()


def _run_folder(tmp_path, record) -> str:
    folder = tmp_path / "run"
    folder.mkdir()
    text = record if isinstance(record, str) else json.dumps(record)
    (folder / "run.json").write_text(text)
    return str(folder)


TRANSFORMER = {"model": "transformer", "transformer_layers": 2, "heads": 2, "d_model": 16}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", "run.json is not valid JSON"),
        ([1, 2], 'run.json is not an attnlab run record: it needs an "experiment" name'),
        ({"config": {}}, 'run.json is not an attnlab run record: it needs an "experiment"'),
        ({"experiment": 3, "config": {}}, "run.json is not an attnlab run record"),
        ({"experiment": "translate"}, "run.json is not an attnlab run record: it needs"),
        ({"experiment": "nope", "config": {}}, "run.json: unknown experiment 'nope'"),
        ({"experiment": "translate", "config": [1]}, "run.json is not an attnlab run record"),
        (
            {"experiment": "translate", "config": {"colour": "red"}},
            "run.json: config has unknown settings colour for TranslateConfig",
        ),
        (
            {"experiment": "translate", "config": {"heads": "2"}},
            "run.json: --heads must be an integer, got '2'",
        ),
        (
            {"experiment": "translate", "config": {"dropout": 1.5}},
            "run.json: --dropout must be in [0, 1), got 1.5",
        ),
        ({"experiment": "gat", "config": {}}, "runs of 'gat' cannot be explained yet"),
        (
            {"experiment": "translate", "config": {"attention": "bahdanau"}},
            "only a Transformer run has self-attention layers",
        ),
        (
            {"experiment": "minilm-sentiment", "config": {"mode": "probe"}},
            "a probe run trains no encoder of its own",
        ),
    ],
)
def test_a_broken_run_json_is_one_line(record, message, no_weights, tmp_path, capsys):
    folder = _run_folder(tmp_path, record)
    assert main(["explain", "fine", "--model", folder, "--out", str(tmp_path / "o")]) == 2
    assert message in error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--layers", "2"], "--layers 2: "),
        (["--heads", "0,2"], "--heads 0,2: "),
    ],
)
def test_layers_and_heads_are_checked_against_the_runs_config(
    flags, message, no_weights, tmp_path, capsys
):
    folder = _run_folder(tmp_path, {"experiment": "translate", "config": TRANSFORMER})
    argv = ["explain", "ein hund", "--model", folder, *flags, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    line = error_line(capsys)
    assert message in line and "(translate) has 2 " in line


def test_a_run_from_a_gpu_machine_reads_here(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = {"mode": "finetune", "device": "cuda"}
    folder = _run_folder(tmp_path, {"experiment": "minilm-sentiment", "config": config})
    spec, cfg = read_run(Path(folder), data_dir=str(tmp_path))
    assert spec.name == "minilm-sentiment" and cfg.device == "cpu"
    assert cfg.data_dir == str(tmp_path)  # --data-dir replaces the recorded folder


@pytest.mark.parametrize("record", sorted(RESULTS.glob("*/run.json")), ids=lambda p: p.parent.name)
def test_every_committed_run_json_reads(record):
    spec, cfg = read_run(record.parent)
    assert isinstance(cfg, spec.config)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gat", "runs of 'gat' cannot be explained with --image; it explains runs of "),
        ("minilm", "--image needs --model RUN_DIR, the folder of a run of "),
    ],
)
def test_image_on_a_run_without_images_names_the_image_experiments(
    model, message, tmp_path, capsys
):
    if model != "minilm":
        model = _run_folder(tmp_path, {"experiment": model, "config": {}})
    assert main(["explain", "--model", model, "--image", "3", "--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert message in line
    assert line.rstrip().endswith("clutter, image-classify, same-different, segment")
