r"""Images as sequences of patches: the patch embedding and 2-D sin-cos positions of ViT.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition
at Scale" (ICLR 2021), eq. 1: an image :math:`x \in \mathbb{R}^{H \times W \times C}`
is cut into :math:`N = HW / P^2` patches :math:`x_p^i \in \mathbb{R}^{P^2 C}`, each
mapped linearly to ``dim``,

.. math::
    z^i = x_p^i E + b, \qquad E \in \mathbb{R}^{P^2 C \times D},

which is a convolution with kernel = stride = P (:class:`PatchEmbed`). Fixed positions
for the resulting grid of patches come from :func:`sincos_2d_table`, the 2-D
sine-cosine table of MAE (He et al. 2022): half of the channels encode the column,
half the row, each as 1-D sinusoids (Vaswani et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from attnlab.nn._checks import as_positive, check_input, check_tensor, factory_kwargs

__all__ = ["PatchEmbed", "as_pair", "sincos_2d_table"]


def as_pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """``value`` (an int, or a (height, width) pair) as two ints >= 1, or one line.

    Example:
        >>> as_pair("patch_size", 4), as_pair("image_size", (28, 32))
        ((4, 4), (28, 32))
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
        return as_positive(f"{name}[0]", value[0]), as_positive(f"{name}[1]", value[1])
    size = as_positive(name, value)
    return size, size


def _size(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def sincos_2d_table(
    grid: int | Sequence[int],
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Fixed 2-D sine-cosine positions of a patch grid, MAE's layout (He et al. 2022).

    For the patch in row :math:`r`, column :math:`c` (tokens in row-major order) and
    :math:`\omega_i = T^{-i / (D/4)}`, :math:`i = 0 \dots D/4 - 1`:

    .. math::
        p_{(r, c)} = [\sin(c\,\omega), \cos(c\,\omega), \sin(r\,\omega), \cos(r\,\omega)]

    Args:
        grid: patches per column and row, ``(gh, gw)`` (an int for a square grid).
        dim: embedding size ``D``, divisible by 4.
        temperature: ``T``, the longest wavelength over ``2 pi``.
        device: where to build the table.
        dtype: its dtype (computed in float64, then cast; default: the default dtype).

    Returns:
        ``(gh * gw, D)``.

    Example:
        >>> sincos_2d_table((2, 3), 4)[5]  # row 1, column 2: sin 2, cos 2, sin 1, cos 1
        tensor([ 0.9093, -0.4161,  0.8415,  0.5403])
    """
    gh, gw = as_pair("grid", grid)
    dim = as_positive("dim", dim)
    if dim % 4:
        raise ValueError(
            f"dim must be divisible by 4 for 2-D sin-cos positions (sin and cos of rows and "
            f"columns), got {dim}; use position='learned' or a width divisible by 4"
        )
    # float64 so that float32 tables equal the numpy float64 references to rounding.
    omega = temperature ** -(torch.arange(dim // 4, dtype=torch.float64, device=device) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64, device=device),
        torch.arange(gw, dtype=torch.float64, device=device),
        indexing="ij",
    )
    x, y = cols.reshape(-1, 1) * omega, rows.reshape(-1, 1) * omega
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    return table.to(dtype or torch.get_default_dtype())


class PatchEmbed(nn.Module):
    r"""Cut images into non-overlapping patches and embed each linearly (ViT, eq. 1).

    .. math::
        z^i = x_p^i E + b = (\mathrm{Conv}_{P \times P,\ \mathrm{stride}\ P}\, x)_{:, i}

    Args:
        image_size: the images' ``(H, W)`` (an int for square images).
        patch_size: the patches' ``(P_h, P_w)``; must divide ``image_size``.
        in_channels: ``C``.
        dim: embedding size ``D``.
        flatten: return the tokens ``(B, N, D)`` (row-major); False keeps the grid
            ``(B, D, H / P_h, W / P_w)`` for convolutional uses.
        bias: the projection's bias ``b``.
        device: where to create the parameters.
        dtype: their dtype.

    Attributes:
        grid: patches per column and per row, ``(H / P_h, W / P_w)``.
        num_patches: ``N``, the number of tokens.
        proj: the ``Conv2d`` holding ``E`` (as ``(D, C, P_h, P_w)``) and ``b``.

    Shapes:
        images ``(B, C, H, W)`` -> ``(B, N, D)``, ``N = HW / (P_h P_w)`` (flatten) or
        ``(B, D, H / P_h, W / P_w)``.

    Example:
        >>> embed = PatchEmbed(28, 7, 1, 16)
        >>> embed(torch.randn(2, 1, 28, 28)).shape, embed.grid
        (torch.Size([2, 16, 16]), (4, 4))
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        in_channels: int,
        dim: int,
        *,
        flatten: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.image_size = as_pair("image_size", image_size)
        self.patch_size = as_pair("patch_size", patch_size)
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(
                f"patch_size {_size(self.patch_size)} does not divide image_size "
                f"{_size(self.image_size)}; choose a patch size that divides the image or "
                "resize/pad the images to a multiple of it"
            )
        self.grid = (
            self.image_size[0] // self.patch_size[0],
            self.image_size[1] // self.patch_size[1],
        )
        self.num_patches = self.grid[0] * self.grid[1]
        self.in_channels = as_positive("in_channels", in_channels)
        self.dim = as_positive("dim", dim)
        self.flatten = bool(flatten)
        self.proj = nn.Conv2d(
            self.in_channels,
            self.dim,
            kernel_size=self.patch_size,
            stride=self.patch_size,
            bias=bias,
            **factory,
        )

    def extra_repr(self) -> str:
        """Sizes shown by ``repr``."""
        return (
            f"image_size={self.image_size}, patch_size={self.patch_size}, "
            f"grid={self.grid}, flatten={self.flatten}"
        )

    def check_images(self, images: object) -> Tensor:
        """``images`` if they are ``(B, C, H, W)`` of this embedding's sizes, else one line."""
        owner = type(self).__name__
        x = check_tensor("images", images)
        if x.dim() != 4:
            raise ValueError(
                f"{owner} takes images (B, C, H, W), got shape {tuple(x.shape)}; add the batch "
                "dimension with images.unsqueeze(0) or the channel one with images.unsqueeze(1)"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{owner} was built for {self.in_channels} input channel(s), got {x.shape[1]} "
                f"in images of shape {tuple(x.shape)}; build it with in_channels={x.shape[1]}"
            )
        if tuple(x.shape[2:]) != self.image_size:
            hw = tuple(x.shape[2:])
            raise ValueError(
                f"{owner} was built for {_size(self.image_size)} images, got {_size(hw)}; "
                f"resize the images or build it with image_size={hw}"
            )
        check_input(self, "images", x, self.proj.weight.dtype)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Patch tokens ``(B, N, D)`` (or the grid ``(B, D, gh, gw)`` without flatten)."""
        x = self.proj(self.check_images(images))
        return x.flatten(2).transpose(1, 2) if self.flatten else x
