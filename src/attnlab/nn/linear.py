r"""Multi-head linear attention (Katharopoulos et al. 2020) and Performer (Choromanski 2021).

.. math::
    \mathrm{head}_h = \frac{\phi(Q W^Q_h) \left(\phi(K W^K_h)^\top V W^V_h\right)}
                          {\phi(Q W^Q_h) \, \phi(K W^K_h)^\top \mathbf{1}}, \qquad
    \mathrm{out} = [\mathrm{head}_1; \dots; \mathrm{head}_H] W^O

The math lives in :func:`attnlab.functional.linear.linear_attention`; this module owns
the four projections and, for FAVOR+, the random projection (a buffer, saved in the
state dict so a loaded model computes the same thing).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.functional.linear import (
    DEFAULT_CHUNK,
    FEATURE_MAPS,
    FeatureMap,
    draw_orthogonal_features,
    linear_attention,
)
from attnlab.nn._checks import (
    as_positive,
    check_heads,
    factory_kwargs,
    optional_size,
    probability,
)
from attnlab.nn._common import check_batch_first

__all__ = ["LinearAttention", "default_num_features"]


def default_num_features(head_dim: int) -> int:
    """Performer's default feature count ``m = round(d ln d)`` (at least 1).

    Example:
        >>> default_num_features(64)
        266
    """
    return max(1, round(head_dim * math.log(head_dim)))


class LinearAttention(nn.Module):
    r"""Multi-head attention in time and memory linear in the sequence length.

    ``feature_map="elu"``: Katharopoulos et al. 2020, "Transformers are RNNs",
    :math:`\phi(x) = \mathrm{elu}(x) + 1`, a different attention from softmax.
    ``feature_map="favor"``: Performer's FAVOR+ (Choromanski et al. 2021, "Rethinking
    Attention with Performers"), ``num_features`` positive orthogonal random features
    whose attention approximates ``softmax(QK^T / sqrt(d))``; the projection can be
    redrawn (:meth:`redraw_features`), by hand or every ``redraw_interval`` training
    calls, as the paper does to keep one unlucky draw from being trained around.

    There are no attention weights: they would be the ``(Lq, Lk)`` matrix this method
    exists to avoid. The result is ``(context, None)``; ``need_weights=True`` raises;
    use :class:`~attnlab.nn.MultiHeadAttention` to look at weights. Called like every
    attention module a Transformer layer runs (``query, key, value, mask=, causal=,
    need_weights=``), so ``TransformerEncoder(..., attn_layer=LinearAttention,
    attention_dropout=0.0)`` is a linear-attention Transformer; it has no ``bias=``
    (ALiBi, relative positions) and no KV cache.

    Args:
        embed_dim: model size ``E`` (queries, keys, values and output).
        num_heads: heads ``H``; ``E`` must divide by it.
        feature_map: ``"elu"`` or ``"favor"``.
        num_features: FAVOR+'s ``m`` (default ``round(d ln d)``, ``d = E / H``); only
            for ``"favor"``.
        causal: each position attends to itself and earlier positions (self-attention),
            on every call (``causal=True`` in a call does it for that call).
        redraw_interval: with ``"favor"``, draw a new projection every this many
            training forward calls (never in eval); None keeps it fixed.
        bias: biases in the four projections.
        chunk_size: positions per chunk of the causal prefix sum.
        dropout: must be 0: there are no attention probabilities to drop (accepted so
            the module fits the attention factories of the Transformer layers).
        device: where parameters and buffers live.
        dtype: their dtype (the attention itself runs in at least float32).

    Shapes:
        query ``(B, Lq, E)``, key ``(B, Lk, E)`` and value ``(B, Lk, E)`` (both default
        to ``query``); mask ``(B, Lk)``, True = may attend -> output ``(B, Lq, E)``.

    Example:
        >>> attn = LinearAttention(16, 4, feature_map="favor", num_features=8, causal=True)
        >>> context, weights = attn(torch.randn(2, 5, 16))
        >>> context.shape, weights
        (torch.Size([2, 5, 16]), None)
    """

    projection: Tensor | None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        feature_map: FeatureMap = "elu",
        num_features: int | None = None,
        causal: bool = False,
        redraw_interval: int | None = None,
        bias: bool = True,
        chunk_size: int = DEFAULT_CHUNK,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        if probability("dropout", dropout) != 0:
            raise ValueError(
                f"linear attention forms no attention probabilities to drop, got dropout="
                f"{dropout}; pass 0 (in a Transformer layer: attention_dropout=0.0)"
            )
        embed_dim, num_heads = check_heads("embed_dim", embed_dim, num_heads)
        _check_feature_options(feature_map, num_features, redraw_interval)
        num_features = optional_size("num_features", num_features)
        redraw_interval = optional_size("redraw_interval", redraw_interval)
        chunk_size = as_positive("chunk_size", chunk_size)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.feature_map, self.causal, self.chunk_size = feature_map, causal, chunk_size
        self.redraw_interval = redraw_interval
        self.calls_since_redraw = 0  # training calls on the current projection
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.num_features = None
        if feature_map == "favor":
            self.num_features = num_features or default_num_features(self.head_dim)
            w = draw_orthogonal_features(self.num_features, self.head_dim, **factory)
            self.register_buffer("projection", w)
        else:
            self.register_buffer("projection", None)

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a new FAVOR+ projection in place (same buffer, same device and dtype).

        Under data parallelism, pass generators seeded alike on every rank (or
        broadcast the buffer), or the ranks will attend with different features.

        Args:
            generator: drawn from; default torch's global generator.

        Raises:
            ValueError: for ``feature_map="elu"``, which has no random features.
        """
        if self.projection is None:
            raise ValueError("feature_map='elu' has no random features to redraw")
        w = self.projection
        new = draw_orthogonal_features(*w.shape, generator=generator, device=w.device)
        w.copy_(new)
        self.calls_since_redraw = 0

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``key``/``value`` (self-attention when omitted).

        Args:
            query: ``(B, Lq, E)``.
            key: ``(B, Lk, E)``; default ``query``.
            value: ``(B, Lk, E)``; default ``key``.
            mask: boolean key mask ``(B, Lk)``, True = may attend (torch's
                ``key_padding_mask``, True = ignore, is its negation).
            causal: causal for this call (always causal when built with ``causal=True``).
            need_weights: must stay False: linear attention has no weights.

        Returns:
            :class:`~attnlab.functional.AttentionOutput` ``(output (B, Lq, E), None)``.
        """
        if need_weights:
            raise ValueError(
                "linear attention never forms attention weights (that is what makes it "
                "linear); use MultiHeadAttention with need_weights=True to inspect them"
            )
        key = query if key is None else key
        value = key if value is None else value
        causal = self.causal or causal
        self._check(query, key, value, causal)
        if self.training and self.redraw_interval is not None:
            if self.calls_since_redraw >= self.redraw_interval:
                self.redraw_features()
            self.calls_since_redraw += 1
        b, lq, _ = query.shape
        out = linear_attention(
            self._heads(self.q_proj(query)),
            self._heads(self.k_proj(key)),
            self._heads(self.v_proj(value)),
            feature_map=self.feature_map,
            projection=self.projection,
            mask=mask,
            causal=causal,
            chunk_size=self.chunk_size,
        )
        return AttentionOutput(self.out_proj(out.transpose(1, 2).reshape(b, lq, self.embed_dim)))

    def _heads(self, x: Tensor) -> Tensor:
        """``(B, L, E)`` -> ``(B, H, L, d)``."""
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _check(self, query: Tensor, key: Tensor, value: Tensor, causal: bool) -> None:
        check_batch_first(self, query, key, value, (self.embed_dim,) * 3)
        if causal and key.shape[1] != query.shape[1]:
            raise ValueError(
                f"causal linear attention is self-attention: Lq must equal Lk, got "
                f"{query.shape[1]} and {key.shape[1]}"
            )

    def extra_repr(self) -> str:
        """Sizes and options, shown by ``repr``."""
        extra = f", num_features={self.num_features}" if self.num_features else ""
        if self.redraw_interval is not None:
            extra += f", redraw_interval={self.redraw_interval}"
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"feature_map={self.feature_map!r}{extra}, causal={self.causal}"
        )


def _check_feature_options(
    feature_map: str, num_features: int | None, redraw_interval: int | None
) -> None:
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
    if feature_map != "favor" and (num_features is not None or redraw_interval is not None):
        raise ValueError(
            "num_features and redraw_interval are FAVOR+ options; pass feature_map='favor'"
        )
