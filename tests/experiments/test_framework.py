"""The experiment framework: registry, run folders, results.json shape, report table."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import attnlab.experiments._registry as registry
from attnlab.experiments import (
    EXPERIMENTS,
    ExperimentSpec,
    ModelResult,
    RunDir,
    available,
    command_line,
    config_fields,
    get_experiment,
    register,
    run_experiment,
)


@dataclass(frozen=True)
class ToyConfig:
    """A toy experiment's settings.

    Attributes:
        steps: how many steps
            (this line continues the text).
        lr (float): learning rate.
        shuffle: shuffle the data.
        variant: which variant.
        seeds: one run per seed.
        limit: optional cap.
    """

    steps: int = 3
    lr: float = 0.5
    shuffle: bool = True
    variant: Literal["a", "b"] = "a"
    seeds: tuple[int, ...] = (0, 1)
    limit: int | None = None


# Test hooks, deliberately outside the config so a resumed run has the same config.
FAIL_AFTER_SEED: list[int] = []
COMPUTED: list[int] = []


def toy_run(cfg: ToyConfig, run: RunDir) -> list[ModelResult]:
    accuracies = []
    for seed in cfg.seeds:
        ckpt = run.checkpoints / f"seed{seed}.json"
        if not ckpt.exists():
            COMPUTED.append(seed)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            ckpt.write_text(json.dumps({"accuracy": 0.5 + 0.1 * seed}))
        accuracies.append(json.loads(ckpt.read_text())["accuracy"])
        if FAIL_AFTER_SEED and seed == FAIL_AFTER_SEED[0]:
            raise RuntimeError("simulated crash")
    (run.path / "picture.png").write_bytes(b"png")
    return [
        ModelResult(
            "toy",
            {"test_accuracy": accuracies, "loss": [1.25] * len(accuracies)},
            parameters=12345,
            seconds=0.5,
            extra={"pictures": ["picture.png"]},
        ),
        ModelResult("toy-small", {"test_accuracy": [0.75]}, parameters=7, seconds=0.125),
    ]


TOY = ExperimentSpec(
    name="toy",
    description="A toy experiment for the tests",
    config=ToyConfig,
    run=toy_run,
    dataset=lambda cfg: f"toy-{cfg.variant}",
    report=lambda cfg, outcome, run: "![toy](picture.png)",
)


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "toy", TOY)
    FAIL_AFTER_SEED.clear()
    COMPUTED.clear()


def read_results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_registry_lookup_and_unknown_name():
    assert get_experiment("toy") is TOY
    assert "toy" in available()
    with pytest.raises(ValueError, match=r"unknown experiment 'nope'; available: .*toy") as err:
        get_experiment("nope")
    assert "\n" not in str(err.value) and "attnlab list" in str(err.value)


def test_register_rejects_a_second_spec_with_the_same_name():
    assert register(TOY) is TOY  # the same spec again is fine (module reloads)
    other = ExperimentSpec("toy", "other", ToyConfig, toy_run, lambda cfg: "x")
    with pytest.raises(ValueError, match="already registered"):
        register(other)


def test_spec_validation():
    @dataclass
    class Mutable:
        x: int = 1

    @dataclass(frozen=True)
    class Unparsable:
        table: dict = None

    with pytest.raises(TypeError, match="frozen dataclass"):
        ExperimentSpec("m", "d", Mutable, toy_run, str)
    with pytest.raises(ValueError, match="lowercase"):
        ExperimentSpec("Bad Name", "d", ToyConfig, toy_run, str)
    with pytest.raises(TypeError, match="cannot express"):
        ExperimentSpec("u", "d", Unparsable, toy_run, str)


def test_load_builtin_skips_missing_module_but_not_missing_dependency(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "BUILTIN", ("attnlab.experiments._no_such_experiment",))
    registry._load_builtin()
    (tmp_path / "attnlab_broken_experiment.py").write_text("import attnlab_missing_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "BUILTIN", ("attnlab_broken_experiment",))
    with pytest.raises(ModuleNotFoundError, match="attnlab_missing_dep_xyz"):
        registry._load_builtin()


def test_config_fields_types_and_docs():
    fields = {f.name: f for f in config_fields(ToyConfig)}
    assert fields["steps"].flag == "--steps" and fields["steps"].parse("4") == 4
    assert fields["steps"].help == "how many steps (this line continues the text)."
    assert fields["lr"].help == "learning rate."
    assert fields["shuffle"].kind == "bool"
    assert fields["variant"].choices == ("a", "b")
    assert fields["seeds"].kind == "tuple" and fields["seeds"].nargs == "+"
    assert fields["limit"].parse("none") is None and fields["limit"].parse("7") == 7


def test_command_line_spells_only_changed_fields():
    assert command_line("toy", ToyConfig()) == "attnlab run toy"
    cfg = ToyConfig(steps=4, shuffle=False, seeds=(2, 3), limit=9)
    expected = "attnlab run toy --steps 4 --no-shuffle --seeds 2 3 --limit 9"
    assert command_line("toy", cfg) == expected


def test_results_json_has_the_stable_shape(tmp_path):
    out = run_experiment("toy", ToyConfig(steps=4), out=tmp_path / "run")
    assert out == tmp_path / "run"
    doc = read_results(out)
    assert list(doc) == ["experiment", "dataset", "config", "environment", "command", "results"]
    assert doc["experiment"] == "toy" and doc["dataset"] == "toy-a"
    assert doc["config"] == {
        "steps": 4,
        "lr": 0.5,
        "shuffle": True,
        "variant": "a",
        "seeds": [0, 1],
        "limit": None,
    }
    assert set(doc["environment"]) == {"torch", "python", "threads", "device", "commit"}
    assert doc["command"] == "attnlab run toy --steps 4"
    toy, small = doc["results"]
    assert list(toy) == ["model", "metrics", "parameters", "seconds", "pictures"]
    assert toy["model"] == "toy" and toy["parameters"] == 12345 and toy["seconds"] == 0.5
    acc = toy["metrics"]["test_accuracy"]
    assert acc["runs"] == [0.5, 0.6]
    assert acc["mean"] == pytest.approx(0.55)
    assert acc["std"] == pytest.approx(statistics.stdev([0.5, 0.6]))  # sample std, ddof=1
    assert small["metrics"]["test_accuracy"] == {"mean": 0.75, "std": 0.0, "runs": [0.75]}
    assert list(small) == ["model", "metrics", "parameters", "seconds"]


def test_report_md_table(tmp_path, capsys):
    out = run_experiment("toy", ToyConfig(variant="b"), out=tmp_path / "run")
    report = (out / "report.md").read_text()
    assert report.startswith("# toy: A toy experiment for the tests")
    assert "```bash\nattnlab run toy --variant b\n```" in report
    assert "| model | test_accuracy (%) | loss | runs | parameters | seconds |" in report
    assert "| toy | 55.00 ± 7.07 | 1.250 ± 0.000 | 2 | 12,345 | 0.500 |" in report
    assert "| toy-small | 75.00 ± 0.00 | — | 1 | 7 | 0.125 |" in report
    assert report.rstrip().endswith("![toy](picture.png)")
    assert "| toy | 55.00 ± 7.07 |" in capsys.readouterr().out  # the same table on stdout


def test_default_out_is_timestamped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run_experiment("toy")
    assert re.fullmatch(r"runs/toy/\d{8}-\d{6}(-\d+)?", out.as_posix())
    assert (tmp_path / out / "results.json").is_file()


def test_wrong_config_type_is_rejected(tmp_path):
    with pytest.raises(TypeError, match="takes a ToyConfig"):
        run_experiment("toy", object(), out=tmp_path / "run")


def test_finished_run_is_never_touched_without_overwrite(tmp_path):
    out = run_experiment("toy", out=tmp_path / "run")
    before = (out / "results.json").read_text()
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="finished run.*--overwrite") as err:
            run_experiment("toy", ToyConfig(steps=9), out=out, resume=resume)
        assert "\n" not in str(err.value)
    assert (out / "results.json").read_text() == before


def test_overwrite_replaces_a_finished_run(tmp_path):
    out = run_experiment("toy", out=tmp_path / "run")
    run_experiment("toy", ToyConfig(steps=9), out=out, overwrite=True)
    assert read_results(out)["config"]["steps"] == 9
    assert siblings(out) == ["run"]  # no work or old folder left beside it


def test_failed_overwrite_leaves_the_old_run_intact(tmp_path):
    out = run_experiment("toy", out=tmp_path / "run")
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    FAIL_AFTER_SEED.append(0)
    with pytest.raises(RuntimeError, match="simulated"):
        run_experiment("toy", ToyConfig(steps=9), out=out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    assert siblings(out) == ["run"]


def test_unfinished_run_needs_resume_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    FAIL_AFTER_SEED.append(1)
    with pytest.raises(RuntimeError):
        run_experiment("toy", out=out)
    assert COMPUTED == [0, 1] and not (out / "results.json").exists()
    with pytest.raises(FileExistsError, match="unfinished run; pass --resume") as err:
        run_experiment("toy", out=out)
    assert "\n" not in str(err.value)
    FAIL_AFTER_SEED.clear()
    COMPUTED.clear()
    run_experiment("toy", out=out, resume=True)
    assert COMPUTED == []  # both seeds came from their checkpoints
    assert read_results(out)["results"][0]["metrics"]["test_accuracy"]["runs"] == [0.5, 0.6]


def test_resume_checks_the_config(tmp_path):
    out = tmp_path / "run"
    FAIL_AFTER_SEED.append(0)
    with pytest.raises(RuntimeError):
        run_experiment("toy", out=out)
    with pytest.raises(ValueError, match=r"another config \(steps: 3 -> 5\)"):
        run_experiment("toy", ToyConfig(steps=5), out=out, resume=True)


def test_resume_of_nothing_starts_fresh(tmp_path, capsys):
    out = run_experiment("toy", out=tmp_path / "new", resume=True)
    assert (out / "results.json").is_file()
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_and_overwrite_together_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="--resume and --overwrite"):
        run_experiment("toy", out=tmp_path / "run", resume=True, overwrite=True)
    assert not (tmp_path / "run").exists()


def test_resume_without_out_names_the_latest_unfinished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/toy/20240101-000000").mkdir(parents=True)
    (tmp_path / "runs/toy/20240101-000000/run.json").write_text("{}")
    with pytest.raises(ValueError, match="--resume needs --out.*runs/toy/20240101-000000"):
        RunDir.open(None, "toy", resume=True, overwrite=False)


def test_out_that_is_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        RunDir.open(tmp_path / "file", "toy", resume=False, overwrite=False)


def test_model_result_validation():
    with pytest.raises(ValueError, match="no runs"):
        ModelResult("m", {"test_accuracy": []}, parameters=1, seconds=1.0)
    with pytest.raises(ValueError, match="reserved"):
        ModelResult("m", {"loss": [1.0]}, parameters=1, seconds=1.0, extra={"seconds": 2})


def test_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path, monkeypatch):
    @dataclass(frozen=True)
    class FailConfig:
        x: int = 1

    def fail(cfg, run):
        raise FileNotFoundError("data missing")

    spec = ExperimentSpec("fails-early", "fails", FailConfig, fail, lambda c: "none")
    monkeypatch.setitem(EXPERIMENTS, "fails-early", spec)
    with pytest.raises(FileNotFoundError):
        run_experiment("fails-early", FailConfig(), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
