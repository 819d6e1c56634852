"""Additive (Bahdanau / Luong concat) attention on the chunked engine.

The chunked engine differentiates the additive score by hand, block by block
(``Additive.pairwise_vjp``); the math engine differentiates the materialised
``(B, H, Lq, Lk, hidden)`` tensor with autograd. Both must agree, for outputs and for
the gradients of q, k, v, the bias and every parameter of the score.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import attnlab.functional.chunked as chunked
from attnlab.functional import Additive, Score, additive, attention, concat
from attnlab.functional._problem import Problem
from attnlab.functional.chunked import chunked_attention, generic_block_sizes

from ._probes import LargestTensor

B, H, LQ, LK, DQ, DK, HID, DV = 2, 3, 5, 7, 11, 9, 6, 13  # all distinct


@pytest.fixture
def small_generic_blocks(monkeypatch):
    """Blocks of 1 x 2 (queries x keys): masks, bias and causality cut through them."""
    monkeypatch.setattr(chunked, "GENERIC_BLOCK_ELEMENTS", B * H * HID * 2)


def _leaf(g: torch.Generator, *shape: int, dtype=torch.float64) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()


def _problem(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k = _leaf(g, B, H, LQ, DQ, dtype=dtype), _leaf(g, B, H, LK, DK, dtype=dtype)
    v = _leaf(g, B, H, LK, DV, dtype=dtype)
    score = additive(
        _leaf(g, HID, dtype=dtype),
        _leaf(g, HID, DQ, dtype=dtype),
        _leaf(g, HID, DK, dtype=dtype),
        _leaf(g, HID, dtype=dtype),
    )
    mask = torch.rand(B, 1, LQ, LK, generator=g) > 0.3
    mask[1, 0, 2] = False  # a query row with nothing to attend to
    bias = _leaf(g, 1, H, LQ, LK, dtype=dtype)
    return q, k, v, score, mask, bias


def _grads(out: Tensor, leaves: list[Tensor]) -> tuple[Tensor | None, ...]:
    return torch.autograd.grad(out.square().sum(), leaves, allow_unused=True)


@pytest.mark.parametrize("causal", [False, "upper_left", "lower_right"])
def test_chunked_equals_math_outputs_and_every_gradient(causal, small_generic_blocks):
    q, k, v, score, mask, bias = _problem()
    leaves = [q, k, v, bias, *(t for t in (score.v, score.w_q, score.w_k, score.bias))]
    results = {
        backend: attention(
            q, k, v, score=score, mask=mask, bias=bias, causal=causal, backend=backend
        )
        for backend in ("math", "chunked")
    }
    assert results["chunked"].engine == "chunked"
    torch.testing.assert_close(results["chunked"].output, results["math"].output)
    expected = _grads(results["math"].output, leaves)
    for ours, ref in zip(_grads(results["chunked"].output, leaves), expected):
        torch.testing.assert_close(ours, ref)


def test_luong_concat_and_prepared_keys_match_math(small_generic_blocks):
    g = torch.Generator().manual_seed(3)
    q, k, v = _leaf(g, B, H, LQ, HID), _leaf(g, B, H, LK, HID), _leaf(g, B, H, LK, DV)
    w, vec = _leaf(g, HID, 2 * HID), _leaf(g, HID)
    for score, prepared in ((concat(vec, w), False), (additive(vec, w[:, :HID]), True)):
        leaves = [q, k, v, vec, w]
        outs = [
            attention(q, k, v, score=score, keys_prepared=prepared, backend=b).output
            for b in ("math", "chunked")
        ]
        torch.testing.assert_close(outs[1], outs[0])
        for ours, ref in zip(_grads(outs[1], leaves), _grads(outs[0], leaves)):
            torch.testing.assert_close(ours, ref)


def test_fully_masked_rows_give_zeros_and_finite_gradients(small_generic_blocks):
    q, k, v, score, _, bias = _problem(seed=1, dtype=torch.float32)
    mask = torch.ones(B, H, LQ, LK, dtype=torch.bool)
    mask[:, :, 3] = False
    mask[0] = False
    out = attention(q, k, v, score=score, mask=mask, bias=bias, backend="chunked").output
    assert (out[:, :, 3] == 0).all() and (out[0] == 0).all()
    grads = _grads(out, [q, k, v, bias, score.v, score.w_q, score.w_k, score.bias])
    assert all(torch.isfinite(gr).all() for gr in grads)
    assert (grads[0][:, :, 3] == 0).all() and (grads[0][0] == 0).all()


def test_gradcheck_with_dropout(small_generic_blocks):
    q, k, v, score, mask, bias = _problem(seed=2)
    # One batch row, 2 heads, 3 queries, 4 keys: small enough for numerical Jacobians.
    q, k, v = q[:1, :2, :3].detach(), k[:1, :2, :4].detach(), v[:1, :2, :4].detach()
    mask, bias = mask[:1, :, :3, :4], bias[:1, :2, :3, :4].detach()

    def run(q, k, v, bias, vec, w_q):
        s = Additive(vec, w_q, score.w_k, score.bias)
        qp, kp = s.prepare(q, k)
        return chunked_attention(Problem(qp, kp, v, s, None, mask, bias, None, 0.4), seed=5)

    inputs = (q, k, v, bias, score.v, score.w_q)
    assert torch.autograd.gradcheck(run, tuple(t.requires_grad_() for t in inputs))


def test_pairwise_vjp_equals_autograd_of_pairwise():
    g = torch.Generator().manual_seed(4)
    # Wide queries saturate some tanh units, where 1 - tanh^2 must stay exact.
    q = (3.0 * torch.randn(2, 5, HID, generator=g, dtype=torch.float64)).requires_grad_()
    k, vec = _leaf(g, 2, 7, HID), _leaf(g, HID)
    score = Additive(vec, torch.eye(HID, dtype=torch.float64))
    upstream = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    s, vjp = score.pairwise_vjp(q, k)
    torch.testing.assert_close(s, score.pairwise(q, k))
    for ours, ref in zip(
        vjp(upstream), torch.autograd.grad(score.pairwise(q, k), [q, k, vec], upstream)
    ):
        torch.testing.assert_close(ours, ref)


def test_chunked_never_differentiates_the_additive_score_with_autograd(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the chunked engine called Additive.pairwise")

    q, k, v, score, mask, bias = _problem(dtype=torch.float32)
    monkeypatch.setattr(Additive, "pairwise", refuse)
    out = attention(q, k, v, score=score, mask=mask, bias=bias, backend="chunked").output
    out.sum().backward()
    assert score.v.grad is not None and torch.isfinite(score.v.grad).all()


@dataclass(frozen=True, eq=False)
class _NegSquaredDistance(Score):
    """A score with no hand-written gradient: ``-w * |q - k|^2``."""

    w: Tensor
    name = "neg_squared_distance"

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.w,)

    def pairwise(self, q: Tensor, k: Tensor, *tensors: Tensor) -> Tensor:
        w = tensors[0] if tensors else self.w
        return -w * (q.unsqueeze(-2) - k.unsqueeze(-3)).square().sum(-1)


def test_scores_without_a_hand_written_gradient_still_train(small_generic_blocks):
    g = torch.Generator().manual_seed(6)
    q, k, v = _leaf(g, B, H, LQ, DQ), _leaf(g, B, H, LK, DQ), _leaf(g, B, H, LK, DV)
    score = _NegSquaredDistance(torch.tensor(0.3, dtype=torch.float64, requires_grad=True))
    mask = torch.rand(B, 1, LQ, LK, generator=g) > 0.3
    outs = [
        attention(q, k, v, score=score, mask=mask, backend=b).output for b in ("math", "chunked")
    ]
    torch.testing.assert_close(outs[1], outs[0])
    leaves = [q, k, v, score.w]
    for ours, ref in zip(_grads(outs[1], leaves), _grads(outs[0], leaves)):
        torch.testing.assert_close(ours, ref)


def test_pairwise_vjp_is_declared_by_every_score_and_optional():
    q, k = torch.zeros(1, 2, 3), torch.zeros(1, 4, 3)
    assert _NegSquaredDistance(torch.tensor(1.0)).pairwise_vjp(q, k) is None  # the default
    additive = Additive(torch.ones(3), torch.eye(3), torch.eye(3))
    scores, vjp = additive.pairwise_vjp(q, k)
    assert scores.shape == (1, 2, 4) and len(vjp(torch.ones(1, 2, 4))) == 3


def test_bfloat16_close_to_float32():
    q, k, v, score, mask, bias = _problem(dtype=torch.float32)
    ref = attention(q, k, v, score=score, mask=mask, bias=bias, backend="math").output
    low_score = Additive(*(t.bfloat16() for t in (score.v, score.w_q, score.w_k, score.bias)))
    low = attention(
        *(t.bfloat16() for t in (q, k, v)),
        score=low_score,
        mask=mask,
        bias=bias.bfloat16(),
        backend="chunked",
    ).output
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=5e-2, rtol=5e-2)


def test_blocks_of_the_long_input_problem_stay_small():
    # Bahdanau at B=32, Lq=50, Lk=200, hidden 256: the full tanh tensor has 82M elements.
    b, lq, lk, hid = 32, 50, 200, 256
    full = b * lq * lk * hid
    bq, bk = generic_block_sizes(b, lq, lk, hid)
    assert b * bq * bk * hid <= min(chunked.GENERIC_BLOCK_ELEMENTS, full // 10)
    g = torch.Generator().manual_seed(0)
    score = additive(*(_leaf(g, *s, dtype=torch.float32) for s in ((hid,), (hid, hid), (hid, hid))))
    q, k = _leaf(g, b, lq, hid, dtype=torch.float32), _leaf(g, b, lk, hid, dtype=torch.float32)
    with LargestTensor() as mode:
        attention(q, k, k, score=score, backend="chunked").output.sum().backward()
    # Nothing bigger than one block or the inputs (keys: b * lk * hid) is ever built.
    assert mode.largest <= max(b * bq * bk * hid, b * lk * hid) < full // 10
