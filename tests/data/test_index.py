import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from attnlab.data._index import DEFAULT_INDEX, find_package_file, index_url
from attnlab.data.sources import PackageFile, fetch_package_member

from ._packages import zip_bytes

WHEEL = "toy_pkg-1.0-py3-none-any.whl"
WHEEL_DATA = zip_bytes({"toy_pkg/data.txt": b"from the JSON index\n"})
WHEEL_SHA = hashlib.sha256(WHEEL_DATA).hexdigest()


class _JsonIndex(BaseHTTPRequestHandler):
    """Serves /simple/toy-pkg/ as PEP 691 JSON when asked for it (else a 406), and the
    wheel at a relative address."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path == "/simple/toy-pkg/":
            if "application/vnd.pypi.simple.v1+json" not in self.headers.get("Accept", ""):
                self.send_error(406)
                return
            page = {
                "meta": {"api-version": "1.0"},
                "name": "toy-pkg",
                "files": [
                    {"filename": "toy-pkg-0.9.tar.gz", "url": "../../f/old", "hashes": {}},
                    {"filename": WHEEL, "url": f"../../f/{WHEEL}", "hashes": {"sha256": WHEEL_SHA}},
                ],
            }
            self._send(json.dumps(page).encode(), "application/vnd.pypi.simple.v1+json")
        elif self.path == f"/f/{WHEEL}":
            self._send(WHEEL_DATA, "application/octet-stream")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def json_index(monkeypatch):
    """A PEP 691 index on the loopback interface, which ``$PIP_INDEX_URL`` points at."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JsonIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    monkeypatch.setenv("PIP_INDEX_URL", url)
    yield url
    server.shutdown()
    server.server_close()


def test_index_url_defaults_to_pypi(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL")
    assert index_url() == DEFAULT_INDEX == "https://pypi.org/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "  ")
    assert index_url() == DEFAULT_INDEX
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert index_url() == "https://mirror.example/simple/"


def test_json_page_gives_the_absolute_address_and_hash(json_index):
    url, sha = find_package_file("Toy_Pkg", WHEEL)  # PEP 503 name normalisation
    assert url == json_index.replace("/simple", f"/f/{WHEEL}") and sha == WHEEL_SHA


def test_fetch_through_a_json_index(json_index, no_subprocess, tmp_path):
    fetch_package_member(
        PackageFile("toy-pkg", WHEEL, WHEEL_SHA), "toy_pkg/data.txt", tmp_path / "data.txt"
    )
    assert (tmp_path / "data.txt").read_bytes() == b"from the JSON index\n"


def test_html_page_from_a_folder_index(package_index):
    package_index.add("toy.pkg", "toy.pkg-1.0.tar.gz", b"sdist")
    package_index.add("toy.pkg", "toy.pkg-2.0.tar.gz", b"v2", listed=None)
    url, sha = find_package_file("toy.pkg", "toy.pkg-1.0.tar.gz")
    assert url == f"{package_index.url}/files/toy.pkg-1.0.tar.gz"
    assert sha == hashlib.sha256(b"sdist").hexdigest()
    url, sha = find_package_file("TOY_PKG", "toy.pkg-2.0.tar.gz", index=package_index.url + "/")
    assert url == f"{package_index.url}/files/toy.pkg-2.0.tar.gz" and sha is None


def test_missing_file_and_project_are_one_line(package_index):
    package_index.add("toy-pkg", "toy-pkg-1.0.tar.gz", b"sdist")
    with pytest.raises(FileNotFoundError) as err:
        find_package_file("toy-pkg", "toy-pkg-9.9.tar.gz")
    msg = str(err.value)
    assert msg.startswith("the package index page ") and "\n" not in msg
    assert msg.endswith("toy-pkg/index.html lists no file toy-pkg-9.9.tar.gz")
    with pytest.raises(OSError):
        find_package_file("other-pkg", "other-pkg-1.0.tar.gz")


def test_credentials_in_the_index_are_refused_and_not_repeated(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:s3cret@mirror.example/simple")
    with pytest.raises(ValueError, match="does not send") as err:
        find_package_file("toy-pkg", WHEEL)
    assert "s3cret" not in str(err.value) and "mirror.example/simple/toy-pkg/" in str(err.value)
