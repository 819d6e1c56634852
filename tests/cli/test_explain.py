"""attnlab explain on the real pretrained MiniLM (offline: the package is a dev dependency)."""

import json

import pytest

from attnlab.cli.main import main


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
