"""The equivalence suite's MultiheadAttention rows: every difference within 1e-5."""

from attnlab.bench.equivalence import multihead_differences
from attnlab.bench.report import summary_markdown


def test_multihead_matches_torch_in_every_setting():
    rows = multihead_differences()
    assert len(rows) == 8
    for row in rows:
        for key in ("output", "output_fast_engine", "weights", "round_trip"):
            assert row[key] <= 1e-5, (row["case"], key, row[key])
    assert "torch.nn.MultiheadAttention: batch_first=True" in summary_markdown(rows, "e", {})
