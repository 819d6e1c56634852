"""Multi30k translation: RNN encoder-decoders (none, Bahdanau, Luong, hard), Transformer.

Trains :class:`attnlab.models.Seq2Seq` or
:class:`attnlab.models.transformer.TransformerSeq2Seq` on Multi30k task 1 (29,000
image captions) under a wall-clock budget, then scores detokenised beam-search output
with sacreBLEU (its default settings) on ``test_2016_flickr``, reports teacher-forced
test perplexity, greedy (beam 1) BLEU beside beam BLEU, and draws source x target word
alignments (the Transformer's: its last decoder layer's cross-attention, mean of heads).

Run: ``attnlab run translate --src de --tgt en --attention luong-general
--budget-minutes 60``, or ``--model transformer``; ``--compare`` trains every variant
at the same budget and adds one picture with all their alignments of one sentence.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from attnlab.data.bleu import bleu_signature, corpus_bleu
from attnlab.data.subword import SubwordTokenizer
from attnlab.data.translation import ParallelCorpus, load_multi30k
from attnlab.experiments import ExperimentSpec, ModelResult, RunDir, register
from attnlab.experiments import _checks as checks
from attnlab.experiments._translate_eval import (
    draw_alignments,
    draw_comparison,
    length_batches,
    perplexity,
)
from attnlab.interpret.explain import AttentionTrace, trace_attention
from attnlab.models.search import beam_search
from attnlab.models.seq2seq import ATTENTIONS, Seq2Seq
from attnlab.models.transformer import TransformerSeq2Seq
from attnlab.train import load_checkpoint, seed_everything
from attnlab.train.budget import fit_budget

Language = Literal["de", "en", "fr"]
TRANSFORMER = "transformer"
MODELS = (*ATTENTIONS, TRANSFORMER)
Translator = Seq2Seq | TransformerSeq2Seq


@dataclass(frozen=True)
class TranslateConfig:
    """Settings of the translation experiment.

    Attributes:
        src: source language.
        tgt: target language.
        model: rnn (an encoder-decoder RNN with the --attention variant) or transformer.
        attention: the RNN's attention variant (ignored with --compare).
        compare: train every variant in `variants` at the same budget.
        variants: the variants of --compare (RNN attentions, and "transformer").
        budget_minutes: training budget per model (training plus validation).
        max_epochs: most epochs per model.
        patience: epochs without validation improvement before stopping.
        rnn: gru or lstm.
        embedding_dim: token embedding size.
        hidden_size: decoder state size, even (encoder: half per direction).
        layers: RNN layers.
        d_model: Transformer width, a multiple of heads (of 2 x heads with rotary positions).
        heads: Transformer attention heads.
        ff_dim: Transformer feed-forward size.
        transformer_layers: Transformer encoder and decoder layers (each).
        positions: Transformer positions: sinusoidal, learned or rotary.
        dropout: dropout on embeddings and before the output layer (Transformer: also
            on sublayers and attention probabilities).
        input_feeding: Luong's input feeding (slower: one RNN call per word).
        half_width: window half-width D of local-m and local-p.
        hard_evaluation: hard attention at test time: the argmax position, or the
            expectation (the soft context).
        vocab_size: subword pieces per language (SentencePiece BPE, one model each).
        max_len: pieces per sentence; longer ones are cut with a warning.
        batch_size: sentence pairs per batch (batches group similar lengths).
        lr: Adam learning rate (halved after an epoch without improvement).
        warmup_steps: linear learning-rate warm-up over the first steps (0 = none).
        label_smoothing: label smoothing of the training loss.
        beam_size: beam of the reported BLEU (greedy is reported beside it).
        length_penalty: alpha of the beam's length normalisation score / len^alpha.
        examples: test sentences drawn as alignment heatmaps per model (0: none).
        train_limit: use only the first N training pairs (0 = all), for quick runs.
        seed: seed of initialisation and batch order.
        data_dir: folder with multi30k/ (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    src: Language = "de"
    tgt: Language = "en"
    model: Literal["rnn", "transformer"] = "rnn"
    attention: str = "luong-general"
    compare: bool = False
    variants: tuple[str, ...] = ATTENTIONS
    budget_minutes: float = 60.0
    max_epochs: int = 30
    patience: int = 4
    rnn: Literal["gru", "lstm"] = "gru"
    embedding_dim: int = 256
    hidden_size: int = 256
    layers: int = 1
    d_model: int = 256
    heads: int = 4
    ff_dim: int = 1024
    transformer_layers: int = 3
    positions: Literal["sinusoidal", "learned", "rotary"] = "sinusoidal"
    dropout: float = 0.3
    input_feeding: bool = False
    half_width: int = 5
    hard_evaluation: Literal["argmax", "expectation"] = "argmax"
    vocab_size: int = 8000
    max_len: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    beam_size: int = 5
    length_penalty: float = 1.0
    examples: int = 3
    train_limit: int = 0
    seed: int = 0
    data_dir: str = ""

    def __post_init__(self) -> None:
        checks.field_types(self)
        checks.names(self, "attention", ATTENTIONS)
        checks.names(self, "variants", MODELS)
        if self.src == self.tgt:
            raise ValueError(f"--src and --tgt must differ; both are {self.src!r}")
        checks.positive(self, "budget_minutes", "lr")
        checks.at_least(self, 1, "max_epochs", "patience", "embedding_dim", "layers", "d_model")
        checks.at_least(self, 1, "heads", "ff_dim", "transformer_layers", "batch_size", "beam_size")
        checks.at_least(self, 0, "warmup_steps", "length_penalty", "examples", "train_limit")
        checks.at_least(self, 0, "seed")
        checks.at_least(self, 2, "hidden_size")
        checks.at_least(self, 5, "vocab_size")  # SentencePiece's 4 specials and a piece
        checks.at_least(self, 3, "max_len")  # BOS, a word, EOS
        checks.at_least(self, 1 if "local-p" in self.models else 0, "half_width")
        checks.fraction(self, "dropout", "label_smoothing")
        checks.multiple_of(self, "hidden_size", 2, "half per encoder direction")
        checks.multiple_of(self, "d_model", self.heads, "--heads")
        if self.positions != "learned":  # sin/cos pairs per model width; rotated pairs per head
            step = 2 * self.heads if self.positions == "rotary" else 2
            checks.multiple_of(self, "d_model", step, f"{self.positions} positions")
        checks.folder(self, "data_dir")

    def explained_stack(self) -> tuple[int, int]:
        """(layers, heads) that ``attnlab explain --model RUN`` draws: the Transformer encoder's.

        Raises:
            ValueError: If this run trained no Transformer.
        """
        if TRANSFORMER not in self.models:
            raise ValueError(
                f"this translate run trained {', '.join(self.models)}: only a Transformer run "
                "has self-attention layers to explain (attnlab run translate --model transformer)"
            )
        return self.transformer_layers, self.heads

    @property
    def models(self) -> tuple[str, ...]:
        """The variants this run trains."""
        if self.compare:
            return self.variants
        return (TRANSFORMER,) if self.model == TRANSFORMER else (self.attention,)


@dataclass(frozen=True)
class Data:
    """Corpora, tokenizers and encoded tensors of a run."""

    corpora: dict[str, ParallelCorpus]
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


@functools.lru_cache(maxsize=1)
def prepare(cfg: TranslateConfig) -> Data:
    """Load Multi30k, train (or reuse cached) tokenizers, encode every split."""
    data_dir = cfg.data_dir or None
    corpora = {
        split: load_multi30k(split, cfg.src, cfg.tgt, data_dir=data_dir)
        for split in ("train", "val", "test_2016_flickr")
    }
    train = corpora["train"]
    if cfg.train_limit:
        train = ParallelCorpus(
            train.src[: cfg.train_limit],
            train.tgt[: cfg.train_limit],
            train.src_lang,
            train.tgt_lang,
            "train",
        )
        corpora["train"] = train
    label = f"multi30k-train{cfg.train_limit or ''}"
    src_tok = SubwordTokenizer.train_cached(train.src, cfg.vocab_size, name=f"{label}-{cfg.src}")
    tgt_tok = SubwordTokenizer.train_cached(train.tgt, cfg.vocab_size, name=f"{label}-{cfg.tgt}")
    tensors = {}
    for split, corpus in corpora.items():
        src, src_len = src_tok.encode(corpus.src, cfg.max_len)
        tgt, tgt_len = tgt_tok.encode(corpus.tgt, cfg.max_len, bos=True, eos=True)
        tensors[split] = (src, src_len, tgt, tgt_len)
    return Data(corpora, src_tok, tgt_tok, tensors)


def build(cfg: TranslateConfig, attention: str, data: Data) -> Translator:
    """The model of one variant (an RNN attention, or ``"transformer"``)."""
    if attention == TRANSFORMER:
        return TransformerSeq2Seq(
            data.src_tok.vocab_size,
            data.tgt_tok.vocab_size,
            d_model=cfg.d_model,
            num_heads=cfg.heads,
            ff_dim=cfg.ff_dim,
            encoder_layers=cfg.transformer_layers,
            decoder_layers=cfg.transformer_layers,
            dropout=cfg.dropout,
            positions=cfg.positions,
            max_len=cfg.max_len + 2,
            pad_id=data.src_tok.pad_id,
        )
    return Seq2Seq(
        data.src_tok.vocab_size,
        data.tgt_tok.vocab_size,
        attention=attention,
        rnn=cfg.rnn,
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        layers=cfg.layers,
        dropout=cfg.dropout,
        input_feeding=cfg.input_feeding,
        half_width=cfg.half_width,
        hard_evaluation=cfg.hard_evaluation,
        max_source_len=cfg.max_len,
        pad_id=data.src_tok.pad_id,
    )


def translate(
    model: Translator, data: Data, split: str, beam_size: int, cfg: TranslateConfig
) -> tuple[list[str], list]:
    """Detokenised translations of a split, and the hypotheses (weights included)."""
    src, src_len, _, _ = data.tensors[split]
    hyps = []
    for start in range(0, len(src_len), 100):
        sl = src_len[start : start + 100]
        hyps += beam_search(
            model,
            src[start : start + 100, : int(sl.max())],
            sl,
            bos_id=data.tgt_tok.bos_id,
            eos_id=data.tgt_tok.eos_id,
            beam_size=beam_size,
            max_len=cfg.max_len,
            length_penalty=cfg.length_penalty,
        )
    return data.tgt_tok.decode([h.tokens for h in hyps]), hyps


def train_one(cfg: TranslateConfig, data: Data, name: str, run: RunDir) -> tuple[Translator, dict]:
    """Train (or resume) one variant; return it with its metrics."""
    seed_everything(cfg.seed)
    model = build(cfg, name, data)
    folder = run.checkpoints / name
    config = {"variant": name, **dataclasses.asdict(cfg)}
    done = folder / "result.json"
    if done.is_file():  # finished before an interruption: reuse, do not retrain
        load_checkpoint(folder / "best", model=model, config=config)
        return model, json.loads(done.read_text())
    val_batches = length_batches(data.tensors["val"], 100, None)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit = fit_budget(
        model,
        lambda epoch: length_batches(data.tensors["train"], cfg.batch_size, cfg.seed + epoch),
        step=lambda b: model.loss(*b, label_smoothing=cfg.label_smoothing),
        validate=lambda: perplexity(model, val_batches),
        optimizer=optimizer,
        budget_seconds=cfg.budget_minutes * 60,
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        warmup_steps=cfg.warmup_steps,
        checkpoint_dir=folder,
        config=config,
        desc=name,
    )
    refs = data.corpora["test_2016_flickr"].tgt
    test_batches = length_batches(data.tensors["test_2016_flickr"], 100, None)
    start = time.perf_counter()
    beam_text, _ = translate(model, data, "test_2016_flickr", cfg.beam_size, cfg)
    greedy_text, _ = translate(model, data, "test_2016_flickr", 1, cfg)
    metrics = {
        "bleu": corpus_bleu(beam_text, refs),
        "bleu_greedy": corpus_bleu(greedy_text, refs),
        "perplexity": perplexity(model, test_batches),
        "val_perplexity": fit.best_metric,
        "training_minutes": fit.seconds / 60,
        "epochs": len(fit.history),
        "best_epoch": fit.best_epoch,
        "stopped_by": fit.stopped_by,
        "decode_seconds": time.perf_counter() - start,
        "samples": [
            {"source": s, "reference": r, "output": o}
            for s, r, o in zip(data.corpora["test_2016_flickr"].src[:5], refs[:5], beam_text[:5])
        ],
    }
    done.write_text(json.dumps(metrics, indent=1))
    return model, metrics


def run(cfg: TranslateConfig, run_dir: RunDir) -> list[ModelResult]:
    """Train every variant of the run, score it, draw its alignments."""
    prepare.cache_clear()
    data = prepare(cfg)
    results, models = [], {}
    for name in cfg.models:
        model, m = train_one(cfg, data, name, run_dir)
        models[name] = model
        pictures = draw_alignments(model, data, name, cfg, run_dir.path) if name != "none" else []
        numbers = ("bleu", "bleu_greedy", "perplexity", "val_perplexity", "training_minutes")
        results.append(
            ModelResult(
                model=name,
                metrics={k: [float(m[k])] for k in numbers},
                parameters=sum(p.numel() for p in model.parameters()),
                seconds=float(m["training_minutes"]) * 60,
                extra={
                    "pictures": pictures,
                    "epochs": m["epochs"],
                    "best_epoch": m["best_epoch"],
                    "stopped_by": m["stopped_by"],
                    "samples": m["samples"],
                },
            )
        )
    if cfg.compare:
        results[0].extra["comparison"] = draw_comparison(models, data, cfg, run_dir.path)
    return results


def report(cfg: TranslateConfig, results: list[ModelResult], run_dir: RunDir) -> str:
    """Notes under the table: data, scoring, budget, pictures."""
    data = prepare(cfg)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in data.corpora.items())
    lines = [
        "",
        f"Data: Multi30k task 1 {cfg.src}->{cfg.tgt} ({sizes} pairs); SentencePiece BPE, "
        f"{cfg.vocab_size} pieces per language. BLEU: sacreBLEU on detokenised beam-"
        f"{cfg.beam_size} output (`bleu`) and greedy output (`bleu_greedy`) of "
        f"test_2016_flickr, signature `{bleu_signature()}`. Perplexity: teacher-forced, per "
        "target piece. Budget per model: "
        f"{cfg.budget_minutes:g} min of training and validation on "
        f"{torch.get_num_threads()} thread(s); best validation epoch kept.",
        "",
        "| model | epochs | best epoch | stopped by |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.extra['epochs']} | {r.extra['best_epoch']} | {r.extra['stopped_by']} |"
        for r in results
    ]
    lines.append("")
    for r in results:
        if r.extra.get("comparison"):
            lines.append(f"![every variant, one sentence]({r.extra['comparison']})")
        lines += [f"![{r.model}]({p})" for p in r.extra["pictures"][:1]]
    first = results[0].extra["samples"][:3]
    lines += ["", f"Sample translations ({results[0].model}):", ""]
    lines += [
        f"- {s['source']}\n  - reference: {s['reference']}\n  - output: {s['output']}"
        for s in first
    ]
    return "\n".join(lines) + "\n"


def explain(cfg: TranslateConfig, folder: Path, text: str) -> AttentionTrace:
    """The trained Transformer encoder's self-attention over one source sentence."""
    cfg.explained_stack()  # refuses a run without a Transformer
    checkpoint = folder / "checkpoints" / TRANSFORMER / "best"
    data = prepare(cfg)
    model = build(cfg, TRANSFORMER, data)
    load_checkpoint(checkpoint, model=model)
    model.eval()
    ids, lengths = data.src_tok.encode([text], cfg.max_len)
    with torch.no_grad():
        return trace_attention(
            model,
            lambda: model.encode(ids, lengths),
            data.src_tok.pieces(text, cfg.max_len),
            layers="encoder.*",
            description=f"Transformer {cfg.src}->{cfg.tgt} encoder ({folder.name})",
        )


register(
    ExperimentSpec(
        name="translate",
        description="Multi30k translation: no attention, Bahdanau, Luong, hard; the Transformer",
        config=TranslateConfig,
        run=run,
        dataset=lambda cfg: f"multi30k-{cfg.src}-{cfg.tgt}",
        report=report,
        explain=explain,
    )
)

__all__ = ["TranslateConfig", "prepare", "run"]
