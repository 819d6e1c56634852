"""LocalAttention (Luong et al. 2015 local-m / local-p) against hand computation."""

import pytest
import torch

from attnlab.nn import LuongAttention
from attnlab.nn.local import LocalAttention

B, LQ, LK, DQ, DK, DV, HID = 2, 5, 9, 6, 4, 3, 7  # all distinct
LENGTHS = torch.tensor([LK, 3])  # row 1 is shorter than the target: its centre clamps


def _mask(lengths=LENGTHS, lk=LK):
    return torch.arange(lk) < lengths.unsqueeze(-1)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, LQ, DQ, generator=g)
    k = torch.randn(B, LK, DK, generator=g)
    v = torch.randn(B, LK, DV, generator=g)
    return q, k, v, _mask()


def _hand_scores(attn: LuongAttention, q, k):
    """Luong scores in float64, straight from the paper's formulas."""
    q, k = q.double(), k.double()
    if attn.score_name == "dot":
        return q @ k.transpose(1, 2)
    if attn.score_name == "general":
        return q @ attn.weight.double() @ k.transpose(1, 2)
    assert attn.score_name == "concat"
    wq, wk = attn.query_proj.weight.double(), attn.key_proj.weight.double()
    hidden = (q @ wq.T)[:, :, None] + (k @ wk.T + attn.key_proj.bias.double())[:, None]
    return torch.tanh(hidden) @ attn.v.double()


def _masked_softmax(e, allowed):
    return torch.softmax(e.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)


# -- local-m -------------------------------------------------------------------------------
@pytest.mark.parametrize("half_width", [0, 1, 2])
def test_local_m_weights_live_in_window_and_on_real_tokens(data, half_width):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=half_width, mode="monotonic")
    _, w = attn(q, k, v, mask=mask, need_weights=True)
    assert w.shape == (B, LQ, LK)
    for b in range(B):
        length = int(LENGTHS[b])
        for t in range(LQ):
            centre = min(t, length - 1)
            allowed = [abs(s - centre) <= half_width and s < length for s in range(LK)]
            allowed = torch.tensor(allowed)
            assert (w[b, t][~allowed] == 0).all(), (b, t)
            assert (w[b, t][allowed] > 0).all(), (b, t)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, LQ))


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
@pytest.mark.parametrize("extra", [0, 5])
def test_local_m_with_wide_window_is_global_luong(data, score, extra):
    q, k, v, mask = data
    key_size = DQ if score == "dot" else DK
    k = torch.randn(B, LK, key_size, generator=torch.Generator().manual_seed(1))
    local = LocalAttention(DQ, key_size, half_width=LK - 1 + extra, mode="monotonic", score=score)
    luong = LuongAttention(DQ, key_size, score=score)
    luong.load_state_dict(local.content.state_dict())
    for m in (mask, None):
        ctx, w = local(q, k, v, mask=m, need_weights=True)
        ctx_g, w_g = luong(q, k, v, mask=m, need_weights=True)
        torch.testing.assert_close(w, w_g)
        torch.testing.assert_close(ctx, ctx_g)


def test_local_m_matches_hand_softmax_in_window(data):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=1, mode="monotonic")
    ctx, w = attn(q, k, v, mask=mask, need_weights=True)
    s = torch.arange(LK)
    centre = torch.minimum(torch.arange(LQ), (LENGTHS - 1).unsqueeze(-1))  # (B, LQ)
    allowed = ((s - centre.unsqueeze(-1)).abs() <= 1) & mask.unsqueeze(1)
    expected = _masked_softmax(_hand_scores(attn.content, q, k), allowed)
    torch.testing.assert_close(w.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ctx.double(), expected @ v.double(), rtol=1e-5, atol=1e-6)


# -- local-p -------------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["general", "concat"])
@pytest.mark.parametrize("half_width", [1, 2])
def test_local_p_is_window_softmax_times_gaussian(data, score, half_width):
    q, k, v, mask = data
    torch.manual_seed(3)
    attn = LocalAttention(DQ, DK, half_width=half_width, mode="predictive", score=score)
    ctx, w = attn(q, k, v, mask=mask, need_weights=True)

    # p_t = S * sigmoid(v_p^T tanh(W_p h_t)), all in float64
    w_p, v_p = attn.position[0].weight.double(), attn.position[2].weight.double()
    p = LENGTHS.double().view(B, 1) * torch.sigmoid(torch.tanh(q.double() @ w_p.T) @ v_p.T)[..., 0]
    frac = p - p.floor()
    assert ((frac - 0.5).abs() > 1e-3).all(), "a centre too close to a rounding tie"
    s = torch.arange(LK, dtype=torch.float64)
    centre = torch.floor(p + 0.5)
    allowed = ((s - centre.unsqueeze(-1)).abs() <= half_width) & mask.unsqueeze(1)
    soft = _masked_softmax(_hand_scores(attn.content, q, k), allowed)
    sigma = half_width / 2
    gauss = torch.exp(-((s - p.unsqueeze(-1)) ** 2) / (2 * sigma**2))
    expected = soft * gauss

    assert w.shape == (B, LQ, LK)
    torch.testing.assert_close(w.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ctx.double(), expected @ v.double(), rtol=1e-5, atol=1e-6)
    # not renormalised (as in the paper): rows sum to at most 1
    assert (w.sum(-1) <= 1 + 1e-6).all() and (w.sum(-1) < 1 - 1e-3).any()


def test_local_p_centres_stay_in_source(data):
    q, _, _, _ = data
    attn = LocalAttention(DQ, DK, half_width=2, mode="predictive")
    c = attn.centres(q, LENGTHS, None)
    assert c.shape == (B, LQ)
    assert (c >= 0).all() and (c <= LENGTHS.view(B, 1)).all()


def test_local_p_gradients_reach_position_network(data):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=2, mode="predictive", position_hidden=HID)
    assert attn.position[0].weight.shape == (HID, DQ)
    assert attn.position[2].weight.shape == (1, HID)
    ctx, _ = attn(q, k, v, mask=mask)
    target = torch.randn(ctx.shape, generator=torch.Generator().manual_seed(5))
    (ctx * target).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["monotonic", "predictive"])
def test_padded_batch_no_nan_and_zero_weights_at_padding(data, mode):
    q, k, v, _ = data
    lengths = torch.tensor([4, 0])  # row 1 has nothing to attend to
    mask = _mask(lengths)
    k = k.clone()
    k[~mask] = 1e4  # huge padding must not leak
    attn = LocalAttention(DQ, DK, half_width=2, mode=mode)
    q = q.requires_grad_()
    ctx, w = attn(q, k, v, mask=mask, need_weights=True)
    assert torch.isfinite(ctx).all() and torch.isfinite(w).all()
    assert (w[~mask.unsqueeze(1).expand_as(w)] == 0).all()
    assert (w[1] == 0).all() and (ctx[1] == 0).all()
    ctx.sum().backward()
    assert torch.isfinite(q.grad).all()
    for p in attn.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("mode", ["monotonic", "predictive"])
def test_2d_query_with_int_step_equals_3d_row(data, mode):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=1, mode=mode)
    ctx3, w3 = attn(q, k, v, mask=mask, need_weights=True)
    for t in range(LQ):
        ctx, w = attn(q[:, t], k, v, mask=mask, steps=t, need_weights=True)
        assert ctx.shape == (B, DV) and w.shape == (B, LK)
        torch.testing.assert_close(ctx, ctx3[:, t])
        torch.testing.assert_close(w, w3[:, t])
        # a per-sample step tensor (B,) for a 2-D query, as a beam search passes it
        ctx_b, w_b = attn(q[:, t], k, v, mask=mask, steps=torch.full((B,), t), need_weights=True)
        torch.testing.assert_close(ctx_b, ctx3[:, t])
        torch.testing.assert_close(w_b, w3[:, t])


def test_explicit_steps_equal_default_steps(data):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=1, mode="monotonic")
    ctx, w = attn(q, k, v, mask=mask, need_weights=True)
    for steps in (torch.arange(LQ), torch.arange(LQ).expand(B, LQ)):
        ctx_s, w_s = attn(q, k, v, mask=mask, steps=steps, need_weights=True)
        torch.testing.assert_close(ctx_s, ctx)
        torch.testing.assert_close(w_s, w)
    # shifted steps shift the window
    _, w_shift = attn(q, k, v, steps=torch.arange(LQ) + 3, need_weights=True)
    assert (w_shift[:, 0, :2] == 0).all() and (w_shift[:, 0, 2:5] > 0).all()


def test_mask_errors(data):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=1, mode="monotonic")
    with pytest.raises(ValueError, match=r"boolean key mask \(B, Lk\).*shape \(2, 5, 9\)"):
        attn(q, k, v, mask=mask.unsqueeze(1).expand(B, LQ, LK))
    with pytest.raises(TypeError, match=r"mask must be boolean.*torch.float32"):
        attn(q, k, v, mask=mask.float())


def test_steps_shape_mismatch(data):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=1, mode="monotonic")
    with pytest.raises(ValueError, match=r"one target position per query \(5\); got shape \(6,\)"):
        attn(q, k, v, mask=mask, steps=torch.arange(LQ + 1))
    with pytest.raises(ValueError, match=r"one target position per query"):
        attn(q, k, v, mask=mask, steps=torch.zeros(B, LQ - 1, dtype=torch.long))


def test_constructor_errors():
    with pytest.raises(ValueError, match="mode must be"):
        LocalAttention(DQ, half_width=1, mode="global")
    with pytest.raises(ValueError, match="score must be"):
        LocalAttention(DQ, half_width=1, score="location")
    with pytest.raises(ValueError, match="positive int"):
        LocalAttention(DQ, half_width=0, mode="predictive")
    with pytest.raises(ValueError, match="int >= 0"):
        LocalAttention(DQ, half_width=-1, mode="monotonic")
    assert LocalAttention(DQ, half_width=0, mode="monotonic").position is None
    assert "half_width=3, mode='predictive'" in repr(LocalAttention(DQ, half_width=3))


@pytest.mark.parametrize("mode", ["monotonic", "predictive"])
@pytest.mark.parametrize("score", ["general", "concat"])
def test_prepared_keys_equal_unprepared(data, mode, score):
    q, k, v, mask = data
    attn = LocalAttention(DQ, DK, half_width=2, mode=mode, score=score)
    ctx, w = attn(q, k, v, mask=mask, need_weights=True)
    prepared = attn.prepare_keys(k)
    ctx_p, w_p = attn(q, prepared, v, mask=mask, need_weights=True, keys_prepared=True)
    torch.testing.assert_close(ctx_p, ctx)
    torch.testing.assert_close(w_p, w)
    for t in range(LQ):  # decoder-style, one step at a time against the prepared keys
        ctx_t, _ = attn(q[:, t], prepared, v, mask=mask, steps=t, keys_prepared=True)
        torch.testing.assert_close(ctx_t, ctx[:, t])


def test_gradcheck_monotonic_double():
    torch.manual_seed(0)
    attn = LocalAttention(3, 4, half_width=1, mode="monotonic", dtype=torch.float64)
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    mask = _mask(torch.tensor([5, 2]), 5)
    assert torch.autograd.gradcheck(lambda *a: attn(*a, mask=mask)[0], (q, k, v))


def test_gradcheck_predictive_double():
    torch.manual_seed(0)
    attn = LocalAttention(
        3, 4, half_width=1, mode="predictive", position_hidden=5, dtype=torch.float64
    )
    q = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    mask = _mask(torch.tensor([6, 4]), 6)
    centres = attn.centres(q, mask.sum(-1), None)
    # Known src bug: LocalAttention.centres casts the position gate with .float(), so a
    # float64 module computes p_t (and the Gaussian and its gradient) in float32.
    assert centres.dtype == torch.float64, (
        f"LocalAttention.centres returns {centres.dtype} for a float64 module: the gate "
        "sigmoid(v_p^T tanh(W_p h_t)) is cast to float32 in src/attnlab/nn/local.py"
    )
    centres_near_tie = (centres - centres.floor() - 0.5).abs() < 1e-3
    assert not centres_near_tie.any(), "a centre too close to a rounding tie for gradcheck"

    def f(q, k, v):
        ctx, w = attn(q, k, v, mask=mask, need_weights=True)
        return ctx, w

    assert torch.autograd.gradcheck(f, (q, k, v))
    # gradient into the module's own weights (W_a, W_p, v_p) through the Gaussian
    names = [n for n, _ in attn.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in attn.parameters())
    args = (q.detach(), k.detach(), v.detach())

    def h(*ps):
        return torch.func.functional_call(attn, dict(zip(names, ps)), args, {"mask": mask})[0]

    assert torch.autograd.gradcheck(h, params)
