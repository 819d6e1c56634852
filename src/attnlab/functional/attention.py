r"""The one attention entry point: ``scores -> (mask, bias) -> softmax -> weighted sum``.

.. math::
    \mathrm{out} = \mathrm{softmax}(s(Q, K) + B, \text{masked}) \, V

Engines (chosen automatically, forceable with ``backend=``, reported in the result):

* ``sdpa``: torch's fused ``scaled_dot_product_attention``, for every score of the
  form ``scale * q @ k^T`` (dot, scaled dot, general, cosine, location).
* ``chunked``: online-softmax over blocks (:mod:`attnlab.functional.chunked`) for any
  score, linear memory in forward and backward.
* ``math``: the materialising reference; computes the weights when asked.

Conventions: masks are boolean, True = may attend, broadcastable to
``(B, H, Lq, Lk)``; float biases go through ``bias=``; a query row with nothing to
attend to returns zeros (output and weights) with finite gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from attnlab.functional._problem import Problem, causal_offset
from attnlab.functional.chunked import chunked_attention
from attnlab.functional.engines import attention_weights, math_attention, sdpa_attention
from attnlab.functional.scores import ScaledDot, Score

__all__ = ["attention", "AttentionOutput", "ENGINES", "select_engine"]

Backend = Literal["auto", "math", "sdpa", "chunked"]
ENGINES = ("math", "sdpa", "chunked")
_DEFAULT_SCORE = ScaledDot()


class AttentionOutput(tuple):
    """``(output, weights)``, unpackable as a pair, plus ``.engine``: the engine that ran."""

    engine: str

    def __new__(cls, output: Tensor, weights: Tensor | None, engine: str) -> AttentionOutput:
        """Pack the pair and remember the engine."""
        obj = super().__new__(cls, (output, weights))
        obj.engine = engine
        return obj

    @property
    def output(self) -> Tensor:
        """Attention output."""
        return self[0]

    @property
    def weights(self) -> Tensor | None:
        """Pre-dropout probabilities, or None when they were not asked for."""
        return self[1]


def select_engine(scale: float | None, *, need_weights: bool, backend: Backend) -> str:
    """The engine ``attention`` runs for a score with this ``dot_scale``.

    Raises:
        ValueError: for an unknown backend or ``sdpa`` forced on a non-dot score.
    """
    if backend == "auto":
        if need_weights:
            return "math"
        return "sdpa" if scale is not None else "chunked"
    if backend not in ENGINES:
        raise ValueError(f"backend must be 'auto' or one of {ENGINES}, got {backend!r}")
    if backend == "sdpa" and scale is None:
        raise ValueError(
            "backend='sdpa' needs a dot-product score (scale * q @ k^T); "
            "use backend='chunked' or 'math' for this score"
        )
    return backend


def _check_broadcast(name: str, t: Tensor, shape: tuple[int, int, int, int]) -> None:
    if t.dim() > 4 or any(a not in (1, b) for a, b in zip(t.shape[::-1], shape[::-1])):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to (B, H, Lq, Lk) = {shape}"
        )


def _explain_bad_tensors(q: object, k: object, v: object) -> None:
    """Raise the one-line error that says what is wrong with q, k or v."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be (B, H, L, D) (or (B, L, D)), got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    raise ValueError(
        f"shapes do not match: q {tuple(q.shape)} = (B, H, Lq, D), "
        f"k {tuple(k.shape)} = (B, H, Lk, D), v {tuple(v.shape)} = (B, H, Lk, Dv)"
    )


def _check_inputs(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, dropout_p: float
) -> None:
    # One cheap test for the common, valid call; the diagnosis only on failure.
    try:
        valid = (
            q.dim() == k.dim() == v.dim() == 4
            and q.dtype == k.dtype == v.dtype
            and q.is_floating_point()
            and q.shape[:2] == k.shape[:2]
            and k.shape[:3] == v.shape[:3]
        )
    except AttributeError:
        valid = False
    if not valid:
        _explain_bad_tensors(q, k, v)
    shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be boolean with True = may attend; got {mask.dtype}. Pass float "
                "masks as bias=, convert with attnlab.masks.from_additive_mask, and torch "
                "key_padding_mask (True = ignore) with attnlab.masks.from_key_padding_mask"
            )
        _check_broadcast("mask", mask, shape)
    if bias is not None:
        if not bias.is_floating_point():
            raise TypeError(
                f"bias must be a floating tensor of logits, got {bias.dtype}; "
                "boolean masks go through mask="
            )
        _check_broadcast("bias", bias, shape)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score: Score | None = None,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    causal: bool | Literal["upper_left", "lower_right"] = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    backend: Backend = "auto",
    keys_prepared: bool = False,
) -> AttentionOutput:
    """Score-based attention through one core and several engines.

    Args:
        q: queries ``(B, H, Lq, Dq)`` or ``(B, Lq, Dq)`` (then a 3-D mask or bias is
            read as ``(B, Lq, Lk)``).
        k: keys ``(B, H, Lk, Dk)`` or ``(B, Lk, Dk)``.
        v: values ``(B, H, Lk, Dv)`` or ``(B, Lk, Dv)``.
        score: a :class:`~attnlab.functional.scores.Score`; default scaled dot.
        mask: boolean, True = may attend, broadcastable to ``(B, H, Lq, Lk)``.
        bias: float logits added to the scores (relative positions, ALiBi, ...).
        causal: True or ``"upper_left"`` (query i sees keys ``j <= i``) or
            ``"lower_right"`` (``j <= i + Lk - Lq``); combined with ``mask``.
        dropout_p: dropout on the probabilities; pass 0 in evaluation.
        need_weights: also return the exact pre-dropout probabilities.
        backend: ``"auto"``, ``"math"``, ``"sdpa"`` or ``"chunked"``.
        keys_prepared: keys were already passed through ``score.prepare_keys``.

    Returns:
        :class:`AttentionOutput`: ``(output (B, H, Lq, Dv), weights (B, H, Lq, Lk) or
        None)`` with ``.engine`` naming the engine that computed the output. Inputs
        without a head dim give outputs without one.

    Shapes:
        q ``(B, H, Lq, Dq)``, k ``(B, H, Lk, Dk)``, v ``(B, H, Lk, Dv)`` ->
        ``(B, H, Lq, Dv)``.

    Example:
        >>> q = torch.tensor([[[0.0, 2.0 ** 0.5]]]); k = torch.eye(2)[None]
        >>> out, w = attention(q, k, k, need_weights=True)
        >>> torch.allclose(w, torch.tensor([[[1.0, 2.718281828]]]) / (1 + 2.718281828))
        True
    """
    squeeze = q.dim() == 3
    if squeeze:
        # Head-less inputs: a 3-D mask or bias is (B, Lq, Lk), so it gains the head dim too.
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
        mask = mask.unsqueeze(1) if mask is not None and mask.dim() == 3 else mask
        bias = bias.unsqueeze(1) if bias is not None and bias.dim() == 3 else bias
    _check_inputs(q, k, v, mask, bias, dropout_p)
    score = _DEFAULT_SCORE if score is None else score
    qp, kp = score.prepare(q, k, keys_prepared=keys_prepared)
    scale = score.dot_scale(qp)
    if scale is not None and qp.shape[-1] != kp.shape[-1]:
        raise ValueError(
            f"{score.name} score needs queries and keys of one size, got "
            f"Dq={qp.shape[-1]} and Dk={kp.shape[-1]}"
        )
    query_bias = score.query_bias(q, k.shape[-2])
    if query_bias is not None:
        bias = query_bias if bias is None else bias + query_bias
    engine = select_engine(scale, need_weights=need_weights, backend=backend)
    problem = Problem(
        qp,
        kp,
        v,
        score,
        scale,
        mask,
        bias,
        causal_offset(causal, q.shape[-2], k.shape[-2]),
        dropout_p,
    )
    weights = None
    if engine == "math":
        out, weights = math_attention(problem)
    else:
        out = sdpa_attention(problem) if engine == "sdpa" else chunked_attention(problem)
        if need_weights:
            weights = attention_weights(problem).to(v.dtype)
    if not need_weights:
        weights = None
    if squeeze:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(1)
    return AttentionOutput(out, weights, engine)
