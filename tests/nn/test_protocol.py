"""Injected attention: sparsity patterns and linear attention inside Transformer stacks."""

from functools import partial

import pytest
import torch

from attnlab.functional.linear import linear_attention
from attnlab.masks import key_padding_mask, sliding_window_pattern
from attnlab.nn import (
    ALiBi,
    LinearAttention,
    MultiHeadAttention,
    ReversibleTransformerEncoder,
    RotaryEmbedding,
    TransformerDecoder,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from attnlab.nn.protocol import build_attention, call_attention

B, L, E, H, FF = 2, 96, 16, 2, 24
LENGTHS = torch.tensor([L, L - 13])


def _encoder(seed: int = 0, **kwargs) -> TransformerEncoder:
    torch.manual_seed(seed)
    return TransformerEncoder(2, E, H, FF, dropout=0.0, **kwargs).eval()


def test_a_sliding_window_pattern_equals_dense_attention_with_its_mask():
    window = sliding_window_pattern(4)
    # backend="banded": at this length "auto" would take dense SDPA with the window's mask.
    sparse = _encoder(attn_layer=partial(MultiHeadAttention, pattern=window, backend="banded"))
    dense = _encoder(seed=1)
    dense.load_state_dict(sparse.state_dict())
    x = torch.randn(B, L, E, requires_grad=True)
    x_dense = x.detach().clone().requires_grad_(True)
    pad = key_padding_mask(LENGTHS, L)[:, 0]  # (B, 1, L): one key mask for every query
    out = sparse(x, mask=pad[:, 0]).last_hidden  # the pattern comes from the layers
    ref = dense(x_dense, mask=pad & window.mask(L)).last_hidden
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # The layers' attention runs on the blockwise engine, O(L * w), not on a dense mask.
    assert sparse.layers[0].self_attn(x).engine == "banded"
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x_dense.grad, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(sparse.named_parameters(), dense.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def _linear_by_hand(encoder: TransformerEncoder, x, mask, causal: bool):
    """Post-norm layers with elu + 1 linear attention, written out with the functional."""

    def heads(t):
        return t.view(B, -1, H, E // H).transpose(1, 2)

    for layer in encoder.layers:
        a = layer.self_attn
        core = linear_attention(
            heads(a.q_proj(x)), heads(a.k_proj(x)), heads(a.v_proj(x)), mask=mask, causal=causal
        )
        h = layer.norm_attn(x + a.out_proj(core.transpose(1, 2).reshape(B, -1, E)))
        x = layer.norm_ff(h + layer.ff(h))
    return x


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_inside_the_encoder_equals_the_computation_by_hand(causal):
    encoder = _encoder(attn_layer=LinearAttention)
    assert all(isinstance(layer.self_attn, LinearAttention) for layer in encoder.layers)
    mask = key_padding_mask(LENGTHS, L)[:, 0, 0]  # (B, L)
    x = torch.randn(B, L, E, requires_grad=True)
    x_hand = x.detach().clone().requires_grad_(True)
    out = encoder(x, mask=mask, causal=causal).last_hidden
    ref = _linear_by_hand(encoder, x_hand, mask, causal)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    (g,) = torch.autograd.grad(ref.square().sum(), x_hand)
    torch.testing.assert_close(x.grad, g)
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_stacks_fail_in_one_line_when_the_attention_lacks_a_feature():
    encoder = _encoder(attn_layer=LinearAttention)
    x = torch.randn(B, 8, E)
    alibi = ALiBi(H)(8, 8)
    with pytest.raises(ValueError, match=r"LinearAttention takes no bias=.*ALiBi") as info:
        encoder(x, bias=alibi)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="never forms attention weights"):
        encoder(x, need_weights=True)
    decoder = TransformerDecoder(1, E, H, FF, dropout=0.0, attn_layer=LinearAttention).eval()
    with pytest.raises(ValueError, match=r"LinearAttention takes no cache=.*KV cache"):
        decoder(x, x, cache=decoder.new_cache())
    with pytest.raises(ValueError, match="no attention probabilities to drop"):
        TransformerEncoder(1, E, H, FF, attn_layer=LinearAttention)  # dropout 0.1 by default


def test_decoder_takes_a_self_and_a_cross_attention_factory():
    torch.manual_seed(0)
    decoder = TransformerDecoder(
        2, E, H, FF, dropout=0.0, attn_layer=LinearAttention, cross_attn_layer=LinearAttention
    )
    layer = decoder.layers[0]
    assert isinstance(layer.self_attn, LinearAttention)
    assert isinstance(layer.cross_attn, LinearAttention)
    x, memory = torch.randn(B, 5, E, requires_grad=True), torch.randn(B, 7, E)
    out = decoder(x, memory).last_hidden
    out.sum().backward()
    assert out.shape == (B, 5, E) and torch.isfinite(x.grad).all()
    # The self-attention is causal: the first positions ignore later ones.
    x2 = x.detach().clone()
    x2[:, 3:] = torch.randn(B, 2, E)
    torch.testing.assert_close(decoder(x2, memory).last_hidden[:, :3], out[:, :3].detach())
    default = TransformerDecoder(1, E, H, FF)
    assert isinstance(default.layers[0].cross_attn, MultiHeadAttention)


def test_the_reversible_encoder_takes_a_factory_too():
    torch.manual_seed(0)
    encoder = ReversibleTransformerEncoder(E, H, FF, num_layers=2, attn_layer=LinearAttention)
    x = torch.randn(B, 12, E, requires_grad=True)
    encoder(x, mask=torch.ones(B, 12, dtype=torch.bool)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert isinstance(encoder.layers[0].f.attn, LinearAttention)


def test_factories_get_the_layer_options_and_a_rotary_when_given():
    seen = {}

    def factory(embed_dim, num_heads, **kwargs):
        seen.update(kwargs, embed_dim=embed_dim, num_heads=num_heads)
        return MultiHeadAttention(embed_dim, num_heads, **kwargs)

    rotary = RotaryEmbedding(E // H)
    layer = TransformerEncoderLayer(E, H, FF, attention_dropout=0.25, bias=False, rotary=rotary,
                                    attn_layer=factory)  # fmt: skip
    assert seen == {"embed_dim": E, "num_heads": H, "dropout": 0.25, "bias": False,
                    "device": None, "dtype": None, "rotary": rotary}  # fmt: skip
    assert layer.self_attn.rotary is rotary
    with pytest.raises(TypeError, match="attn_layer must build an nn.Module"):
        TransformerEncoderLayer(E, H, FF, attn_layer=lambda *a, **k: "attention")
    with pytest.raises(TypeError, match="attn_layer must be a class or factory"):
        build_attention(3, E, H, dropout=0.0, bias=True, device=None, dtype=None)


def test_call_attention_passes_features_only_when_used():
    class Minimal(torch.nn.Module):
        def forward(self, query, key=None, value=None, *, mask=None, need_weights=False):
            return MultiHeadAttention(E, H)(query, mask=mask, need_weights=need_weights)

    x = torch.randn(B, 3, E)
    context, weights = call_attention(Minimal(), x)
    assert context.shape == x.shape and weights is None
    with pytest.raises(ValueError, match=r"Minimal takes no causal=, .*causal self-attention"):
        call_attention(Minimal(), x, causal=True)
