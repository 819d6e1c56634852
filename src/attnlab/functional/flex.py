"""The ``flex`` engine: a sparsity pattern through ``torch.nn.attention.flex_attention``.

FlexAttention (torch >= 2.5) compiles the pattern's ``mask_mod`` into a block mask and
skips empty blocks inside one fused kernel. It is the engine ``attention`` picks for
patterns on GPU. Block masks cost O(L^2 / block^2) to build, so a pattern's block mask
is cached per ``(pattern, causality, Lq, Lk, device)``; a caller's own boolean mask or
float bias is looked up inside ``mask_mod`` / ``score_mod`` (then nothing is cached).

On CPU FlexAttention has no backward (torch 2.13), so this engine is for inference
there (forceable with ``backend="flex"``); training on CPU uses ``banded`` /
``block_sparse``. The kernel is compiled on first use per shape (about 9 s on the
2-core CPU machine; building the block mask of a 16k window took as long again).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from attnlab.functional._problem import Problem, pair_values
from attnlab.masks.patterns import SparsePattern
from attnlab.masks.predicates import MaskMod, causal_predicate

__all__ = ["flex_attention_engine", "flex_usable"]


@functools.cache
def flex_usable() -> bool:
    """True when this torch has FlexAttention."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _compiled_flex() -> Callable[..., Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # Eager flex_attention materialises the scores; compiled it is the fused kernel.
    return torch.compile(flex_attention, dynamic=False)


def _with_causality(mask_mod: MaskMod, offset: int | None) -> MaskMod:
    if offset is None:
        return mask_mod

    def combined(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return mask_mod(b, h, q_idx, kv_idx) & causal_predicate(q_idx, kv_idx, offset)

    return combined


@functools.lru_cache(maxsize=32)
def _pattern_block_mask(
    pattern: SparsePattern, offset: int | None, lq: int, lk: int, device: torch.device
) -> object:
    from torch.nn.attention.flex_attention import create_block_mask

    mask_mod = _with_causality(pattern.mask_mod(lq, lk), offset)
    return create_block_mask(mask_mod, None, None, lq, lk, device=device)


def flex_attention_engine(p: Problem, pattern: SparsePattern) -> Tensor:
    """Run FlexAttention on a prepared dot-product :class:`Problem` with a pattern.

    Raises:
        ValueError: on CPU with inputs that need gradients, or with dropout (FlexAttention
            has neither); the message names the engine to use instead.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (p.q, p.k, p.v))
    if p.q.device.type == "cpu" and needs_grad:
        raise ValueError(
            "backend='flex' cannot train on CPU (FlexAttention has no CPU backward); "
            "use backend='banded' or 'block_sparse', or run under torch.no_grad()"
        )
    if p.dropout_p > 0:
        raise ValueError("backend='flex' has no attention dropout; use 'block_sparse'")
    b, h, lq, lk = p.shape
    if p.mask is None:
        block_mask = _pattern_block_mask(pattern, p.causal_offset, lq, lk, p.q.device)
    else:
        base, user = _with_causality(pattern.mask_mod(lq, lk), p.causal_offset), p.mask

        def mask_mod(bi: Tensor, hi: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return base(bi, hi, q_idx, kv_idx) & pair_values(user, q_idx, kv_idx, bi, hi)

        block_mask = create_block_mask(mask_mod, b, h, lq, lk, device=p.q.device)
    score_mod = None
    if p.bias is not None:
        bias = p.bias

        def score_mod(score: Tensor, bi: Tensor, hi: Tensor, q_idx: Tensor, kv_idx: Tensor):
            return score + pair_values(bias, q_idx, kv_idx, bi, hi).to(score.dtype)

    return _compiled_flex()(
        p.q, p.k, p.v, score_mod=score_mod, block_mask=block_mask, scale=p.scale
    )
