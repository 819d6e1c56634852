"""A pretrained transformer on the sentiment sentences: MiniLM + attention pooling.

The encoder is all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT distilled by MiniLM, Wang
et al. 2020, then trained for sentence embeddings, Reimers & Gurevych 2019), loaded
into :class:`~attnlab.models.bert.BertEncoder`. Its last hidden states are pooled by
:class:`~attnlab.nn.AttentionPooling` (padding masked) into one vector, then a linear
layer classifies: ``p(y | x) = softmax(W sum_t alpha_t h_t + b)``.

``--mode finetune`` (default) trains everything with BERT's recipe (Devlin et al. 2019:
AdamW, a small encoder learning rate, a larger one for the new head, linear warmup and
decay, a few epochs); ``--mode probe`` freezes the encoder, computes its states once and
trains only the pooling and the classifier. Data, split and metric are the sentiment
experiment's (mean ± std test accuracy over seeds), and the report sets the result
beside that experiment's LSTMs.

Run: ``attnlab run minilm-sentiment [--mode finetune|probe] [--seeds N] [--out DIR]``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from attnlab.data import SentimentCorpus, load_sentiment, pretrained, split_indices
from attnlab.data.pretrained import WordPieceTokenizer, load_tokenizer, locate_pretrained
from attnlab.experiments import (
    ExperimentSpec,
    Outcome,
    RunDir,
    SeedResult,
    TrainingSettings,
    register,
    run_models,
)
from attnlab.experiments import _checks as checks
from attnlab.experiments._classify import LengthBatches, draw_text_attention, fit_and_score
from attnlab.experiments._report import summarise
from attnlab.interpret.explain import AttentionTrace, trace_attention
from attnlab.models.bert import BertEncoder, PooledClassifier
from attnlab.train import load_checkpoint, make_generator, seed_everything
from attnlab.train.schedules import LinearWarmup

BASELINES = {
    "uci": "docs/results/sentiment-uci/results.json",
    "rotten-tomatoes": "docs/results/sentiment-rt/results.json",
}


@dataclass(frozen=True)
class MiniLMConfig(TrainingSettings):
    """Settings of the MiniLM sentiment experiment (training: :class:`TrainingSettings`).

    Attributes:
        mode: finetune (train encoder and head) or probe (frozen encoder, train the head).
        dataset: uci (amazon + yelp), uci-all, or rotten-tomatoes.
        checkpoint: pretrained model name, or a Hugging Face BERT folder.
        seeds: training runs (seeds 0..N-1), all on the same split.
        epochs: fine-tuning epochs.
        probe_epochs: epochs when probing (only the small head trains).
        batch_size: sentences per batch (batches group sentences of similar length).
        lr: peak AdamW learning rate of the encoder.
        head_lr: peak learning rate of the pooling and the classifier.
        weight_decay: AdamW decoupled weight decay (not on biases and LayerNorms).
        warmup: fraction of the training steps with a linearly rising learning rate.
        dropout: dropout in the encoder and on the pooled vector.
        max_len: word pieces kept per sentence, [CLS] and [SEP] included (3..512).
        split_seed: seed of the 80/10/10 stratified split.
        examples: test sentences whose attention pooling is drawn (seed 0; 0: none).
        baseline: results.json of the sentiment experiment to compare with ("" = the
            committed docs/results file of the dataset, "none" = no comparison).
        device: cpu, cuda, cuda:N or auto.
        data_dir: folder with the datasets (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    # TrainingSettings' fields, with BERT's fine-tuning recipe as defaults.
    epochs: int = 3
    lr: float = 5e-5
    weight_decay: float = 0.01
    mode: Literal["finetune", "probe"] = "finetune"
    dataset: Literal["uci", "uci-all", "rotten-tomatoes"] = "uci"
    checkpoint: str = "all-minilm-l6-v2"
    probe_epochs: int = 30
    head_lr: float = 1e-3
    warmup: float = 0.1
    dropout: float = 0.1
    max_len: int = 64
    split_seed: int = 0
    examples: int = 8
    baseline: str = ""
    device: str = "auto"
    data_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        known = pretrained.PRETRAINED
        if self.checkpoint not in known and not Path(self.checkpoint).expanduser().is_dir():
            raise ValueError(
                f"--checkpoint {self.checkpoint} is neither a folder nor one of {', '.join(known)}"
            )
        checks.at_least(self, 1, "probe_epochs")
        checks.at_least(self, 0, "split_seed", "examples")
        checks.positive(self, "head_lr")
        checks.fraction(self, "warmup", "dropout")
        checks.between(self, "max_len", 3, pretrained.MAX_TOKENS)  # [CLS], a piece, [SEP]
        checks.device(self, auto=True)
        checks.folder(self, "data_dir")

    def explained_stack(self) -> tuple[int, int]:
        """(layers, heads) ``attnlab explain --model RUN`` draws; ValueError for a probe run."""
        if self.mode != "finetune":
            raise ValueError(
                "a probe run trains no encoder of its own; explain the pretrained one with "
                "--model minilm"
            )
        folder = locate_pretrained(self.checkpoint, data_dir=self.data_dir or None)
        bert = pretrained.load_bert_config(folder)
        return bert.num_hidden_layers, bert.num_attention_heads


@dataclass(frozen=True)
class Data:
    """The corpus, the pretrained model's folder and tokenizer, the split and the tensors."""

    corpus: SentimentCorpus
    folder: Path
    tokenizer: WordPieceTokenizer
    splits: dict[str, list[int]]
    tensors: dict[str, tuple[Tensor, Tensor, Tensor]]


def prepare(cfg: MiniLMConfig) -> Data:
    """Load the corpus and the tokenizer, split, encode every split."""
    corpus = load_sentiment(cfg.dataset, data_dir=cfg.data_dir or None)
    folder = locate_pretrained(cfg.checkpoint, data_dir=cfg.data_dir or None)
    tokenizer = load_tokenizer(folder)
    train, val, test = split_indices(corpus.labels, seed=cfg.split_seed)
    splits = {"train": train, "val": val, "test": test}
    tensors = {}
    for name, idx in splits.items():
        ids, mask = tokenizer.encode([corpus.texts[i] for i in idx], cfg.max_len)
        tensors[name] = (ids, mask, torch.tensor([corpus.labels[i] for i in idx]))
    return Data(corpus, folder, tokenizer, splits, tensors)


def _device(cfg: MiniLMConfig) -> torch.device:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if cfg.device == "auto" else cfg.device)


@torch.no_grad()
def _features(encoder: BertEncoder, ids: Tensor, mask: Tensor, batch: int = 64) -> Tensor:
    """The frozen encoder's last hidden states ``(N, L, E)`` on the CPU, zero on padding."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for i in range(0, len(ids), batch):
        hidden = encoder(ids[i : i + batch].to(device), mask[i : i + batch].to(device)).last_hidden
        out.append((hidden * mask[i : i + batch, :, None].to(device)).cpu())
    return torch.cat(out)


def _optimizer(
    model: nn.Module, cfg: MiniLMConfig, total_steps: int
) -> tuple[torch.optim.AdamW, LinearWarmup]:
    """AdamW with per-part learning rates, and its linear warm-up/decay schedule.

    The schedule is a ``torch.optim.lr_scheduler`` stepped after every optimizer step:
    its state is saved with the checkpoints, so a resumed run continues it.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = cfg.lr if name.startswith("encoder.") else cfg.head_lr
            decay = cfg.weight_decay if p.dim() > 1 else 0.0
            groups.setdefault((lr, decay), []).append(p)
    params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    optimizer = torch.optim.AdamW(
        params, fused=next(model.parameters()).device.type in ("cpu", "cuda")
    )
    warmup = round(cfg.warmup * total_steps)
    return optimizer, LinearWarmup(optimizer, warmup, total_steps=total_steps)


def _name(cfg: MiniLMConfig) -> str:
    return f"minilm-attention-{cfg.mode}"


def _inputs(cfg: MiniLMConfig, data: Data) -> tuple[dict[str, tuple[Tensor, ...]], int]:
    """The model's inputs per split (a probe's: the frozen encoder's states) and its size."""
    if cfg.mode != "probe":
        return dict(data.tensors), 0
    encoder = BertEncoder.from_pretrained(data.folder, device=_device(cfg))
    size = sum(p.numel() for p in encoder.parameters())
    inputs = {
        s: (_features(encoder, ids, mask), mask, y) for s, (ids, mask, y) in data.tensors.items()
    }
    return inputs, size


def train_one(
    cfg: MiniLMConfig, data: Data, inputs: dict[str, tuple[Tensor, ...]], seed: int, run: RunDir
) -> SeedResult:
    """Train one seed (resumably); test its best epoch, draw seed 0, free its checkpoints."""
    seed_everything(seed)
    device, classes, name = _device(cfg), len(data.corpus.classes), _name(cfg)
    encoder = None
    if cfg.mode == "finetune":
        encoder = BertEncoder.from_pretrained(data.folder, dropout=cfg.dropout)
    size = inputs["train"][0].shape[-1] if encoder is None else encoder.config.hidden_size
    model = PooledClassifier(size, classes, encoder=encoder, dropout=cfg.dropout).to(device)
    generator = make_generator(seed)
    lengths = inputs["train"][1].sum(1)
    train = DataLoader(
        TensorDataset(*inputs["train"]),
        batch_sampler=LengthBatches(lengths, cfg.batch_size, generator),
        generator=generator,
    )
    val, test = (DataLoader(TensorDataset(*inputs[s]), batch_size=128) for s in ("val", "test"))
    epochs = cfg.epochs if cfg.mode == "finetune" else cfg.probe_epochs
    optimizer, schedule = _optimizer(model, cfg, epochs * len(train))
    result = fit_and_score(
        model,
        (train, val, test),
        cfg,
        model_name=name,
        seed=seed,
        run=run,
        optimizer=optimizer,
        lr_scheduler=schedule,
        epochs=epochs,
        grad_clip=1.0,
    )
    if seed == 0:
        pictures = _draw(cfg, data, model.eval(), inputs["test"], run.path)
        result = dataclasses.replace(result, pictures=pictures)
    _drop_weights(run.checkpoints / name / f"seed{seed}", keep_best=seed == 0)
    return result


def run(cfg: MiniLMConfig, run_dir: RunDir) -> Outcome[Data]:
    """Train over every seed; draw the seed-0 model's attention pooling."""
    data = prepare(cfg)
    inputs, encoder_parameters = _inputs(cfg, data)
    summary: dict[str, Any] = {"mode": cfg.mode}
    if encoder_parameters:
        summary["frozen_encoder_parameters"] = encoder_parameters
    results = run_models(
        [_name(cfg)],
        range(cfg.seeds),
        lambda name, seed: train_one(cfg, data, inputs, seed, run_dir),
        records=run_dir,
        summary=lambda name, runs: summary,
    )
    return Outcome(results, data)


def _drop_weights(folder: Path, *, keep_best: bool) -> None:
    """Free a finished seed's checkpoints (about 0.5 GB when fine-tuning).

    Seed 0 keeps its best model (about 90 MB) for ``attnlab explain --model RUN``.
    """
    for part in folder.iterdir():
        if not (keep_best and part.name == "best"):
            shutil.rmtree(part)


def explain(cfg: MiniLMConfig, folder: Path, text: str) -> AttentionTrace:
    """Seed 0's fine-tuned encoder: its self-attention over one sentence."""
    cfg.explained_stack()  # refuses a probe run
    best = folder / "checkpoints" / _name(cfg) / "seed0" / "best"
    if not best.is_dir():
        raise FileNotFoundError(
            f"{folder} holds no fine-tuned encoder ({best} is missing); explain the "
            "pretrained one with --model minilm"
        )
    source = locate_pretrained(cfg.checkpoint, data_dir=cfg.data_dir or None)
    classes = len(load_sentiment(cfg.dataset, data_dir=cfg.data_dir or None).classes)
    encoder = BertEncoder.from_pretrained(source)
    model = PooledClassifier(encoder.config.hidden_size, classes, encoder=encoder)
    load_checkpoint(best, model=model)
    tokenizer = load_tokenizer(source)
    ids, mask = tokenizer.encode([text], cfg.max_len)
    with torch.no_grad():
        return trace_attention(
            model.eval(),
            lambda: model(ids, mask),
            tokenizer.tokens(ids[0]),
            layers="encoder.*.self_attn",
            description=f"MiniLM fine-tuned on {cfg.dataset} ({folder.name})",
        )


def _draw(cfg: MiniLMConfig, data: Data, model: nn.Module, test: tuple, out: Path) -> list[str]:
    if cfg.examples < 1:
        return []
    device = next(model.parameters()).device
    x, mask, labels = (t[: cfg.examples] for t in test)
    with torch.no_grad():
        logits, weights = model.forward_with_weights(x.to(device), mask.to(device))
    tokens = [data.tokenizer.tokens(data.tensors["test"][0][i]) for i in range(len(labels))]
    title = f"{_name(cfg)}: attention pooling over word pieces"
    return draw_text_attention(
        tokens,
        weights,
        logits,
        labels,
        data.corpus.classes,
        out,
        name=_name(cfg),
        title=title,
        page_title=title,
    )


def _row(model: str, acc: dict, parameters: int, seconds: float, source: str) -> str:
    mean, std, n = 100 * acc["mean"], 100 * acc["std"], len(acc["runs"])
    return f"| {model} | {mean:.2f} ± {std:.2f} | {n} | {parameters:,} | {seconds:.1f} | {source} |"


def _baseline_rows(cfg: MiniLMConfig) -> tuple[list[str], str]:
    """Table rows of the sentiment experiment's models, and a line naming their file."""
    path = Path(cfg.baseline or BASELINES.get(cfg.dataset, "none"))
    if str(path) == "none" or not path.is_file():
        return [], f"No LSTM baseline shown ({path} not found; run `attnlab run sentiment`)."
    doc = json.loads(path.read_text(encoding="utf-8"))
    split = doc.get("config", {}).get("split_seed")
    if doc.get("dataset") != cfg.dataset or split != cfg.split_seed:
        return [], f"No LSTM baseline shown: {path} is {doc.get('dataset')} split seed {split}."
    rows = [
        _row(r["model"], r["metrics"]["test_accuracy"], r["parameters"], r["seconds"], f"`{path}`")
        for r in doc["results"]
    ]
    return rows, f"LSTM rows (the sentiment experiment, same data and split): `{path}`."


def _report(cfg: MiniLMConfig, outcome: Outcome[Data], run_dir: RunDir) -> str:
    sizes = ", ".join(f"{n} {len(idx)}" for n, idx in outcome.data.splits.items())
    r, (rows, source) = outcome.results[0], _baseline_rows(cfg)
    runs = r.metrics["test_accuracy"]
    epochs = cfg.epochs if cfg.mode == "finetune" else cfg.probe_epochs
    lines = [
        "",
        f"Dataset: {cfg.dataset} ({sizes} sentences); stratified 80/10/10 split, seed "
        f"{cfg.split_seed}; test accuracy at the best validation {cfg.monitor} epoch.",
        "",
        f"Encoder: `{cfg.checkpoint}` ({'fine-tuned' if cfg.mode == 'finetune' else 'frozen'}), "
        f"attention pooling over its last hidden states, linear classifier. AdamW, encoder lr "
        f"{cfg.lr:g}, head lr {cfg.head_lr:g}, {epochs} epochs, batch {cfg.batch_size}, "
        f"{cfg.warmup:.0%} linear warmup then linear decay, max {cfg.max_len} word pieces.",
        "",
        "| model | test_accuracy (%) | runs | trainable parameters | seconds per seed | source |",
        "|---|---:|---:|---:|---:|---|",
        _row(r.model, summarise(runs), r.parameters, r.seconds, "this run"),
        *rows,
        "",
        source,
        "",
        "Per seed: " + ", ".join(f"{100 * a:.1f}%" for a in runs) + ".",
        "",
    ]
    for pic in r.extra.get("pictures", []):
        link = f"- [{r.model}: word pieces highlighted by attention]({pic})"
        lines.append(f"![{r.model}]({pic})" if pic.endswith(".png") else link)
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="minilm-sentiment",
        description="MiniLM (pretrained BERT) + attention pooling on sentiment: fine-tune or probe",
        config=MiniLMConfig,
        run=run,
        dataset=lambda cfg: cfg.dataset,
        report=_report,
        explain=explain,
    )
)
