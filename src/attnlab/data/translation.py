"""Parallel text for translation: Multi30k and sentence-aligned files of your own.

Multi30k task 1 (Elliott et al., "Multi30K: Multilingual English-German Image
Descriptions", VL 2016; French added by Elliott et al., WMT 2017) pairs each
Flickr30k image caption with human translations. The raw, untokenised files
``{train,val,test_2016_flickr}.{en,de,fr}.gz`` (29,000 / 1014 / 1000 sentences,
one a line, aligned by line) are found by :func:`attnlab.data.sources.resolve`
(data directory, cache, download from the publisher's GitHub repository) and
checked against the sha256 values in :data:`CHECKSUMS`. The files are kept
gzipped, exactly as published.

:func:`read_parallel` reads any pair of line-aligned files (plain or gzip).
"""

import functools
import gzip
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attnlab.data.sources import download_url, resolve

__all__ = [
    "CHECKSUMS",
    "MULTI30K_LANGUAGES",
    "MULTI30K_SPLITS",
    "ParallelCorpus",
    "load_multi30k",
    "read_lines",
    "read_parallel",
]

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{file}"
MULTI30K_LANGUAGES = ("en", "de", "fr")
MULTI30K_SPLITS = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}
"""Split name -> number of sentence pairs."""

# Expected sha256 of each file, keyed by relpath; the publisher's gzip bytes.
CHECKSUMS: dict[str, str] = {
    "multi30k/train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "multi30k/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "multi30k/train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "multi30k/val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "multi30k/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "multi30k/val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "multi30k/test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",  # noqa: E501
    "multi30k/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",  # noqa: E501
    "multi30k/test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",  # noqa: E501
}

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ParallelCorpus:
    """Sentence pairs, ``src[i]`` translated as ``tgt[i]``, in the publisher's order.

    Attributes:
        src: Source sentences, stripped of surrounding whitespace.
        tgt: Target sentences, as many as ``src``.
        src_lang: Source language code (``"de"``).
        tgt_lang: Target language code (``"en"``).
        split: The split it was loaded from (``"train"``), or any label for own data.

    Example:
        >>> corpus = ParallelCorpus(["Ein Hund."], ["A dog."], "de", "en", "toy")
        >>> len(corpus), corpus.tgt[0]
        (1, 'A dog.')
    """

    src: list[str]
    tgt: list[str]
    src_lang: str
    tgt_lang: str
    split: str

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(
                f"corpus {self.split!r} has {len(self.src)} source but {len(self.tgt)} target"
                " sentences; they must pair up one to one"
            )

    def __len__(self) -> int:
        return len(self.src)


def check_strings(name: str, values: Iterable[str]) -> list[str]:
    """Return ``values`` as a list, checking that it holds strings (argument validation).

    Args:
        name: The argument's name, for the message.
        values: The strings; any iterable but a single str.

    Returns:
        The strings, as a new list.

    Raises:
        TypeError: ``values`` is one str, or an item is not a str.
    """
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, not one str; wrap it in a list")
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] is {type(value).__name__}, expected str")
    return values


def read_lines(path: str | Path) -> list[str]:
    r"""Read a UTF-8 text file (plain or gzip) into lines, each stripped of whitespace.

    Gzip is recognised by the file's first bytes, not its name. Lines are split on
    ``"\n"`` only (a U+0085 or U+2028 inside a sentence does not break it), and a
    final newline does not count as an extra, empty line.

    Args:
        path: The file.

    Returns:
        One string per line; blank lines are kept (as ``""``) so line numbers hold.

    Raises:
        ValueError: The file is empty, not UTF-8 text, or damaged gzip.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path} is a damaged gzip file ({exc}); fetch it again") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8"
        ) from None
    if not text:
        raise ValueError(f"{path} is empty; expected one sentence per line")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    r"""Read two line-aligned files (plain or gzip) into sentence pairs.

    Line ``i`` of ``src_path`` translates line ``i`` of ``tgt_path``. Surrounding
    whitespace (the newline, a ``\r``, stray spaces) is stripped. A pair in which
    either side is blank carries nothing to learn from, and a blank line on one
    side usually means a missing translation: such pairs are dropped, keeping the
    rest aligned, and one warning says how many.

    Args:
        src_path: Source-language file, UTF-8, one sentence a line.
        tgt_path: Target-language file, same number of lines.

    Returns:
        ``(src, tgt)``: equally long lists of non-blank sentences.

    Raises:
        ValueError: A file is empty or not UTF-8, the line counts differ, or no pair
            has text on both sides.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     de, en = pathlib.Path(tmp, "a.de"), pathlib.Path(tmp, "a.en")
        ...     _ = de.write_text("Ein Hund.\nZwei Katzen.\n", encoding="utf-8")
        ...     _ = en.write_text("A dog.\nTwo cats.\r\n", encoding="utf-8")
        ...     read_parallel(de, en)
        (['Ein Hund.', 'Zwei Katzen.'], ['A dog.', 'Two cats.'])
    """
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"parallel files differ in length: {src_path} has {len(src_lines)} lines, "
            f"{tgt_path} has {len(tgt_lines)}; they must be aligned line by line"
        )
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines) if s and t]
    if not pairs:
        raise ValueError(
            f"{src_path} and {tgt_path} hold no line with text on both sides; "
            "expected one sentence per line"
        )
    dropped = len(src_lines) - len(pairs)
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {len(src_lines)} sentence pairs with a blank side "
            f"in {src_path} / {tgt_path}",
            stacklevel=2,
        )
    return [s for s, _ in pairs], [t for _, t in pairs]


def load_multi30k(
    split: str = "train",
    src: str = "de",
    tgt: str = "en",
    data_dir: str | Path | None = None,
) -> ParallelCorpus:
    """Load one split of Multi30k task 1 as sentence pairs.

    Args:
        split: ``"train"`` (29,000 pairs), ``"val"`` (1014) or ``"test_2016_flickr"``
            (1000).
        src: Source language, one of ``"en"``, ``"de"``, ``"fr"``.
        tgt: Target language, one of the same, other than ``src``.
        data_dir: Data directory holding ``multi30k/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.

    Returns:
        The corpus, raw and untokenised.

    Raises:
        ValueError: Unknown split or language, or ``src == tgt``.
        DataNotFoundError: No copy anywhere and the download failed.
        DataChecksumError: A copy was found but its checksum is wrong.
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; choose one of {list(MULTI30K_SPLITS)}")
    for role, lang in (("src", src), ("tgt", tgt)):
        if lang not in MULTI30K_LANGUAGES:
            raise ValueError(
                f"unknown Multi30k {role} language {lang!r}; "
                f"choose one of {list(MULTI30K_LANGUAGES)}"
            )
    if src == tgt:
        raise ValueError(
            f"src and tgt are both {src!r}; choose two different languages of "
            f"{list(MULTI30K_LANGUAGES)}"
        )
    src_path, tgt_path = (_multi30k_file(f"{split}.{lang}.gz", data_dir) for lang in (src, tgt))
    src_texts, tgt_texts = read_parallel(src_path, tgt_path)
    return ParallelCorpus(src_texts, tgt_texts, src, tgt, split)


def _multi30k_file(filename: str, data_dir: str | Path | None) -> Path:
    """Resolve one Multi30k file (data directory, cache, download) and return its path."""
    relpath = f"multi30k/{filename}"
    url = MULTI30K_URL.format(file=filename)
    # The publisher's repository serves the .gz files themselves; they are stored as is.
    fetch = functools.partial(download_url, url)
    return resolve(relpath, sha256=CHECKSUMS[relpath], fetch=fetch, url=url, data_dir=data_dir)
