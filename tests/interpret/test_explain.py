"""write_explanation and trace_attention on small random models."""

import json

import pytest
import torch

from attnlab.interpret.explain import AttentionTrace, trace_attention, write_explanation
from attnlab.models.transformer import TransformerSeq2Seq
from attnlab.nn.transformer import TransformerEncoder


def _trace(length: int = 6, layers: int = 3, heads: int = 2) -> AttentionTrace:
    g = torch.Generator().manual_seed(0)
    maps = tuple(
        torch.softmax(torch.randn(heads, length, length, generator=g), -1) for _ in range(layers)
    )
    return AttentionTrace([f"t{i}" for i in range(length)], maps, "random")


def test_files_and_summary(tmp_path):
    summary = write_explanation(_trace(), tmp_path / "out", layers=[0, 2], heads=[1])
    assert summary["files"] == {
        "heads": "heads.png",
        "rollout": "rollout.png",
        "flow": "flow.png",
        "html": "attention.html",
    }
    saved = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert saved["rollout"] == summary["rollout"] and len(saved["flow"]) == 6
    assert saved["rollout_seconds"] >= 0 and saved["flow_seconds"] >= 0


def test_long_inputs_are_truncated_in_pictures_not_refused(tmp_path):
    summary = write_explanation(_trace(length=150, layers=2), tmp_path, max_tokens=40, flow=False)
    assert "flow" not in summary["files"] and len(summary["rollout"]) == 150
    assert "first 40 of 150 tokens shown" in (tmp_path / "attention.html").read_text()


def test_bad_target_and_mismatched_tokens(tmp_path):
    with pytest.raises(ValueError, match="target must index one of the 6 tokens"):
        write_explanation(_trace(), tmp_path, target=6)
    enc = TransformerEncoder(2, 8, 2, 16).eval()
    x = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="not square over the 3 tokens"):
        trace_attention(enc, lambda: enc(x), ["a", "b", "c"])


def test_cross_attention_is_not_a_self_attention_trace():
    model = TransformerSeq2Seq(9, 9, d_model=8, num_heads=2, ff_dim=16).eval()
    src, lengths, tgt = torch.tensor([[4, 5, 6]]), torch.tensor([3]), torch.tensor([[2, 4]])
    with pytest.raises(ValueError, match="not square"):
        trace_attention(model, lambda: model(src, lengths, tgt), ["a", "b", "c"], layers="*cross*")
    trace = trace_attention(
        model, lambda: model.encode(src, lengths), ["a", "b", "c"], layers="encoder.*"
    )
    assert len(trace.attentions) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": [3]}, "layers index 3 is out of range for 3 layers"),
        ({"heads": [0, -3]}, "heads index -3 is out of range for 2 heads"),
        ({"max_tokens": 0}, "max_tokens must be at least 1, got 0"),
    ],
)
def test_bad_selection_is_refused_before_anything_is_computed(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_explanation(_trace(), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()  # refused before the folder, rollout or flow
