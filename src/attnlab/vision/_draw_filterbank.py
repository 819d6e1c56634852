"""The pure functions of DRAW's filterbank attention; see :mod:`attnlab.vision.draw_attention`.

Kept apart so that each file stays small; import them from ``attnlab.vision.draw_attention``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab._validate import as_positive
from attnlab.functional import AttentionOutput, attention
from attnlab.functional.scores import Zero
from attnlab.vision._checks import check_image

__all__ = [
    "MIN_VARIANCE",
    "WINDOW_FIELDS",
    "draw_read",
    "draw_window",
    "draw_write",
    "filterbank_logits",
    "filterbanks",
    "gaussian_filterbank",
    "glimpse_boxes",
]

WINDOW_FIELDS = ("centre_x", "centre_y", "variance", "stride", "intensity")
"""The last dim of a window tensor: ``g_X``, ``g_Y`` (pixels, 1-based), ``sigma^2``,
``delta`` (pixels), ``gamma``."""

MIN_VARIANCE = 1e-6
"""Variances are floored here so that a collapsed filter stays finite (one-hot)."""

# The filterbank logits depend on the position alone: no query-key content term.
_POSITION_ONLY = Zero()


def _check_window(
    window: object, name: str = "window", fields: str = ", ".join(WINDOW_FIELDS), dims: int = 2
) -> Tensor:
    """``window`` itself when it is a floating ``(B, 5)`` tensor (any rank >= 1 for dims=0)."""
    if not isinstance(window, Tensor) or not window.is_floating_point():
        got = window.dtype if isinstance(window, Tensor) else type(window).__name__
        raise TypeError(f"{name} must be a floating tensor (B, 5), got {got}")
    if (dims and window.dim() != dims) or window.dim() == 0 or window.shape[-1] != 5:
        raise ValueError(f"{name} must be (B, 5) holding {fields}; got {tuple(window.shape)}")
    return window


def draw_window(params: Tensor, *, size: int, height: int, width: int) -> Tensor:
    """The window ``(g_X, g_Y, sigma^2, delta, gamma)`` from the linear layer's five outputs.

    Args:
        params: ``(g~X, g~Y, log sigma^2, log delta~, log gamma)`` in the last dim.
        size: ``N``, the grid's side.
        height: ``B``, the image height in pixels.
        width: ``A``, the image width in pixels.

    Shapes:
        params ``(B, 5)`` -> window ``(B, 5)`` (:data:`WINDOW_FIELDS`).

    Example:
        >>> draw_window(torch.zeros(1, 5), size=5, height=28, width=28).tolist()
        [[14.5, 14.5, 1.0, 6.75, 1.0]]
    """
    size = as_positive("size", size)
    height, width = as_positive("height", height), as_positive("width", width)
    gx, gy, log_var, log_stride, log_gamma = _check_window(
        params, "params", "g~X, g~Y, log sigma^2, log delta~, log gamma"
    ).unbind(-1)
    stride = (max(height, width) - 1) / max(size - 1, 1) * log_stride.exp()
    centre_x, centre_y = (width + 1) / 2 * (gx + 1), (height + 1) / 2 * (gy + 1)
    return torch.stack((centre_x, centre_y, log_var.exp(), stride, log_gamma.exp()), -1)


def filterbank_logits(
    centre: Tensor, stride: Tensor, variance: Tensor, *, size: int, length: int
) -> Tensor:
    r"""The unnormalised log filter weights :math:`-(a - \mu^i)^2 / 2\sigma^2`, in float32 at least.

    Each row is shifted so that its largest entry is 0 (the softmax does not change),
    so that the logits survive a cast to half precision.

    Shapes:
        centre, stride, variance ``(B,)`` -> ``(B, N, L)`` with ``N = size``, ``L = length``.
    """
    size, length = as_positive("size", size), as_positive("length", length)
    dtype = torch.promote_types(centre.dtype, torch.float32)
    centre, stride, variance = (t.to(dtype)[:, None] for t in (centre, stride, variance))
    steps = torch.arange(1, size + 1, device=centre.device, dtype=dtype)
    mu = centre + (steps - size / 2 - 0.5) * stride  # (B, N)
    pixels = torch.arange(1, length + 1, device=centre.device, dtype=dtype)
    logits = -((pixels - mu[..., None]) ** 2) / (2 * variance.clamp_min(MIN_VARIANCE)[..., None])
    return logits - logits.amax(-1, keepdim=True).detach()


def gaussian_filterbank(
    centre: Tensor, stride: Tensor, variance: Tensor, *, size: int, length: int
) -> Tensor:
    r"""One axis' filterbank :math:`F[i, a] \propto \exp(-(a - \mu^i)^2 / 2\sigma^2)`.

    Rows sum to 1 (a softmax over positions, in float32 at least: a filter centred far
    outside the image puts its mass on the nearest edge pixel instead of dividing 0 by 0).

    Args:
        centre: ``g`` in pixels (1-based).
        stride: ``delta`` in pixels.
        variance: ``sigma^2`` (floored at :data:`MIN_VARIANCE`).
        size: ``N``.
        length: ``A`` (for ``F_X``) or ``B`` (for ``F_Y``).

    Shapes:
        centre, stride, variance ``(B,)`` -> ``(B, N, L)``, in ``centre``'s dtype.

    Example:
        >>> one = torch.ones(1)
        >>> f = gaussian_filterbank(3 * one, one, 1e-4 * one, size=3, length=5)
        >>> f.argmax(-1).tolist(), f.sum(-1).tolist()
        ([[1, 2, 3]], [[1.0, 1.0, 1.0]])
    """
    logits = filterbank_logits(centre, stride, variance, size=size, length=length)
    return torch.softmax(logits, -1).to(centre.dtype)


def filterbanks(window: Tensor, *, size: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(F_X, F_Y)`` of a window: ``(B, N, width)`` and ``(B, N, height)``.

    Example:
        >>> w = draw_window(torch.zeros(2, 5), size=4, height=7, width=9)
        >>> [f.shape for f in filterbanks(w, size=4, height=7, width=9)]
        [torch.Size([2, 4, 9]), torch.Size([2, 4, 7])]
    """
    gx, gy, variance, stride, _ = _check_window(window).unbind(-1)
    return (
        gaussian_filterbank(gx, stride, variance, size=size, length=width),
        gaussian_filterbank(gy, stride, variance, size=size, length=height),
    )


def _attend(logits: Tensor, values: Tensor, need_weights: bool) -> AttentionOutput:
    """``softmax(logits) @ values`` through the core, the logits as a position-only bias."""
    b, n, length = logits.shape
    q, k = values.new_zeros(b, n, 1), values.new_zeros(b, length, 1)
    return attention(
        q, k, values, score=_POSITION_ONLY, bias=logits.to(values.dtype), need_weights=need_weights
    )


def draw_read(
    images: Tensor, window: Tensor, *, size: int, need_weights: bool = True
) -> AttentionOutput:
    """The glimpse ``gamma F_Y x F_X^T`` of every channel (two 1-D attentions through the core).

    Args:
        images: ``x``.
        window: ``(g_X, g_Y, sigma^2, delta, gamma)`` per image (:func:`draw_window`).
        size: ``N``.
        need_weights: also return the window and the filterbanks.

    Returns:
        ``AttentionOutput(glimpse, window)`` with extras ``filterbank_x`` ``(B, N, W)`` and
        ``filterbank_y`` ``(B, N, H)``; weights None and no extras without ``need_weights``.

    Shapes:
        images ``(B, C, H, W)``, window ``(B, 5)`` -> glimpse ``(B, C, N, N)`` (rows
        ``j`` follow ``F_Y``, columns ``i`` follow ``F_X``).

    Example:
        >>> x = torch.arange(25.0).reshape(1, 1, 5, 5)
        >>> crop = torch.tensor([[3.0, 2.0, 1e-4, 1.0, 1.0]])  # centre (3, 2), stride 1
        >>> draw_read(x, crop, size=3).context[0, 0].round().tolist()
        [[1.0, 2.0, 3.0], [6.0, 7.0, 8.0], [11.0, 12.0, 13.0]]
    """
    images, size = check_image(images, None, "images"), as_positive("size", size)
    window = _check_window(window)
    if window.shape[0] != images.shape[0]:
        raise ValueError(
            f"window must hold one row per image, {images.shape[0]}; got {window.shape[0]}"
        )
    b, c, h, w = images.shape
    gx, gy, variance, stride, gamma = window.unbind(-1)
    # Along the width: the N filters are the queries, the W columns the keys, each
    # column's C*H values the values.
    cols = images.permute(0, 3, 1, 2).reshape(b, w, c * h)
    along_x = _attend(
        filterbank_logits(gx, stride, variance, size=size, length=w), cols, need_weights
    )
    # Then along the height, over the H rows of the (C, N) column glimpses.
    rows = along_x.context.reshape(b, size, c, h).permute(0, 3, 2, 1).reshape(b, h, c * size)
    along_y = _attend(
        filterbank_logits(gy, stride, variance, size=size, length=h), rows, need_weights
    )
    glimpse = along_y.context.reshape(b, size, c, size).transpose(1, 2)
    glimpse = glimpse * gamma.to(glimpse.dtype)[:, None, None, None]
    if not need_weights:
        return AttentionOutput(glimpse, None)
    return AttentionOutput(
        glimpse, window, filterbank_x=along_x.weights, filterbank_y=along_y.weights
    )


def draw_write(patch: Tensor, window: Tensor, *, height: int, width: int) -> AttentionOutput:
    """The canvas update ``F_Y^T w F_X / gamma``: the transpose of :func:`draw_read`.

    Shapes:
        patch ``(B, C, N, N)``, window ``(B, 5)`` -> ``AttentionOutput(canvas (B, C, H, W),
        window)`` with extras ``filterbank_x`` ``(B, N, W)``, ``filterbank_y`` ``(B, N, H)``.

    Example:
        >>> dot = torch.ones(1, 1, 1, 1)
        >>> spot = torch.tensor([[2.0, 3.0, 1e-4, 1.0, 1.0]])  # column 2, row 3 (1-based)
        >>> draw_write(dot, spot, height=4, width=5).context[0, 0].nonzero().tolist()
        [[2, 1]]
    """
    patch = check_image(patch, None, "patch")
    if patch.shape[-1] != patch.shape[-2]:
        raise ValueError(f"patch must be (B, C, N, N), a square grid; got {tuple(patch.shape)}")
    window = _check_window(window)
    if window.shape[0] != patch.shape[0]:
        raise ValueError(
            f"window must hold one row per patch, {patch.shape[0]}; got {window.shape[0]}"
        )
    fx, fy = filterbanks(window, size=patch.shape[-1], height=height, width=width)
    fx, fy = fx.to(patch.dtype), fy.to(patch.dtype)
    canvas = torch.einsum("bjh,bcji,biw->bchw", fy, patch, fx)
    canvas = canvas / window[:, 4].to(patch.dtype)[:, None, None, None]
    return AttentionOutput(canvas, window, filterbank_x=fx, filterbank_y=fy)


def glimpse_boxes(window: Tensor, size: int) -> Tensor:
    """Rectangles ``(x0, y0, x1, y1)`` covering the N x N filter centres, for pictures.

    The box spans ``g +- N delta / 2`` on each axis (half a stride beyond the outer
    filters), in the coordinates of matplotlib's ``imshow`` (pixel ``j``, 0-based, at
    ``j``), so it can be drawn on the image as it is.

    Shapes:
        window ``(..., 5)`` -> ``(..., 4)``.

    Example:
        >>> glimpse_boxes(torch.tensor([[14.5, 14.5, 1.0, 2.0, 1.0]]), 5).tolist()
        [[8.5, 8.5, 18.5, 18.5]]
    """
    size = as_positive("size", size)
    gx, gy, _, stride, _ = _check_window(window, dims=0).unbind(-1)
    half = size * stride / 2
    return torch.stack((gx - 1 - half, gy - 1 - half, gx - 1 + half, gy - 1 + half), -1)
