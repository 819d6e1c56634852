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

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attnlab._validate import lookup
from attnlab.data.bleu import bleu_signature, corpus_bleu
from attnlab.data.subword import SubwordTokenizer
from attnlab.data.translation import ParallelCorpus, load_multi30k
from attnlab.experiments import (
    ExperimentSpec,
    Outcome,
    RunDir,
    SeedResult,
    count_parameters,
    register,
    run_models,
)
from attnlab.experiments._translate_config import (
    MODELS,
    TRANSFORMER,
    RNNSettings,
    TransformerSettings,
    TranslateConfig,
)
from attnlab.experiments._translate_eval import (
    draw_alignments,
    draw_comparison,
    length_batches,
    perplexity,
)
from attnlab.interpret.explain import AttentionTrace, trace_attention
from attnlab.models.search import beam_search
from attnlab.models.seq2seq import Seq2Seq
from attnlab.models.seq2seq_attentions import SEQ2SEQ_ATTENTIONS, Seq2SeqOptions
from attnlab.models.transformer import TransformerSeq2Seq
from attnlab.train import load_checkpoint, seed_everything
from attnlab.train.budget import fit_budget

Translator = Seq2Seq | TransformerSeq2Seq
NUMBERS = ("bleu", "bleu_greedy", "perplexity", "val_perplexity", "training_minutes")


@dataclass(frozen=True)
class Data:
    """Corpora, tokenizers and encoded tensors of a run."""

    corpora: dict[str, ParallelCorpus]
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


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


def build_transformer(
    settings: TransformerSettings, data: Data, *, dropout: float, max_len: int
) -> TransformerSeq2Seq:
    """The Transformer encoder-decoder, from the Transformer's settings only."""
    return TransformerSeq2Seq(
        data.src_tok.vocab_size,
        data.tgt_tok.vocab_size,
        d_model=settings.d_model,
        num_heads=settings.heads,
        ff_dim=settings.ff_dim,
        encoder_layers=settings.transformer_layers,
        decoder_layers=settings.transformer_layers,
        dropout=dropout,
        positions=settings.positions,
        max_len=max_len + 2,
        pad_id=data.src_tok.pad_id,
    )


def build_rnn(
    settings: RNNSettings, attention: str, data: Data, *, dropout: float, max_len: int
) -> Seq2Seq:
    """The RNN encoder-decoder with one attention variant, from the RNN's settings only."""
    options = Seq2SeqOptions(
        half_width=settings.half_width,
        max_source_len=max_len,
        hard_evaluation=settings.hard_evaluation,
        input_feeding=settings.input_feeding,
    )
    variant = lookup(SEQ2SEQ_ATTENTIONS, attention, "attention")(settings.hidden_size, options)
    return Seq2Seq(
        data.src_tok.vocab_size,
        data.tgt_tok.vocab_size,
        **variant.as_kwargs(),
        rnn=settings.rnn,
        embedding_dim=settings.embedding_dim,
        hidden_size=settings.hidden_size,
        layers=settings.layers,
        dropout=dropout,
        pad_id=data.src_tok.pad_id,
    )


def build(cfg: TranslateConfig, variant: str, data: Data) -> Translator:
    """The model of one variant (an RNN attention, or ``"transformer"``)."""
    if variant == TRANSFORMER:
        return build_transformer(cfg, data, dropout=cfg.dropout, max_len=cfg.max_len)
    return build_rnn(cfg, variant, data, dropout=cfg.dropout, max_len=cfg.max_len)


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


def fit_variant(
    cfg: TranslateConfig, data: Data, name: str, run: RunDir
) -> tuple[Translator, dict]:
    """Train (or resume) one variant; return it with its metrics."""
    seed_everything(cfg.seed)
    model = build(cfg, name, data)
    folder = run.checkpoints / name
    config = {"variant": name, **asdict(cfg)}
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


def train_one(
    cfg: TranslateConfig, data: Data, name: str, run: RunDir, trained: dict[str, Translator]
) -> SeedResult:
    """Train (or read back) one variant, score it, draw its alignments; keep it in ``trained``."""
    model, m = fit_variant(cfg, data, name, run)
    trained[name] = model
    pictures = draw_alignments(model, data, name, cfg, run.path) if name != "none" else []
    return SeedResult(
        metrics={k: float(m[k]) for k in NUMBERS},
        parameters=count_parameters(model),
        seconds=float(m["training_minutes"]) * 60,
        pictures=pictures,
        extra={k: m[k] for k in ("epochs", "best_epoch", "stopped_by", "samples")},
        note=f"{m['epochs']} epochs, stopped by {m['stopped_by']}",
    )


def run(cfg: TranslateConfig, run_dir: RunDir) -> Outcome[Data]:
    """Train every variant of the run, score it, draw its alignments."""
    data = prepare(cfg)
    trained: dict[str, Translator] = {}
    results = run_models(
        cfg.models,
        [cfg.seed],
        lambda name, seed: train_one(cfg, data, name, run_dir, trained),
        summary=lambda name, runs: dict(runs[0].extra),
    )
    if cfg.compare:
        results[0].extra["comparison"] = draw_comparison(trained, data, cfg, run_dir.path)
    return Outcome(results, data)


def report(cfg: TranslateConfig, outcome: Outcome[Data], run_dir: RunDir) -> str:
    """Notes under the table: data, scoring, budget, pictures."""
    data, results = outcome.data, outcome.results
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
        lines += [f"![{r.model}]({p})" for p in r.extra.get("pictures", [])[:1]]
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

__all__ = ["MODELS", "TranslateConfig", "build", "prepare", "run"]
