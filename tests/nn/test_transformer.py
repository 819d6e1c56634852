"""Transformer layers against torch.nn.TransformerEncoderLayer / DecoderLayer, and caches."""

import pytest
import torch

from attnlab.nn.multihead import KVCache, MultiHeadAttention
from attnlab.nn.transformer import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

D, H, F = 16, 4, 40


def _load_from_torch(ours, theirs, cross: bool = False) -> None:
    """Copy torch's layer weights into ours (torch names norm1/norm2[/norm3])."""
    ours.self_attn.load_torch_state_dict(theirs.self_attn.state_dict())
    ours.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ff.linear2.load_state_dict(theirs.linear2.state_dict())
    ours.norm_attn.load_state_dict(theirs.norm1.state_dict())
    if cross:
        ours.cross_attn.load_torch_state_dict(theirs.multihead_attn.state_dict())
        ours.norm_cross.load_state_dict(theirs.norm2.state_dict())
        ours.norm_ff.load_state_dict(theirs.norm3.state_dict())
    else:
        ours.norm_ff.load_state_dict(theirs.norm2.state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(
        D, H, F, activation=activation, norm_first=norm_first, batch_first=True
    ).eval()
    ours = TransformerEncoderLayer(D, H, F, activation=activation, norm_first=norm_first).eval()
    _load_from_torch(ours, theirs)
    x = torch.randn(3, 6, D)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[1, 4:] = True
    ref = theirs(x, src_key_padding_mask=pad)
    out, _ = ours(x, mask=~pad)
    real = ~pad
    assert (out - ref)[real].abs().max() < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(norm_first):
    torch.manual_seed(1)
    theirs = torch.nn.TransformerDecoderLayer(
        D, H, F, norm_first=norm_first, batch_first=True
    ).eval()
    ours = TransformerDecoderLayer(D, H, F, norm_first=norm_first).eval()
    _load_from_torch(ours, theirs, cross=True)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    ref = theirs(x, memory, tgt_mask=causal, memory_key_padding_mask=pad, tgt_is_causal=True)
    out, w = ours(x, memory, memory_mask=~pad, need_weights=True)
    assert (out - ref).abs().max() < 1e-5
    assert w.shape == (2, H, 5, 7) and (w[0, ..., 5:] == 0).all()


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_return_every_hidden_state_and_attention(norm_first):
    enc = TransformerEncoder(3, D, H, F, norm_first=norm_first, dropout=0.0).eval()
    x = torch.randn(2, 4, D)
    out = enc(x, need_weights=True, return_hidden=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert out.hidden_states[0] is x and torch.equal(out.hidden_states[-1], out.last_hidden)
    assert (enc.norm is not None) == norm_first
    fast = enc(x)
    assert fast.attentions is None and (fast.last_hidden - out.last_hidden).abs().max() < 1e-5


def test_causal_encoder_stack_with_cache_equals_full_pass():
    torch.manual_seed(2)
    enc = TransformerEncoder(2, D, H, F, norm_first=True).eval()
    x = torch.randn(2, 6, D)
    full = enc(x, causal=True).last_hidden
    cache = [KVCache(), KVCache()]
    parts = [enc(x[:, t : t + 1], causal=True, cache=cache).last_hidden for t in range(6)]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5


def test_decoder_cache_equals_teacher_forcing():
    torch.manual_seed(3)
    dec = TransformerDecoder(2, D, H, F).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 3:] = False
    full = dec(x, memory, memory_mask=mask).last_hidden
    cache = dec.new_cache()
    parts = [
        dec(x[:, t : t + 1], memory, memory_mask=mask, cache=cache).last_hidden for t in range(5)
    ]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5


def test_layer_modules_are_multihead_attention_and_factory_kwargs_apply():
    layer = TransformerDecoderLayer(D, H, F, dtype=torch.float64)
    assert isinstance(layer.cross_attn, MultiHeadAttention)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(D, H, F, activation="swish")
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        TransformerEncoder(0, D, H, F)
