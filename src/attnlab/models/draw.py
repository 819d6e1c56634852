r"""DRAW: a recurrent variational auto-encoder that draws an image over T steps.

Gregor, Danihelka, Graves, Rezende & Wierstra 2015, "DRAW: A Recurrent Neural Network
For Image Generation" (section 2). With canvas :math:`c_0` (0, or a learned bias image
with ``learned_canvas=True``) and zero LSTM states, for :math:`t = 1..T`:

.. math::
    \hat x_t = x - \sigma(c_{t-1}),\quad r_t = \mathrm{read}(x, \hat x_t, h^{dec}_{t-1}),\quad
    h^{enc}_t = \mathrm{LSTM}^{enc}(h^{enc}_{t-1}, [r_t, h^{dec}_{t-1}]),

    z_t = \mu_t + \sigma_t \epsilon_t,\ (\mu_t, \log\sigma_t) = W h^{enc}_t,\quad
    h^{dec}_t = \mathrm{LSTM}^{dec}(h^{dec}_{t-1}, z_t),\quad
    c_t = c_{t-1} + \mathrm{write}(h^{dec}_t).

The loss is the negative variational bound in nats per image,
:math:`L^x + L^z` with :math:`L^x = -\log \mathrm{Bernoulli}(x \mid \sigma(c_T))` summed over
pixels and :math:`L^z = \sum_t \mathrm{KL}(N(\mu_t, \sigma_t^2) \,\|\, N(0, I))`.

The read and write operators are injected as classes or factories, called as
``read(decoder_size, height, width, channels, device=..., dtype=...)``:
:class:`~attnlab.vision.draw_attention.FullRead` / ``FullWrite`` (no attention, the
defaults) or :class:`~attnlab.vision.draw_attention.DrawRead` / ``DrawWrite`` (the
Gaussian filterbank; ``functools.partial(DrawRead, size=2)`` picks the grid). A read
returns ``AttentionOutput(glimpse, window or None)`` and has ``out_features``; a write
returns ``AttentionOutput(canvas update (B, C, H, W), window or None)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import (
    as_positive,
    build_injected,
    check_input,
    factory_kwargs,
    parameter_dtype,
)
from attnlab.vision.draw_attention import FullRead, FullWrite

__all__ = ["DRAW", "DrawOutput", "DrawSample", "DrawSteps", "OperatorFactory"]

OperatorFactory = Callable[..., nn.Module]
"""``read(hidden_size, height, width, channels, device=, dtype=)`` (or ``write(...)``)."""


@dataclass(frozen=True, eq=False)
class DrawSteps:
    """What DRAW did at each step, for pictures.

    Attributes:
        canvases: ``sigmoid(c_t)``, the image as drawn after step ``t``.
        read: The read windows ``(g_X, g_Y, sigma^2, delta, gamma)`` (pixels, 1-based;
            :data:`~attnlab.vision.draw_attention.WINDOW_FIELDS`), None without read
            attention and when sampling (nothing is read).
        write: The write windows, None without write attention.

    Shapes:
        canvases ``(B, T, C, H, W)``; read, write ``(B, T, 5)``.
    """

    canvases: Tensor
    read: Tensor | None
    write: Tensor | None


@dataclass(frozen=True, eq=False)
class DrawOutput:
    """The loss terms of one forward pass, in nats per image.

    Attributes:
        reconstruction: ``L^x``, Bernoulli cross-entropy of ``sigmoid(c_T)`` against
            ``x``, summed over pixels.
        kl_steps: ``KL(Q(z_t | h_enc_t) || N(0, I))`` of each step, summed over latents.
        canvas: ``c_T``, the final canvas logits.
        steps: Per-step records when asked for (``return_steps=True``), else None.

    Shapes:
        reconstruction ``(B,)``; kl_steps ``(B, T)``; canvas ``(B, C, H, W)``.
    """

    reconstruction: Tensor
    kl_steps: Tensor
    canvas: Tensor
    steps: DrawSteps | None = None

    @property
    def kl(self) -> Tensor:
        """``L^z``: the KL terms summed over steps, ``(B,)``."""
        return self.kl_steps.sum(-1)

    @property
    def nll(self) -> Tensor:
        """The negative variational bound ``L^x + L^z`` per image, ``(B,)``.

        An upper bound on ``-log p(x)`` in expectation over the noise.
        """
        return self.reconstruction + self.kl

    @property
    def loss(self) -> Tensor:
        """The batch mean of :attr:`nll`, to minimise."""
        return self.nll.mean()


@dataclass(frozen=True, eq=False)
class DrawSample:
    """Images generated from the prior.

    Attributes:
        images: ``sigmoid(c_T)``, the Bernoulli means (show them as they are).
        steps: Per-step records (``return_steps=True``), else None; ``read`` is None.

    Shapes:
        images ``(n, C, H, W)``.
    """

    images: Tensor
    steps: DrawSteps | None = None


class DRAW(nn.Module):
    """The DRAW recurrent VAE with injected read and write operators (see the module doc).

    Args:
        height: Image height ``H``.
        width: Image width ``W``.
        channels: Image channels ``C``.
        steps: ``T`` (the paper: 64 on MNIST).
        latent_size: Size of each ``z_t`` (the paper: 100).
        encoder_size: LSTM units of the encoder (the paper: 256).
        decoder_size: LSTM units of the decoder (the paper: 256).
        read: Class or factory of the read operator; default
            :class:`~attnlab.vision.draw_attention.FullRead` (no attention).
        write: Class or factory of the write operator; default
            :class:`~attnlab.vision.draw_attention.FullWrite`.
        learned_canvas: Start from a learned bias image ``c_0`` (logits, zeros at first)
            instead of 0. A whole-canvas write learns the background in its bias at
            once; a window write would spend its steps painting it.
        device: Where to create the parameters.
        dtype: Their dtype.

    Shapes:
        x ``(B, C, H, W)`` with values in ``[0, 1]`` (binarised images) -> :class:`DrawOutput`.

    Example:
        >>> from functools import partial
        >>> from attnlab.vision.draw_attention import DrawRead, DrawWrite
        >>> model = DRAW(12, 12, steps=3, latent_size=4, encoder_size=8, decoder_size=8,
        ...              read=partial(DrawRead, size=2), write=partial(DrawWrite, size=3))
        >>> out = model((torch.rand(2, 1, 12, 12) > 0.5).float(), return_steps=True)
        >>> out.nll.shape, out.kl_steps.shape, out.steps.read.shape
        (torch.Size([2]), torch.Size([2, 3]), torch.Size([2, 3, 5]))
        >>> model.sample(5).images.shape
        torch.Size([5, 1, 12, 12])
    """

    def __init__(
        self,
        height: int = 28,
        width: int = 28,
        channels: int = 1,
        *,
        steps: int = 64,
        latent_size: int = 100,
        encoder_size: int = 256,
        decoder_size: int = 256,
        read: OperatorFactory = FullRead,
        write: OperatorFactory = FullWrite,
        learned_canvas: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.height, self.width = as_positive("height", height), as_positive("width", width)
        self.channels = as_positive("channels", channels)
        self.steps = as_positive("steps", steps)
        self.latent_size = as_positive("latent_size", latent_size)
        self.encoder_size = as_positive("encoder_size", encoder_size)
        self.decoder_size = as_positive("decoder_size", decoder_size)
        sizes = (self.decoder_size, self.height, self.width, self.channels)
        how = "called as {}(hidden_size, height, width, channels, device=, dtype=)"
        self.read = build_injected(
            read,
            *sizes,
            name="read",
            expected=f"a read class or factory, {how.format('read')}",
            **factory,
        )
        glimpse = getattr(self.read, "out_features", None)
        if isinstance(glimpse, bool) or not isinstance(glimpse, int) or glimpse < 1:
            raise TypeError(
                f"read must build a module with an int out_features (the numbers it reads per "
                f"image); {type(self.read).__name__} has {glimpse!r}"
            )
        self.write = build_injected(
            write,
            *sizes,
            name="write",
            expected=f"a write class or factory, {how.format('write')}",
            **factory,
        )
        self.encoder = nn.LSTMCell(glimpse + self.decoder_size, self.encoder_size, **factory)
        self.posterior = nn.Linear(self.encoder_size, 2 * self.latent_size, **factory)
        self.decoder = nn.LSTMCell(self.latent_size, self.decoder_size, **factory)
        if not isinstance(learned_canvas, bool):
            raise TypeError(f"learned_canvas must be True or False, got {learned_canvas!r}")
        shape = (self.channels, self.height, self.width)
        self.initial_canvas = (
            nn.Parameter(torch.zeros(shape, **factory)) if learned_canvas else None
        )

    def _check(self, x: object) -> Tensor:
        t = check_input(self, "x", x, parameter_dtype(self))
        expected = (self.channels, self.height, self.width)
        if t.dim() != 4 or tuple(t.shape[1:]) != expected:
            raise ValueError(
                f"x must be (B, {', '.join(map(str, expected))}), the image size this DRAW was "
                f"built for; got {tuple(t.shape)}"
            )
        if t.numel():
            low, high = torch.aminmax(t.detach())
            if low < 0 or high > 1:
                raise ValueError(
                    f"x must hold pixels in [0, 1] (binarised images); got values in "
                    f"{low.item():g}..{high.item():g}; use attnlab.data.mnist.binarize"
                )
        return t

    def _noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)

    def _first_canvas(self, n: int, like: Tensor) -> Tensor:
        """``c_0`` for ``n`` images: zeros, or the learned bias image."""
        if self.initial_canvas is None:
            return like.new_zeros(n, self.channels, self.height, self.width)
        return self.initial_canvas.expand(n, -1, -1, -1)

    def _write(self, h_dec: Tensor, need_weights: bool) -> AttentionOutput:
        out = self.write(h_dec, need_weights=need_weights)
        if out.context.shape[1:] != (self.channels, self.height, self.width):
            raise ValueError(
                f"write {type(self.write).__name__} returned {tuple(out.context.shape)}, expected "
                f"(B, {self.channels}, {self.height}, {self.width})"
            )
        return out

    def forward(
        self,
        x: Tensor,
        *,
        return_steps: bool = False,
        generator: torch.Generator | None = None,
    ) -> DrawOutput:
        """The loss terms of ``x`` with one draw of the latents.

        Args:
            x: Binarised images (0.0 / 1.0; probabilities in ``[0, 1]`` also work).
            return_steps: Also return the canvas and the read and write windows of each
                step (:class:`DrawSteps`).
            generator: Source of the reparameterisation noise (a fixed one makes
                evaluation repeatable); None uses torch's global generator.

        Returns:
            A :class:`DrawOutput`; ``.loss`` to minimise, ``.nll`` per image to report.
        """
        x = self._check(x)
        b = x.shape[0]
        h_enc = x.new_zeros(b, self.encoder_size)
        state_enc = (h_enc, h_enc)
        h_dec = x.new_zeros(b, self.decoder_size)
        state_dec = (h_dec, h_dec)
        canvas = self._first_canvas(b, x)
        kl, canvases, reads, writes = [], [], [], []
        for _ in range(self.steps):
            x_hat = x - torch.sigmoid(canvas)
            glimpse = self.read(x, x_hat, h_dec, need_weights=return_steps)
            state_enc = self.encoder(torch.cat((glimpse.context.flatten(1), h_dec), 1), state_enc)
            mu, log_sigma = self.posterior(state_enc[0]).chunk(2, -1)
            z = mu + log_sigma.exp() * self._noise(mu.shape, mu, generator)
            state_dec = self.decoder(z, state_dec)
            h_dec = state_dec[0]
            update = self._write(h_dec, return_steps)
            canvas = canvas + update.context
            # 0.5 (mu^2 + sigma^2 - 1 - log sigma^2); expm1 keeps each term >= 0 in floats.
            kl.append(0.5 * (mu**2 + torch.expm1(2 * log_sigma) - 2 * log_sigma).sum(-1))
            if return_steps:
                canvases.append(torch.sigmoid(canvas))
                reads.append(glimpse.weights)
                writes.append(update.weights)
        reconstruction = F.binary_cross_entropy_with_logits(canvas, x, reduction="none")
        steps = _records(canvases, reads, writes) if return_steps else None
        return DrawOutput(reconstruction.flatten(1).sum(1), torch.stack(kl, 1), canvas, steps)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int | None = None,
        *,
        generator: torch.Generator | None = None,
        return_steps: bool = False,
    ) -> DrawSample:
        """Draw ``n`` images from the prior: ``z_t ~ N(0, I)``, decode, write, ``T`` steps.

        Args:
            n: How many images.
            steps: ``T``; None uses the trained :attr:`steps`.
            generator: Source of the latents; None uses torch's global generator.
            return_steps: Also return the canvas and write window of each step.

        Returns:
            A :class:`DrawSample` (no gradients are recorded).
        """
        n = as_positive("n", n)
        steps = self.steps if steps is None else as_positive("steps", steps)
        weight = self.posterior.weight
        h_dec = weight.new_zeros(n, self.decoder_size)
        state_dec = (h_dec, h_dec)
        canvas = self._first_canvas(n, weight)
        canvases, writes = [], []
        for _ in range(steps):
            z = self._noise((n, self.latent_size), weight, generator)
            state_dec = self.decoder(z, state_dec)
            update = self._write(state_dec[0], return_steps)
            canvas = canvas + update.context
            if return_steps:
                canvases.append(torch.sigmoid(canvas))
                writes.append(update.weights)
        records = _records(canvases, [None] * steps, writes) if return_steps else None
        return DrawSample(torch.sigmoid(canvas), records)

    def extra_repr(self) -> str:
        """Sizes, shown by ``repr``."""
        return (
            f"height={self.height}, width={self.width}, channels={self.channels}, "
            f"steps={self.steps}, latent_size={self.latent_size}"
        )


def _records(canvases: list[Tensor], reads: list, writes: list) -> DrawSteps:
    """Stack per-step tensors batch-first; windows are None when the operator has none."""

    def stack(items: list) -> Tensor | None:
        return None if any(w is None for w in items) else torch.stack(items, 1)

    return DrawSteps(torch.stack(canvases, 1), stack(reads), stack(writes))
