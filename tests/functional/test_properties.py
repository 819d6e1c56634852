"""Property suite: every engine that accepts a call gives the float64 reference's answer.

Hypothesis draws whole calls: sizes that include 0, 1 and odd numbers (B, H, Lq, Lk, Dq,
Dv), four dtypes, scores with and without a dot-product form, boolean masks and float
biases of every broadcast shape, rows emptied by the mask, by a ``-inf`` bias and by
both, float32 biases with large finite logits beside fp16/bf16 inputs, the three
causal modes and the sparsity patterns. Each call runs on every engine that accepts it
(``auto`` with and without weights, ``math``, ``sdpa``, ``chunked`` with tiny blocks,
``banded`` / ``block_sparse``) and is compared, outputs, weights and the gradients of
q, k, v and the bias, with :func:`~attnlab.functional.reference.reference_attention`.

The default run draws ``DEFAULT_EXAMPLES`` calls with a fixed seed (the same calls on
every machine); ``-m slow`` runs ``DEEP_EXAMPLES`` fresh ones. FlexAttention is left
out: on CPU it compiles per shape (seconds each) and has no backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import attnlab.functional.chunked as chunked
from attnlab import functional as AF
from attnlab.functional import attention
from attnlab.functional.reference import reference_attention
from attnlab.masks import (
    bigbird_pattern,
    fixed_pattern,
    longformer_pattern,
    sliding_window_pattern,
    strided_pattern,
)
from attnlab.masks.patterns import SlidingWindowPattern

DEFAULT_EXAMPLES = 400
DEEP_EXAMPLES = 3000

# Each size is also 0 about once in sixteen draws.
SIZES = (1, 2, 3)
HEADS = (1, 2, 3)
LENGTHS = (1, 2, 3, 5, 7, 9, 12)
WIDTHS = (1, 3, 4)
DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
# (outputs and weights, gradients): absolute and relative, scaled by the reference's size.
TOLERANCE = {
    torch.float64: (1e-9, 1e-8),
    torch.float32: (2e-5, 1e-4),
    torch.bfloat16: (4e-2, 1.5e-1),
    torch.float16: (5e-3, 2e-2),
}
PATTERNS = {
    "window": lambda: sliding_window_pattern(1, block_size=2),
    "window-causal-dilated": lambda: sliding_window_pattern(
        1, causal=True, dilation=2, block_size=2
    ),
    "window-lower-right": lambda: sliding_window_pattern(
        (1, 2), alignment="lower_right", block_size=4
    ),
    "longformer": lambda: longformer_pattern(1, [0], block_size=2),
    "bigbird": lambda: bigbird_pattern(2, window_blocks=1, global_blocks=1, random_blocks=1),
    "strided": lambda: strided_pattern(3, block_size=2),
    "fixed": lambda: fixed_pattern(3, 1, block_size=2),
}
SCORES = ("scaled_dot", "general", "additive", "cosine")
# Broadcast shapes of a mask or bias, as which of (B, H, Lq, Lk) it keeps.
GRADS = ("dq", "dk", "dv", "dbias")
LAYOUTS = ((1, 1, 1, 1), (1, 0, 0, 1), (0, 0, 1, 1), (1, 1, 0, 1), (1, 0, 1, 1))


@dataclass(frozen=True)
class Call:
    """One drawn attention call, as plain values (hypothesis prints and shrinks these)."""

    b: int
    h: int
    lq: int
    lk: int
    dq: int
    dv: int
    dtype: torch.dtype
    score: str
    mask: str  # none | random | empty-rows
    mask_layout: tuple[int, ...]
    bias: str  # none | random | neg-inf | neg-inf-rows | large
    bias_layout: tuple[int, ...]
    bias_fp32: bool
    causal: bool | str
    pattern: str | None
    seed: int


def sizes(values: tuple[int, ...], zero_one_in: int = 16) -> st.SearchStrategy[int]:
    """One of ``values``, or 0 about once in ``zero_one_in`` draws (shrinks towards 0)."""
    return st.integers(0, zero_one_in * len(values) - 1).map(
        lambda i: 0 if i < len(values) else values[i % len(values)]
    )


@st.composite
def calls(draw: st.DrawFn) -> Call:
    score = draw(st.sampled_from(SCORES))
    dtype = draw(st.sampled_from(DTYPES))
    low = dtype in (torch.float16, torch.bfloat16)
    bias = draw(
        st.sampled_from(("none", "random", "neg-inf", "neg-inf-rows") + (("large",) if low else ()))
    )
    return Call(
        b=draw(sizes(SIZES)),
        h=draw(sizes(HEADS)),
        lq=draw(sizes(LENGTHS)),
        lk=draw(sizes(LENGTHS)),
        dq=draw(sizes(WIDTHS)),
        dv=draw(sizes(WIDTHS)),
        dtype=dtype,
        score=score,
        mask=draw(st.sampled_from(("none", "random", "empty-rows"))),
        mask_layout=draw(st.sampled_from(LAYOUTS)),
        bias=bias,
        bias_layout=draw(st.sampled_from(LAYOUTS)),
        # Large logits are the float32-bias-beside-fp16 case; others draw either dtype.
        bias_fp32=low and (bias == "large" or draw(st.booleans())),
        causal=draw(st.sampled_from((False, True, "lower_right"))),
        pattern=draw(st.sampled_from((None,) * len(PATTERNS) + tuple(PATTERNS)))
        if score != "additive"
        else None,
        seed=draw(st.integers(0, 2**16)),
    )


def _shape(call: Call, layout: tuple[int, ...]) -> tuple[int, ...]:
    full = (call.b, call.h, call.lq, call.lk)
    return tuple(n if keep else 1 for n, keep in zip(full, layout))


def _mask(call: Call, g: torch.Generator) -> torch.Tensor | None:
    if call.mask == "none":
        return None
    mask = torch.rand(_shape(call, call.mask_layout), generator=g) > 0.3
    if call.mask == "empty-rows" and mask.shape[-2] > 0:
        mask[..., 0, :] = False  # a query row the mask empties
    return mask


def _bias(call: Call, g: torch.Generator, mask: torch.Tensor | None) -> torch.Tensor | None:
    if call.bias == "none":
        return None
    bias = torch.randn(_shape(call, call.bias_layout), generator=g, dtype=torch.float64)
    if call.bias == "large":
        # Large finite logits, each row shifted by its own constant (softmax ignores it):
        # beyond fp16's range, so a cast to fp16 overflows.
        bias = (
            bias + 7e4 * (1 + torch.rand(bias.shape[:-1], generator=g, dtype=bias.dtype))[..., None]
        )
    if call.bias.startswith("neg-inf"):
        bias = bias.masked_fill(torch.rand(bias.shape, generator=g) < 0.3, -math.inf)
    if call.bias == "neg-inf-rows" and bias.shape[-2] > 0:
        row = bias.shape[-2] - 1
        bias[..., row, :] = -math.inf  # a row the bias empties
        if mask is not None and mask.shape[-2] > 1 and bias.shape[-2] > 1:
            # ... and one that mask and bias empty together: -inf only where the mask allows.
            allowed, row = mask[..., 1, :], bias[..., 1, :]
            if torch.broadcast_shapes(allowed.shape, row.shape) == row.shape:
                bias[..., 1, :] = torch.where(allowed, -math.inf, 0.0)
    dtype = torch.float32 if call.bias_fp32 else call.dtype
    return bias.to(dtype).requires_grad_()


def _score(call: Call, g: torch.Generator) -> tuple[AF.Score, object]:
    """An attnlab score and its row-wise float64 reference."""

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(call.dtype)

    if call.score == "general":
        w = rnd(call.dq, call.dq)
        return AF.general(w), lambda qi, K: K @ (w.double().T @ qi)
    if call.score == "additive":
        v, wq, wk = rnd(3), rnd(3, call.dq), rnd(3, call.dq)
        return AF.additive(
            v, wq, wk
        ), lambda qi, K: torch.tanh(wq.double() @ qi + K @ wk.double().T) @ v.double()
    if call.score == "cosine":
        return AF.cosine(
            2.0
        ), lambda qi, K: 2.0 * torch.nn.functional.cosine_similarity(K, qi[None], dim=-1, eps=1e-8)
    scale = 1 / math.sqrt(call.dq) if call.dq else 1.0
    return AF.scaled_dot(), lambda qi, K: K @ qi * scale


def _visible(call: Call, mask: torch.Tensor | None, pattern) -> torch.Tensor:
    """The boolean (B, H, Lq, Lk) the reference sees: mask, causality and pattern."""
    full = torch.ones(call.b, call.h, call.lq, call.lk, dtype=torch.bool)
    if mask is not None:
        full = full & mask
    if call.causal:
        offset = call.lk - call.lq if call.causal == "lower_right" else 0
        full = full & (torch.arange(call.lk) <= torch.arange(call.lq)[:, None] + offset)
    if pattern is not None:
        full = full & pattern.mask(call.lq, call.lk)
    return full


def _engines(call: Call, pattern) -> list[tuple[str, bool]]:
    """``(backend, need_weights)`` of every engine that accepts the call."""
    engines = [("auto", False), ("auto", True), ("math", True), ("chunked", True)]
    if call.score != "additive":
        engines.append(("sdpa", True))
    if pattern is not None:
        engines.append(("block_sparse", False))
        if isinstance(pattern, SlidingWindowPattern):
            engines.append(("banded", True))
    return engines


def _largest(t: torch.Tensor) -> float:
    t = t.detach()
    return float(t.abs().max()) if t.numel() else 0.0


def _error(got: torch.Tensor, want: torch.Tensor) -> float:
    return _largest(got.double() - want.detach())


def _close(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, slack: float) -> None:
    """``got`` is finite and within ``atol * (1 + max |want|) + slack`` of ``want``."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    bound = atol * (1 + _largest(want)) + slack
    err = _error(got, want)
    assert err <= bound, f"{name}: max error {err:.3g} > {bound:.3g}"


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], grad_out: torch.Tensor) -> list:
    if not out.requires_grad:  # the reference leaves outputs of zero-size calls unwritten
        return [torch.zeros_like(t) for t in inputs]
    return torch.autograd.grad(
        out, inputs, grad_out.to(out.dtype), allow_unused=True, materialize_grads=True
    )


def check_call(call: Call) -> None:
    """Run ``call`` on every engine that accepts it and compare with the reference."""
    zero = 0 in (call.b, call.h, call.lq, call.lk, call.dq, call.dv)
    event("a zero size" if zero else "sizes >= 1")
    event(f"{call.dtype}, bias {'float32' if call.bias_fp32 else 'same dtype'}")
    event(f"bias: {call.bias}")
    event(f"mask: {call.mask}")
    event(f"pattern: {call.pattern}")
    g = torch.Generator().manual_seed(call.seed)
    q, k = (
        torch.randn(call.b, call.h, n, call.dq, generator=g, dtype=torch.float64)
        for n in (call.lq, call.lk)
    )
    v = torch.randn(call.b, call.h, call.lk, call.dv, generator=g, dtype=torch.float64)
    q, k, v = (t.to(call.dtype).requires_grad_() for t in (q, k, v))
    mask = _mask(call, g)
    bias = _bias(call, g, mask)
    pattern = PATTERNS[call.pattern]() if call.pattern else None
    score, ref_score = _score(call, g)
    if call.pattern == "longformer" and call.lk == 0:
        # Its global token 0 does not exist without keys: every engine says so in one line.
        for backend, _ in _engines(call, pattern):
            with pytest.raises(ValueError, match="global positions must be < Lk=0") as info:
                attention(q, k, v, score=score, backend=backend, pattern=pattern)
            assert "\n" not in str(info.value)
        return
    grad_out = torch.randn(call.b, call.h, call.lq, call.dv, generator=g, dtype=torch.float64)

    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref_bias = None if bias is None else bias.detach().double().requires_grad_()
    ref_out, ref_w = reference_attention(
        *leaves, ref_score, mask=_visible(call, mask, pattern), bias=ref_bias
    )
    ref_grads = _grads(ref_out, leaves + ([ref_bias] if ref_bias is not None else []), grad_out)
    want = {"output": ref_out, "weights": ref_w, **dict(zip(GRADS, ref_grads))}

    results = {}
    for backend, need_weights in _engines(call, pattern):
        old = (chunked.DOT_BLOCK, chunked.GENERIC_BLOCK_ELEMENTS)
        chunked.DOT_BLOCK, chunked.GENERIC_BLOCK_ELEMENTS = 2, 16  # many tiny blocks
        try:
            out, w = attention(
                q,
                k,
                v,
                score=score,
                mask=mask,
                bias=bias,
                causal=call.causal,
                need_weights=need_weights,
                backend=backend,
                pattern=pattern,
            )
            # Like torch's SDPA, every output is differentiable, empty or not.
            assert out.requires_grad, f"{backend}: the output is cut from the graph"
            grads = _grads(out, [q, k, v] + ([bias] if bias is not None else []), grad_out)
        finally:
            chunked.DOT_BLOCK, chunked.GENERIC_BLOCK_ELEMENTS = old
        assert out.dtype == call.dtype and (w is None) != need_weights, backend
        results[f"{backend}(need_weights={need_weights})"] = {
            "output": out,
            "weights": w,
            **dict(zip(GRADS, grads)),
        }

    atol, grad_atol = TOLERANCE[call.dtype]
    # A logit near 1e5 carries float32 rounding of about 1e5 * 2^-24 in every engine that
    # adds it in float32; its effect on outputs is that much of |v|.
    slack = 4 * _largest(bias) * 2**-24 * (1 + _largest(v)) if call.bias == "large" else 0.0
    # In fp16/bf16 the inputs' own rounding (a score's prepare step runs in that dtype)
    # moves every engine alike: as in torch's SDPA tests, an engine may be off by a few
    # times the materialising engine's error, besides the dtype's tolerance.
    yardstick = results["math(need_weights=True)"]
    low = call.dtype in (torch.float16, torch.bfloat16)
    for engine, got in results.items():
        for quantity, expected in want.items():
            value = got[quantity]
            if value is None:
                continue
            name = f"{engine} {quantity}"
            # Finite is the claim for gradients of 1e5 logits in float32, and for dq, dk
            # through cosine's normalisation in fp16/bf16: that backward, shared by every
            # engine, returns its rounding noise divided by |k| (for width 1 the exact
            # gradient is 0; a deep run measured 4 against an upstream error of 0.4%).
            noisy = quantity in ("dq", "dk") and call.score == "cosine" and low
            if quantity.startswith("d") and (call.bias == "large" or noisy):
                assert torch.isfinite(value).all(), f"{name}: non-finite"
                continue
            tol = grad_atol if quantity.startswith("d") else atol
            extra = slack + (3 * _error(yardstick[quantity], expected) if low else 0.0)
            _close(name, value, expected, tol, extra)


SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=DEFAULT_EXAMPLES, derandomize=True, database=None, **SETTINGS)
@given(calls())
def test_every_engine_equals_the_reference(call):
    check_call(call)


@pytest.mark.slow
@settings(max_examples=DEEP_EXAMPLES, **SETTINGS)
@given(calls())
def test_every_engine_equals_the_reference_deep(call):
    check_call(call)


# -- the cases the suite found, pinned as plain tests --------------------------------------
INF = math.inf


@pytest.mark.parametrize("backend", ["math", "sdpa", "chunked", "auto"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_a_row_of_minus_inf_bias_is_an_empty_row(backend, with_mask):
    q, k, v = (torch.randn(1, 1, 2, 4, requires_grad=True) for _ in range(3))
    bias = torch.tensor([[0.0, 0.0], [-INF, -INF]])
    mask = None
    if with_mask:  # the mask hides key 1, the bias key 0: nothing is left in row 1
        mask, bias = torch.tensor([[True, True], [True, False]]), torch.tensor([[0, 0], [-INF, 0]])
    for need_weights in (False, True):
        out, w = attention(
            q, k, v, bias=bias, mask=mask, backend=backend, need_weights=need_weights
        )
        assert (out[0, 0, 1] == 0).all() and torch.isfinite(out).all()
        assert w is None or ((w[0, 0, 1] == 0).all() and torch.isfinite(w).all())
        grads = torch.autograd.grad(out.sum(), (q, k, v))
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["sdpa", "chunked", "banded"])
def test_large_float32_bias_beside_low_precision_inputs(dtype, backend):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 16, generator=g).to(dtype) for _ in range(3))
    bias = torch.randn(1, 2, 8, 8, generator=g) * 3 + 1e5
    pattern = sliding_window_pattern(2, block_size=4) if backend == "banded" else None
    want = attention(q, k, v, bias=bias, backend="math", pattern=pattern).output
    got = attention(q, k, v, bias=bias, backend=backend, pattern=pattern).output
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want.float(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize(
    "sizes", [(0, 2, 3, 4, 5), (2, 0, 3, 4, 5), (2, 2, 0, 4, 5), (2, 2, 3, 0, 5), (2, 2, 3, 4, 0)]
)
@pytest.mark.parametrize("backend", ["math", "sdpa", "chunked", "banded", "block_sparse"])
def test_empty_sizes_give_the_empty_result(sizes, backend):
    b, h, lq, lk, d = sizes
    q = torch.randn(b, h, lq, d, requires_grad=True)
    k, v = torch.randn(b, h, lk, d), torch.randn(b, h, lk, d, requires_grad=True)
    pattern = sliding_window_pattern(1) if backend in ("banded", "block_sparse") else None
    out, w = attention(q, k, v, backend=backend, pattern=pattern, need_weights=True)
    assert out.shape == (b, h, lq, d) and w.shape == (b, h, lq, lk)
    assert (out == 0).all() if lk == 0 else torch.isfinite(out).all()
    out.sum().backward()
    assert q.grad.shape == q.shape and torch.isfinite(q.grad).all()
