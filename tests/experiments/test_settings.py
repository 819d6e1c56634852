"""Shared typed settings: Configs inherit them, the command line stays flat and round-trips."""

from __future__ import annotations

import dataclasses
import shlex
from types import SimpleNamespace

import pytest
import torch

import attnlab.experiments.translate as translate
from attnlab.cli._run import parse_config
from attnlab.experiments import (
    EarlyStopping,
    TrainingSettings,
    available,
    command_line,
    config_fields,
    get_experiment,
)
from attnlab.experiments._translate_config import (
    BudgetTraining,
    RNNSettings,
    TransformerSettings,
    TranslateConfig,
    TranslateTask,
)
from attnlab.experiments.han import HANConfig
from attnlab.experiments.minilm import MiniLMConfig
from attnlab.experiments.sentiment import SentimentConfig

CHANGED = {
    "sentiment": dict(dataset="rotten-tomatoes", seeds=1, patience=2, batch_size=64),
    "han": dict(seeds=1, documents=60, models=("han",), monitor="accuracy"),
    "gat": dict(runs=2, models=("gat",), picture=False, lr=0.01),
    "image-classify": dict(
        models=("cnn", "vit"), seeds=1, widths=(8, 16), budget_minutes=4.0, vit_dim=32
    ),
    "clutter": dict(models=("cnn", "gated"), seeds=1, budget_minutes=4.0),
    "same-different": dict(models=("cnn-nonlocal",), seeds=2, budget_minutes=5.0),
    "segment": dict(models=("unet",), seeds=1, budget_minutes=6.0),
    "caption": dict(models=("soft", "none"), seeds=1, max_len=12, doubly_stochastic=0.5),
    "vqa": dict(models=("san-2",), seeds=1, hidden_size=64, widths=(8, 16)),
    "draw": dict(
        dataset="mnist", models=("draw",), time_steps=8, binarization="threshold", grad_clip=5.0
    ),
    "minilm-sentiment": dict(mode="probe", seeds=2, lr=1e-4, weight_decay=0.0),
    "translate": dict(
        compare=True,
        variants=("none", "transformer"),
        budget_minutes=3.0,
        d_model=128,
        hidden_size=128,
        input_feeding=True,
        seed=2,
    ),
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_command_line_round_trips_through_the_flags(name):
    spec = get_experiment(name)
    for config in (spec.config(), spec.config(**CHANGED[name])):
        words = shlex.split(command_line(name, config))
        assert words[:3] == ["attnlab", "run", name]
        parsed, _ = parse_config(spec, words[3:])
        assert parsed == config


def test_every_experiment_is_listed_here():
    assert set(available()) == set(CHANGED)


def test_shared_fields_keep_each_experiment_s_defaults_and_words():
    assert (SentimentConfig().seeds, HANConfig().seeds, MiniLMConfig().seeds) == (5, 3, 5)
    assert (SentimentConfig().epochs, HANConfig().epochs, MiniLMConfig().epochs) == (30, 8, 3)
    assert (SentimentConfig().patience, HANConfig().patience) == (6, 8)
    assert MiniLMConfig().lr == 5e-5 and not isinstance(MiniLMConfig(), EarlyStopping)
    helps = {c: {f.name: f.help for f in config_fields(c)} for c in (SentimentConfig, MiniLMConfig)}
    assert helps[SentimentConfig]["lr"] == "Adam learning rate."  # inherited
    assert helps[MiniLMConfig]["lr"] == "peak AdamW learning rate of the encoder."  # its own
    assert helps[SentimentConfig]["batch_size"] == "sentences per batch."


def test_shared_checks_run_for_every_config_that_inherits_them():
    with pytest.raises(ValueError, match="^--epochs must be at least 1, got 0$"):
        TrainingSettings(epochs=0)
    with pytest.raises(ValueError, match="^--patience must be at least 1, got 0$"):
        HANConfig(patience=0)
    with pytest.raises(ValueError, match=r"^--lr must be > 0, got -1.0$"):
        MiniLMConfig(lr=-1.0)
    with pytest.raises(TypeError, match="^--seeds must be an integer, got '2'$"):
        SentimentConfig(seeds="2")


def test_translate_config_is_its_pieces_and_nothing_else():
    pieces = (TranslateTask, RNNSettings, TransformerSettings, BudgetTraining)
    names = [f.name for f in dataclasses.fields(TranslateConfig)]
    inherited = [f.name for piece in pieces for f in dataclasses.fields(piece)]
    assert names[: len(inherited)] == inherited and len(set(names)) == len(names)
    own = set(names) - set(inherited)
    assert own == {"dropout", "vocab_size", "max_len", "beam_size", "length_penalty"} | {
        "examples",
        "train_limit",
        "data_dir",
    }
    for piece in pieces:
        assert isinstance(TranslateConfig(), piece)


def test_each_builder_reads_only_its_family_s_settings():
    tok = SimpleNamespace(vocab_size=30, pad_id=0)
    data = SimpleNamespace(src_tok=tok, tgt_tok=tok)
    torch.manual_seed(0)
    rnn = translate.build_rnn(
        RNNSettings(embedding_dim=8, hidden_size=8), "bahdanau", data, dropout=0.1, max_len=12
    )
    transformer = translate.build_transformer(
        TransformerSettings(d_model=16, heads=2, ff_dim=32, transformer_layers=1),
        data,
        dropout=0.1,
        max_len=12,
    )
    widths = [
        {m.embedding_dim for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        for model in (rnn, transformer)
    ]
    assert widths == [{8}, {16}]
