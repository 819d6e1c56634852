import hashlib
from pathlib import Path

import pytest

from attnlab.data import sources
from attnlab.data.sources import (
    DataChecksumError,
    DataNotFoundError,
    cache_dir,
    data_dir,
    download_url,
    resolve,
    sha256_file,
)

REL = "toy/hello.txt"
GOOD = b"hello, attention\n"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
BAD = b"corrupted\n"
BAD_SHA = hashlib.sha256(BAD).hexdigest()
URL = "https://example.org/hello.txt"


def put(root: Path, content: bytes = GOOD) -> Path:
    path = root / REL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def no_fetch(dest: Path) -> None:
    raise AssertionError("fetch must not be called when a copy exists")


def writer(content: bytes, calls: list | None = None):
    def fetch(dest: Path) -> None:
        if calls is not None:
            calls.append(dest)
        dest.write_bytes(content)

    return fetch


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_env_helpers(monkeypatch, tmp_path):
    assert data_dir() is None
    monkeypatch.setenv("ATTNLAB_DATA_DIR", "")
    assert data_dir() is None
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert cache_dir() == tmp_path / "attnlab-home"
    monkeypatch.delenv("ATTNLAB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "attnlab"


def test_sha256_file(tmp_path):
    assert sha256_file(put(tmp_path)) == GOOD_SHA


def test_data_dir_argument_hit(tmp_path):
    path = put(tmp_path / "data")
    got = resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, url=URL, data_dir=tmp_path / "data")
    assert got == path


def test_data_dir_env_hit(tmp_path, monkeypatch):
    path = put(tmp_path / "data")
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "data"))
    assert resolve(REL, sha256=GOOD_SHA, fetch=no_fetch) == path


def test_data_dir_argument_beats_env(tmp_path, monkeypatch):
    put(tmp_path / "env", BAD)
    path = put(tmp_path / "arg")
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "env"))
    assert resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, data_dir=tmp_path / "arg") == path


def test_data_dir_without_file_falls_back_to_cache(tmp_path, isolated_env):
    (tmp_path / "data").mkdir()
    path = put(isolated_env)
    assert resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, data_dir=tmp_path / "data") == path


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, data_dir=tmp_path / "typo")


def test_cache_hit(isolated_env):
    path = put(isolated_env)
    assert resolve(REL, sha256=GOOD_SHA, fetch=no_fetch) == path


def test_fetch_into_cache(isolated_env):
    calls: list[Path] = []
    path = resolve(REL, sha256=GOOD_SHA, fetch=writer(GOOD, calls), url=URL)
    assert path == isolated_env / REL
    assert path.read_bytes() == GOOD
    # fetch wrote to a temporary file beside the destination, renamed into place.
    assert len(calls) == 1 and calls[0].parent == path.parent and calls[0] != path
    assert leftovers(path.parent) == ["hello.txt"]
    # Second call is a cache hit.
    assert resolve(REL, sha256=GOOD_SHA, fetch=no_fetch) == path


def test_checksum_is_case_insensitive(isolated_env):
    put(isolated_env)
    resolve(REL, sha256=GOOD_SHA.upper(), fetch=no_fetch)


def test_data_dir_checksum_mismatch(tmp_path):
    path = put(tmp_path / "data", BAD)
    with pytest.raises(DataChecksumError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, url=URL, data_dir=tmp_path / "data")
    msg = str(err.value)
    assert str(path) in msg and GOOD_SHA in msg and BAD_SHA in msg and URL in msg
    assert isinstance(err.value, ValueError)


def test_cache_checksum_mismatch_is_never_used(isolated_env):
    path = put(isolated_env, BAD)
    with pytest.raises(DataChecksumError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=no_fetch, url=URL)
    msg = str(err.value)
    assert str(path) in msg and GOOD_SHA in msg and BAD_SHA in msg and "delete" in msg
    assert "\n" not in msg


def test_fetched_checksum_mismatch_is_removed(isolated_env):
    with pytest.raises(DataChecksumError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=writer(BAD), url=URL)
    assert REL in str(err.value) and BAD_SHA in str(err.value)
    assert leftovers(isolated_env / "toy") == []


def test_missing_everywhere(isolated_env):
    def offline(dest: Path) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure\nin name resolution>")

    with pytest.raises(DataNotFoundError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=offline, url=URL)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert REL in msg and URL in msg and "$ATTNLAB_DATA_DIR/" + REL in msg
    assert str(isolated_env / REL) in msg and "name resolution" in msg
    assert "\n" not in msg
    assert isinstance(err.value.__cause__, OSError)
    assert leftovers(isolated_env / "toy") == []


def test_missing_without_fetch(isolated_env):
    with pytest.raises(DataNotFoundError, match=REL):
        resolve(REL, sha256=GOOD_SHA, fetch=None, url=URL)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.txt", "a/../../b"])
def test_relpath_must_stay_inside(bad):
    with pytest.raises(ValueError, match="relpath"):
        resolve(bad, sha256=GOOD_SHA, fetch=no_fetch)


def test_download_url_file_scheme(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(GOOD * 1000)
    dest = tmp_path / "out" / "copy.bin"
    assert download_url(src.as_uri(), dest, progress=False) == dest
    assert dest.read_bytes() == GOOD * 1000
    assert leftovers(dest.parent) == ["copy.bin"]


def test_download_url_failure_leaves_nothing(tmp_path):
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(OSError):
        download_url((tmp_path / "absent.bin").as_uri(), dest, progress=False)
    assert leftovers(dest.parent) == []


def test_exports():
    assert set(sources.__all__) <= set(dir(sources))


def test_missing_names_explicit_data_dir(tmp_path, isolated_env):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataNotFoundError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=None, data_dir=tmp_path / "data")
    assert str(tmp_path / "data" / REL) in str(err.value)
    assert str(isolated_env / REL) in str(err.value)
