"""Window helpers of Luong et al. 2015 local attention, against hand-computed cases."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.functional.local import (
    check_half_width,
    gaussian_window,
    monotonic_centres,
    window_mask,
)


def _row(centre, key_length, half_width):
    return window_mask(torch.tensor([[centre]]), key_length, half_width)[0, 0].int().tolist()


# -- window_mask ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("centre", "expected"),
    [
        (2.0, [0, 1, 1, 1, 0, 0]),
        (2.4, [0, 1, 1, 1, 0, 0]),  # rounds down
        (2.6, [0, 0, 1, 1, 1, 0]),  # rounds up
        (3.49, [0, 0, 1, 1, 1, 0]),
        (0.0, [1, 1, 0, 0, 0, 0]),  # clipped at the start
        (-0.4, [1, 1, 0, 0, 0, 0]),
        (5.0, [0, 0, 0, 0, 1, 1]),  # clipped at the end
        (6.0, [0, 0, 0, 0, 0, 1]),  # centre past the end keeps its window
    ],
)
def test_window_mask_hand_cases(centre, expected):
    assert _row(centre, 6, 1) == expected


def test_window_mask_zero_half_width_is_the_centre_alone():
    assert _row(3.2, 7, 0) == [0, 0, 0, 1, 0, 0, 0]


def test_window_mask_wider_than_sequence_is_all_true():
    assert _row(1.0, 4, 10) == [1, 1, 1, 1]


def test_window_mask_shape_dtype_and_integer_centres():
    centres = torch.tensor([[0, 1, 2], [4, 4, 4]])  # (B=2, Lq=3), integer
    m = window_mask(centres, 5, 2)
    assert m.shape == (2, 3, 5) and m.dtype == torch.bool
    assert m[0].int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert m[1].int().tolist() == [[0, 0, 1, 1, 1]] * 3


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3),
    lq=st.integers(1, 4),
    lk=st.integers(1, 9),
    d=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_window_mask_equals_loop_definition(b, lq, lk, d, seed):
    g = torch.Generator().manual_seed(seed)
    # keep away from .5 so the loop's rounding cannot disagree on ties
    centres = torch.randint(-2, lk + 2, (b, lq), generator=g) + 0.3 * torch.rand(
        b, lq, generator=g
    ) * torch.where(torch.rand(b, lq, generator=g) < 0.5, -1, 1)
    m = window_mask(centres, lk, d)
    for i in range(b):
        for t in range(lq):
            c = math.floor(float(centres[i, t]) + 0.5)
            assert m[i, t].tolist() == [abs(s - c) <= d for s in range(lk)]


# -- gaussian_window -----------------------------------------------------------------------
def test_gaussian_window_docstring_value():
    g = gaussian_window(torch.tensor([[1.0]]), 3, 2)  # sigma = 1
    e = math.exp(-0.5)
    torch.testing.assert_close(g, torch.tensor([[[e, 1.0, e]]]))


def test_gaussian_window_sigma_is_half_of_d():
    # D = 4 -> sigma = 2 -> exp(-(s - 1.5)^2 / 8)
    g = gaussian_window(torch.tensor([[1.5]], dtype=torch.float64), 4, 4)
    expected = [math.exp(-((s - 1.5) ** 2) / 8) for s in range(4)]
    torch.testing.assert_close(g, torch.tensor([[expected]], dtype=torch.float64))
    assert g.dtype == torch.float64
    # D = 1 -> sigma = 1/2 -> exp(-2 (s - p)^2): one step away is e^-2
    g1 = gaussian_window(torch.tensor([[0.0]]), 3, 1)
    torch.testing.assert_close(g1, torch.tensor([[[1.0, math.exp(-2), math.exp(-8)]]]))


def test_gaussian_window_shape_and_peak():
    centres = torch.tensor([[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]])  # (B=2, Lq=3)
    g = gaussian_window(centres, 7, 3)
    assert g.shape == (2, 3, 7)
    for b in range(2):
        for t in range(3):
            assert int(g[b, t].argmax()) == int(centres[b, t])
            assert float(g[b, t].max()) == 1.0


def test_gaussian_window_gradient_into_centres():
    centres = torch.tensor([[0.3, 2.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: gaussian_window(c, 5, 2), (centres,))
    # d/dp exp(-(s-p)^2 / (2 sigma^2)) = g * (s - p) / sigma^2, sigma = 1
    p = torch.tensor([[1.2]], dtype=torch.float64, requires_grad=True)
    g = gaussian_window(p, 4, 2)
    (grad,) = torch.autograd.grad(g.sum(), p)
    s = torch.arange(4, dtype=torch.float64)
    expected = (torch.exp(-((s - 1.2) ** 2) / 2) * (s - 1.2)).sum()
    torch.testing.assert_close(grad, expected.view(1, 1))


# -- monotonic_centres ---------------------------------------------------------------------
def test_monotonic_centres_clamp_at_last_real_position():
    c = monotonic_centres(torch.arange(5), torch.tensor([2, 5, 3]))
    assert c.shape == (3, 5) and c.dtype == torch.float32
    assert c.tolist() == [[0, 1, 1, 1, 1], [0, 1, 2, 3, 4], [0, 1, 2, 2, 2]]


def test_monotonic_centres_per_sample_steps_and_empty_source():
    steps = torch.tensor([[3, 4], [0, 6]])
    c = monotonic_centres(steps, torch.tensor([4, 0]))
    assert c.tolist() == [[3, 3], [0, 0]]  # a length-0 source clamps to 0, not -1


# -- check_half_width ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, True, False, 1.0, 2.5, "2", None])
@pytest.mark.parametrize("predictive", [False, True])
def test_check_half_width_rejects(bad, predictive):
    with pytest.raises(ValueError, match="window half-width D must be"):
        check_half_width(bad, predictive=predictive)


def test_check_half_width_predictive_needs_positive():
    with pytest.raises(ValueError, match=r"positive int \(sigma = D / 2 must be > 0\); got 0"):
        check_half_width(0, predictive=True)
    check_half_width(0, predictive=False)  # local-m with D = 0 attends to p_t alone
    check_half_width(1, predictive=True)
    check_half_width(7, predictive=False)
