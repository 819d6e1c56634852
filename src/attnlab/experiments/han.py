"""Hierarchical attention networks (Yang et al. 2016) against flat models, on long reviews.

"Hierarchical Attention Networks for Document Classification" (NAACL 2016) reads a
document as sentences of words: a bi-GRU and word attention make one vector per
sentence, a bi-GRU and sentence attention one vector per document. Here it is
compared with two flat models built from the same pieces that read the same tokens
as one long sequence: a bi-GRU with the same word attention (learned context vector)
over all tokens, and the same bi-GRU classifying from its final states. So the first
comparison isolates the hierarchy, the second the attention. Every model trains
over N seeds on one fixed, stratified train/validation/test split; the table reports
mean ± std test accuracy, and a page shows the HAN's sentence and word attention on
a few test documents, as in the paper's Figures 5 and 6.

Run: ``attnlab run han [--seeds N] [--documents N] [--out DIR]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from attnlab._validate import lookup
from attnlab.data.documents import (
    DocumentCorpus,
    document_tokens,
    encode_documents,
    flatten_documents,
    load_documents,
)
from attnlab.data.text import Vocab, split_indices
from attnlab.experiments import (
    EarlyStopping,
    ExperimentSpec,
    Outcome,
    RunDir,
    SeedResult,
    register,
    run_models,
)
from attnlab.experiments import _checks as checks
from attnlab.experiments._classify import LengthBatches, fit_and_score
from attnlab.interpret.documents import DocumentAttentionExample, write_document_html
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.nn.pooling import LastStatePooling
from attnlab.train import make_generator, seed_everything

# The models' names -> their class; the flat ones differ only in the pooling they are given.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "han": HANClassifier,
    "flat-attention": FlatClassifier,  # the HAN's word attention (its default pooling)
    "no-attention": partial(FlatClassifier, pooling=LastStatePooling),
}
SPLIT = (0.7, 0.1, 0.2)  # train / validation / test, stratified
_SHOWN_MAX_SENTENCES = 20  # documents drawn on the page are at most this long


@dataclass(frozen=True)
class HANConfig(EarlyStopping):
    """Settings of the hierarchical attention experiment (training: :class:`EarlyStopping`).

    Attributes:
        dataset: document corpus (movie-reviews: Pang & Lee's 1500 reviews).
        models: han (hierarchical attention), flat-attention (bi-GRU + word attention
            over the whole document), no-attention (bi-GRU, final states).
        documents: documents used, a class-balanced sample drawn with split_seed
            (0: all; else at least 20, so every split gets some); the budget knob for
            quick runs.
        embedding_dim: word embedding size (paper: 200).
        hidden_size: recurrent state size per direction, all models (paper: 50).
        attention_size: tanh layer size of the attentions (paper: 100).
        dropout: dropout on embeddings and on the document vector.
        patience: epochs without improvement of the monitored metric before stopping
            (default: never; on this corpus validation loss often sits at chance for
            the first epochs, and an early stop there keeps an untrained model).
        batch_size: documents per batch.
        max_sentences: sentences kept per document (the rest is cut).
        max_words: tokens kept per sentence.
        min_freq: words seen fewer times in training become <unk>.
        max_vocab: largest vocabulary, <pad> and <unk> included (at least 3).
        split_seed: seed of the 70/10/20 stratified split (and of the sample).
        examples: test documents drawn on the HAN attention page (0: none).
        data_dir: folder with the datasets (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    # EarlyStopping's fields, with this experiment's defaults.
    seeds: int = 3
    epochs: int = 8
    batch_size: int = 64
    patience: int = 8
    dataset: Literal["movie-reviews"] = "movie-reviews"
    models: tuple[str, ...] = tuple(MODELS)
    documents: int = 0
    embedding_dim: int = 64
    hidden_size: int = 50
    attention_size: int = 100
    dropout: float = 0.5
    max_sentences: int = 60
    max_words: int = 50
    min_freq: int = 2
    max_vocab: int = 20000
    split_seed: int = 0
    examples: int = 4
    data_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "models", tuple(MODELS))
        checks.at_least(self, 1, "embedding_dim", "hidden_size", "attention_size", "min_freq")
        checks.at_least(self, 1, "max_sentences", "max_words")
        checks.at_least(self, 3, "max_vocab")  # <pad>, <unk> and a word
        checks.at_least(self, 20, "documents", or_zero=True)
        checks.at_least(self, 0, "split_seed", "examples")
        checks.fraction(self, "dropout")
        checks.folder(self, "data_dir")


@dataclass(frozen=True)
class Data:
    """The documents, vocabulary, split, and the nested and flat tensors of a run."""

    corpus: DocumentCorpus
    vocab: Vocab
    splits: dict[str, list[int]]
    nested: dict[str, tuple[Tensor, Tensor]]  # (ids (N, S, W), labels)
    flat: dict[str, tuple[Tensor, Tensor]]  # (ids (N, L), labels)


def _sample(labels: list[int], n: int, seed: int) -> list[int]:
    """A class-balanced sample of ``n`` document indices (all when ``n`` is 0), sorted."""
    if n == 0 or n >= len(labels):
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    classes = np.unique(y)
    picked = [
        rng.permutation(np.flatnonzero(y == c))[: n // len(classes) + (i < n % len(classes))]
        for i, c in enumerate(classes)
    ]
    return sorted(int(i) for part in picked for i in part)


def prepare(cfg: HANConfig) -> Data:
    """Sample and split the documents, build the vocabulary, encode nested and flat."""
    full = load_documents(cfg.dataset, data_dir=cfg.data_dir or None)
    kept = _sample(full.labels, cfg.documents, cfg.split_seed)
    corpus = DocumentCorpus(
        full.name, [full.documents[i] for i in kept], [full.labels[i] for i in kept], full.classes
    )
    train, val, test = split_indices(corpus.labels, SPLIT, seed=cfg.split_seed)
    splits = {"train": train, "val": val, "test": test}
    vocab = Vocab.build(
        (" ".join(corpus.documents[i]) for i in train),
        min_freq=cfg.min_freq,
        max_size=cfg.max_vocab,
    )
    nested, flat = {}, {}
    for name, idx in splits.items():
        docs = [corpus.documents[i] for i in idx]
        ids = encode_documents(
            vocab, docs, max_sentences=cfg.max_sentences, max_words=cfg.max_words
        )
        labels = torch.tensor([corpus.labels[i] for i in idx])
        nested[name] = (ids, labels)
        flat[name] = (flatten_documents(ids)[0], labels)
    return Data(corpus, vocab, splits, nested, flat)


def _trim(batch: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """Collate, then cut the padding that no document of the batch needs."""
    ids, *rest = (torch.stack(column) for column in zip(*batch))
    real = ids != 0
    if ids.dim() == 3:  # (B, S, W): keep the longest sentence and document
        ids = ids[:, : int(real.any(-1).sum(-1).max()), : int(real.sum(-1).max())]
    else:
        ids = ids[:, : int(real.sum(-1).max())]
    return (ids, *rest)


class _BucketBatches(LengthBatches):
    """:class:`LengthBatches` in pools of 8 batches, the order drawn by ``self.sampler``.

    All draws come from ``sampler.generator``, which :func:`~attnlab.train.fit` saves and
    restores.
    """

    def __init__(self, lengths: Tensor, batch_size: int, generator: torch.Generator) -> None:
        super().__init__(lengths, batch_size, generator, pool=8)
        self.sampler = RandomSampler(range(len(lengths)), generator=generator)

    def order(self) -> Tensor:
        """This epoch's order, drawn by the RandomSampler (one more draw than ``randperm``)."""
        return torch.tensor(list(self.sampler))


def _loader(tensors: tuple[Tensor, ...], batch_size: int, seed: int | None) -> DataLoader:
    dataset = TensorDataset(*tensors)
    if seed is None:
        return DataLoader(dataset, batch_size=batch_size, collate_fn=_trim)
    lengths = (tensors[0] != 0).flatten(1).sum(-1)
    batches = _BucketBatches(lengths, batch_size, make_generator(seed))
    return DataLoader(dataset, batch_sampler=batches, collate_fn=_trim)


def build(cfg: HANConfig, model: str, data: Data) -> nn.Module:
    """The classifier called ``model`` (a key of :data:`MODELS`)."""
    return lookup(MODELS, model, "HAN experiment model")(
        len(data.vocab),
        len(data.corpus.classes),
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        attention_size=cfg.attention_size,
        dropout=cfg.dropout,
    )


def train_one(cfg: HANConfig, data: Data, name: str, seed: int, run: RunDir) -> SeedResult:
    """Train and test one model under one seed; draw the seed-0 HAN's attention."""
    seed_everything(seed)
    model = build(cfg, name, data)
    tensors = data.nested if name == "han" else data.flat
    loaders = (
        _loader(tensors["train"], cfg.batch_size, seed),
        _loader(tensors["val"], 64, None),
        _loader(tensors["test"], 64, None),
    )
    result = fit_and_score(model, loaders, cfg, model_name=name, seed=seed, run=run)
    if seed == 0 and isinstance(model, HANClassifier):
        return dataclasses.replace(result, pictures=_draw(cfg, data, model, run.path))
    return result


def _draw(cfg: HANConfig, data: Data, model: HANClassifier, out: Path) -> list[str]:
    """The HAN's two-level attention on the first short test documents."""
    ids, labels = data.nested["test"]
    real = (ids != 0).any(-1).sum(-1)
    shown = [i for i in range(len(real)) if real[i] <= _SHOWN_MAX_SENTENCES][: cfg.examples]
    if not shown:
        return []
    model.eval()
    with torch.no_grad():
        output = model.forward_with_weights(_trim([(ids[i],) for i in shown])[0])
    (logits, words), sentence_weights = output, output.sentence_weights
    probs = logits.softmax(-1)
    classes = data.corpus.classes
    examples = []
    for row, i in enumerate(shown):
        document = data.corpus.documents[data.splits["test"][i]]
        sentences = document_tokens(
            document, max_sentences=cfg.max_sentences, max_words=cfg.max_words
        )
        pred = int(probs[row].argmax())
        truth, guess = classes[int(labels[i])], classes[pred]
        examples.append(
            DocumentAttentionExample(
                sentences,
                [words[row, j, : len(s)] for j, s in enumerate(sentences)],
                sentence_weights[row, : len(sentences)],
                caption=f"true: {truth}, predicted: {guess} ({float(probs[row, pred]):.2f})",
                label="correct" if guess == truth else "wrong",
            )
        )
    page = write_document_html(
        examples,
        out / "attention_han.html",
        title=f"HAN on {cfg.dataset}: sentence and word attention (seed 0)",
    )
    return [page.name]


def run(cfg: HANConfig, run_dir: RunDir) -> Outcome[Data]:
    """Train every model over every seed; draw the seed-0 HAN's attention."""
    data = prepare(cfg)
    results = run_models(
        cfg.models,
        range(cfg.seeds),
        lambda name, seed: train_one(cfg, data, name, seed, run_dir),
    )
    return Outcome(results, data)


def _report(cfg: HANConfig, outcome: Outcome[Data], run_dir: RunDir) -> str:
    data = outcome.data
    sizes = ", ".join(f"{n} {len(idx)}" for n, idx in data.splits.items())
    ids = data.nested["train"][0]
    sentences = (ids != 0).any(-1).sum(-1).float().mean()
    lines = [
        "",
        f"Dataset: {cfg.dataset} ({sizes} documents; vocabulary {len(data.vocab)}; "
        f"{float(sentences):.1f} sentences per training document after keeping "
        f"{cfg.max_sentences} sentences of {cfg.max_words} tokens).",
        "",
        f"Split: stratified 70/10/20 (seed {cfg.split_seed}); early stopping on validation "
        f"{cfg.monitor} (patience {cfg.patience}, at most {cfg.epochs} epochs); test accuracy "
        "of the best validation epoch.",
        "",
        "Models: `han` is Yang et al.'s network (bi-GRU + word attention per sentence, "
        "bi-GRU + sentence attention); `flat-attention` is one bi-GRU over the whole "
        "document with the same word attention (learned context vector); `no-attention` "
        "the same bi-GRU classifying from its final states. All three read the same tokens "
        "with the same embedding, GRU and attention sizes.",
        "",
    ]
    for r in outcome.results:
        for picture in r.extra.get("pictures", []):
            lines.append(f"- [{r.model}: sentence and word attention on test reviews]({picture})")
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="han",
        description="Hierarchical attention networks vs flat models on long reviews",
        config=HANConfig,
        run=run,
        dataset=lambda cfg: cfg.dataset,
        report=_report,
    )
)
