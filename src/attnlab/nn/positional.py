r"""Positions for attention: added encodings, rotary q/k, and biases for ``bias=``.

Added to embeddings ``(B, L, E)``: :class:`SinusoidalPositionalEncoding`,
:class:`LearnedPositionalEmbedding`. Inside attention: :class:`RotaryEmbedding` rotates
q and k ``(B, H, L, D)``; :class:`ALiBi` and :class:`RelativePositionBias` give float
logits ``(1, H, Lq, Lk)`` for ``attnlab.functional.attention(..., bias=...)``. Query
``i`` sits at position ``i + offset``, key ``j`` at ``j``; the biases default to
``offset = Lk - Lq`` (lower-right, as when decoding after a KV cache of ``Lk - Lq``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn._checks import (
    as_positive,
    as_size,
    check_tensor,
    factory_kwargs,
    probability,
    real,
)

Device = torch.device | str | None
DType = torch.dtype | None


def _check_input(x: Tensor, dim: int, offset: int, layout: str = "B, L") -> None:
    # Any floating dtype is fine: the encodings are cast to x's dtype.
    if check_tensor("x", x).dim() < 2 or x.shape[-1] != dim:
        raise ValueError(f"x must be ({layout}, {dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
    as_size("offset", offset)


def _sinusoids(length: int, dim: int, device: Device) -> Tensor:
    """``pe[pos, 2i] = sin(pos / 10000^(2i/dim))``, ``pe[pos, 2i+1] = cos(...)``, float32."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = pos * inv_freq
    return torch.stack((angles.sin(), angles.cos()), dim=-1).reshape(length, dim)


class SinusoidalPositionalEncoding(nn.Module):
    r"""Fixed sine/cosine encoding of Vaswani et al. 2017, "Attention Is All You Need".

    .. math::
        PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d}), \qquad
        PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d}), \qquad
        y = \mathrm{dropout}(x + PE_{offset : offset + L})

    The table is a non-persistent buffer (not in ``state_dict``), recomputed larger
    when ``offset + L`` exceeds it: ``max_len`` is only its initial size.

    Args:
        dim: embedding size ``E`` (even).
        max_len: initial number of tabulated positions.
        dropout: dropout on the sum.

    Shapes:
        x ``(B, L, E)`` -> ``(B, L, E)``.

    Example:
        >>> SinusoidalPositionalEncoding(4)(torch.zeros(1, 2, 4))[0, 1, :2]  # sin(1), cos(1)
        tensor([0.8415, 0.5403])
    """

    pe: Tensor

    def __init__(
        self,
        dim: int,
        *,
        max_len: int = 4096,
        dropout: float = 0.0,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__()
        factory_kwargs(device, dtype)
        dim, max_len = as_positive("dim", dim), as_positive("max_len", max_len)
        if dim % 2:
            raise ValueError(f"dim must be even (sin/cos pairs), got {dim}")
        self.dim, self.max_len = dim, max_len
        self.dropout = nn.Dropout(probability("dropout", dropout))
        pe = _sinusoids(max_len, dim, device).to(dtype or torch.get_default_dtype())
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Add the encodings of positions ``offset .. offset + L - 1`` to ``x``."""
        _check_input(x, self.dim, offset)
        end = offset + x.shape[-2]
        if end > self.pe.shape[0]:
            self.max_len = max(end, 2 * self.pe.shape[0])
            self.pe = _sinusoids(self.max_len, self.dim, x.device).to(self.pe.dtype)
        return self.dropout(x + self.pe[offset:end].to(device=x.device, dtype=x.dtype))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"dim={self.dim}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    r"""Learned absolute positions (Gehring et al. 2017; BERT, GPT-2): a table per position.

    .. math::
        y = \mathrm{dropout}(x + P_{offset : offset + L}), \qquad
        P \in \mathbb{R}^{\text{max\_len} \times E}, \ P \sim \mathcal{N}(0, 0.02^2)

    Args:
        max_len: number of learned positions; longer inputs are an error.
        dim: embedding size ``E``.
        dropout: dropout on the sum.

    Shapes:
        x ``(B, L, E)`` with ``offset + L <= max_len`` -> ``(B, L, E)``.

    Example:
        >>> LearnedPositionalEmbedding(16, 4)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(
        self,
        max_len: int,
        dim: int,
        *,
        dropout: float = 0.0,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.max_len = max_len = as_positive("max_len", max_len)
        self.dim = dim = as_positive("dim", dim)
        self.embedding = nn.Embedding(max_len, dim, **factory)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = nn.Dropout(probability("dropout", dropout))

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Add the embeddings of positions ``offset .. offset + L - 1`` to ``x``."""
        _check_input(x, self.dim, offset)
        end = offset + x.shape[-2]
        if end > self.max_len:
            raise ValueError(
                f"positions up to {end - 1} (offset {offset} + length {x.shape[-2]}) "
                f"exceed max_len={self.max_len} learned positions"
            )
        pos = torch.arange(offset, end, device=self.embedding.weight.device)
        return self.dropout(x + self.embedding(pos).to(x.dtype))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"max_len={self.max_len}, dim={self.dim}"


def _rotary_frequencies(head_dim: int, base: float, device: Device) -> Tensor:
    # Same expression as GPT-NeoX / Llama in Hugging Face transformers.
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (base**exponents)


class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding (RoPE) of Su et al. 2021, "RoFormer".

    Rotates the pair :math:`(x_m, x_{m + D/2})` at position :math:`p` by the angle
    :math:`p\,\theta_m` ("rotate half" layout of GPT-NeoX, Llama and Hugging Face):

    .. math::
        \theta_m = \text{base}^{-2m/D}, \qquad
        \mathrm{RoPE}(x, p) = x \odot \cos(p\theta) + \mathrm{rot}(x) \odot \sin(p\theta),
        \qquad \mathrm{rot}([x_1; x_2]) = [-x_2; x_1]

    so :math:`\langle \mathrm{RoPE}(q, p), \mathrm{RoPE}(k, p') \rangle` depends on
    :math:`p - p'` only. Computed in float32 (frequencies stay float32 whatever the
    module's dtype), cast back to ``x.dtype``.

    Args:
        head_dim: ``D``, even.
        base: the wavelength base (10000 in the paper).

    Shapes:
        x ``(B, H, L, D)`` (any ``(..., L, D)``); positions ``(L,)`` or ``(B, L)``
        (then x must be 4-D) -> same shape and dtype as x.

    Example:
        >>> rope = RotaryEmbedding(8)
        >>> q = torch.randn(1, 2, 5, 8)
        >>> torch.allclose(rope(q)[:, :, 3:4], rope(q[:, :, 3:4], offset=3), atol=1e-6)
        True
    """

    inv_freq: Tensor

    def __init__(
        self, head_dim: int, *, base: float = 10000.0, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__()
        factory_kwargs(device, dtype)
        head_dim = as_positive("head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even (rotated pairs), got {head_dim}")
        if not real("base", base) > 1.0:
            raise ValueError(f"base must be > 1, got {base}")
        self.head_dim, self.base = head_dim, float(base)
        # dtype is accepted for the uniform factory signature; frequencies stay float32.
        inv_freq = _rotary_frequencies(head_dim, self.base, device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Float32 ``cos`` and ``sin`` of the angles, ``(*positions.shape, D)``."""
        inv_freq = self.inv_freq
        if inv_freq.dtype != torch.float32:  # the module was cast: recompute, do not lose bits
            inv_freq = _rotary_frequencies(self.head_dim, self.base, inv_freq.device)
        angles = positions.to(device=inv_freq.device, dtype=torch.float32)[..., None] * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    def forward(self, x: Tensor, offset: int = 0, *, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` at positions ``offset .. offset + L - 1`` (or the given ``positions``)."""
        _check_input(x, self.head_dim, offset, "B, H, L")
        length = x.shape[-2]
        if positions is None:
            positions = torch.arange(offset, offset + length, device=x.device)
        elif offset != 0:
            raise ValueError("pass either offset or positions, not both")
        elif positions.dim() == 2 and x.dim() == 4 and positions.shape == (x.shape[0], length):
            positions = positions[:, None]  # (B, 1, L): the same positions in every head
        elif positions.shape != (length,):
            raise ValueError(
                f"positions must be (L,) = ({length},) or (B, L) = ({x.shape[0]}, {length}) "
                f"with 4-D x, got {tuple(positions.shape)}"
            )
        cos, sin = self.cos_sin(positions.to(x.device))
        x1, x2 = x.float().chunk(2, dim=-1)
        return (x.float() * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"head_dim={self.head_dim}, base={self.base}"


def alibi_slopes(num_heads: int, *, device: Device = None) -> Tensor:
    r"""The per-head ALiBi slopes of Press et al. 2022, float32 ``(H,)``.

    For :math:`H = 2^n` heads: :math:`m_h = 2^{-8h/H}`, :math:`h = 1..H` (8 heads:
    1/2, 1/4, ..., 1/256). Otherwise the slopes of the closest smaller power of two
    :math:`P`, followed by every other slope of :math:`2P` heads (the odd-indexed ones,
    which fall between them), as in the paper's reference code.

    Example:
        >>> alibi_slopes(4)
        tensor([0.2500, 0.0625, 0.0156, 0.0039])
    """
    num_heads = as_positive("num_heads", num_heads)

    def power_of_2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32, device=device)


def _relative_positions(
    lq: int, lk: int, offset: int | None, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """``(Lq, Lk)`` key position minus query position, queries at ``offset ..``."""
    lq, lk = as_size("lq", lq), as_size("lk", lk)
    offset = lk - lq if offset is None else offset
    q_pos = torch.arange(offset, offset + lq, device=device, dtype=dtype)
    return torch.arange(lk, device=device, dtype=dtype)[None, :] - q_pos[:, None]


class ALiBi(nn.Module):
    r"""Attention with Linear Biases of Press et al. 2022 ("Train Short, Test Long").

    A fixed, head-specific penalty proportional to the query-key distance, passed to
    :func:`attnlab.functional.attention` as ``bias=``; no position embeddings needed:

    .. math::
        b_{h,i,j} = -m_h \,(p_i - j) \ \text{(causal)}, \qquad
        b_{h,i,j} = -m_h \,|p_i - j| \ \text{(bidirectional)}, \qquad p_i = i + \text{offset}

    with slopes :math:`m_h` from :func:`alibi_slopes`. The causal bias is positive for
    future keys; mask them (``causal="lower_right"``) as in any causal model.

    Args:
        num_heads: ``H``.
        causal: signed distance (causal models) or absolute distance (encoders).

    Shapes:
        ``forward(Lq, Lk)`` -> ``(1, H, Lq, Lk)``; ``slopes`` is ``(H,)``.

    Example:
        >>> ALiBi(2)(1, 3)[0, :, 0]  # one query at position 2, slopes 1/16 and 1/256
        tensor([[-0.1250, -0.0625,  0.0000],
                [-0.0078, -0.0039,  0.0000]])
    """

    slopes: Tensor

    def __init__(
        self, num_heads: int, *, causal: bool = True, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__()
        factory_kwargs(device, dtype)
        self.num_heads, self.causal = as_positive("num_heads", num_heads), causal
        slopes = alibi_slopes(num_heads, device=device).to(dtype or torch.float32)
        self.register_buffer("slopes", slopes, persistent=False)

    def forward(
        self,
        lq: int,
        lk: int,
        *,
        offset: int | None = None,
        device: Device = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """The bias for ``lq`` queries at ``offset ..`` (default ``lk - lq``) and ``lk`` keys."""
        device = self.slopes.device if device is None else device
        rel = _relative_positions(lq, lk, offset, device, torch.float32)
        # -(p_i - j), or -|p_i - j| as min(j - p_i, p_i - j): +0.0 (not -0.0) on the diagonal.
        rel = rel if self.causal else torch.minimum(rel, -rel)
        slopes = self.slopes.to(device=device, dtype=torch.float32)
        return (slopes[:, None, None] * rel).unsqueeze(0).to(dtype)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"num_heads={self.num_heads}, causal={self.causal}"


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    r"""T5's bucket of each relative position ``key_pos - query_pos`` (Raffel et al. 2020).

    Of the :math:`n` buckets per direction, half hold the exact distances below
    :math:`n/2`, the rest grow logarithmically up to ``max_distance``, beyond which all
    share the last. Not bidirectional: keys after the query share bucket 0.

    .. math::
        \mathrm{bucket}(r) = \begin{cases} r & r < n/2 \\
        \min\!\left(n - 1,\ \frac n2 + \left\lfloor
        \frac{\log(2r/n)}{\log(2\,\text{max\_distance}/n)} \frac n2 \right\rfloor\right)
        & \text{otherwise} \end{cases}

    Example:
        >>> relative_position_bucket(
        ...     torch.tensor([-3, 0, 3, 200]), bidirectional=True, num_buckets=32, max_distance=128
        ... )
        tensor([ 3,  0, 19, 31])
    """
    if relative_position.is_floating_point() or relative_position.dtype == torch.bool:
        raise TypeError(
            f"relative_position must be an integer tensor, got {relative_position.dtype}"
        )
    n = num_buckets // 2 if bidirectional else num_buckets
    max_exact = n // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise ValueError(
            f"need num_buckets >= {4 if bidirectional else 2} and max_distance > "
            f"{max(max_exact, 1)}, got num_buckets={num_buckets}, max_distance={max_distance}"
        )
    rel = relative_position.long()
    if bidirectional:
        buckets = (rel > 0).long() * n
        distance = rel.abs()
    else:
        buckets = torch.zeros_like(rel)
        distance = (-rel).clamp(min=0)
    # Same float32 operations, in the same order, as Mesh TensorFlow and transformers.
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact)
    large = max_exact + (log_ratio / math.log(max_distance / max_exact) * (n - max_exact)).long()
    large = large.clamp(max=n - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    r"""Learned relative position logits, bucketed as in T5 (Raffel et al. 2020).

    Shaw et al. 2018 ("Self-Attention with Relative Position Representations") learn a
    vector per clipped distance; T5 simplifies it to one scalar per head and
    log-spaced bucket of :math:`j - p_i`, added to the attention logits:

    .. math::
        b_{h,i,j} = w_{h,\ \mathrm{bucket}(j - p_i)}, \qquad p_i = i + \text{offset}

    (see :func:`relative_position_bucket`). Pass the result as ``bias=``.

    Args:
        num_heads: ``H``.
        num_buckets: learned buckets (split between directions when bidirectional).
        max_distance: distances from here on share the last bucket.
        bidirectional: own buckets for keys after the query (encoders); False: decoders.

    Shapes:
        ``forward(Lq, Lk)`` -> ``(1, H, Lq, Lk)`` in the embedding's dtype.

    Example:
        >>> RelativePositionBias(3, num_buckets=8, max_distance=16)(4, 6).shape
        torch.Size([1, 3, 4, 6])
    """

    relative_position_bucket = staticmethod(relative_position_bucket)

    def __init__(
        self,
        num_heads: int,
        *,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.num_heads = num_heads = as_positive("num_heads", num_heads)
        self.num_buckets = num_buckets = as_positive("num_buckets", num_buckets)
        self.max_distance = as_positive("max_distance", max_distance)
        self.bidirectional = bidirectional
        self._buckets(torch.zeros(1, dtype=torch.long))  # validates the settings now
        self.embedding = nn.Embedding(num_buckets, num_heads, **factory)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, lq: int, lk: int, *, offset: int | None = None) -> Tensor:
        """The bias for ``lq`` queries at ``offset ..`` (default ``lk - lq``) and ``lk`` keys."""
        rel = _relative_positions(lq, lk, offset, self.embedding.weight.device, torch.long)
        return self.embedding(self._buckets(rel)).permute(2, 0, 1).unsqueeze(0)

    def _buckets(self, rel: Tensor) -> Tensor:
        return relative_position_bucket(
            rel,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, bidirectional={self.bidirectional}"
        )
