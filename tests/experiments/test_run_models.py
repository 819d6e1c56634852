"""The experiment loop (``run_models``): seeds gathered per model, records, progress, outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import attnlab.experiments._framework as framework
from attnlab.experiments import (
    EXPERIMENTS,
    ExperimentSpec,
    Outcome,
    RunDir,
    SeedResult,
    record_path,
    register,
    run_experiment,
    run_models,
)


def _seed(seed: int, *, pictures=(), seconds=None) -> SeedResult:
    return SeedResult(
        {"test_accuracy": 0.5 + seed / 10, "loss": 1.0 - seed / 10},
        parameters=7 + seed,
        seconds=seconds,
        pictures=list(pictures),
        extra={"best_epoch": seed + 1},
        note=f"note {seed}",
    )


def test_run_models_gathers_the_seeds_of_each_model(capsys):
    calls = []

    def train_one(model, seed):
        calls.append((model, seed))
        return _seed(seed, seconds=2.0 + seed, pictures=[f"{model}.png"] if seed == 0 else [])

    results = run_models(
        ["a", "b"],
        range(2),
        train_one,
        summary=lambda model, runs: {"best_epoch_runs": [r.extra["best_epoch"] for r in runs]},
    )
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    a, b = results
    assert a.model == "a" and b.model == "b"
    assert a.metrics == {"test_accuracy": [0.5, 0.6], "loss": [1.0, 0.9]}
    assert a.parameters == 8 and a.seconds == 2.5  # the last seed's count, the mean time
    assert a.extra == {"best_epoch_runs": [1, 2], "pictures": ["a.png"]}
    out = capsys.readouterr().out
    assert "a seed 1: test_accuracy 60.00%, loss 0.9000 (note 1, 3.0 s)" in out
    assert out.count(" seed ") == 4


def test_run_models_times_a_seed_that_gives_no_seconds():
    (result,) = run_models(["a"], [0], lambda model, seed: _seed(seed))
    assert 0.0 <= result.seconds < 5.0 and "pictures" not in result.extra


def test_run_models_refuses_what_it_cannot_gather():
    with pytest.raises(TypeError, match=r"train_one\('a', 0\) returned tuple; return a SeedResult"):
        run_models(["a"], [0], lambda model, seed: (0.5, 1.0))
    with pytest.raises(ValueError, match="at least one seed"):
        run_models(["a"], [], lambda model, seed: _seed(seed))

    def odd(model, seed):
        return SeedResult({"test_accuracy": 0.5} if seed else {"bleu": 1.0}, parameters=1)

    with pytest.raises(ValueError, match="seeds report different metrics"):
        run_models(["a"], [0, 1], odd)


def test_seed_result_round_trips_through_its_record():
    seed = _seed(1, pictures=["x.png"], seconds=1.5)
    assert SeedResult.from_json(json.loads(json.dumps(seed.to_json()))) == seed
    for bad in ({"test_accuracy": 0.5}, [], {**seed.to_json(), "metrics": {"a": "x"}}):
        with pytest.raises(ValueError, match="not a seed record"):
            SeedResult.from_json(bad)
    with pytest.raises(ValueError, match="at least one metric"):
        SeedResult({}, parameters=1)
    with pytest.raises(TypeError, match="metric 'a' must be a number"):
        SeedResult({"a": "0.5"}, parameters=1)


def test_records_let_a_resumed_run_skip_finished_seeds(tmp_path, capsys):
    run = RunDir(tmp_path, tmp_path, resumed=False)
    trained = []

    def train_one(model, seed):
        trained.append(seed)
        if seed == 0:
            (tmp_path / "a0.png").write_bytes(b"png")
            return _seed(seed, pictures=["a0.png"], seconds=1.0)
        if len(trained) == 2:
            raise RuntimeError("interrupted in seed 1")
        return _seed(seed, seconds=1.0)

    with pytest.raises(RuntimeError, match="interrupted"):
        run_models(["a"], [0, 1], train_one, records=run)
    assert record_path(run, "a", 0).is_file() and not record_path(run, "a", 1).exists()
    (first,) = run_models(["a"], [0, 1], train_one, records=run)
    assert trained == [0, 1, 1]  # seed 0 came from its record
    assert first.metrics["test_accuracy"] == [0.5, 0.6] and first.extra["pictures"] == ["a0.png"]
    assert "a seed 0: test_accuracy 50.00%, loss 1.000 (note 0, recorded before)" in (
        capsys.readouterr().out
    )
    # A record whose picture is gone is trained (and drawn) again; so is one unreadable.
    (tmp_path / "a0.png").unlink()
    record_path(run, "a", 1).write_text("{not json")
    (again,) = run_models(["a"], [0, 1], train_one, records=run)
    assert trained == [0, 1, 1, 0, 1] and again.metrics == first.metrics
    assert "is unreadable" in capsys.readouterr().err


@dataclass(frozen=True)
class ReportConfig:
    """Settings.

    Attributes:
        words: words of the toy corpus.
    """

    words: int = 3


def test_report_receives_what_run_prepared(tmp_path):
    seen = []

    def run(cfg, run_dir):
        data = {"corpus": ["w"] * cfg.words}
        results = run_models(["m"], [0], lambda model, seed: _seed(seed, seconds=0.25))
        return Outcome(results, data)

    def report(cfg, outcome, run_dir):
        seen.append(outcome)
        return f"Corpus: {len(outcome.data['corpus'])} words; {outcome.results[0].model}."

    spec = ExperimentSpec("reporting", "d", ReportConfig, run, lambda cfg: "toy", report=report)
    register(spec)
    try:
        out = run_experiment("reporting", ReportConfig(words=4), out=tmp_path / "run")
    finally:
        EXPERIMENTS.pop("reporting")
    assert (out / "report.md").read_text().rstrip().endswith("Corpus: 4 words; m.")
    assert seen[0].data == {"corpus": ["w"] * 4}
    with pytest.raises(TypeError, match="must return an Outcome or a non-empty list"):
        framework._outcome("x", Outcome([]))
