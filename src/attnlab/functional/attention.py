r"""The one attention entry point: ``scores -> (mask, bias) -> softmax -> weighted sum``.

.. math::
    \mathrm{out} = \mathrm{softmax}(s(Q, K) + B, \text{masked}) \, V

Engines (chosen automatically, forceable with ``backend=``, reported in the result):

* ``sdpa``: torch's fused ``scaled_dot_product_attention``, for every score of the
  form ``scale * q @ k^T`` (dot, scaled dot, general, cosine, location).
* ``chunked``: online-softmax over blocks (:mod:`attnlab.functional.chunked`) for any
  score, linear memory in forward and backward.
* ``math``: the materialising reference; computes the weights when asked.
* ``banded`` / ``block_sparse``: for a sparsity ``pattern=`` (sliding window,
  Longformer, BigBird, ...), only the blocks the pattern allows, through SDPA
  (:mod:`attnlab.functional.blocksparse`); ``banded`` is the name for windows.
* ``flex``: ``torch.nn.attention.flex_attention`` with a cached block mask, chosen
  for patterns on GPU (:mod:`attnlab.functional.flex`).

Conventions: masks are boolean, True = may attend, broadcastable to
``(B, H, Lq, Lk)``; float biases go through ``bias=``; a query row with nothing to
attend to returns zeros (output and weights) with finite gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from attnlab._validate import probability
from attnlab.functional._problem import Problem, causal_offset, check_qkv
from attnlab.functional.blocksparse import block_sparse_attention
from attnlab.functional.chunked import chunked_attention
from attnlab.functional.engines import attention_weights, math_attention, sdpa_attention
from attnlab.functional.flex import flex_attention_engine, flex_usable
from attnlab.functional.scores import ScaledDot, Score
from attnlab.masks.check import check_broadcast, check_mask
from attnlab.masks.patterns import SlidingWindowPattern, SparsePattern

__all__ = ["attention", "AttentionOutput", "ENGINES", "PATTERN_ENGINES", "select_engine"]

Backend = Literal["auto", "math", "sdpa", "chunked", "banded", "block_sparse", "flex"]
ENGINES = ("math", "sdpa", "chunked")
PATTERN_ENGINES = ("banded", "block_sparse", "flex")
# The blockwise engines gather keys per query block, which costs copies dense SDPA
# does not make. Measured forward+backward against SDPA with the band as a mask (quick
# engines suite, w = 64): 0.9x when each query reads 3/8 of the keys (L = 512), 2.1x at
# 3/16 (L = 1024). Below a quarter of the keys the blockwise engine runs.
SPARSE_WORTHWHILE = 0.25
_DEFAULT_SCORE = ScaledDot()


class AttentionOutput(tuple):
    """What every attention function and module returns: ``(context, weights)``.

    A tuple of exactly two items, so ``context, weights = module(...)`` works for every
    mechanism, plus attributes:

    * ``context`` (alias ``output``): the attended result;
    * ``weights``: the exact pre-dropout probabilities, or None when they were not
      asked for (or, like linear attention, the method never forms them);
    * ``engine``: the engine that ran (None for modules that make several calls);
    * named extras where a mechanism has them, read as attributes: ``log_prob`` and
      ``entropy`` (hard attention), ``sentence_weights`` (hierarchical attention),
      ``edge_index`` (graph attention). Asking for one that is not there raises an
      AttributeError naming those it has; :meth:`get` returns a default instead.

    Example:
        >>> out = AttentionOutput(torch.ones(2), None, "sdpa", log_prob=torch.zeros(2))
        >>> context, weights = out
        >>> out.engine, out.log_prob.shape, out.get("entropy")
        ('sdpa', torch.Size([2]), None)
    """

    engine: str | None

    def __new__(
        cls,
        context: Tensor,
        weights: Tensor | None = None,
        engine: str | None = None,
        **extras: object,
    ) -> AttentionOutput:
        """Pack the pair, the engine and the extras (built on every call: kept cheap)."""
        obj = tuple.__new__(cls, (context, weights))
        obj.engine = engine
        if extras:
            taken = _RESERVED.intersection(extras)
            if taken:
                raise ValueError(
                    f"extras may not be named {sorted(taken)}: those are AttentionOutput's own"
                )
            obj.__dict__.update(extras)
        return obj

    @property
    def context(self) -> Tensor:
        """The attended result."""
        return self[0]

    @property
    def output(self) -> Tensor:
        """Alias of :attr:`context`."""
        return self[0]

    @property
    def weights(self) -> Tensor | None:
        """Pre-dropout probabilities, or None when they were not asked for."""
        return self[1]

    @property
    def extras(self) -> dict[str, object]:
        """The named extras, ``{name: value}``."""
        return {k: v for k, v in self.__dict__.items() if k != "engine"}

    def get(self, name: str, default: object = None) -> object:
        """The extra ``name``, or ``default`` when this result has none of that name."""
        return self.extras.get(name, default)

    def replace(self, **changes: object) -> AttentionOutput:
        """A copy with ``context``, ``weights``, ``engine`` or extras replaced."""
        fields = {"context": self[0], "weights": self[1], "engine": self.engine}
        fields.update(self.extras)
        fields.update(changes)
        return AttentionOutput(**fields)

    def __getattr__(self, name: str) -> object:
        # Only reached when normal lookup fails: an extra this result does not carry.
        if name.startswith("__"):
            raise AttributeError(name)
        has = ", ".join(self.extras) or "none"
        raise AttributeError(
            f"this AttentionOutput has no {name!r}; its extras: {has} (use .get({name!r}) "
            "for an optional one)"
        )

    def __reduce__(self) -> tuple:
        return (_rebuild, (self[0], self[1], self.engine, self.extras))

    def __repr__(self) -> str:
        parts = [f"context={self[0]!r}", f"weights={self[1]!r}", f"engine={self.engine!r}"]
        parts += [f"{k}={v!r}" for k, v in self.extras.items()]
        return f"AttentionOutput({', '.join(parts)})"


_RESERVED = frozenset(("context", "output", "weights", "engine", "extras", "get", "replace"))


def _rebuild(context: Tensor, weights: Tensor | None, engine: str | None, extras: dict):
    return AttentionOutput(context, weights, engine, **extras)


def select_engine(
    scale: float | None,
    *,
    need_weights: bool,
    backend: Backend,
    pattern: SparsePattern | None = None,
    problem_size: tuple[int, int] | None = None,
    device: torch.device | None = None,
    dropout_p: float = 0.0,
) -> str:
    """The engine ``attention`` runs for a score with this ``dot_scale``.

    With a ``pattern``, ``auto`` picks ``flex`` on GPU, the blockwise engine when it
    reads at most ``SPARSE_WORTHWHILE`` of the keys, else a dense engine with the
    pattern's mask.

    Raises:
        ValueError: for an unknown backend, or a fused engine forced on a score or
            call it cannot run.
    """
    if backend == "auto":
        if need_weights:
            return "math"
        if scale is None:
            return "chunked"
        if pattern is None or problem_size is None:
            return "sdpa"
        if device is not None and device.type == "cuda" and dropout_p == 0 and flex_usable():
            return "flex"
        lq, lk = problem_size
        layout = pattern.layout(lq, lk, device=device)
        if layout.keys_per_query <= SPARSE_WORTHWHILE * lk:
            return "banded" if isinstance(pattern, SlidingWindowPattern) else "block_sparse"
        return "sdpa"
    if backend not in ENGINES + PATTERN_ENGINES:
        raise ValueError(
            f"backend must be 'auto' or one of {ENGINES + PATTERN_ENGINES}, got {backend!r}"
        )
    if backend in PATTERN_ENGINES and pattern is None:
        raise ValueError(
            f"backend={backend!r} computes a sparsity pattern; pass pattern= "
            "(e.g. attnlab.masks.sliding_window_pattern(256))"
        )
    if backend == "banded" and not isinstance(pattern, SlidingWindowPattern):
        raise ValueError(
            f"backend='banded' is for sliding windows; use 'block_sparse' for "
            f"{type(pattern).__name__}"
        )
    if backend in ("sdpa", "banded", "block_sparse", "flex") and scale is None:
        raise ValueError(
            f"backend={backend!r} needs a dot-product score (scale * q @ k^T); "
            "use backend='chunked' or 'math' for this score"
        )
    return backend


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
        check_qkv(q, k, v)
    shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        check_mask(mask, shape=shape, expected="broadcastable to (B, H, Lq, Lk)")
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if not bias.is_floating_point():
            raise TypeError(
                f"bias must be a floating tensor of logits, got {bias.dtype}; "
                "boolean masks go through mask="
            )
        check_broadcast("bias", bias, shape, "broadcastable to (B, H, Lq, Lk)")
    probability("dropout_p", dropout_p)


def _run_fast_engine(engine: str, problem: Problem, pattern: SparsePattern | None) -> Tensor:
    if engine == "sdpa":
        return sdpa_attention(problem)
    if engine == "chunked":
        return chunked_attention(problem)
    if engine == "flex":
        return flex_attention_engine(problem, pattern)
    return block_sparse_attention(problem, pattern)


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
    pattern: SparsePattern | None = None,
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
        backend: ``"auto"``, ``"math"``, ``"sdpa"``, ``"chunked"``, or for a
            ``pattern`` ``"banded"`` (sliding windows), ``"block_sparse"``, ``"flex"``.
        keys_prepared: keys were already passed through ``score.prepare_keys``.
        pattern: a :class:`~attnlab.masks.patterns.SparsePattern` (sliding window,
            Longformer, BigBird, Sparse Transformer), combined with ``mask`` and
            ``causal``; the blockwise engines compute only the blocks it allows, the
            dense engines use it as a mask.

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
    if not (isinstance(q, Tensor) and isinstance(k, Tensor) and isinstance(v, Tensor)):
        check_qkv(q, k, v)  # names the argument that is not a tensor
    squeeze = q.dim() == 3
    if squeeze and not k.dim() == v.dim() == 3:
        check_qkv(q, k, v, dims=("B", "L", "D"))
    if squeeze:
        # Head-less inputs: a 3-D mask or bias is (B, Lq, Lk), so it gains the head dim too.
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
        mask = mask.unsqueeze(1) if isinstance(mask, Tensor) and mask.dim() == 3 else mask
        bias = bias.unsqueeze(1) if isinstance(bias, Tensor) and bias.dim() == 3 else bias
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
    lq, lk = q.shape[-2], k.shape[-2]
    if pattern is not None and not isinstance(pattern, SparsePattern):
        raise TypeError(
            f"pattern must be an attnlab.masks SparsePattern, got {type(pattern).__name__}; "
            "pass boolean masks through mask="
        )
    engine = select_engine(
        scale,
        need_weights=need_weights,
        backend=backend,
        pattern=pattern,
        problem_size=(lq, lk),
        device=q.device,
        dropout_p=dropout_p,
    )
    if pattern is not None and engine in ENGINES:
        pattern_mask = pattern.mask(lq, lk, device=q.device)
        mask = pattern_mask if mask is None else mask & pattern_mask
    problem = Problem(
        qp,
        kp,
        v,
        score,
        scale,
        mask,
        bias,
        causal_offset(causal, lq, lk),
        dropout_p,
    )
    weights = None
    if engine == "math":
        out, weights = math_attention(problem)
    else:
        out = _run_fast_engine(engine, problem, pattern)
        if need_weights:
            if pattern is not None:  # the blockwise engines keep the pattern out of `mask`
                pattern_mask = pattern.mask(lq, lk, device=q.device)
                problem = problem._replace(
                    mask=pattern_mask if mask is None else mask & pattern_mask
                )
            weights = attention_weights(problem).to(v.dtype)
    if not need_weights:
        weights = None
    if squeeze:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(1)
    return AttentionOutput(out, weights, engine)
