"""The mha suite at a tiny size: every candidate runs and the summary shows the ratios."""

from attnlab.bench import get_suite
from attnlab.bench.multihead import MultiheadSizes, multihead_rows
from attnlab.bench.report import summary_markdown


def test_multihead_rows_and_summary():
    rows = multihead_rows(MultiheadSizes(lengths=(32,), rounds=1))
    (row,) = rows
    assert row["batch"] == 4096 // 32
    assert all(row[k] > 0 for k in ("attnlab_s", "torch_s", "bare_s", "vs_torch", "vs_bare"))
    text = summary_markdown(rows, "mha", {"torch": "2.13.0"})
    assert "MultiHeadAttention forward+backward" in text and "| 32 | 128 |" in text
    assert get_suite("mha") is not None
