r"""The non-local block of Wang et al. 2018, with its four pairwise functions.

From "Non-local Neural Networks" (CVPR 2018). Every position of a feature map is
replaced by a weighted sum over all positions, and added back through a projection
whose normalisation starts at zero, so the block starts as the identity:

.. math::
    y_i = \frac{1}{\mathcal{C}(x)} \sum_j f(x_i, x_j)\, g(x_j), \qquad
    z_i = \mathrm{BN}(W_z y_i) + x_i

with :math:`\theta, \phi, g` 1x1 convolutions to ``inter_channels`` and (the first two
are a softmax over the keys):

=====================  ==================================================  ======================
pairwise               :math:`f(x_i, x_j)`                                 :math:`\mathcal{C}(x)`
=====================  ==================================================  ======================
``embedded-gaussian``  :math:`\exp(\theta_i^\top \phi_j)`                  :math:`\sum_j f`
``gaussian``           :math:`\exp(x_i^\top x_j)`                          :math:`\sum_j f`
``dot-product``        :math:`\theta_i^\top \phi_j`                        :math:`N`
``concatenation``      :math:`\mathrm{ReLU}(w_f^\top [\theta_i; \phi_j])`  :math:`N`
=====================  ==================================================  ======================

N is the number of key positions (those of :math:`\phi`, ``H W`` or, subsampled,
``floor(H/2) floor(W/2)``). None of the four forms the ``(HW x HW')`` matrix unless
weights are asked for:

* the two softmax forms run through :func:`attnlab.functional.attention` (SDPA, or
  the chunked engine), in linear memory;
* dot-product has no softmax, so it is computed right to left,
  :math:`y = \theta (\phi^\top g) / N`: a ``(C' x C')`` product instead of
  ``(HW x HW')``;
* concatenation looks as if it needed every pair, but its :math:`w_f` projects to a
  scalar, so :math:`f_{ij} = \mathrm{ReLU}(a_i + b_j)` with :math:`a = \theta w_\theta`,
  :math:`b = \phi w_\phi` (``w_f = [w_theta; w_phi]``). With the keys sorted by
  :math:`b_j`, descending, the keys where :math:`a_i + b_j > 0` are the first
  :math:`k_i`, so :math:`N y_i = a_i \sum_{j < k_i} g_j + \sum_{j < k_i} b_j g_j`
  (sums in sorted order): two prefix sums and a binary search for :math:`k_i`. Exact,
  ``O(N log N)`` time and linear memory; only ``need_weights`` builds the matrix.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from attnlab._validate import lookup
from attnlab.functional import AttentionOutput, Dot, attention
from attnlab.nn._checks import as_positive, factory_kwargs, optional_size
from attnlab.vision._checks import check_image

__all__ = ["PAIRWISE", "NonLocalBlock"]

# The pairwise functions of the paper, by the names people type.
PAIRWISE = ("embedded-gaussian", "gaussian", "dot-product", "concatenation")
_SOFTMAX = ("embedded-gaussian", "gaussian")


class NonLocalBlock(nn.Module):
    r"""Non-local block (Wang et al. 2018): every position attends to every position.

    See the module docstring for the formula of each pairwise function and how each
    avoids the ``(HW x HW')`` matrix. ``W_z`` is a 1x1 convolution followed by a
    BatchNorm whose weight (gamma) starts at zero, so a new block returns its input.

    Args:
        channels: ``C``, channels of the input map (and of the output).
        inter_channels: ``C'``, width of :math:`\theta, \phi, g`; default ``C // 2``
            (at least 1).
        pairwise: ``"embedded-gaussian"`` (default), ``"gaussian"``, ``"dot-product"``
            or ``"concatenation"``.
        subsample: 2x2 max-pool :math:`\phi` and :math:`g` (the keys and values), which
            divides the pairwise work by 4; needs ``H, W >= 2``.
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        x ``(B, C, H, W)`` -> context ``(B, C, H, W)``; weights ``(B, HW, HW')`` (the
        :math:`f / \mathcal{C}` that was applied; rows sum to 1 for the softmax forms),
        only with ``need_weights=True``. ``HW' = HW``, or ``floor(H/2) floor(W/2)``
        with ``subsample``.

    Example:
        >>> block = NonLocalBlock(8, pairwise="dot-product", subsample=True)
        >>> x = torch.randn(2, 8, 6, 4)
        >>> z, w = block(x, need_weights=True)
        >>> z.shape, w.shape, torch.equal(z, x)  # identity at initialisation
        (torch.Size([2, 8, 6, 4]), torch.Size([2, 24, 6]), True)
    """

    def __init__(
        self,
        channels: int,
        inter_channels: int | None = None,
        *,
        pairwise: str = "embedded-gaussian",
        subsample: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.channels = channels = as_positive("channels", channels)
        inner = optional_size("inter_channels", inter_channels)
        self.inter_channels = inner = max(channels // 2, 1) if inner is None else inner
        self.pairwise = lookup({p: p for p in PAIRWISE}, pairwise, "pairwise function")
        if not isinstance(subsample, bool):
            raise TypeError(f"subsample must be True or False, got {subsample!r}")
        self.subsample = subsample
        if self.pairwise != "gaussian":  # the Gaussian compares the raw inputs
            self.theta = nn.Conv2d(channels, inner, 1, **factory)
            self.phi = nn.Conv2d(channels, inner, 1, **factory)
        if self.pairwise == "concatenation":
            # w_f, split as [w_theta; w_phi]: it scores the concatenation [theta_i; phi_j].
            self.w_f = nn.Parameter(torch.empty(2 * inner, **factory))
            bound = (2 * inner) ** -0.5  # nn.Linear's default for a (2C' -> 1) layer
            nn.init.uniform_(self.w_f, -bound, bound)
        self.g = nn.Conv2d(channels, inner, 1, **factory)
        self.proj = nn.Conv2d(inner, channels, 1, **factory)  # W_z
        self.norm = nn.BatchNorm2d(channels, **factory)
        nn.init.zeros_(self.norm.weight)  # z = x at initialisation

    def forward(self, x: Tensor, *, need_weights: bool = False) -> AttentionOutput:
        """``z = BN(W_z y) + x``; the weights ``f / C(x)`` only when ``need_weights``."""
        self._check(x)
        batch, _, height, width = x.shape
        value = _positions(self._pool(self.g(x)))
        if self.pairwise == "gaussian":
            query, key = _positions(x), _positions(self._pool(x))
        else:
            query, key = _positions(self.theta(x)), _positions(self._pool(self.phi(x)))
        if self.pairwise in _SOFTMAX:
            y, weights = _softmax(query, key, value, need_weights)
        elif self.pairwise == "dot-product":
            y, weights = _dot_product(query, key, value, need_weights)
        else:
            w_theta, w_phi = self.w_f.chunk(2)
            y, weights = _concatenation(query @ w_theta, key @ w_phi, value, need_weights)
        # (B, HW, C') -> (B, C', H, W) is a view (channels_last strides): no copy.
        y = y.transpose(1, 2).reshape(batch, self.inter_channels, height, width)
        return AttentionOutput(x + self.norm(self.proj(y)), weights)

    def _pool(self, t: Tensor) -> Tensor:
        return F.max_pool2d(t, 2) if self.subsample else t

    def _check(self, x: object) -> None:
        x = check_image(x, self.channels, owner=self)
        if self.subsample and min(x.shape[2:]) < 2:
            raise ValueError(
                f"subsample=True max-pools 2x2, so it needs H, W >= 2; got "
                f"{tuple(x.shape[2:])}; use subsample=False on maps this small"
            )

    @classmethod
    def from_timm(
        cls,
        source: nn.Module | Mapping[str, Tensor],
        *,
        use_scale: bool | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> NonLocalBlock:
        r"""The embedded-Gaussian block computing what timm's ``NonLocalAttn`` computes.

        timm scores :math:`s\, \theta_i^\top \phi_j` with :math:`s = C^{-1/2}` when
        ``use_scale`` (its default; C = input channels, not ``C'``), else :math:`s = 1`;
        the rest (biased 1x1 convolutions ``t, p, g, z``, then ``BatchNorm2d``, plus the
        input) is this block's ``embedded-gaussian`` form without ``subsample``. The
        scale is folded into :math:`\theta` (weight and bias times s), so outputs and
        input gradients are equal; the gradient of :math:`\theta`'s parameters is
        :math:`1/s` times timm's ``t``'s.

        Args:
            source: a timm ``NonLocalAttn``, or its ``state_dict()``.
            use_scale: what timm was built with; read from a module, default True for a
                state dict (timm's default).
            device: where to create the block.
            dtype: its dtype (default: the source's).

        Returns:
            A :class:`NonLocalBlock` with the source's parameters and BatchNorm state.
        """
        if isinstance(source, nn.Module):
            scale = float(source.scale)
            state = source.state_dict()
        elif isinstance(source, Mapping):
            state = dict(source)
            scale = None
        else:
            raise TypeError(
                f"source must be a timm NonLocalAttn or its state_dict, got {type(source).__name__}"
            )
        missing = {f"{n}.weight" for n in ("t", "p", "g", "z", "norm")} - set(state)
        if missing:
            raise ValueError(f"not a NonLocalAttn state_dict: no {', '.join(sorted(missing))}")
        if scale is None:
            scale = state["t.weight"].shape[1] ** -0.5 if use_scale in (None, True) else 1.0
        inner, channels = state["t.weight"].shape[:2]
        block = cls(
            channels,
            inner,
            device=device,
            dtype=state["t.weight"].dtype if dtype is None else dtype,
        )
        names = {"t": "theta", "p": "phi", "g": "g", "z": "proj", "norm": "norm"}
        ours = {f"{names[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in state.items()}
        ours["theta.weight"] = ours["theta.weight"] * scale
        ours["theta.bias"] = ours["theta.bias"] * scale
        block.load_state_dict(ours)
        return block

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"channels={self.channels}, inter_channels={self.inter_channels}, "
            f"pairwise={self.pairwise!r}, subsample={self.subsample}"
        )


def _positions(t: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, HW, C)``: one row per position (a view)."""
    return t.flatten(2).transpose(1, 2)


def _softmax(
    query: Tensor, key: Tensor, value: Tensor, need_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """``softmax(query key^T) value`` through the core, on SDPA's fused kernel.

    SDPA's CPU kernels need unit stride along channels and one width for queries,
    keys and values; otherwise torch silently runs its math fallback, which forms the
    ``(HW x HW')`` matrix. So rows are made contiguous (a no-op for ``channels_last``
    maps) and the narrower side is padded with zero channels, which change neither
    the scores nor the kept outputs (the Gaussian form has ``C`` wide queries and
    ``C'`` wide values).

    The block has one head, and SDPA's CPU backward splits its work by (batch, head)
    only: one image trains on one thread. Measured (torch 2.13, one head of 32,
    L = 8,192, forward+backward, a busy 2-core machine): 0.68 s on 1 thread, 0.8-3.7 s
    on 2 threads, 0.47-0.86 s on 2 threads with the queries in 2 groups. So when
    training on CPU with fewer images than threads, the queries are split into groups
    that SDPA sees as heads sharing the keys and values (a stride-0 view; their
    gradients are summed).
    """
    kept = value.shape[-1]
    width = max(query.shape[-1], kept)
    query, key, value = (
        F.pad(t, (0, width - t.shape[-1])).contiguous() for t in (query, key, value)
    )
    batch, length, _ = query.shape
    groups = 1 if need_weights else _query_groups(query, key, value)
    if groups == 1:
        out, weights = attention(query, key, value, score=Dot(), need_weights=need_weights)
        return out[..., :kept], weights
    shared = (batch, groups, key.shape[1], width)
    out, _ = attention(
        query.reshape(batch, groups, length // groups, width),
        key.unsqueeze(1).expand(shared),
        value.unsqueeze(1).expand(shared),
        score=Dot(),
    )
    return out.reshape(batch, length, width)[..., :kept], None


def _threads() -> int:
    return torch.get_num_threads()


def _query_groups(query: Tensor, key: Tensor, value: Tensor) -> int:
    """Query groups giving every CPU thread a (batch, group) of SDPA's backward (1: none)."""
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    batch, length = query.shape[:2]
    if not training or query.device.type != "cpu" or batch >= _threads():
        return 1
    groups = min(-(-_threads() // batch), length)
    while length % groups:  # equal groups; a prime HW gives no split
        groups -= 1
    return groups


def _dot_product(
    query: Tensor, key: Tensor, value: Tensor, need_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """``(theta phi^T / N) g`` as ``theta (phi^T g) / N``: ``(C' x C')``, not ``(HW x HW')``."""
    n = key.shape[1]
    y = query @ (key.transpose(1, 2) @ value / n)
    return y, (query @ key.transpose(1, 2) / n if need_weights else None)


def _concatenation(
    a: Tensor, b: Tensor, value: Tensor, need_weights: bool
) -> tuple[Tensor, Tensor | None]:
    r"""``y_i = sum_j ReLU(a_i + b_j) g_j / N`` with sorted keys and prefix sums.

    Args:
        a: :math:`\theta_i^\top w_\theta`, ``(B, HW)``.
        b: :math:`\phi_j^\top w_\phi`, ``(B, HW')``.
        value: :math:`g`, ``(B, HW', C')``.
        need_weights: also return ``ReLU(a_i + b_j) / N`` ``(B, HW, HW')``.
    """
    n, dtype = b.shape[1], value.dtype
    # Prefix sums over up to HW' terms: accumulate in at least float32.
    work = torch.promote_types(dtype, torch.float32)
    a, b, value = a.to(work), b.to(work), value.to(work)
    b_sorted, order = torch.sort(b, dim=1, descending=True)
    g_sorted = value.gather(1, order.unsqueeze(-1).expand_as(value))
    zero = value.new_zeros(value.shape[0], 1, value.shape[2])
    sum_g = torch.cat((zero, g_sorted.cumsum(1)), 1)  # (B, HW' + 1, C')
    sum_bg = torch.cat((zero, (b_sorted.unsqueeze(-1) * g_sorted).cumsum(1)), 1)
    # k_i = #{j : b_j > -a_i}; ties (a_i + b_j = 0) count as ReLU(0) = 0, as autograd does.
    k = torch.searchsorted(-b_sorted.detach(), a.detach().contiguous(), side="left")
    k = k.unsqueeze(-1).expand(-1, -1, value.shape[2])
    y = (a.unsqueeze(-1) * sum_g.gather(1, k) + sum_bg.gather(1, k)) / n
    weights = F.relu(a.unsqueeze(-1) + b.unsqueeze(1)) / n if need_weights else None
    return y.to(dtype), (None if weights is None else weights.to(dtype))
