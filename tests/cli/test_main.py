"""The ``attnlab`` command, driven through ``main([...])`` with a toy experiment."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest

import attnlab
import attnlab.bench.core
import attnlab.bench.engines
import attnlab.nn
from attnlab.cli._run import parse_config
from attnlab.cli.main import main
from attnlab.experiments import EXPERIMENTS, ExperimentSpec, ModelResult, command_line
from attnlab.registry import REGISTRIES


@dataclass(frozen=True)
class CliConfig:
    """Settings of the CLI toy.

    Attributes:
        steps: how many steps to take.
        rate: the 100% learning rate.
        shuffle: shuffle the data.
        mode: fast or slow.
        sizes: layer sizes.
        crash: raise a RuntimeError (a bug) inside the run.
    """

    steps: int = 3
    rate: float = 0.5
    shuffle: bool = True
    mode: Literal["fast", "slow"] = "fast"
    sizes: tuple[int, ...] = (4, 8)
    crash: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


SEEN: list[CliConfig] = []


def cli_run(cfg: CliConfig, run) -> list[ModelResult]:
    SEEN.append(cfg)
    if cfg.crash:
        raise RuntimeError("a real bug")
    return [ModelResult("toy", {"test_accuracy": [0.5, 1.0]}, parameters=1234, seconds=0.25)]


SPEC = ExperimentSpec(
    "clitoy", "The CLI's toy experiment", CliConfig, cli_run, dataset=lambda cfg: "toy"
)


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "clitoy", SPEC)
    SEEN.clear()


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert err.startswith("attnlab: error: ")
    return err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"attnlab {attnlab.__version__}"


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "attnlab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"attnlab {attnlab.__version__}"


def test_flags_are_parsed_with_the_right_types(tmp_path, capsys):
    argv = [
        "run",
        "clitoy",
        "--steps",
        "4",
        "--rate",
        "0.25",
        "--no-shuffle",
        "--mode",
        "slow",
        "--sizes",
        "16",
        "32",
        "64",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    assert SEEN == [CliConfig(steps=4, rate=0.25, shuffle=False, mode="slow", sizes=(16, 32, 64))]
    cfg = SEEN[0]
    assert type(cfg.steps) is int and type(cfg.rate) is float and type(cfg.sizes) is tuple
    out = capsys.readouterr().out
    assert "| toy | 75.00 ± 35.36 | 2 | 1,234 | 0.250 |" in out
    assert f"wrote {tmp_path / 'run'}" in out
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["command"] == (
        "attnlab run clitoy --steps 4 --rate 0.25 --no-shuffle --mode slow --sizes 16 32 64"
    )


def test_defaults_and_command_round_trip():
    cfg, flags = parse_config(SPEC, [])
    assert cfg == CliConfig() and flags.out is None and not flags.resume and not flags.overwrite
    changed = CliConfig(steps=7, shuffle=False, mode="slow", sizes=(1,))
    words = shlex.split(command_line("clitoy", changed))
    assert words[:3] == ["attnlab", "run", "clitoy"]
    assert parse_config(SPEC, words[3:])[0] == changed


def test_help_shows_field_docs_and_defaults(capsys):
    assert main(["run", "clitoy", "-h"]) == 0
    out = capsys.readouterr().out
    assert "how many steps to take. (default: 3)" in out
    assert "the 100% learning rate." in out  # a literal % survives argparse's formatting
    assert "--shuffle, --no-shuffle" in out
    assert "{fast,slow}" in out and "(default: 4 8)" in out
    assert "--out DIR" in out and "--resume" in out and "--overwrite" in out


def test_bad_flag_values_exit_2(capsys):
    assert main(["run", "clitoy", "--mode", "medium"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["run", "clitoy", "--steps", "x"]) == 2
    assert "argument --steps: invalid int value: 'x'" in capsys.readouterr().err
    assert SEEN == []


def test_config_validation_error_is_one_line(capsys):
    assert main(["run", "clitoy", "--steps", "0"]) == 2
    assert "steps must be at least 1, got 0" in error_line(capsys)


def test_unknown_experiment_lists_the_available_ones(capsys):
    assert main(["run", "nope"]) == 2
    line = error_line(capsys)
    assert line.startswith("attnlab: error: unknown experiment 'nope'; available: ")
    assert "clitoy" in line and "(see `attnlab list`)" in line


def test_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "clitoy", "--out", out]) == 0
    before = (tmp_path / "run" / "results.json").read_text()
    capsys.readouterr()
    assert main(["run", "clitoy", "--steps", "5", "--out", out]) == 2
    assert "finished run; pass --overwrite" in error_line(capsys)
    assert (tmp_path / "run" / "results.json").read_text() == before
    assert main(["run", "clitoy", "--steps", "5", "--out", out, "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["steps"] == 5


def test_unfinished_run_needs_resume(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    manifest = {"experiment": "clitoy", "config": dataclasses.asdict(CliConfig())}
    (out / "run.json").write_text(json.dumps(manifest))  # what marks an attnlab run
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "partial").write_text("x")
    assert main(["run", "clitoy", "--out", str(out)]) == 2
    assert "unfinished run; pass --resume" in error_line(capsys)
    assert main(["run", "clitoy", "--out", str(out), "--resume"]) == 0
    assert (out / "results.json").is_file() and (out / "checkpoints" / "partial").is_file()


def test_resume_with_overwrite_is_rejected(tmp_path, capsys):
    assert main(["run", "clitoy", "--out", str(tmp_path), "--resume", "--overwrite"]) == 2
    assert "--resume and --overwrite" in error_line(capsys)
    assert SEEN == []


def test_real_bugs_keep_their_traceback(tmp_path):
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["run", "clitoy", "--crash", "--out", str(tmp_path / "run")])


def test_traceback_flag_reraises_user_errors():
    with pytest.raises(ValueError, match="unknown experiment"):
        main(["--traceback", "run", "nope"])


class FakeMechanism:
    """Fake attention, for the listing.

    More text that the listing does not show.
    """


def test_list_shows_experiments_and_mechanisms(monkeypatch, capsys):
    monkeypatch.setattr(attnlab.nn, "MECHANISMS", {"fake": FakeMechanism}, raising=False)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert any(
        line.split() == ["clitoy", "The", "CLI's", "toy", "experiment"] for line in out.splitlines()
    )
    assert "Mechanisms" in out
    assert any(
        line.split()[:1] == ["fake"] and line.endswith("Fake attention, for the listing.")
        for line in out.splitlines()
    )
    assert "More text" not in out
    assert any(line.split()[:2] == ["bigbird", "BigBird"] for line in out.splitlines())


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_list_shows_every_registry_with_its_entries(key, capsys):
    registry = REGISTRIES[key]
    rows = registry.rows()
    if rows is None:
        pytest.skip(f"{registry.table} is not defined yet")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines.count(registry.heading) == 1
    start = lines.index(registry.heading) + 1
    section = lines[start : start + max(len(rows), 1)]
    if not rows:
        assert section == ["  (none)"]
    for (name, text), line in zip(rows, section):
        assert line.split(maxsplit=1) == ([name, text] if text else [name]), line


def test_list_without_mechanisms_registry(monkeypatch, capsys):
    monkeypatch.delattr(attnlab.nn, "MECHANISMS", raising=False)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "clitoy" in out and "Mechanisms" not in out


ROWS = [
    {
        "figure": "dispatch_overhead",
        "length": 256,
        "pass": "forward",
        "sdpa_s": 1e-4,
        "attention_s": 1.1e-4,
        "ratio": 1.1,
    },
    {
        "figure": "peak_memory",
        "length": 512,
        "pass": "forward+backward",
        "engine": "sdpa",
        "peak_mib": 8.0,
    },
]


def test_bench_writes_results(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(
        attnlab.bench.core, "run_core", lambda quick=False: calls.append(quick) or ROWS
    )
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "core", "--quick", "--out", str(out)]) == 0
    assert calls == [True]
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "results.csv",
        "memory.png",
        "summary.md",
    }
    assert json.loads((out / "results.json").read_text())["rows"] == ROWS
    printed = capsys.readouterr().out
    assert "| 256 | 0.100 | 0.110 | 1.10x |" in printed and f"wrote {out}" in printed


def test_bench_refuses_a_non_empty_out_before_running(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(attnlab.bench.engines, "run_engines", lambda quick=False: calls.append(1))
    (tmp_path / "keep.txt").write_text("x")
    assert main(["bench", "--out", str(tmp_path)]) == 2
    assert "not empty; pass --out another folder" in error_line(capsys)
    assert calls == []


def test_bench_unknown_suite(capsys):
    assert main(["bench", "--suite", "nope"]) == 2
    assert "unknown bench suite 'nope'; available: core, engines" in error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "clitoy", "--steps", "x"], "attnlab run clitoy: error: argument --steps: invalid"),
        (["bench", "--bogus"], "attnlab: error: unrecognized arguments: --bogus (see attnlab -h)"),
        (["explain"], "attnlab: error: explain needs a sentence"),
    ],
)
def test_flag_errors_are_one_line_without_the_usage_block(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(words) and "usage:" not in err
