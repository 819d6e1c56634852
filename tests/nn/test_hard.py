"""HardAttention (Xu et al. 2015) around a soft module, and its moving-average baseline."""

import pytest
import torch

from attnlab.nn import AdditiveAttention, LuongAttention
from attnlab.nn.hard import HardAttention, HardAttentionOutput, MovingAverageBaseline
from attnlab.nn.local import LocalAttention

B, LQ, LK, DQ, DK, DV = 2, 3, 7, 5, 6, 4  # all distinct
LENGTHS = torch.tensor([LK, 4])


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, LQ, DQ, generator=g)
    k = torch.randn(B, LK, DK, generator=g)
    v = torch.randn(B, LK, DV, generator=g)
    mask = torch.arange(LK) < LENGTHS.unsqueeze(-1)
    return q, k, v, mask


def _hard(estimator="reinforce", evaluation="argmax", temperature=1.0, seed=0):
    torch.manual_seed(seed)
    soft = LuongAttention(DQ, DK, score="general")
    return HardAttention(
        soft, estimator=estimator, evaluation=evaluation, temperature=temperature
    ), soft


def _matching_row(context, values):
    """Index of the value row equal to ``context`` (asserts there is exactly one)."""
    dist = (values - context).abs().amax(-1)
    hits = (dist < 1e-6).nonzero().flatten().tolist()
    assert len(hits) == 1, dist
    return hits[0]


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_training_context_is_one_value_row_from_the_support(data, estimator):
    q, k, v, mask = data
    hard, soft = _hard(estimator)
    hard.train()
    out = hard(q, k, v, mask=mask, need_weights=True)
    assert isinstance(out, HardAttentionOutput)
    assert out.context.shape == (B, LQ, DV)
    assert out.log_prob.shape == (B, LQ) and out.entropy.shape == (B, LQ)
    _, w_soft = soft(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(out.weights, w_soft)
    for b in range(B):
        for t in range(LQ):
            s = _matching_row(out.context[b, t], v[b])
            assert s < LENGTHS[b]  # never a padding position
            torch.testing.assert_close(out.log_prob[b, t], torch.log(w_soft[b, t, s]))
    entropy = -(w_soft * torch.log(w_soft.clamp(min=1e-30))).sum(-1)
    torch.testing.assert_close(out.entropy, entropy)


def test_training_samples_follow_the_weights(data):
    q, k, v, mask = data
    hard, soft = _hard("reinforce")
    n = 4000
    q1 = q[:1, :1].expand(n, 1, DQ)
    out = hard(q1, k[:1].expand(n, -1, -1), torch.eye(LK).expand(n, LK, LK))
    _, w = soft(q[:1, :1], k[:1], need_weights=True)
    freq = out.context.mean(0)[0]  # values are one-hot rows: context = the sample
    torch.testing.assert_close(freq, w[0, 0], atol=0.03, rtol=0)


def test_eval_argmax_picks_the_argmax_row(data):
    q, k, v, mask = data
    hard, soft = _hard("gumbel", evaluation="argmax")
    hard.eval()
    out = hard(q, k, v, mask=mask)
    assert out.weights is None
    _, w = soft(q, k, v, mask=mask, need_weights=True)
    best = w.argmax(-1)
    expected = torch.stack([v[b, best[b]] for b in range(B)])
    torch.testing.assert_close(out.context, expected)
    torch.testing.assert_close(out.log_prob, torch.log(w.amax(-1)))
    assert torch.equal(hard(q, k, v, mask=mask).context, out.context)  # deterministic


def test_eval_expectation_is_the_soft_context(data):
    q, k, v, mask = data
    hard, soft = _hard("reinforce", evaluation="expectation")
    hard.eval()
    out = hard(q, k, v, mask=mask, need_weights=True)
    ctx, w = soft(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(out.context, ctx)
    torch.testing.assert_close(out.weights, w)


def test_2d_query_and_default_values(data):
    q, k, _, mask = data
    hard, soft = _hard("reinforce", evaluation="argmax")
    hard.eval()
    out = hard(q[:, 0], k, mask=mask)  # values default to the keys
    assert out.context.shape == (B, DK) and out.log_prob.shape == (B,)
    _, w = soft(q[:, 0], k, mask=mask, need_weights=True)
    expected = torch.stack([k[b, w[b].argmax()] for b in range(B)])
    torch.testing.assert_close(out.context, expected)


def test_prepared_keys_are_delegated(data):
    q, k, v, mask = data
    torch.manual_seed(0)
    soft = AdditiveAttention(DQ, DK, 9)  # its prepared keys are projections
    hard = HardAttention(soft, evaluation="expectation").eval()
    prepared = hard.prepare_keys(k)
    torch.testing.assert_close(prepared, soft.prepare_keys(k))
    a = hard(q, prepared, v, mask=mask, keys_prepared=True).context
    torch.testing.assert_close(a, hard(q, k, v, mask=mask).context)


def test_extra_kwargs_reach_the_wrapped_module(data):
    q, k, v, mask = data
    local = LocalAttention(DQ, DK, half_width=1, mode="monotonic")
    hard = HardAttention(local, evaluation="expectation").eval()
    out = hard(q[:, 0], k, v, mask=mask, steps=2, need_weights=True)
    ctx, w = local(q[:, 0], k, v, mask=mask, steps=2, need_weights=True)
    torch.testing.assert_close(out.context, ctx)
    assert (out.weights[:, :1] == 0).all() and (out.weights[:, 4:] == 0).all()


def test_gumbel_gradients_reach_wrapped_parameters(data):
    q, k, v, mask = data
    hard, soft = _hard("gumbel", temperature=0.7)
    hard.train()
    out = hard(q, k, v, mask=mask)
    (out.context * torch.randn(out.context.shape)).sum().backward()
    g = soft.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_reinforce_gradients_flow_through_log_prob_only(data):
    q, k, v, mask = data
    hard, soft = _hard("reinforce")
    hard.train()
    v = v.clone().requires_grad_()
    out = hard(q, k, v, mask=mask)
    g_ctx = torch.autograd.grad(out.context.sum(), soft.weight, allow_unused=True)[0]
    assert g_ctx is None or (g_ctx == 0).all()  # the sample itself is not differentiable
    (g_v,) = torch.autograd.grad(out.context.sum(), v, retain_graph=True)
    assert g_v.sum() == B * LQ * DV  # each query picked exactly one value row
    out.log_prob.sum().backward()
    g = soft.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
@pytest.mark.parametrize("evaluation", ["argmax", "expectation"])
@pytest.mark.parametrize("training", [True, False])
def test_fully_masked_rows_give_zero_context_without_nan(data, estimator, evaluation, training):
    q, k, v, _ = data
    mask = torch.zeros(B, LK, dtype=torch.bool)
    mask[0, :3] = True  # row 1 sees nothing
    hard, soft = _hard(estimator, evaluation)
    hard.train(training)
    q = q.clone().requires_grad_()
    out = hard(q, k, v, mask=mask, need_weights=True)
    for t in (out.context, out.weights, out.log_prob, out.entropy):
        assert torch.isfinite(t).all()
    assert (out.context[1] == 0).all() and (out.weights[1] == 0).all()
    assert (out.log_prob[1] == 0).all() and (out.entropy[1] == 0).all()
    (out.context.sum() + out.log_prob.sum() + out.entropy.sum()).backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(soft.weight.grad).all()


def test_constructor_errors_and_repr():
    soft = LuongAttention(DQ, DK, score="general")
    with pytest.raises(ValueError, match="estimator must be 'reinforce' or 'gumbel'"):
        HardAttention(soft, estimator="straight")
    with pytest.raises(ValueError, match="evaluation must be 'argmax' or 'expectation'"):
        HardAttention(soft, evaluation="sample")
    for bad in (0.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            HardAttention(soft, temperature=bad)
    r = repr(HardAttention(soft, estimator="gumbel", temperature=0.5))
    assert "estimator='gumbel', temperature=0.5, evaluation='argmax'" in r


# -- MovingAverageBaseline -----------------------------------------------------------------
def test_baseline_update_rule():
    b = MovingAverageBaseline(momentum=0.75)
    assert b.value.item() == 0.0 and not bool(b.started)
    first = b.update(torch.tensor([1.0, 3.0]))  # first update sets b to the mean
    assert first.item() == 2.0 and bool(b.started)
    second = b.update(torch.tensor([[6.0, 10.0]]))  # 0.75 * 2 + 0.25 * 8
    assert second.item() == pytest.approx(3.5)
    third = b.update(torch.tensor([-1.5]))  # 0.75 * 3.5 + 0.25 * -1.5
    assert third.item() == pytest.approx(2.25)
    third.add_(100.0)  # the returned value is a copy
    assert b.value.item() == pytest.approx(2.25)


def test_baseline_ignores_gradients_and_momentum_zero_tracks_last():
    b = MovingAverageBaseline(momentum=0.0)
    r = torch.tensor([2.0, 4.0], requires_grad=True)
    b.update(r)
    assert b.update(r * 2).item() == 6.0
    assert not b.value.requires_grad


def test_baseline_state_dict_round_trip():
    b = MovingAverageBaseline(momentum=0.5)
    b.update(torch.tensor([2.0]))
    b.update(torch.tensor([4.0]))
    state = b.state_dict()
    assert set(state) == {"value", "started"}
    fresh = MovingAverageBaseline(momentum=0.5)
    fresh.load_state_dict(state)
    assert fresh.value.item() == 3.0 and bool(fresh.started)
    # the restored baseline continues the average instead of restarting it
    assert fresh.update(torch.tensor([5.0])).item() == b.update(torch.tensor([5.0])).item() == 4.0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_baseline_rejects_bad_momentum(bad):
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        MovingAverageBaseline(momentum=bad)
