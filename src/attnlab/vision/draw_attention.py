r"""DRAW's read and write attention: an N x N grid of Gaussian filters over the image.

Gregor, Danihelka, Graves, Rezende & Wierstra 2015, "DRAW: A Recurrent Neural Network
For Image Generation", section 3.2. For an image of width ``A`` and height ``B``, a
linear layer of the decoder state gives five numbers per image,

.. math::
    (\tilde g_X, \tilde g_Y, \log\sigma^2, \log\tilde\delta, \log\gamma) = W h,\quad
    g_X = \tfrac{A+1}{2}(\tilde g_X + 1),\quad g_Y = \tfrac{B+1}{2}(\tilde g_Y + 1),\quad
    \delta = \tfrac{\max(A, B) - 1}{N - 1}\,\tilde\delta

(:func:`draw_window`; ``N = 1`` uses ``N - 1 = 1``). Filter ``i`` (1..N) is centred at
:math:`\mu_X^i = g_X + (i - N/2 - 0.5)\,\delta` and weighs column ``a`` (1..A) by
:math:`F_X[i, a] = \exp(-(a - \mu_X^i)^2 / 2\sigma^2) / Z_X`, normalised over ``a``
(rows likewise, :func:`gaussian_filterbank`). Then

.. math::
    \mathrm{read}(x) = \gamma\, F_Y\, x\, F_X^\top \quad (N \times N), \qquad
    \mathrm{write}(w) = \tfrac{1}{\gamma}\, F_Y^\top\, w\, F_X \quad (B \times A).

Coordinates are the paper's: pixel ``a`` sits at ``a = 1..A``, so the image centre is
``(A + 1) / 2``. A window is carried as one ``(..., 5)`` tensor whose last dim holds
:data:`WINDOW_FIELDS` ``(g_X, g_Y, sigma^2, delta, gamma)``; :func:`glimpse_boxes` turns
it into rectangles for pictures.

What the modules return: ``AttentionOutput(context, weights)`` whose ``weights`` is that
window ``(B, 5)`` (five numbers say where the glimpse is; the separable filterbanks are
the extras ``filterbank_x`` ``(B, N, W)`` and ``filterbank_y`` ``(B, N, H)``, whose rows
sum to 1). :class:`FullRead` and :class:`FullWrite` (DRAW without attention) return
weights None.

Each filter row is a softmax over positions of the location score
``-(a - mu)^2 / 2 sigma^2``, so the read is two 1-D attentions (along the width, then
the height) through :func:`attnlab.functional.attention` with that score as ``bias=``.
The write spreads each glimpse pixel back over the image (a sum over the queries, the
transpose of attention), so it multiplies by the filterbanks directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab._validate import as_positive
from attnlab.functional import AttentionOutput
from attnlab.nn._checks import check_input, factory_kwargs, parameter_dtype
from attnlab.vision._checks import check_image
from attnlab.vision._draw_filterbank import (
    MIN_VARIANCE,
    WINDOW_FIELDS,
    draw_read,
    draw_window,
    draw_write,
    filterbank_logits,
    filterbanks,
    gaussian_filterbank,
    glimpse_boxes,
)

__all__ = [
    "MIN_VARIANCE",
    "WINDOW_FIELDS",
    "DrawRead",
    "DrawWrite",
    "FullRead",
    "FullWrite",
    "draw_read",
    "draw_window",
    "draw_write",
    "filterbank_logits",
    "filterbanks",
    "gaussian_filterbank",
    "glimpse_boxes",
]


class _ImageOperator(nn.Module):
    """Sizes and input checks that every read and write operator of DRAW shares."""

    def __init__(self, hidden_size: int, height: int, width: int, channels: int) -> None:
        super().__init__()
        self.hidden_size = as_positive("hidden_size", hidden_size)
        self.height, self.width = as_positive("height", height), as_positive("width", width)
        self.channels = as_positive("channels", channels)

    def _check_state(self, h: object, batch: int | None = None) -> Tensor:
        t = check_input(self, "h", h, parameter_dtype(self))
        if t.dim() != 2 or t.shape[1] != self.hidden_size or batch not in (None, t.shape[0]):
            want = "B" if batch is None else str(batch)
            raise ValueError(f"h must be ({want}, {self.hidden_size}); got {tuple(t.shape)}")
        return t

    def _check_images(self, x: object, x_hat: object) -> tuple[Tensor, Tensor]:
        expected = (self.channels, self.height, self.width)
        for name, t in (("x", x), ("x_hat", x_hat)):
            check_image(t, self.channels, name, owner=self)
            if tuple(t.shape[1:]) != expected:  # type: ignore[union-attr]
                raise ValueError(
                    f"{name} must be (B, {', '.join(map(str, expected))}), the size this "
                    f"{type(self).__name__} was built for; got {tuple(t.shape)}"  # type: ignore[union-attr]
                )
        if x.shape != x_hat.shape:  # type: ignore[union-attr]
            raise ValueError(
                f"x_hat must have x's shape {tuple(x.shape)}; got {tuple(x_hat.shape)}"
            )  # type: ignore[union-attr]
        return x, x_hat  # type: ignore[return-value]

    def extra_repr(self) -> str:
        """Sizes, shown by ``repr``."""
        extra = f", size={self.size}" if hasattr(self, "size") else ""
        return (
            f"hidden_size={self.hidden_size}, height={self.height}, width={self.width}, "
            f"channels={self.channels}{extra}"
        )


class DrawRead(_ImageOperator):
    """DRAW's attentive read: an N x N Gaussian glimpse of ``x`` and of the error ``x_hat``.

    ``read(x, x_hat, h) = gamma [F_Y x F_X^T, F_Y x_hat F_X^T]`` with the window from a
    linear layer of the decoder state ``h`` (:func:`draw_window`, :func:`draw_read`).
    Its bias starts at zero: the first glimpse is centred and spans the whole image.

    Args:
        hidden_size: Features of ``h``.
        height: ``B``, the image height.
        width: ``A``, the image width.
        channels: ``C``, the image channels.
        size: ``N`` (the paper reads 2 x 2 glimpses on MNIST, 12 x 12 on SVHN).
        device: Where the parameters are created.
        dtype: The parameters' dtype.

    Shapes:
        x, x_hat ``(B, C, H, W)``, h ``(B, hidden_size)`` -> context ``(B, 2C, N, N)`` (the
        glimpses of x, then of x_hat; :attr:`out_features` numbers in all), weights the
        window ``(B, 5)`` (:data:`WINDOW_FIELDS`), extras ``filterbank_x`` ``(B, N, W)`` and
        ``filterbank_y`` ``(B, N, H)``.

    Example:
        >>> read = DrawRead(16, 28, 28, size=2)
        >>> x = torch.rand(3, 1, 28, 28)
        >>> glimpse, window = read(x, x - 0.5, torch.zeros(3, 16))
        >>> glimpse.shape, window[0].tolist()
        (torch.Size([3, 2, 2, 2]), [14.5, 14.5, 1.0, 27.0, 1.0])
    """

    def __init__(
        self,
        hidden_size: int,
        height: int,
        width: int,
        channels: int = 1,
        *,
        size: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, height, width, channels)
        self.size = as_positive("size", size)
        self.window = nn.Linear(
            self.hidden_size, len(WINDOW_FIELDS), **factory_kwargs(device, dtype)
        )
        nn.init.zeros_(self.window.bias)
        self.out_features = 2 * self.channels * self.size**2

    def forward(
        self, x: Tensor, x_hat: Tensor, h: Tensor, *, need_weights: bool = True
    ) -> AttentionOutput:
        """``AttentionOutput(glimpses, window)``; weights None without ``need_weights``."""
        x, x_hat = self._check_images(x, x_hat)
        window = draw_window(
            self.window(self._check_state(h, x.shape[0])),
            size=self.size,
            height=self.height,
            width=self.width,
        )
        return draw_read(
            torch.cat((x, x_hat), 1), window, size=self.size, need_weights=need_weights
        )


class DrawWrite(_ImageOperator):
    """DRAW's attentive write: an N x N patch from ``h`` spread onto the canvas.

    ``write(h) = 1/gamma F_Y^T w F_X`` with ``w = W h`` and a window from its own linear
    layer of ``h`` (:func:`draw_window`, :func:`draw_write`). Its window bias starts at zero.

    Args:
        hidden_size: Features of ``h``.
        height: ``B``, the image height.
        width: ``A``, the image width.
        channels: ``C``, the image channels.
        size: ``N`` (the paper writes 5 x 5 patches on MNIST).
        device: Where the parameters are created.
        dtype: The parameters' dtype.

    Shapes:
        h ``(B, hidden_size)`` -> context ``(B, C, H, W)`` (the canvas update), weights the
        window ``(B, 5)``, extras ``filterbank_x``, ``filterbank_y``.

    Example:
        >>> update, window = DrawWrite(16, 28, 28, size=5)(torch.zeros(3, 16))
        >>> update.shape, window.shape
        (torch.Size([3, 1, 28, 28]), torch.Size([3, 5]))
    """

    def __init__(
        self,
        hidden_size: int,
        height: int,
        width: int,
        channels: int = 1,
        *,
        size: int = 5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, height, width, channels)
        self.size = as_positive("size", size)
        factory = factory_kwargs(device, dtype)
        self.window = nn.Linear(self.hidden_size, len(WINDOW_FIELDS), **factory)
        nn.init.zeros_(self.window.bias)
        self.patch = nn.Linear(self.hidden_size, self.channels * self.size**2, **factory)

    def forward(self, h: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(canvas update, window)``; weights None without ``need_weights``."""
        h = self._check_state(h)
        window = draw_window(self.window(h), size=self.size, height=self.height, width=self.width)
        patch = self.patch(h).view(-1, self.channels, self.size, self.size)
        out = draw_write(patch, window, height=self.height, width=self.width)
        return out if need_weights else AttentionOutput(out.context, None)


class FullRead(_ImageOperator):
    """DRAW without read attention: the whole image and the whole error image.

    ``read(x, x_hat, h) = [x, x_hat]``; ``h`` is checked but not used, and the module has
    no parameters (``device`` and ``dtype`` are accepted for a uniform signature).

    Shapes:
        x, x_hat ``(B, C, H, W)``, h ``(B, hidden_size)`` -> context ``(B, 2C, H, W)``
        (:attr:`out_features` numbers), weights None.

    Example:
        >>> x = torch.rand(2, 1, 28, 28)
        >>> FullRead(16, 28, 28)(x, x - 0.5, torch.zeros(2, 16)).context.shape
        torch.Size([2, 2, 28, 28])
    """

    def __init__(
        self,
        hidden_size: int,
        height: int,
        width: int,
        channels: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, height, width, channels)
        factory_kwargs(device, dtype)  # checked, though there is nothing to create
        self.out_features = 2 * self.channels * self.height * self.width

    def forward(
        self, x: Tensor, x_hat: Tensor, h: Tensor, *, need_weights: bool = True
    ) -> AttentionOutput:
        """``AttentionOutput([x, x_hat], None)``: there is no window."""
        x, x_hat = self._check_images(x, x_hat)
        self._check_state(h, x.shape[0])
        return AttentionOutput(torch.cat((x, x_hat), 1), None)


class FullWrite(_ImageOperator):
    """DRAW without write attention: a linear layer of ``h`` writes the whole canvas.

    Shapes:
        h ``(B, hidden_size)`` -> context ``(B, C, H, W)``, weights None.

    Example:
        >>> FullWrite(16, 28, 28)(torch.zeros(2, 16)).context.shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        hidden_size: int,
        height: int,
        width: int,
        channels: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, height, width, channels)
        pixels = self.channels * self.height * self.width
        self.linear = nn.Linear(self.hidden_size, pixels, **factory_kwargs(device, dtype))

    def forward(self, h: Tensor, *, need_weights: bool = True) -> AttentionOutput:
        """``AttentionOutput(canvas update, None)``."""
        h = self._check_state(h)
        return AttentionOutput(
            self.linear(h).view(-1, self.channels, self.height, self.width), None
        )
