import gzip
import hashlib
import os
from pathlib import Path

import pytest

from attnlab.data import translation
from attnlab.data.sources import DataChecksumError
from attnlab.data.translation import (
    MULTI30K_LANGUAGES,
    MULTI30K_SPLITS,
    ParallelCorpus,
    check_strings,
    load_multi30k,
    read_lines,
    read_parallel,
)

# Read at import, before the autouse fixture clears it for each test.
REAL_DATA_DIR = os.environ.get("ATTNLAB_DATA_DIR")

TOY = {
    "en": "A dog runs.\nTwo men talk.\n",
    "de": "Ein Hund rennt.\nZwei Männer reden.\n",
    "fr": "Un chien court.\nDeux hommes parlent.\n",
}


def write_multi30k(root: Path, monkeypatch, split: str = "val") -> Path:
    """Write gzipped toy files under root/multi30k and trust their checksums."""
    folder = root / "multi30k"
    folder.mkdir(parents=True)
    for lang, text in TOY.items():
        data = gzip.compress(text.encode("utf-8"), mtime=0)
        (folder / f"{split}.{lang}.gz").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        monkeypatch.setitem(translation.CHECKSUMS, f"multi30k/{split}.{lang}.gz", digest)
    return root


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_real_checksums_by_default():
    assert len(translation.CHECKSUMS) == len(MULTI30K_SPLITS) * len(MULTI30K_LANGUAGES)
    assert translation.CHECKSUMS["multi30k/train.en.gz"].startswith("d79cfa99")
    assert translation.CHECKSUMS["multi30k/test_2016_flickr.de.gz"].startswith("9204244e")


def test_read_parallel_plain_and_gzip(tmp_path):
    # gzip is recognised by content (here without a .gz name); CRLF and spaces are stripped,
    # and a U+0085 inside a sentence does not split it.
    src = write(tmp_path / "src.txt", "Ein Hund.\r\n  Zwei\u0085Katzen. \n", gz=True)
    tgt = write(tmp_path / "tgt.txt", "A dog.\nTwo cats.")
    assert read_parallel(src, tgt) == (["Ein Hund.", "Zwei\u0085Katzen."], ["A dog.", "Two cats."])


def test_read_parallel_mismatched_lengths(tmp_path):
    src = write(tmp_path / "a.de", "eins\nzwei\ndrei\n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(ValueError, match=r"a\.de has 3 lines, .*a\.en has 2") as info:
        read_parallel(src, tgt)
    assert "\n" not in str(info.value)


def test_read_parallel_empty_file(tmp_path):
    src = write(tmp_path / "a.de", "")
    tgt = write(tmp_path / "a.en", "one\n")
    with pytest.raises(ValueError, match=r"a\.de is empty"):
        read_parallel(src, tgt)
    with pytest.raises(ValueError, match=r"is empty"):
        read_parallel(tgt, write(tmp_path / "b.en", "", gz=True))


def test_read_parallel_drops_blank_pairs_with_one_warning(tmp_path):
    src = write(tmp_path / "a.de", "eins\n\ndrei\nvier\n   \n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n\nfour\n\n")
    with pytest.warns(UserWarning, match=r"dropped 3 of 5 sentence pairs") as record:
        pairs = read_parallel(src, tgt)
    assert len(record) == 1
    assert pairs == (["eins", "vier"], ["one", "four"])


def test_read_parallel_all_blank(tmp_path):
    src = write(tmp_path / "a.de", "\n\n")
    tgt = write(tmp_path / "a.en", "one\n\n")
    with pytest.raises(ValueError, match="no line with text on both sides"):
        read_parallel(src, tgt)


def test_read_lines_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Männer\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_lines(path)


def test_read_lines_rejects_damaged_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(b"one\ntwo\n" * 100)[:30])
    with pytest.raises(ValueError, match="damaged gzip") as info:
        read_lines(path)
    assert "\n" not in str(info.value)


def test_parallel_corpus_checks_pairing():
    with pytest.raises(ValueError, match="2 source but 1 target"):
        ParallelCorpus(["a", "b"], ["x"], "de", "en", "toy")


def test_check_strings():
    assert check_strings("texts", ("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="not one str"):
        check_strings("texts", "abc")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        check_strings("texts", ["a", 1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "test"}, "unknown Multi30k split 'test'"),
        ({"src": "cs"}, "unknown Multi30k src language 'cs'; choose one of"),
        ({"tgt": "EN"}, "unknown Multi30k tgt language 'EN'"),
        ({"src": "en", "tgt": "en"}, "src and tgt are both 'en'"),
    ],
)
def test_load_multi30k_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_multi30k(**kwargs)


def test_load_multi30k_from_data_dir(tmp_path, monkeypatch):
    root = write_multi30k(tmp_path / "data", monkeypatch)
    corpus = load_multi30k("val", src="en", tgt="fr", data_dir=root)
    assert corpus == ParallelCorpus(
        ["A dog runs.", "Two men talk."],
        ["Un chien court.", "Deux hommes parlent."],
        "en",
        "fr",
        "val",
    )
    assert len(corpus) == 2


def test_load_multi30k_downloads_into_cache(tmp_path, monkeypatch, isolated_env):
    origin = write_multi30k(tmp_path / "origin", monkeypatch) / "multi30k"
    monkeypatch.setattr(translation, "MULTI30K_URL", origin.as_uri() + "/{file}")
    corpus = load_multi30k("val")
    assert corpus.src == ["Ein Hund rennt.", "Zwei Männer reden."]
    assert (isolated_env / "multi30k" / "val.de.gz").read_bytes()[:2] == b"\x1f\x8b"
    # The second call reads the cache and needs no download.
    monkeypatch.setattr(translation, "MULTI30K_URL", "file:///nonexistent/{file}")
    assert load_multi30k("val") == corpus


def test_load_multi30k_rejects_bad_checksum(tmp_path, monkeypatch):
    root = write_multi30k(tmp_path / "data", monkeypatch)
    monkeypatch.setitem(translation.CHECKSUMS, "multi30k/val.de.gz", "0" * 64)
    with pytest.raises(DataChecksumError, match="val.de.gz"):
        load_multi30k("val", data_dir=root)


@pytest.mark.skipif(
    not (REAL_DATA_DIR and (Path(REAL_DATA_DIR) / "multi30k").is_dir()),
    reason="ATTNLAB_DATA_DIR does not hold multi30k/",
)
@pytest.mark.parametrize("split", list(MULTI30K_SPLITS))
def test_real_multi30k(monkeypatch, split):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", REAL_DATA_DIR)
    corpus = load_multi30k(split, src="en", tgt="de")
    assert len(corpus) == MULTI30K_SPLITS[split]
    assert all(s and t for s, t in zip(corpus.src, corpus.tgt))
    french = load_multi30k(split, src="fr", tgt="en")
    assert french.tgt == corpus.src
    if split == "train":
        assert corpus.src[0].startswith("Two young, White males are outside")
