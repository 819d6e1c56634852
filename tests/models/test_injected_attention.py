"""The Transformer models run the attention they are given (attn_layer=), and say what it lacks."""

from functools import partial

import pytest
import torch

from attnlab.data.pretrained import BertConfig
from attnlab.masks import sliding_window_pattern
from attnlab.models import POSITIONS, BertEncoder, TransformerLM, TransformerSeq2Seq
from attnlab.nn import LinearAttention, MultiHeadAttention, TransformerEncoder

V, E, H, FF, L, B = 31, 16, 4, 24, 37, 3  # all distinct
SMALL = {"d_model": E, "num_heads": H, "ff_dim": FF, "layers": 2, "dropout": 0.0}


def _lm(seed=0, **kw):
    torch.manual_seed(seed)
    return TransformerLM(V, **{**SMALL, **kw})


def test_sliding_window_lm_equals_the_dense_lm_with_the_window_as_mask():
    window = sliding_window_pattern(4, causal=True)
    sparse = _lm(attn_layer=partial(MultiHeadAttention, pattern=window))
    dense = _lm()
    for (name, a), b in zip(sparse.state_dict().items(), dense.state_dict().values()):
        assert torch.equal(a, b), name  # the pattern adds no parameters, changes no draws
    ids = torch.randint(1, V, (B, L), generator=torch.Generator().manual_seed(1))
    logits, weights = sparse(ids, need_weights=True)
    expected, _ = dense(ids, mask=window.mask(L).expand(B, L, L))
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-4)
    allowed = window.mask(L)
    assert (weights[0][:, :, ~allowed] == 0).all()  # nothing outside the window
    # ...and it trains: one step moves the loss, gradients reach every parameter.
    optimizer = torch.optim.Adam(sparse.parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].flatten())
    loss.backward()
    for name, p in sparse.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    optimizer.step()
    after, _ = sparse(ids)
    new_loss = torch.nn.functional.cross_entropy(after[:, :-1].reshape(-1, V), ids[:, 1:].flatten())
    assert new_loss < loss


def test_sliding_window_lm_generates_with_its_cache():
    lm = _lm(attn_layer=partial(MultiHeadAttention, pattern=sliding_window_pattern(3, causal=True)))
    lm.eval()
    prompt = torch.randint(1, V, (2, 4))
    out = lm.generate(prompt, 5, greedy=True)
    ids = prompt
    for _ in range(5):  # full recomputation, no cache
        ids = torch.cat([ids, lm(ids)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def _backward_reaches_every_parameter(model, loss):
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_linear_attention_runs_inside_the_transformer_encoder():
    torch.manual_seed(0)
    encoder = TransformerEncoder(
        2, E, H, FF, attn_layer=LinearAttention, attention_dropout=0.0, norm_first=True
    )
    assert all(isinstance(layer.self_attn, LinearAttention) for layer in encoder.layers)
    x = torch.randn(B, L, E)
    mask = torch.arange(L) < torch.tensor([L, 20, 5]).unsqueeze(-1)
    out = encoder(x, mask=mask).last_hidden
    assert out.shape == (B, L, E) and torch.isfinite(out).all()
    _backward_reaches_every_parameter(encoder, out[mask].square().mean())


def test_linear_attention_runs_inside_bert_and_takes_the_checkpoint_names():
    config = BertConfig(V, E, 2, H, FF, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    bert = BertEncoder(config, attn_layer=partial(LinearAttention, feature_map="favor"))
    torch.manual_seed(0)
    reference = BertEncoder(config)
    # Same projection names as MultiHeadAttention's, so BERT checkpoints load into it.
    missing, unexpected = bert.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("self_attn.projection") for k in missing)
    ids = torch.randint(1, V, (B, 11))
    mask = ids != 0
    out = bert(ids, mask).last_hidden
    assert out.shape == (B, 11, E)
    _backward_reaches_every_parameter(bert, out.square().mean())
    with pytest.raises(ValueError, match="never forms attention weights"):
        bert(ids, mask, need_weights=True)


def test_linear_attention_in_a_transformer_seq2seq_trains_but_cannot_decode_step_by_step():
    torch.manual_seed(0)
    model = TransformerSeq2Seq(
        V, V, d_model=E, num_heads=H, ff_dim=FF, attention_dropout=0.0, attn_layer=LinearAttention
    )
    src, lengths = torch.randint(4, V, (B, 6)), torch.tensor([6, 4, 2])
    tgt = torch.randint(4, V, (B, 5))
    loss, _, _ = model.loss(src, lengths, tgt[:, :-1], tgt[:, 1:])
    _backward_reaches_every_parameter(model, loss)
    memory = model.encode(src, lengths)
    with pytest.raises(ValueError, match="takes no cache=.*KV cache") as info:
        model.step(memory, tgt[:, 0], model.initial_state(memory), None, 0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("positions", "words"),
    [("sinusoidal", "takes no cache=.*KV cache"), ("alibi", "takes no bias=.*ALiBi")],
)
def test_an_attention_without_a_needed_feature_fails_in_one_line(positions, words):
    lm = _lm(attn_layer=LinearAttention, positions=positions).eval()
    prompt = torch.randint(1, V, (2, 3))
    if positions == "sinusoidal":
        assert lm(prompt)[0].shape == (2, 3, V)  # a full causal pass needs no cache
        call = lambda: lm.generate(prompt, 2)  # noqa: E731
    else:
        call = lambda: lm(prompt)  # noqa: E731
    with pytest.raises(ValueError, match=words) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(POSITIONS))
def test_positions_object_equals_its_name(name):
    by_name = _lm(positions=name, max_len=64)
    torch.manual_seed(0)
    scheme = POSITIONS[name](E, H, max_len=64, causal=True)
    given = TransformerLM(V, **SMALL, positions=scheme, max_len=64)
    assert given.positions is scheme and given.positions.kind == name
    for (key, a), b in zip(by_name.state_dict().items(), given.state_dict().values()):
        assert torch.equal(a, b), key
    ids = torch.randint(1, V, (2, 9))
    torch.testing.assert_close(by_name.eval()(ids)[0], given.eval()(ids)[0], rtol=0, atol=0)


def test_cross_attention_factory_reaches_the_decoder():
    window = sliding_window_pattern(2)
    model = TransformerSeq2Seq(
        V,
        V,
        d_model=E,
        num_heads=H,
        ff_dim=FF,
        attn_layer=partial(MultiHeadAttention, kv_heads=2),
        cross_attn_layer=partial(MultiHeadAttention, pattern=window),
    )
    layer = model.decoder.layers[0]
    assert layer.cross_attn.pattern is window and layer.self_attn.kv_heads == 2
    assert model.encoder.layers[0].self_attn.kv_heads == 2
