"""Keep data tests away from the user's real data directory, cache and network."""

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Unset ATTNLAB_DATA_DIR and point ATTNLAB_HOME (the cache) at a fresh folder."""
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    home = tmp_path / "attnlab-home"
    monkeypatch.setenv("ATTNLAB_HOME", str(home))
    return home
