r"""Multi-head attention (Vaswani et al. 2017) with grouped-query heads and a KV cache.

.. math::
    \mathrm{MHA}(Q, K, V) = [\mathrm{head}_1; \dots; \mathrm{head}_H] W^O, \qquad
    \mathrm{head}_h = \mathrm{softmax}\!\left(\frac{Q W^Q_h (K W^K_{g(h)})^\top}{\sqrt{d}}
    + B_h\right) V W^V_{g(h)}

With ``kv_heads = H`` every head has its own keys and values; ``1 < kv_heads < H``
is grouped-query attention (Ainslie et al. 2023: ``H / kv_heads`` query heads share a
key/value head, ``g(h) = h // (H / kv_heads)``) and ``kv_heads = 1`` multi-query
attention (Shazeer 2019). The attention itself is the library's one core
(:func:`attnlab.functional.attention`): SDPA's fused kernels by default, the exact
pre-dropout probabilities only when ``need_weights=True``.

:meth:`MultiHeadAttention.from_torch` and :meth:`MultiHeadAttention.to_torch` convert
to and from ``torch.nn.MultiheadAttention``; masks in torch's convention convert with
:func:`attnlab.masks.from_key_padding_mask` and :func:`attnlab.masks.from_torch_attn_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput, attention
from attnlab.functional.attention import Backend
from attnlab.masks.patterns import SparsePattern
from attnlab.nn._checks import (
    as_positive,
    check_backend,
    check_heads,
    factory_kwargs,
    probability,
)
from attnlab.nn._common import check_batch_first, heads_mask

__all__ = ["KVCache", "MultiHeadAttention"]


@dataclass
class KVCache:
    """Keys and values of earlier decoding steps, extended in place by each call.

    ``static=True`` is a cross-attention cache: the first call projects the memory,
    later calls reuse it and ignore their ``key``/``value`` arguments.

    Attributes:
        key: ``(B, kv_heads, L, D)`` after rotary encoding, or None before the first call.
        value: ``(B, kv_heads, L, D)`` or None.
        static: cross-attention cache (filled once).
    """

    key: Tensor | None = None
    value: Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        """Number of cached positions."""
        return 0 if self.key is None else self.key.shape[-2]

    def select(self, index: Tensor) -> KVCache:
        """The cache of batch rows ``index`` (beam search reorders hypotheses with it)."""
        if self.key is None or self.value is None:
            return KVCache(static=self.static)
        return KVCache(
            self.key.index_select(0, index), self.value.index_select(0, index), self.static
        )


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention, batch-first, on the library's core.

    Args:
        embed_dim: query (and output) size ``E``.
        num_heads: query heads ``H``; ``E`` must divide by it.
        kdim: key input size (default ``E``).
        vdim: value input size (default ``E``).
        kv_heads: key/value heads (default ``H``; ``H`` must divide by it).
        bias: biases in the four projections.
        dropout: dropout on the attention probabilities while training.
        rotary: a :class:`~attnlab.nn.positional.RotaryEmbedding` applied to queries
            and keys after projection (positions continue after a KV cache).
        backend: the core's engine, ``"auto"`` by default.
        pattern: a sparsity pattern (:mod:`attnlab.masks.patterns`, e.g. a sliding
            window or BigBird) applied on every call, on top of ``mask``: long inputs
            then run on the blockwise engines in O(L * window). With a KV cache, give
            the pattern ``alignment="lower_right"``.

    Shapes:
        query ``(B, Lq, E)``, key ``(B, Lk, kdim)``, value ``(B, Lk, vdim)`` (both default
        to ``query``); mask ``(B, Lk)``, ``(B, Lq, Lk)`` or ``(B, H, Lq, Lk)``, True = may
        attend; bias broadcastable to ``(B, H, Lq, Lk)`` -> output ``(B, Lq, E)``, weights
        ``(B, H, Lq, Lk)`` (``(B, Lq, Lk)`` with ``average_weights``).

    Example:
        >>> mha = MultiHeadAttention(16, 4, kv_heads=2)
        >>> out, w = mha(torch.randn(2, 5, 16), need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 4, 5, 5]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        rotary: nn.Module | None = None,
        backend: Backend = "auto",
        pattern: SparsePattern | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        embed_dim, num_heads = check_heads("embed_dim", embed_dim, num_heads)
        kv_heads = num_heads if kv_heads is None else as_positive("kv_heads", kv_heads)
        if num_heads % kv_heads:
            raise ValueError(
                f"num_heads {num_heads} does not divide into kv_heads {kv_heads} groups; "
                "choose kv_heads among the divisors of num_heads"
            )
        if rotary is not None and not isinstance(rotary, nn.Module):
            raise TypeError(
                f"rotary must be a RotaryEmbedding or None, got {type(rotary).__name__}"
            )
        if pattern is not None and not isinstance(pattern, SparsePattern):
            raise TypeError(
                f"pattern must be a SparsePattern (attnlab.masks.patterns) or None, got "
                f"{type(pattern).__name__}"
            )
        self.embed_dim, self.num_heads, self.kv_heads = embed_dim, num_heads, kv_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else as_positive("kdim", kdim)
        self.vdim = embed_dim if vdim is None else as_positive("vdim", vdim)
        self.dropout = probability("dropout", dropout)
        self.backend, self.rotary = check_backend(backend), rotary
        self.pattern = pattern
        kv_size = kv_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, kv_size, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, kv_size, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    def extra_repr(self) -> str:
        """Sizes and options, shown by ``repr``."""
        extra = f", kv_heads={self.kv_heads}" if self.kv_heads != self.num_heads else ""
        if (self.kdim, self.vdim) != (self.embed_dim, self.embed_dim):
            extra += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.pattern is not None:
            extra += f", pattern={self.pattern}"
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{extra}, dropout={self.dropout}"
        )

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        average_weights: bool = False,
        cache: KVCache | None = None,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``key``/``value`` (self-attention when omitted).

        Args:
            query: ``(B, Lq, E)``.
            key: ``(B, Lk, kdim)``; default ``query``.
            value: ``(B, Lk, vdim)``; default ``key``.
            mask: boolean, True = may attend: ``(B, Lk)`` key mask, ``(B, Lq, Lk)`` or
                ``(B, H, Lq, Lk)`` (a 2-D mask is a key mask: pass one mask for all
                rows as ``(1, Lq, Lk)``); with a cache, ``Lk`` counts the cached keys.
            bias: float logits broadcastable to ``(B, H, Lq, Lk)`` (ALiBi, relative).
            causal: query ``i`` (the ``i``-th of the last ``Lq`` positions) sees keys up to
                its own position (lower-right aligned, so it holds with a cache).
            need_weights: also return the exact pre-dropout probabilities.
            average_weights: average the returned weights over heads.
            cache: a :class:`KVCache` extended in place (incremental decoding).

        Returns:
            :class:`~attnlab.functional.AttentionOutput` ``(output (B, Lq, E), weights or
            None)``, with ``.engine`` the core's engine.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check(query, key, value, cache)
        b, lq, _ = query.shape
        q = self.q_proj(query).view(b, lq, self.num_heads, self.head_dim).transpose(1, 2)
        offset = 0 if cache is None or cache.static else cache.length
        if self.rotary is not None:
            q = self.rotary(q, offset=offset)
        if cache is not None and cache.static and cache.key is not None:
            k, v = cache.key, cache.value
        else:
            k, v = self._project_keys(key, value, offset)
            if cache is not None:
                if cache.key is not None and not cache.static:
                    k = torch.cat([cache.key, k], dim=-2)
                    v = torch.cat([cache.value, v], dim=-2)
                cache.key, cache.value = k, v
        if self.kv_heads != self.num_heads:
            k, v = _repeat_heads(k, self.num_heads), _repeat_heads(v, self.num_heads)
        out, weights = res = attention(
            q,
            k,
            v,
            mask=heads_mask(mask, (b, self.num_heads, lq, k.shape[-2])),
            bias=bias,
            causal="lower_right" if causal else False,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
            backend=self.backend,
            pattern=self.pattern,
        )
        out = self.out_proj(out.transpose(1, 2).reshape(b, lq, self.embed_dim))
        if weights is not None and average_weights:
            weights = weights.mean(dim=1)
        return AttentionOutput(out, weights, res.engine)

    def _project_keys(self, key: Tensor, value: Tensor, offset: int) -> tuple[Tensor, Tensor]:
        b, lk, _ = key.shape
        k = self.k_proj(key).view(b, lk, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(b, lk, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rotary is not None:
            k = self.rotary(k, offset=offset)
        return k, v

    def _check(self, query: Tensor, key: Tensor, value: Tensor, cache: KVCache | None) -> None:
        check_batch_first(self, query, key, value, (self.embed_dim, self.kdim, self.vdim))
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
        if cache is not None and cache.key is not None and cache.key.shape[0] != query.shape[0]:
            raise ValueError(
                f"the KV cache holds a batch of {cache.key.shape[0]} but the query has "
                f"{query.shape[0]} rows; reorder it with cache.select(index) or start a new one"
            )

    # -- torch.nn.MultiheadAttention interoperability ---------------------------------
    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A module computing what ``module`` computes (batch-first inputs, our masks).

        Raises:
            ValueError: for ``add_bias_kv`` or ``add_zero_attn``, which have no equivalent.
        """
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "torch MultiheadAttention with add_bias_kv or add_zero_attn has no attnlab "
                "equivalent; build it without them"
            )
        has_bias = module.in_proj_bias is not None
        ours = cls(
            module.embed_dim,
            module.num_heads,
            kdim=module.kdim,
            vdim=module.vdim,
            bias=has_bias,
            dropout=module.dropout,
            device=module.out_proj.weight.device,
            dtype=module.out_proj.weight.dtype,
        )
        ours.load_torch_state_dict(module.state_dict())
        return ours

    def load_torch_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a ``torch.nn.MultiheadAttention`` state dict (packed or separate weights)."""
        if self.kv_heads != self.num_heads:
            raise ValueError("torch MultiheadAttention has no grouped-query heads; use kv_heads=H")
        e = self.embed_dim
        if "in_proj_weight" in state:
            weights = state["in_proj_weight"].split(e)
        else:
            needed = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
            missing = [k for k in needed if k not in state]
            if missing:
                raise KeyError(f"not a MultiheadAttention state dict: missing {missing}")
            weights = tuple(state[k] for k in needed)
        ours = {}
        for name, w in zip(("q_proj", "k_proj", "v_proj"), weights):
            ours[f"{name}.weight"] = w
        if "in_proj_bias" in state:
            for name, b in zip(("q_proj", "k_proj", "v_proj"), state["in_proj_bias"].split(e)):
                ours[f"{name}.bias"] = b
        ours["out_proj.weight"] = state["out_proj.weight"]
        if "out_proj.bias" in state:
            ours["out_proj.bias"] = state["out_proj.bias"]
        self.load_state_dict(ours)

    def to_torch(self, *, batch_first: bool = True) -> nn.MultiheadAttention:
        """The equivalent ``torch.nn.MultiheadAttention`` (no rotary, no grouped heads)."""
        if self.kv_heads != self.num_heads or self.rotary is not None:
            raise ValueError(
                "torch MultiheadAttention has no grouped-query heads or rotary positions; "
                "only a module with kv_heads=num_heads and rotary=None converts"
            )
        w = self.out_proj.weight
        module = nn.MultiheadAttention(
            self.embed_dim,
            self.num_heads,
            dropout=self.dropout,
            bias=self.out_proj.bias is not None,
            kdim=self.kdim,
            vdim=self.vdim,
            batch_first=batch_first,
            device=w.device,
            dtype=w.dtype,
        )
        projections = (self.q_proj, self.k_proj, self.v_proj)
        state = {"out_proj.weight": w}
        if module._qkv_same_embed_dim:
            state["in_proj_weight"] = torch.cat([p.weight for p in projections])
        else:
            for name, p in zip(("q", "k", "v"), projections):
                state[f"{name}_proj_weight"] = p.weight
        if self.out_proj.bias is not None:
            state["in_proj_bias"] = torch.cat([p.bias for p in projections])
            state["out_proj.bias"] = self.out_proj.bias
        module.load_state_dict({k: v.detach().clone() for k, v in state.items()})
        return module


def _repeat_heads(t: Tensor, heads: int) -> Tensor:
    """``(B, G, L, D)`` -> ``(B, heads, L, D)``, each group repeated for its query heads."""
    b, g, length, d = t.shape
    return t.unsqueeze(2).expand(b, g, heads // g, length, d).reshape(b, heads, length, d)
