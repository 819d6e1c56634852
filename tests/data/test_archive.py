import io
import tarfile
from pathlib import Path

import pytest

from attnlab.data import _archive
from attnlab.data._archive import MAX_MEMBER_BYTES, copy_member, extract_folder

from ._packages import declare_size, tar_bytes, zip_bytes

DATA = b"0123456789" * 10  # 100 bytes


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(params=["zip", "tar"])
def archive(request, tmp_path) -> Path:
    members = {"pkg/data.bin": DATA, "pkg/small.txt": b"ok"}
    if request.param == "zip":
        return write(tmp_path / "pkg.whl", zip_bytes(members))
    return write(tmp_path / "pkg.tar.gz", tar_bytes(members))


def test_copy_member_within_the_limit(archive, tmp_path):
    copy_member(archive, "pkg/data.bin", tmp_path / "out", limit=len(DATA))
    assert (tmp_path / "out").read_bytes() == DATA


def test_declared_size_over_the_limit_is_refused_unopened(archive, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the member was read before its declared size was checked")

    monkeypatch.setattr(_archive, "_copy", never)
    with pytest.raises(RuntimeError) as err:
        copy_member(archive, "pkg/data.bin", tmp_path / "out", limit=99)
    msg = str(err.value)
    assert msg == (
        f"{archive.name} member pkg/data.bin declares 100 bytes, over the 99-byte limit for "
        "an archive member; refusing to extract it"
    )
    assert not (tmp_path / "out").exists()


def test_default_limit_refuses_a_zip_declaring_gigabytes(tmp_path):
    assert 87 * 2**20 < MAX_MEMBER_BYTES < 2**31 - 1  # above MiniLM's weights
    bomb = write(tmp_path / "bomb.zip", declare_size(zip_bytes({"big": DATA}), 2**31 - 1))
    with pytest.raises(RuntimeError, match="big declares 2147483647 bytes"):
        copy_member(bomb, "big", tmp_path / "out")


def test_copy_stops_at_the_limit_when_the_declaration_lies(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(_archive, "_check_size", lambda *args: None)  # a lying declaration
    with pytest.raises(RuntimeError, match="pkg/data.bin holds more than 64 bytes"):
        copy_member(archive, "pkg/data.bin", tmp_path / "out", limit=64)
    assert not (tmp_path / "out").exists()


def test_missing_member_and_non_files(archive, tmp_path):
    with pytest.raises(RuntimeError, match=f"{archive.name} holds no file pkg/absent"):
        copy_member(archive, "pkg/absent", tmp_path / "out")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("pkg/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    linked = write(tmp_path / "link.tar.gz", buffer.getvalue())
    with pytest.raises(RuntimeError, match="holds no file pkg/link"):
        copy_member(linked, "pkg/link", tmp_path / "out")


def test_extract_folder_keeps_relative_paths(tmp_path):
    wheel = write(
        tmp_path / "pkg.whl",
        zip_bytes({"pkg/model/a.json": b"a", "pkg/model/sub/b.bin": DATA, "pkg/other": b"x"}),
    )
    extract_folder(wheel, "pkg/model/", tmp_path / "out")
    files = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")}
    assert files == {"a.json", "sub", "sub/b.bin"}
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == DATA
    with pytest.raises(RuntimeError, match="holds no folder pkg/none/"):
        extract_folder(wheel, "pkg/none/", tmp_path / "none")


@pytest.mark.parametrize("bad", ["pkg/model/../../escape.txt", "pkg/model//abs.txt"])
def test_extract_folder_refuses_escaping_members_before_writing(tmp_path, bad):
    wheel = write(tmp_path / "pkg.whl", zip_bytes({"pkg/model/a.json": b"a", bad: b"x"}))
    with pytest.raises(RuntimeError, match="would be written outside"):
        extract_folder(wheel, "pkg/model/", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_extract_folder_refuses_an_oversized_member_before_writing(tmp_path):
    wheel = write(tmp_path / "pkg.whl", zip_bytes({"pkg/model/a.json": b"a", "pkg/model/w": DATA}))
    with pytest.raises(RuntimeError, match="pkg/model/w declares 100 bytes, over the 99-byte"):
        extract_folder(wheel, "pkg/model/", tmp_path / "out", limit=99)
    assert not (tmp_path / "out").exists()
