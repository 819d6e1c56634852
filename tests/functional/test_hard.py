"""Hard-attention estimators (Xu et al. 2015; Jang et al. 2017) against hand computation."""

import math

import pytest
import torch

from attnlab.functional.hard import (
    gumbel_straight_through,
    log_prob_and_entropy,
    reinforce_loss,
    sample_one_hot,
)

PROBS = torch.tensor([0.1, 0.2, 0.0, 0.4, 0.3])  # one impossible position
N = 20_000


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    support = probs > 0
    expected = probs[support] * counts.sum()
    return float(((counts[support] - expected) ** 2 / expected).sum())


# chi-square with 3 degrees of freedom: P(X > 21.1) = 1e-4
CHI2_LIMIT = 21.1


# -- sample_one_hot ------------------------------------------------------------------------
def test_sample_one_hot_frequencies_match_distribution():
    g = torch.Generator().manual_seed(0)
    samples = sample_one_hot(PROBS.expand(N, -1), generator=g)
    assert samples.shape == (N, 5) and samples.dtype == PROBS.dtype
    assert (samples.sum(-1) == 1).all()
    assert set(samples.unique().tolist()) == {0.0, 1.0}
    counts = samples.sum(0)
    assert counts[2] == 0  # never the zero-probability position
    assert _chi_square(counts, PROBS) < CHI2_LIMIT
    torch.testing.assert_close(counts / N, PROBS, atol=0.015, rtol=0)


def test_sample_one_hot_zero_rows_stay_zero_and_shape_kept():
    weights = torch.zeros(3, 4, 6)  # (B, Lq, Lk), all distinct
    weights[0, :, 2] = 1.0
    weights[1] = torch.softmax(torch.randn(4, 6), -1)
    out = sample_one_hot(weights, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 4, 6)
    assert (out[2] == 0).all()
    assert (out[0, :, 2] == 1).all() and out[0].sum() == 4
    assert (out[1].sum(-1) == 1).all()


def test_sample_one_hot_generator_reproducible_and_no_grad():
    w = torch.softmax(torch.randn(7, 5), -1).requires_grad_()
    a = sample_one_hot(w, generator=torch.Generator().manual_seed(3))
    b = sample_one_hot(w, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not a.requires_grad


# -- gumbel_straight_through ---------------------------------------------------------------
def test_gumbel_is_one_hot_in_value():
    w = torch.softmax(torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(0)), -1)
    out = gumbel_straight_through(w.requires_grad_(), generator=torch.Generator().manual_seed(1))
    assert out.shape == (4, 3, 6)
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.detach().sum(-1), torch.ones(4, 3))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_gradient_is_relaxed_softmax_gradient(temperature):
    g0 = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(3, 2, 5, generator=g0, dtype=torch.float64), -1)
    upstream = torch.randn(3, 2, 5, generator=g0, dtype=torch.float64)

    w1 = w.clone().requires_grad_()
    out = gumbel_straight_through(w1, temperature, generator=torch.Generator().manual_seed(7))
    (grad,) = torch.autograd.grad((out * upstream).sum(), w1)

    # by hand, with the same uniforms: g = -log(-log u), y = softmax((log w + g) / tau)
    u = torch.rand(w.shape, generator=torch.Generator().manual_seed(7))
    gumbel = -torch.log(-torch.log(u.double()))
    w2 = w.clone().requires_grad_()
    soft = torch.softmax((torch.log(w2) + gumbel) / temperature, -1)
    (expected,) = torch.autograd.grad((soft * upstream).sum(), w2)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    # and the value is the one-hot argmax of the same perturbed logits
    hard = torch.nn.functional.one_hot((torch.log(w) + gumbel).argmax(-1), 5).double()
    torch.testing.assert_close(out.detach(), hard)


def test_gumbel_frequencies_match_distribution():
    out = gumbel_straight_through(PROBS.expand(N, -1), generator=torch.Generator().manual_seed(0))
    counts = out.sum(0)
    assert counts[2] == 0
    assert _chi_square(counts, PROBS) < CHI2_LIMIT
    torch.testing.assert_close(counts / N, PROBS, atol=0.015, rtol=0)


def test_gumbel_zero_rows_give_zero_without_nan():
    w = torch.zeros(2, 5)
    w[0] = PROBS
    w.requires_grad_()
    out = gumbel_straight_through(w, generator=torch.Generator().manual_seed(0))
    assert (out[1] == 0).all() and out[0].sum() == 1
    (grad,) = torch.autograd.grad((out * torch.arange(5.0)).sum(), w)
    assert torch.isfinite(grad).all()
    assert (grad[1] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gumbel_never_picks_a_zero_weight_position(dtype):
    # masked (padding) positions have weight 0 and must never be sampled, in any dtype
    w = torch.zeros(100_000, 12, dtype=dtype)
    w[:, :2] = 0.5
    out = gumbel_straight_through(w, generator=torch.Generator().manual_seed(0))
    picked = int(out[:, 2:].sum())
    # Known src bug (float16): logits = log(weights.clamp(min=finfo.tiny)) is only
    # log(6.1e-5) = -9.7 in float16, which Gumbel noise (up to ~16.6) overcomes.
    assert picked == 0, f"{dtype}: {picked} of {len(w)} samples at zero-weight positions"


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_gumbel_rejects_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        gumbel_straight_through(PROBS.unsqueeze(0), bad)


# -- log_prob_and_entropy ------------------------------------------------------------------
def test_log_prob_and_entropy_golden():
    w = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    sample = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    log_prob, entropy = log_prob_and_entropy(w, sample)
    assert log_prob.shape == (3,) and entropy.shape == (3,)
    torch.testing.assert_close(log_prob, torch.tensor([math.log(0.25), 0.0, 0.0]))
    # H = -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 1.5 ln 2; a point mass has H = 0
    torch.testing.assert_close(entropy, torch.tensor([1.5 * math.log(2), 0.0, 0.0]))


def test_log_prob_gradient_goes_to_weights_not_sample():
    w = torch.tensor([[0.2, 0.8]], requires_grad=True)
    sample = torch.tensor([[1.0, 0.0]], requires_grad=True)
    log_prob, entropy = log_prob_and_entropy(w, sample)
    gw, gs = torch.autograd.grad(log_prob.sum(), (w, sample), allow_unused=True, retain_graph=True)
    torch.testing.assert_close(gw, torch.tensor([[5.0, 0.0]]))  # d log w_0 / d w_0 = 1 / 0.2
    assert gs is None
    (ge,) = torch.autograd.grad(entropy.sum(), w)  # dH/dw_i = -(log w_i + 1)
    torch.testing.assert_close(ge, -(torch.log(w.detach()) + 1))


# -- reinforce_loss ------------------------------------------------------------------------
def test_reinforce_loss_docstring_value():
    loss = reinforce_loss(
        torch.log(torch.tensor([[0.5]])),
        torch.tensor([[2.0]]),
        1.0,
        torch.zeros(1, 1),
        torch.tensor([[True]]),
    )
    torch.testing.assert_close(loss, torch.tensor(math.log(2)))


def test_reinforce_loss_golden_with_mask_baseline_and_entropy():
    log_prob = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -4.0, -9.0]], requires_grad=True)
    reward = torch.tensor([[1.0, 3.0, 5.0], [2.0, 0.0, 7.0]], requires_grad=True)
    entropy = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    loss = reinforce_loss(
        log_prob,
        reward,
        torch.tensor(2.0),
        entropy,
        mask,
        reward_weight=0.5,
        entropy_weight=0.1,
    )
    # real steps: (r - b) = -1, 1, 0, -2 ; per step 0.5 (r - b) lp + 0.1 H
    per_step = [
        0.5 * -1 * -1.0 + 0.01,
        0.5 * 1 * -2.0 + 0.02,
        0.5 * 0 * -0.5 + 0.04,
        0.5 * -2 * -4.0 + 0.05,
    ]
    torch.testing.assert_close(loss, torch.tensor(-sum(per_step) / 4))
    g_lp, g_r, g_h = torch.autograd.grad(loss, (log_prob, reward, entropy), allow_unused=True)
    assert g_r is None or (g_r == 0).all()  # no gradient through the reward
    expected_lp = -0.5 * torch.tensor([[-1.0, 1.0, 0.0], [0.0, -2.0, 0.0]]) / 4
    torch.testing.assert_close(g_lp, expected_lp)
    torch.testing.assert_close(g_h, -0.1 * mask.float() / 4)


def test_reinforce_loss_empty_mask_is_zero_not_nan():
    loss = reinforce_loss(
        torch.full((2, 3), -1.0),
        torch.ones(2, 3),
        0.0,
        torch.ones(2, 3),
        torch.zeros(2, 3, dtype=torch.bool),
        entropy_weight=0.3,
    )
    assert loss.item() == 0.0
