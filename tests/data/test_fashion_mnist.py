import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import fashion_mnist
from attnlab.data.fashion_mnist import (
    CHECKSUMS,
    CLASSES,
    FASHION_MNIST_SPLITS,
    SIZES,
    FashionMNIST,
    load_fashion_mnist,
    read_idx,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError

# Read at import, before the autouse fixture clears it for each test.
_ENV = os.environ.get("ATTNLAB_DATA_DIR")
REAL_DATA_DIR = Path(_ENV) if _ENV else Path(__file__).resolve().parents[3] / "shared" / "data"
needs_real = pytest.mark.skipif(
    not all(
        any((REAL_DATA_DIR / "fashion-mnist" / g).is_file() for g in (f, f"{f}.gz"))
        for pair in FASHION_MNIST_SPLITS.values()
        for f in pair
    ),
    reason=f"Fashion-MNIST files not in {REAL_DATA_DIR}/fashion-mnist "
    "(set ATTNLAB_DATA_DIR to a folder holding fashion-mnist/)",
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """A hand-made IDX file: magic, big-endian dims, big-endian values."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.asarray(array, dtype).tobytes()


def toy_split(n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


def write_split(folder: Path, split: str, monkeypatch, *, gz: bool = True, n: int = 5) -> tuple:
    """Write a toy split's two files to folder/fashion-mnist and pin their digests."""
    images, labels = toy_split(n)
    target = folder / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FASHION_MNIST_SPLITS[split], (images, labels)):
        data = idx_bytes(array)
        (target / (f"{name}.gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
        monkeypatch.setitem(CHECKSUMS, f"fashion-mnist/{name}", hashlib.sha256(data).hexdigest())
        monkeypatch.setitem(SIZES, f"fashion-mnist/{name}", len(data))
    return images, labels


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def real():
    return {s: load_fashion_mnist(s, data_dir=REAL_DATA_DIR) for s in ("train", "test")}


@needs_real
def test_real_counts_classes_and_types(real):
    for split, n in (("train", 60_000), ("test", 10_000)):
        data = real[split]
        assert len(data) == n and data.images.shape == (n, 28, 28)
        assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
        assert torch.bincount(data.labels, minlength=10).tolist() == [n // 10] * 10
        assert data.classes == CLASSES and len(CLASSES) == 10
        assert int(data.images.max()) == 255 and int(data.images.min()) == 0
    # The publisher's first training and test images are both ankle boots.
    assert real["train"].labels[0] == real["test"].labels[0] == CLASSES.index("Ankle boot")


@needs_real
def test_real_decompressed_digests_are_the_pinned_ones():
    # The large training images are verified by the module fixture's load itself.
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        folder = REAL_DATA_DIR / "fashion-mnist"
        path = folder / name if (folder / name).is_file() else folder / f"{name}.gz"
        data = path.read_bytes()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        assert len(data) == SIZES[f"fashion-mnist/{name}"]
        assert hashlib.sha256(data).hexdigest() == CHECKSUMS[f"fashion-mnist/{name}"]


@needs_real
def test_real_load_writes_nothing_to_the_cache(isolated_env):
    load_fashion_mnist("test", data_dir=REAL_DATA_DIR)
    assert not isolated_env.exists()


# ---------------------------------------------------------------- IDX parsing


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_round_trips_every_type(tmp_path, code):
    array = np.arange(2 * 3 * 5).reshape(2, 3, 5) - (0 if code == 0x08 else 7)
    path = tmp_path / "toy-idx3"
    path.write_bytes(idx_bytes(array, code))
    got = read_idx(path)
    assert got.shape == (2, 3, 5) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    gz = tmp_path / "toy-idx3.gz"
    gz.write_bytes(gzip.compress(idx_bytes(array, code)))
    np.testing.assert_array_equal(read_idx(gz), array)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
CORRUPT = {
    "too few bytes": (bytes([0, 0]), "too short for an IDX file"),
    "wrong magic": (b"\x01\x02" + GOOD[2:], "not an IDX file: magic number 0x01020802"),
    "unknown type": (bytes([0, 0, 0x07]) + GOOD[3:], "not an IDX file"),
    "no dimensions": (bytes([0, 0, 8, 0]), "not an IDX file"),
    "truncated header": (GOOD[:9], "truncated inside its IDX header"),
    "truncated data": (GOOD[:-1], r"is truncated: 23 bytes where .* makes 24"),
    "trailing bytes": (GOOD + b"\x00", "has trailing bytes: 25 bytes"),
    "bad gzip": (b"\x1f\x8b" + b"\x00" * 20, "is not a valid gzip file"),
    "truncated gzip": (gzip.compress(GOOD * 50)[:30], "is a truncated gzip file"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_idx_is_one_clear_line(tmp_path, case):
    data, message = CORRUPT[case]
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        read_idx(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "replace it with an intact copy" in text


# ---------------------------------------------------------------- the source chain


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_data_dir_gzipped_or_not(tmp_path, monkeypatch, gz, isolated_env):
    images, labels = write_split(tmp_path, "test", monkeypatch, gz=gz)
    data = load_fashion_mnist("test", data_dir=tmp_path)
    assert torch.equal(data.images, torch.from_numpy(images))
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
    assert data.images.is_contiguous() and data.images.numpy().flags.writeable
    # The environment variable names the same folder.
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    assert torch.equal(load_fashion_mnist("test").images, data.images)
    assert not isolated_env.exists()


def test_gz_saved_under_the_plain_name_is_read(tmp_path, monkeypatch):
    images, _ = write_split(tmp_path, "test", monkeypatch)
    folder = tmp_path / "fashion-mnist"
    for name in FASHION_MNIST_SPLITS["test"]:
        (folder / f"{name}.gz").rename(folder / name)
    assert torch.equal(
        load_fashion_mnist("test", data_dir=tmp_path).images, torch.from_numpy(images)
    )


def test_checksum_of_the_decompressed_bytes_is_verified(tmp_path, monkeypatch):
    write_split(tmp_path, "train", monkeypatch)
    name = "train-images-idx3-ubyte"
    monkeypatch.setitem(CHECKSUMS, f"fashion-mnist/{name}", "0" * 64)
    with pytest.raises(DataChecksumError, match=rf"{name}\.gz decompresses to .* expected") as err:
        load_fashion_mnist("train", data_dir=tmp_path)
    assert "\n" not in str(err.value) and "fashion-mnist.s3-website" in str(err.value)


def test_hand_made_files_fail_the_real_checksums(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    images, labels = toy_split()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataChecksumError, match="expected 7840016 bytes with sha256 5b4141f0"):
        load_fashion_mnist("test", data_dir=tmp_path)


def test_bad_gzip_in_data_dir_names_the_file(tmp_path, monkeypatch):
    write_split(tmp_path, "test", monkeypatch)
    broken = tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-12])  # cut inside the deflate stream
    with pytest.raises(ValueError, match=f"{broken} is a truncated gzip file"):
        load_fashion_mnist("test", data_dir=tmp_path)


def serve(tmp_path, monkeypatch, split: str, *, mirror_only: bool = False):
    """Put the toy split's .gz files in a folder reached by file:// URLs."""
    server = tmp_path / "server"
    arrays = write_split(server, split, monkeypatch)
    missing = (tmp_path / "nowhere").as_uri() + "/{file}.gz"
    good = (server / "fashion-mnist").as_uri() + "/{file}.gz"
    urls = (missing, good) if mirror_only else (good, missing)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_URLS", urls)
    return server, arrays


@pytest.mark.parametrize("mirror_only", [False, True])
def test_download_lands_decompressed_in_the_cache(tmp_path, monkeypatch, isolated_env, mirror_only):
    server, (images, _) = serve(tmp_path, monkeypatch, "test", mirror_only=mirror_only)
    data = load_fashion_mnist("test")
    assert torch.equal(data.images, torch.from_numpy(images))
    cached = isolated_env / "fashion-mnist" / "t10k-images-idx3-ubyte"
    assert cached.read_bytes() == idx_bytes(images)
    # Later loads read the cache: the server can go.
    for f in (server / "fashion-mnist").iterdir():
        f.unlink()
    assert torch.equal(load_fashion_mnist("test").images, data.images)


def test_offline_with_no_copy_is_one_clear_line(tmp_path, monkeypatch):
    nowhere = (tmp_path / "nowhere").as_uri() + "/{file}.gz"
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_URLS", (nowhere, nowhere))
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte not found") as err:
        load_fashion_mnist("test")
    assert "\n" not in str(err.value) and "put it at" in str(err.value)


def test_missing_data_dir_and_unknown_split(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_fashion_mnist("test", data_dir=tmp_path / "typo")
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split 'val'; known: test, train"):
        load_fashion_mnist("val", data_dir=tmp_path)


# ---------------------------------------------------------------- the dataclass


def test_fashion_mnist_checks_its_fields_and_subsets():
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([0, 9, 3, 3])
    data = FashionMNIST(images, labels)
    part = data.subset([3, 1])
    assert len(part) == 2 and part.labels.tolist() == [3, 9] and part.classes == CLASSES
    assert data.subset(labels == 3).labels.tolist() == [3, 3]
    with pytest.raises(TypeError, match="images must be a uint8 tensor, got float32"):
        FashionMNIST(images.float(), labels)
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\)"):
        FashionMNIST(images[0], labels)
    with pytest.raises(TypeError, match="labels must be an int64 tensor"):
        FashionMNIST(images, labels.int())
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        FashionMNIST(images, labels[:3])
    with pytest.raises(ValueError, match=r"labels must lie in 0..1 for 2 classes, got 0..9"):
        FashionMNIST(images, labels, ("a", "b"))
