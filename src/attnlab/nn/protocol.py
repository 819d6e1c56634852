"""The one call a Transformer layer makes to its attention, and the factories that build it.

Transformer layers and stacks take the attention they run as a factory (timm's
``attn_layer=``), so sparsity patterns, linear attention or any attention module
reach every stack::

    attn_layer(embed_dim, num_heads, *, dropout, bias, device, dtype) -> nn.Module

(plus ``rotary=`` when the layer is given one), e.g. :class:`~attnlab.nn.MultiHeadAttention`
(the default), ``functools.partial(MultiHeadAttention, pattern=sliding_window_pattern(64))``
or :class:`~attnlab.nn.LinearAttention`. The module is then called as::

    attn(query, key=None, value=None, *, mask=None, need_weights=False,
         bias=None, causal=False, cache=None) -> AttentionOutput

The first line is required. ``bias=`` (additive position biases: ALiBi, relative),
``causal=`` and ``cache=`` (a :class:`~attnlab.nn.KVCache` for incremental decoding)
are features: a module whose ``forward`` lacks one fails with one line naming it, and
only when the stack actually needs it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import build_injected

__all__ = ["AttentionFactory", "build_attention", "call_attention"]

AttentionFactory = Callable[..., nn.Module]

# Optional features of the call: what each is needed for, for the error message.
_FEATURES = {
    "mask": "padding masks",
    "need_weights": "attention weights on request",
    "bias": "additive position biases (ALiBi, relative positions)",
    "causal": "causal self-attention",
    "cache": "a KV cache (incremental decoding)",
}


def build_attention(
    factory: AttentionFactory,
    embed_dim: int,
    num_heads: int,
    *,
    dropout: float,
    bias: bool,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    rotary: nn.Module | None = None,
) -> nn.Module:
    """``factory(embed_dim, num_heads, dropout=, bias=, device=, dtype=[, rotary=])``.

    Raises:
        TypeError: ``factory`` is not callable or does not build an ``nn.Module``.

    Example:
        >>> from attnlab.nn import MultiHeadAttention
        >>> build_attention(MultiHeadAttention, 8, 2, dropout=0.0, bias=True, device=None,
        ...                 dtype=None).num_heads
        2
    """
    extra = {} if rotary is None else {"rotary": rotary}
    return build_injected(
        factory,
        embed_dim,
        num_heads,
        name="attn_layer",
        expected="a class or factory building an attention module",
        dropout=dropout,
        bias=bias,
        device=device,
        dtype=dtype,
        **extra,
    )


@functools.cache
def _keywords(cls: type) -> frozenset[str] | None:
    """The keyword arguments ``cls.forward`` takes (None: any, it has ``**kwargs``)."""
    params = inspect.signature(cls.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def call_attention(
    attn: nn.Module,
    query: Tensor,
    key: Tensor | None = None,
    *,
    mask: Tensor | None = None,
    need_weights: bool = False,
    bias: Tensor | None = None,
    causal: bool = False,
    cache: object | None = None,
) -> AttentionOutput:
    """Call ``attn`` with the protocol's arguments; features only when they are used.

    Raises:
        ValueError: ``attn`` lacks a feature this call needs (one line naming it).
    """
    kwargs: dict[str, object] = {"mask": mask, "need_weights": need_weights}
    if bias is not None:
        kwargs["bias"] = bias
    if causal:
        kwargs["causal"] = causal
    if cache is not None:
        kwargs["cache"] = cache
    accepted = _keywords(type(attn))
    if accepted is not None:
        missing = [name for name in kwargs if name not in accepted]
        if missing:
            name = missing[0]
            raise ValueError(
                f"{type(attn).__name__} takes no {name}=, which this stack needs for "
                f"{_FEATURES.get(name, name)}; use an attention module that has it "
                "(e.g. MultiHeadAttention)"
            )
    args = (query,) if key is None else (query, key)
    return attn(*args, **kwargs)
