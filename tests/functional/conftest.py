import pytest

import attnlab.functional.chunked as chunked


@pytest.fixture
def small_blocks(monkeypatch):
    """Force many tiny blocks so the chunked engine's block logic is exercised."""
    monkeypatch.setattr(chunked, "DOT_BLOCK", 4)
    monkeypatch.setattr(chunked, "GENERIC_BLOCK_ELEMENTS", 64)
