"""Reversible blocks: exact inverse, reversible backward = ordinary autograd, nothing stored.

The reference for every gradient is the same encoder run with ``reversible=False``: the
very same blocks under ordinary autograd, with the same seed, so dropout draws match.
"""

import pytest
import torch
from torch import nn

from attnlab.nn.reversible import ReversibleBlock, ReversibleSequence, ReversibleTransformerEncoder

B, L, E, H, F = 2, 7, 12, 3, 20  # all distinct, so a transposition cannot hide
PAD = torch.tensor([[True] * L, [True] * 4 + [False] * (L - 4)])
CAUSAL = torch.ones(L, L, dtype=torch.bool).tril().expand(B, L, L)  # (B, Lq, Lk) pair mask


def _encoder(layers=4, dtype=torch.float64, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return ReversibleTransformerEncoder(E, H, F, layers, dropout=dropout, dtype=dtype)


def _grads(enc, x, mask, reversible, seed=1):
    """Output, input gradient and every parameter's gradient of a weighted sum loss."""
    enc.reversible = reversible
    enc.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = enc(x, mask)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    (out * weight).sum().backward()
    return out.detach(), x.grad, {n: p.grad for n, p in enc.named_parameters()}


def _assert_same_grads(enc, x, mask, atol, rtol):
    out_r, gx_r, gp_r = _grads(enc, x, mask, reversible=True)
    out_o, gx_o, gp_o = _grads(enc, x, mask, reversible=False)
    torch.testing.assert_close(out_r, out_o, atol=atol, rtol=rtol)
    torch.testing.assert_close(gx_r, gx_o, atol=atol, rtol=rtol)
    assert gp_r.keys() == gp_o.keys() and len(gp_r) == 2 + 16 * len(enc.layers)  # LN + layers
    for name in gp_o:
        assert gp_r[name] is not None, name
        torch.testing.assert_close(gp_r[name], gp_o[name], atol=atol, rtol=rtol, msg=name)


# -- reconstruction ------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_inverse_of_forward_is_identity(dtype, atol):
    """Six layers, inputs of size ~3: measured error 2e-15 (float64), 1e-6 (float32)."""
    enc = _encoder(layers=6, dtype=dtype).eval()
    x1, x2 = 3 * torch.randn(B, L, E, dtype=dtype), torch.randn(B, L, E, dtype=dtype)
    with torch.no_grad():
        y1, y2 = enc.layers(x1, x2, PAD)
        r1, r2 = enc.inverse(y1, y2, PAD)
    assert (y1 - x1).abs().max() > 0.1  # the blocks really changed the streams
    torch.testing.assert_close(r1, x1, atol=atol, rtol=0)
    torch.testing.assert_close(r2, x2, atol=atol, rtol=0)


def test_block_inverse_by_hand():
    block = ReversibleBlock(nn.Linear(E, E, dtype=torch.float64), nn.Tanh())
    x1, x2 = torch.randn(B, E, dtype=torch.float64), torch.randn(B, E, dtype=torch.float64)
    y1, y2 = block(x1, x2)
    torch.testing.assert_close(y1, x1 + block.f(x2), atol=0, rtol=0)
    torch.testing.assert_close(y2, x2 + torch.tanh(y1), atol=0, rtol=0)
    r1, r2 = block.inverse(y1, y2)
    torch.testing.assert_close((r1, r2), (x1, x2), atol=1e-12, rtol=0)


def test_one_layer_is_prenorm_attention_then_feedforward_then_average():
    enc = _encoder(layers=1).eval()
    x = torch.randn(B, L, E, dtype=torch.float64)
    f, g = enc.layers[0].f, enc.layers[0].g
    y1 = x + f.attn(f.norm(x), mask=PAD)[0]
    y2 = x + g.ff(g.norm(y1))
    torch.testing.assert_close(enc(x, PAD), enc.norm((y1 + y2) / 2), atol=1e-12, rtol=0)


# -- gradients: reversible backward == ordinary autograd ------------------------------


@pytest.mark.parametrize(
    "mask", [None, PAD, CAUSAL], ids=["no-mask", "padding-mask", "causal-pair-mask"]
)
def test_gradients_equal_autograd_float64(mask):
    """Measured max difference about 1e-16 (rounding only); stated atol 1e-12."""
    enc = _encoder().train()
    _assert_same_grads(enc, torch.randn(B, L, E, dtype=torch.float64), mask, 1e-12, 1e-12)


@pytest.mark.parametrize("mask", [None, PAD], ids=["no-mask", "padding-mask"])
def test_gradients_equal_autograd_float32(mask):
    """Measured max difference about 1e-7 (gradients of size ~4); stated atol=rtol=1e-5."""
    enc = _encoder(dtype=torch.float32).train()
    _assert_same_grads(enc, torch.randn(B, L, E), mask, 1e-5, 1e-5)


def test_dropout_is_replayed_in_the_recomputation():
    """With dropout 0.2 in training mode both paths draw the same masks: float64 to 1e-12."""
    enc = _encoder(dropout=0.2).train()
    x = torch.randn(B, L, E, dtype=torch.float64)
    torch.manual_seed(5)
    other = enc(x, PAD)
    assert not torch.allclose(_grads(enc, x, PAD, reversible=True)[0], other)  # dropout acts
    _assert_same_grads(enc, x, PAD, 1e-12, 1e-12)


def test_backward_leaves_the_global_random_stream_alone():
    enc = _encoder(dropout=0.3).train()
    x = torch.randn(B, L, E, dtype=torch.float64)
    draws = []
    for reversible in (True, False):
        enc.reversible = reversible
        torch.manual_seed(3)
        out = enc(x)
        out.sum().backward()
        draws.append(torch.rand(4))
    torch.testing.assert_close(draws[0], draws[1], atol=0, rtol=0)


def test_gradcheck_of_the_reversible_stack():
    seq = ReversibleSequence(
        ReversibleBlock(
            nn.Sequential(nn.Linear(3, 3, dtype=torch.float64), nn.Tanh()),
            nn.Sequential(nn.Linear(3, 3, dtype=torch.float64), nn.Tanh()),
        )
        for _ in range(3)
    )
    x1 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: seq(a, b), (x1, x2))


def test_shared_and_frozen_parameters():
    torch.manual_seed(0)
    shared = nn.Linear(E, E, dtype=torch.float64)
    frozen = nn.Linear(E, E, dtype=torch.float64).requires_grad_(False)
    seq = ReversibleSequence(
        [ReversibleBlock(shared, nn.Tanh()), ReversibleBlock(frozen, shared)],
    )
    x = torch.randn(B, E, dtype=torch.float64)
    grads = []
    for reversible in (True, False):
        seq.zero_grad(set_to_none=True)
        y1, y2 = seq(x, x, reversible=reversible)
        (y1 * y2).sum().backward()
        grads.append((shared.weight.grad, shared.bias.grad))
    assert frozen.weight.grad is None
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=1e-12)


# -- no activations kept --------------------------------------------------------------


def _saved_activation_bytes(enc, x):
    """Bytes autograd saves for backward during forward, parameters not counted."""
    sizes = []

    def pack(t):
        if not isinstance(t, nn.Parameter):
            sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        enc(x)
    return sum(sizes)


def test_saved_memory_does_not_grow_with_depth():
    x = torch.randn(B, L, E, requires_grad=True)
    saved = {
        (n, rev): _saved_activation_bytes(
            ReversibleTransformerEncoder(E, H, F, n, reversible=rev), x
        )
        for n in (1, 6)
        for rev in (True, False)
    }
    assert saved[6, True] == saved[1, True]
    assert saved[6, False] > 5 * saved[1, True]  # the ordinary path stores every layer


def test_the_stack_node_saves_only_its_outputs_and_the_mask():
    enc = ReversibleTransformerEncoder(E, H, F, 5)
    out = enc(torch.randn(B, L, E, requires_grad=True), PAD)
    nodes, seen = [out.grad_fn], set()
    while nodes:  # walk the whole graph, looking for the stack's node
        node = nodes.pop()
        if node not in seen:
            seen.add(node)
            nodes.extend(n for n, _ in node.next_functions if n is not None)
    stack = [n for n in seen if type(n).__name__ == "_ReversibleFunctionBackward"]
    assert len(stack) == 1
    saved = stack[0].saved_tensors
    assert [tuple(t.shape) for t in saved] == [(B, L, E), (B, L, E), (B, L)]
    assert torch.equal(saved[2], PAD)


# -- module behaviour -----------------------------------------------------------------


@pytest.mark.parametrize("reversible", [True, False])
def test_shapes_and_no_grad_path(reversible):
    enc = ReversibleTransformerEncoder(E, H, F, 2, reversible=reversible)
    x = torch.randn(B, L, E)
    out = enc(x, PAD)
    assert out.shape == (B, L, E) and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(enc(x, PAD), out, atol=1e-6, rtol=1e-6)


def test_padded_inputs_do_not_change_real_positions():
    enc = _encoder(layers=3).eval()
    x = torch.randn(B, L, E, dtype=torch.float64)
    noisy = x.clone()
    noisy[1, 4:] = 100 * torch.randn(L - 4, E, dtype=torch.float64)
    torch.testing.assert_close(enc(x, PAD)[PAD], enc(noisy, PAD)[PAD], atol=1e-12, rtol=0)


def test_eval_mode_is_deterministic():
    enc = _encoder(dropout=0.5).eval()
    x = torch.randn(B, L, E, dtype=torch.float64)
    torch.testing.assert_close(enc(x), enc(x), atol=0, rtol=0)


def test_dtype_and_device_kwargs():
    enc = ReversibleTransformerEncoder(E, H, F, 2, dtype=torch.float64, device="cpu")
    assert {p.dtype for p in enc.parameters()} == {torch.float64}
    meta = ReversibleTransformerEncoder(E, H, F, 2, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}


def test_state_dict_round_trip():
    a, b = _encoder(seed=0), _encoder(seed=1)
    x = torch.randn(B, L, E, dtype=torch.float64)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)
    assert "reversible=True" in repr(a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_heads": 5}, "does not divide into 5 heads"),
        ({"num_layers": 0}, "num_layers must be >= 1"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {"d_model": E, "num_heads": H, "dim_feedforward": F, "num_layers": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        ReversibleTransformerEncoder(**args)


@pytest.mark.parametrize("shape", [(L, E), (B, L, E + 1), (B, 1, L, E)])
def test_input_shape_errors(shape):
    enc = ReversibleTransformerEncoder(E, H, F, 1)
    with pytest.raises(ValueError, match=r"x must be batch-first \(B, L, 12\)"):
        enc(torch.randn(shape))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        enc([[0.0] * E])


def test_sequence_errors():
    with pytest.raises(ValueError, match="at least one"):
        ReversibleSequence([])
    with pytest.raises(TypeError, match="block 0 must be a ReversibleBlock"):
        ReversibleSequence([nn.Linear(2, 2)])
    seq = ReversibleSequence([ReversibleBlock(nn.Bilinear(2, 2, 2), nn.Tanh())])
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="f_args\\[0\\] requires grad"):
        seq(x, x, torch.randn(3, 2, requires_grad=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dropout_replay_and_gradients():
    torch.manual_seed(0)
    enc = ReversibleTransformerEncoder(E, H, F, 3, dropout=0.2, device="cuda", dtype=torch.float64)
    _assert_same_grads(
        enc.train(),
        torch.randn(B, L, E, dtype=torch.float64, device="cuda"),
        PAD.cuda(),
        1e-12,
        1e-12,
    )
