"""interpret.capture: exact weights from chosen layers, model behaviour unchanged."""

import importlib

import pytest
import torch

from attnlab.interpret.capture import attention_modules, capture
from attnlab.models.transformer import TransformerSeq2Seq
from attnlab.nn import AdditiveAttention
from attnlab.nn.transformer import TransformerEncoder


def _encoder() -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(3, 16, 4, 32).eval()


def test_captured_weights_equal_the_models_own_and_outputs_do_not_change():
    enc, x = _encoder(), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    plain = enc(x, mask=mask)
    exact = enc(x, mask=mask, need_weights=True)
    with capture(enc) as seen:
        out = enc(x, mask=mask)
    assert out.attentions is None  # the caller did not ask: it still gets None
    assert (out.last_hidden - plain.last_hidden).abs().max() < 1e-5
    assert seen.names == [f"layers.{i}.self_attn" for i in range(3)]
    for ours, theirs in zip(seen.attentions, exact.attentions):
        assert torch.equal(ours, theirs)
    assert (seen[0][1, ..., 3:] == 0).all()


def test_layers_by_index_and_pattern_and_hooks_are_removed():
    enc = _encoder()
    with capture(enc, layers=[0, -1]) as seen:
        enc(torch.randn(1, 4, 16))
    assert seen.names == ["layers.0.self_attn", "layers.2.self_attn"]
    with capture(enc, layers="layers.1.*") as seen:
        enc(torch.randn(1, 4, 16))
    assert seen.names == ["layers.1.self_attn"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in enc.modules())


def test_only_chosen_layers_leave_the_fast_engine(monkeypatch):
    core = importlib.import_module("attnlab.functional.attention")  # the module, not the function
    engines = []
    original = core.select_engine

    def spy(*args, **kwargs):
        engines.append(original(*args, **kwargs))
        return engines[-1]

    monkeypatch.setattr(core, "select_engine", spy)
    enc = _encoder()
    with capture(enc, layers=[1]):
        enc(torch.randn(1, 4, 16))
    assert engines == ["sdpa", "math", "sdpa"]


def test_decoding_records_every_step_of_cross_attention():
    torch.manual_seed(1)
    model = TransformerSeq2Seq(10, 10, d_model=16, num_heads=2, ff_dim=32).eval()
    memory = model.encode(torch.randint(4, 10, (1, 6)), torch.tensor([6]))
    state = model.initial_state(memory)
    with capture(model, layers="decoder.layers.*.cross_attn") as seen:
        for t in range(3):
            _, state, _ = model.step(memory, torch.tensor([2]), state, None, t)
    assert len(seen.calls["decoder.layers.2.cross_attn"]) == 3
    assert seen[-1].shape == (1, 2, 1, 6)


def test_torch_multihead_attention_per_head_and_the_callers_average_kept():
    torch.manual_seed(2)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    with capture(mha) as seen:
        _, averaged = mha(x, x, x)  # torch's defaults: need_weights=True, averaged
        _, none = mha(x, x, x, need_weights=False)
    assert seen.names == ["model"] and seen[0].shape == (2, 4, 5, 5)
    assert none is None and torch.allclose(averaged, seen.calls["model"][0].mean(1))


def test_single_attention_modules_and_bad_selection():
    attn = AdditiveAttention(4, 6, 8)
    with capture(attn) as seen:
        context, weights = attn(torch.randn(2, 3, 4), torch.randn(2, 7, 6))
    assert weights is None and seen[0].shape == (2, 3, 7)
    assert [n for n, _ in attention_modules(_encoder())][0] == "layers.0.self_attn"
    with pytest.raises(IndexError, match="layer 5 is out of range: the model has 3"):
        with capture(_encoder(), layers=5):
            pass
    with pytest.raises(KeyError, match="no attention module matches"):
        with capture(_encoder(), layers="decoder.*"):
            pass
    with pytest.raises(ValueError, match="has no attention module"):
        with capture(torch.nn.Linear(2, 2)):
            pass
