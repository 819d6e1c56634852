"""Keep data tests away from the user's real data directory, cache, index and network."""

import subprocess

import pytest

from ._packages import FakeIndex


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Unset ATTNLAB_DATA_DIR, point ATTNLAB_HOME (the cache) at a fresh folder and the
    package index at an empty local folder, so nothing can reach the network."""
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    home = tmp_path / "attnlab-home"
    monkeypatch.setenv("ATTNLAB_HOME", str(home))
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "no-index").as_uri())
    return home


@pytest.fixture
def package_index(tmp_path, monkeypatch) -> FakeIndex:
    """An empty local package index that ``$PIP_INDEX_URL`` points at."""
    index = FakeIndex(tmp_path / "index")
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    return index


@pytest.fixture
def no_subprocess(monkeypatch):
    """Fail the test if anything starts a process (pip, a setup.py)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args!r}")

    for name in ("run", "Popen", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
