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

import functools
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from attnlab.data import SentimentCorpus, load_sentiment, pretrained, split_indices
from attnlab.data.pretrained import WordPieceTokenizer, load_tokenizer, locate_pretrained
from attnlab.experiments import ExperimentSpec, ModelResult, RunDir, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._classify import fit_and_test
from attnlab.experiments._report import summarise
from attnlab.interpret import TextAttentionExample, plot_token_weights, write_highlight_html
from attnlab.interpret.explain import AttentionTrace, trace_attention
from attnlab.models.bert import BertEncoder, PooledClassifier
from attnlab.train import load_checkpoint, make_generator, seed_everything

BASELINES = {
    "uci": "docs/results/sentiment-uci/results.json",
    "rotten-tomatoes": "docs/results/sentiment-rt/results.json",
}


@dataclass(frozen=True)
class MiniLMConfig:
    """Settings of the MiniLM sentiment experiment.

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
        monitor: validation metric that picks the best epoch.
        split_seed: seed of the 80/10/10 stratified split.
        examples: test sentences whose attention pooling is drawn (seed 0; 0: none).
        baseline: results.json of the sentiment experiment to compare with ("" = the
            committed docs/results file of the dataset, "none" = no comparison).
        device: cpu, cuda, cuda:N or auto.
        data_dir: folder with the datasets (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    mode: Literal["finetune", "probe"] = "finetune"
    dataset: Literal["uci", "uci-all", "rotten-tomatoes"] = "uci"
    checkpoint: str = "all-minilm-l6-v2"
    seeds: int = 5
    epochs: int = 3
    probe_epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    dropout: float = 0.1
    max_len: int = 64
    monitor: Literal["loss", "accuracy"] = "loss"
    split_seed: int = 0
    examples: int = 8
    baseline: str = ""
    device: str = "auto"
    data_dir: str = ""

    def __post_init__(self) -> None:
        checks.field_types(self)
        known = pretrained.PRETRAINED
        if self.checkpoint not in known and not Path(self.checkpoint).expanduser().is_dir():
            raise ValueError(
                f"--checkpoint {self.checkpoint} is neither a folder nor one of {', '.join(known)}"
            )
        checks.at_least(self, 1, "seeds", "epochs", "probe_epochs", "batch_size")
        checks.at_least(self, 0, "weight_decay", "split_seed", "examples")
        checks.positive(self, "lr", "head_lr")
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


class LengthBatches(Sampler[list[int]]):
    """Shuffled batches of sentences of similar length, so little compute goes to padding.

    Each epoch: a random order, cut into pools of 16 batches, each pool sorted by length
    and cut into batches, then the batches shuffled.
    """

    def __init__(self, lengths: Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        batches, pool = [], 16 * self.batch_size
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [batch.tolist() for batch in chunk.split(self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


@dataclass(frozen=True)
class _Data:
    corpus: SentimentCorpus
    folder: Path
    tokenizer: WordPieceTokenizer
    splits: dict[str, list[int]]
    tensors: dict[str, tuple[Tensor, Tensor, Tensor]]


@functools.lru_cache(maxsize=1)  # the report reads the split sizes of the same data
def _prepare(cfg: MiniLMConfig) -> _Data:
    corpus = load_sentiment(cfg.dataset, data_dir=cfg.data_dir or None)
    folder = locate_pretrained(cfg.checkpoint, data_dir=cfg.data_dir or None)
    tokenizer = load_tokenizer(folder)
    train, val, test = split_indices(corpus.labels, seed=cfg.split_seed)
    splits = {"train": train, "val": val, "test": test}
    tensors = {}
    for name, idx in splits.items():
        ids, mask = tokenizer.encode([corpus.texts[i] for i in idx], cfg.max_len)
        tensors[name] = (ids, mask, torch.tensor([corpus.labels[i] for i in idx]))
    return _Data(corpus, folder, tokenizer, splits, tensors)


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


def _optimizer(model: nn.Module, cfg: MiniLMConfig, total_steps: int) -> torch.optim.AdamW:
    """AdamW with per-part learning rates and a resumable linear warmup/decay schedule."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = cfg.lr if name.startswith("encoder.") else cfg.head_lr
            decay = cfg.weight_decay if p.dim() > 1 else 0.0
            groups.setdefault((lr, decay), []).append(p)
    params = [
        {"params": ps, "lr": lr, "peak_lr": lr, "weight_decay": wd}
        for (lr, wd), ps in groups.items()
    ]
    optimizer = torch.optim.AdamW(
        params, fused=next(model.parameters()).device.type in ("cpu", "cuda")
    )
    warmup = round(cfg.warmup * total_steps)

    def set_lr(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        # Steps taken come from the optimizer's own state, so a resumed run continues the schedule.
        step = next((int(s["step"]) for s in opt.state.values() if "step" in s), 0) + 1
        decay = max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        scale = step / warmup if step <= warmup else decay
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * scale

    optimizer.register_step_pre_hook(set_lr)
    return optimizer


def _train_seed(
    cfg: MiniLMConfig,
    data: _Data,
    inputs: dict[str, tuple[Tensor, ...]],
    seed: int,
    run: RunDir,
    name: str,
) -> tuple[nn.Module, float, float]:
    """Train one seed (resumably) and return the model at its best epoch, test accuracy, seconds."""
    seed_everything(seed)
    device, classes = _device(cfg), len(data.corpus.classes)
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
    accuracy, seconds = fit_and_test(
        model,
        (train, val, test),
        cfg,
        model_name=name,
        seed=seed,
        run=run,
        optimizer=_optimizer(model, cfg, epochs * len(train)),
        epochs=epochs,
        grad_clip=1.0,
    )
    return model, accuracy, seconds


def run(cfg: MiniLMConfig, run_dir: RunDir) -> list[ModelResult]:
    """Train over every seed; draw the seed-0 model's attention pooling."""
    _prepare.cache_clear()
    data = _prepare(cfg)
    name = f"minilm-attention-{cfg.mode}"
    inputs = dict(data.tensors)
    encoder_parameters = 0
    if cfg.mode == "probe":
        encoder = BertEncoder.from_pretrained(data.folder, device=_device(cfg))
        encoder_parameters = sum(p.numel() for p in encoder.parameters())
        inputs = {
            s: (_features(encoder, ids, mask), mask, y) for s, (ids, mask, y) in inputs.items()
        }
        del encoder
    accuracies, seconds, pictures, parameters = [], [], [], 0
    for seed in range(cfg.seeds):
        done = run_dir.checkpoints / name / f"seed{seed}.json"
        if done.is_file():  # finished before a --resume
            record = json.loads(done.read_text(encoding="utf-8"))
        else:
            model, acc, secs = _train_seed(cfg, data, inputs, seed, run_dir, name)
            parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
            record = {"test_accuracy": acc, "seconds": secs, "parameters": parameters}
            if seed == 0:
                record["pictures"] = _draw(cfg, data, model.eval(), inputs["test"], run_dir.path)
            done.write_text(json.dumps(record) + "\n", encoding="utf-8")
            _drop_weights(run_dir.checkpoints / name / f"seed{seed}", keep_best=seed == 0)
        accuracies.append(record["test_accuracy"])
        seconds.append(record["seconds"])
        parameters = record["parameters"]
        pictures = record.get("pictures", pictures)
        print(f"{name} seed {seed}: test accuracy {100 * accuracies[-1]:.2f}%", flush=True)
    extra = {"mode": cfg.mode, "pictures": pictures}
    if encoder_parameters:
        extra["frozen_encoder_parameters"] = encoder_parameters
    mean_seconds = sum(seconds) / len(seconds)
    return [ModelResult(name, {"test_accuracy": accuracies}, parameters, mean_seconds, extra)]


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
    best = folder / "checkpoints" / f"minilm-attention-{cfg.mode}" / "seed0" / "best"
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


def _draw(cfg: MiniLMConfig, data: _Data, model: nn.Module, test: tuple, out: Path) -> list[str]:
    name = f"minilm-attention-{cfg.mode}"
    if cfg.examples < 1:
        return []
    device = next(model.parameters()).device
    x, mask, labels = (t[: cfg.examples] for t in test)
    with torch.no_grad():
        logits, weights = model.forward_with_weights(x.to(device), mask.to(device))
    probs, classes = logits.softmax(-1).cpu(), data.corpus.classes
    rows, examples = [], []
    for i in range(len(labels)):
        tokens = data.tokenizer.tokens(data.tensors["test"][0][i])
        pred, true = int(probs[i].argmax()), classes[int(labels[i])]
        caption = f"true: {true}, predicted: {classes[pred]} ({float(probs[i, pred]):.2f})"
        w = weights[i, : len(tokens)].tolist()
        rows.append((tokens, w, caption))
        examples.append(TextAttentionExample(tokens, w, caption, true))
    title = f"{name}: attention pooling over word pieces"
    png = plot_token_weights(rows, out / f"attention_{name}.png", title)
    page = write_highlight_html(examples, out / f"attention_{name}.html", title=title)
    return [png.name, page.name]


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


def _report(cfg: MiniLMConfig, results: list[ModelResult], run_dir: RunDir) -> str:
    sizes = ", ".join(f"{n} {len(idx)}" for n, idx in _prepare(cfg).splits.items())
    r, (rows, source) = results[0], _baseline_rows(cfg)
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
