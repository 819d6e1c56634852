"""Fashion-MNIST: 70,000 28x28 grey images of clothing in 10 classes, from IDX files.

Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms" (arXiv:1708.07747, 2017; MIT licence). The training split
holds 60,000 images and the test split 10,000, 6,000 and 1,000 per class. The
publisher's table lists a 2-layer conv net with pooling at 91.6% test accuracy.

The files are in the IDX format of LeCun's MNIST: a 4-byte magic number ``0x0000``,
a type code (``0x08`` = unsigned byte) and the number of dimensions, then one
big-endian uint32 per dimension, then the values in C order.

Files are found in this order (the data source chain of :mod:`attnlab.data.sources`):

1. the data directory (``data_dir``, else ``$ATTNLAB_DATA_DIR``), under
   ``fashion-mnist/``, as ``<name>.gz`` or decompressed as ``<name>``;
2. the cache (``$ATTNLAB_HOME/fashion-mnist/<name>``, decompressed);
3. a download of ``<name>.gz`` from :data:`FASHION_MNIST_URLS`, decompressed into the
   cache.

Every copy is checked against the sha256 and size of its *decompressed* bytes
(:data:`CHECKSUMS`, :data:`SIZES`): Debian's copy was recompressed, so its gzip bytes
differ from the publisher's while the IDX bytes are the same. Decoded arrays are not
cached separately: decompressing the training images takes about half a second, and a
downloaded copy is kept decompressed, so it loads in a tenth of that.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import describe, lookup
from attnlab.data import sources
from attnlab.data.sources import DataChecksumError, download_url, resolve

__all__ = [
    "CHECKSUMS",
    "CLASSES",
    "FASHION_MNIST_SPLITS",
    "FASHION_MNIST_URLS",
    "SIZES",
    "FashionMNIST",
    "load_fashion_mnist",
    "read_idx",
]

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The class names, in label order (the publisher's README)."""

FASHION_MNIST_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split name -> (images file, labels file), without the ``.gz``."""

# The canonical address first (the publisher's README), then its GitHub mirror.
FASHION_MNIST_URLS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{file}.gz",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/{file}.gz",
)

_FOLDER = "fashion-mnist"

# sha256 and size of the decompressed IDX bytes, keyed by relpath.
CHECKSUMS: dict[str, str] = {
    "fashion-mnist/train-images-idx3-ubyte": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "fashion-mnist/train-labels-idx1-ubyte": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "fashion-mnist/t10k-images-idx3-ubyte": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "fashion-mnist/t10k-labels-idx1-ubyte": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}
SIZES: dict[str, int] = {
    "fashion-mnist/train-images-idx3-ubyte": 47_040_016,
    "fashion-mnist/train-labels-idx1-ubyte": 60_008,
    "fashion-mnist/t10k-images-idx3-ubyte": 7_840_016,
    "fashion-mnist/t10k-labels-idx1-ubyte": 10_008,
}

# IDX type code -> big-endian numpy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, eq=False)
class FashionMNIST:
    """Images and labels of one Fashion-MNIST split (or any set of labelled grey items).

    Attributes:
        images: Grey values 0..255, background 0.
        labels: Class index per image, indexing ``classes``.
        classes: Class names; :data:`CLASSES` for Fashion-MNIST.

    Shapes:
        images: (N, H, W) uint8, H = W = 28 for Fashion-MNIST; labels: (N,) int64.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dtype != torch.uint8:
            raise TypeError(f"images must be a uint8 tensor, got {describe(self.images)}")
        if self.images.dim() != 3 or min(self.images.shape[1:]) < 1:
            raise ValueError(f"images must have shape (N, H, W), got {describe(self.images)}")
        if not isinstance(self.labels, Tensor) or self.labels.dtype != torch.int64:
            raise TypeError(f"labels must be an int64 tensor, got {describe(self.labels)}")
        if self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({len(self.images)},), one per image, got "
                f"{describe(self.labels)}"
            )
        if self.labels.numel() and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < (
            len(self.classes)
        ):
            raise ValueError(
                f"labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes, "
                f"got {int(self.labels.min())}..{int(self.labels.max())}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor | np.ndarray | list[int]) -> FashionMNIST:
        """The items at ``index`` (e.g. a held-out validation part of the training split).

        Args:
            index: Integer indices or a boolean mask over the items.

        Returns:
            A new :class:`FashionMNIST` with the same classes.
        """
        index = torch.as_tensor(index)
        return FashionMNIST(self.images[index], self.labels[index], self.classes)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (told apart by its first bytes).

    No checksum is verified here (:func:`load_fashion_mnist` does that).

    Args:
        path: The file.

    Returns:
        A new array with the file's dimensions and type, in native byte order.

    Raises:
        ValueError: A gzip file is corrupt or truncated, the magic number is not an
            IDX one, or the byte count does not match the header's dimensions.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "toy-idx1-ubyte"
        >>> _ = f.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
        >>> read_idx(f).tolist()
        [7, 8, 9]
    """
    return _parse_idx(_read_bytes(Path(path)), Path(path))


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, decompressed if it is gzip; at most ``limit + 1`` of them."""
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if not compressed:
            return f.read() if limit is None else f.read(limit + 1)
        try:
            with gzip.GzipFile(fileobj=f) as g:
                return g.read() if limit is None else g.read(limit + 1)
        except EOFError:
            raise ValueError(
                f"{path} is a truncated gzip file; replace it with an intact copy"
            ) from None
        except (OSError, zlib.error) as exc:
            raise ValueError(
                f"{path} is not a valid gzip file ({exc}); replace it with an intact copy"
            ) from None


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Decode IDX bytes: magic number, big-endian uint32 dimensions, then the values."""
    fix = "replace it with an intact copy"
    if len(data) < 4:
        raise ValueError(f"{path} is too short for an IDX file ({len(data)} bytes); {fix}")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{magic:08x}, expected 0x0000 then a "
            f"type code ({', '.join(f'{c:02x}' for c in _IDX_TYPES)}) and a dimension count; {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path} is truncated inside its IDX header ({len(data)} of {header} bytes); {fix}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path} {problem}: {len(data)} bytes where its IDX header (shape {dims}, "
            f"{dtype.name}) makes {expected}; {fix}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _verified_bytes(path: Path, relpath: str, remedy: str) -> bytes:
    """Decompressed bytes of ``path``, checked against the pinned size and sha256."""
    size, expected = SIZES[relpath], CHECKSUMS[relpath]
    data = _read_bytes(path, limit=size)
    got = hashlib.sha256(data).hexdigest()
    if len(data) != size or got != expected:
        many = f"{len(data)}" if len(data) <= size else f"more than {size}"
        raise DataChecksumError(
            f"{path} decompresses to {many} bytes with sha256 {got}, expected {size} bytes "
            f"with sha256 {expected}; {remedy}"
        )
    return data


def _fetch(dest: Path, *, file: str) -> None:
    """Download ``file.gz`` (canonical address, then the mirror) and decompress it to dest."""
    errors = []
    with tempfile.TemporaryDirectory(prefix="attnlab-fashion-mnist-") as tmp:
        for template in FASHION_MNIST_URLS:
            try:
                gz = download_url(template.format(file=file), Path(tmp) / f"{file}.gz")
                break
            except OSError as exc:
                errors.append(str(getattr(exc, "reason", exc)))
        else:
            raise OSError(f"{errors[0]}; the mirror failed too: {'; '.join(errors[1:])}")
        # resolve() checks the sha256 of what lands at dest; the limit bounds memory.
        dest.write_bytes(_read_bytes(gz, limit=SIZES[f"{_FOLDER}/{file}"]))


def _file_bytes(file: str, data_dir: str | Path | None) -> bytes:
    """Verified decompressed bytes of one file, through the data source chain."""
    relpath = f"{_FOLDER}/{file}"
    url = FASHION_MNIST_URLS[0].format(file=file)
    # The data directory holds the .gz as published (or as Debian recompressed it),
    # which resolve() cannot verify by the decompressed digest: look there first.
    root = Path(data_dir).expanduser() if data_dir is not None else sources.data_dir()
    if root is not None and root.is_dir():
        for candidate in (root / relpath, root / f"{relpath}.gz"):
            if candidate.is_file():
                return _verified_bytes(
                    candidate, relpath, f"replace it with the publisher's copy from {url}"
                )
    # Then the cache and the download; resolve() reports a missing data directory.
    path = resolve(
        relpath,
        sha256=CHECKSUMS[relpath],
        fetch=functools.partial(_fetch, file=file),
        url=url,
        data_dir=data_dir,
    )
    return path.read_bytes()


def load_fashion_mnist(
    split: Literal["train", "test"], *, data_dir: str | Path | None = None
) -> FashionMNIST:
    """Load one Fashion-MNIST split, finding and verifying its two IDX files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: Data directory holding ``fashion-mnist/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.

    Returns:
        The images (uint8, 0 = background) and labels, in the publisher's order.

    Raises:
        ValueError: Unknown split, or a gzip file that is corrupt or truncated.
        DataNotFoundError: No copy anywhere and the download failed.
        DataChecksumError: A copy was found but its decompressed bytes are not the
            pinned ones.

    Example:
        >>> test = load_fashion_mnist("test")  # doctest: +SKIP
        >>> test.images.shape, test.classes[int(test.labels[0])]  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), 'Ankle boot')
    """
    image_file, label_file = lookup(FASHION_MNIST_SPLITS, split, "Fashion-MNIST split")
    images = _parse_idx(_file_bytes(image_file, data_dir), Path(image_file))
    labels = _parse_idx(_file_bytes(label_file, data_dir), Path(label_file))
    return FashionMNIST(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
