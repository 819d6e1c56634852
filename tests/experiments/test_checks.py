"""Config checks: every experiment refuses bad values in one line, before any work."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Literal

import pytest
import torch

import attnlab.cli._run
from attnlab.cli.main import main
from attnlab.experiments import _checks as checks
from attnlab.experiments import available
from attnlab.experiments._fields import flag_name


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if the CLI gets as far as running the experiment."""

    def reached(*args, **kwargs):
        raise AssertionError("the experiment ran; the Config should have refused its value")

    monkeypatch.setattr(attnlab.cli._run, "_run_experiment", reached)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


BAD_FLAGS = [
    ("sentiment", ["--word-dropout", "2"], "--word-dropout must be in [0, 1), got 2.0"),
    ("sentiment", ["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    ("sentiment", ["--examples", "-1"], "--examples must be at least 0, got -1"),
    ("sentiment", ["--seeds", "0"], "--seeds must be at least 1, got 0"),
    ("sentiment", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("sentiment", ["--hidden-size", "0"], "--hidden-size must be at least 1, got 0"),
    ("sentiment", ["--lr", "0"], "--lr must be > 0, got 0.0"),
    ("sentiment", ["--lr", "nan"], "--lr must be > 0, got nan"),
    ("sentiment", ["--weight-decay", "-0.1"], "--weight-decay must be at least 0, got -0.1"),
    ("sentiment", ["--models", "gru"], "--models gru is unknown; choose from lstm, "),
    ("sentiment", ["--models", "lstm", "lstm"], "--models names lstm twice"),
    ("sentiment", ["--data-dir", "/no/such/dir"], "--data-dir /no/such/dir is not a folder"),
    ("translate", ["--budget-minutes", "0"], "--budget-minutes must be > 0, got 0.0"),
    ("translate", ["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    ("translate", ["--d-model", "250"], "--d-model must be a multiple of 4 (--heads), got 250"),
    (
        "translate",
        ["--positions", "rotary", "--d-model", "12"],
        "--d-model must be a multiple of 8 (rotary positions), got 12",
    ),
    ("translate", ["--hidden-size", "255"], "--hidden-size must be a multiple of 2"),
    ("translate", ["--vocab-size", "4"], "--vocab-size must be at least 5, got 4"),
    ("translate", ["--max-len", "2"], "--max-len must be at least 3, got 2"),
    ("translate", ["--beam-size", "0"], "--beam-size must be at least 1, got 0"),
    ("translate", ["--warmup-steps", "-1"], "--warmup-steps must be at least 0, got -1"),
    ("translate", ["--attention", "local-p", "--half-width", "0"], "--half-width must be at"),
    ("translate", ["--attention", "luong-cosine"], "--attention luong-cosine is unknown"),
    ("translate", ["--variants", "none", "none"], "--variants names none twice"),
    ("translate", ["--src", "en", "--tgt", "en"], "--src and --tgt must differ"),
    ("han", ["--documents", "5"], "--documents must be 0 or at least 20, got 5"),
    ("han", ["--max-vocab", "2"], "--max-vocab must be at least 3, got 2"),
    ("han", ["--patience", "0"], "--patience must be at least 1, got 0"),
    ("han", ["--max-words", "0"], "--max-words must be at least 1, got 0"),
    ("gat", ["--device", "gpu"], "--device gpu is not a device; use cpu, cuda or cuda:N"),
    (
        "gat",
        ["--device", "cuda"],
        "--device cuda: this machine has no CUDA device; use --device cpu",
    ),
    ("gat", ["--output-heads", "0"], "--output-heads must be at least 1, got 0"),
    ("gat", ["--dropout", "1.0"], "--dropout must be in [0, 1), got 1.0"),
    ("minilm-sentiment", ["--warmup", "1"], "--warmup must be in [0, 1), got 1.0"),
    ("minilm-sentiment", ["--head-lr", "0"], "--head-lr must be > 0, got 0.0"),
    ("minilm-sentiment", ["--max-len", "600"], "--max-len must be in 3..512, got 600"),
    ("minilm-sentiment", ["--checkpoint", "nope"], "--checkpoint nope is neither a folder nor"),
    ("minilm-sentiment", ["--device", "gpu"], "use cpu, cuda, cuda:N or auto"),
    ("minilm-sentiment", ["--device", "cuda:0"], "--device cuda:0: this machine has no CUDA"),
    ("minilm-sentiment", ["--probe-epochs", "0"], "--probe-epochs must be at least 1, got 0"),
]


@pytest.mark.parametrize(("experiment", "flags", "message"), BAD_FLAGS)
def test_bad_value_exits_2_with_one_line_before_any_work(
    experiment, flags, message, no_run, no_cuda, capsys
):
    assert main(["run", experiment, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("attnlab: error: ") and message in err, err


def _configs() -> list[type]:
    return [spec.config for spec in available().values()]


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.__name__)
def test_defaults_pass_their_own_checks(config):
    config()


BAD_WORDS = {"data_dir": "/no/such/dir", "device": "gpu", "attention": "x", "checkpoint": "x"}
FREE_TEXT = {"baseline"}  # a path, "" or "none"; a missing file only drops the comparison


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.__name__)
def test_every_number_and_name_field_has_a_range(config, no_cuda):
    """A field added later without a check fails here: no count or rate may be negative."""
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        tp, flag = hints[field.name], flag_name(field.name)
        bad: list[object] = []
        if tp is int:
            bad = [-1]
        elif tp is float:
            bad = [-1.0, math.nan, math.inf]
        elif typing.get_origin(tp) is tuple:
            bad = [()]
        elif tp is str and field.name not in FREE_TEXT:
            bad = [BAD_WORDS[field.name]]  # a KeyError: a new text field; give it a check
        for value in bad:
            with pytest.raises(ValueError, match=f"^{flag} ") as info:
                config(**{field.name: value})
            assert "\n" not in str(info.value)


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.__name__)
def test_wrong_types_are_refused(config):
    for field in dataclasses.fields(config):
        with pytest.raises((TypeError, ValueError), match=f"^{flag_name(field.name)} must be"):
            config(**{field.name: object()})


@dataclass(frozen=True)
class Toy:
    """A Config with every kind of field.

    Attributes:
        count: a count.
        rate: a rate.
        flag: a switch.
        mode: a choice.
        sizes: some sizes.
        pair: two words.
        limit: a limit or none.
    """

    count: int = 1
    rate: float = 0.5
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[str, str] = ("x", "y")
    limit: int | None = None

    def __post_init__(self) -> None:
        checks.field_types(self)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"count": True}, TypeError, "--count must be an integer, got True"),
        ({"count": 1.5}, TypeError, "--count must be an integer, got 1.5"),
        ({"rate": "0.5"}, TypeError, "--rate must be a number, got '0.5'"),
        ({"flag": 1}, TypeError, "--flag must be true or false, got 1"),
        ({"mode": "c"}, ValueError, "--mode must be one of a, b, got 'c'"),
        ({"sizes": (1, "2")}, TypeError, "--sizes must be a list, each an integer"),
        ({"sizes": [1, 2]}, TypeError, "--sizes must be a list, each an integer"),
        ({"pair": ("x",)}, TypeError, "--pair must be"),
        ({"limit": "3"}, TypeError, "--limit must be an integer or none, got '3'"),
    ],
)
def test_field_types(changes, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        Toy(**changes)


def test_field_types_accept_ints_for_floats_and_none_for_optionals():
    assert Toy(rate=1, limit=None, sizes=()).rate == 1
    assert Toy(limit=3).limit == 3


@dataclass
class Values:
    low: float = 0.0
    n: int = 0
    device: str = "cpu"
    data_dir: str = ""
    names: tuple[str, ...] = ("a",)


def test_at_least_or_zero():
    checks.at_least(Values(n=0), 20, "n", or_zero=True)
    checks.at_least(Values(n=20), 20, "n", or_zero=True)
    with pytest.raises(ValueError, match="--n must be 0 or at least 20, got 19"):
        checks.at_least(Values(n=19), 20, "n", or_zero=True)
    with pytest.raises(ValueError, match="--low must be at least 0, got inf"):
        checks.at_least(Values(low=math.inf), 0, "low")


def test_fraction_takes_zero_but_not_one():
    checks.fraction(Values(low=0.0), "low")
    with pytest.raises(ValueError, match=r"--low must be in \[0, 1\), got nan"):
        checks.fraction(Values(low=math.nan), "low")


def test_device_when_cuda_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("cpu", "cuda", "cuda:1"):
        checks.device(Values(device=ok), auto=False)
    checks.device(Values(device="auto"), auto=True)
    with pytest.raises(ValueError, match="--device cuda:2: this machine has 2 CUDA device"):
        checks.device(Values(device="cuda:2"), auto=False)
    with pytest.raises(ValueError, match="--device auto is not a device; use cpu, cuda or cuda:N"):
        checks.device(Values(device="auto"), auto=False)


def test_folder(tmp_path):
    checks.folder(Values(data_dir=""), "data_dir")
    checks.folder(Values(data_dir=str(tmp_path)), "data_dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        checks.folder(Values(data_dir=str(tmp_path / "file")), "data_dir")


def test_names():
    checks.names(Values(names=("a", "b")), "names", ("a", "b"))
    with pytest.raises(ValueError, match="--names c is unknown; choose from a, b"):
        checks.names(Values(names=("a", "c")), "names", ("a", "b"))


def test_config_from_dict_turns_lists_into_tuples_and_keeps_defaults():
    cfg = checks.config_from_dict(Toy, {"sizes": [3, 4], "count": 2}, source="run.json")
    assert cfg == Toy(count=2, sizes=(3, 4))


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ([1, 2], ValueError, "run.json: config must be an object, got list"),
        ({"colour": 1}, ValueError, "run.json: config has unknown settings colour for Toy"),
        ({"count": "2"}, TypeError, "run.json: --count must be an integer, got '2'"),
        ({"mode": "z"}, ValueError, "run.json: --mode must be one of a, b"),
    ],
)
def test_config_from_dict_names_the_source(values, error, message):
    with pytest.raises(error, match=message):
        checks.config_from_dict(Toy, values, source="run.json")
