import hashlib
import os
import pickle
import pickletools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnlab.data import planetoid
from attnlab.data.planetoid import PLANETOID_SUFFIXES, load_planetoid, read_planetoid
from attnlab.data.sources import DataChecksumError, DataNotFoundError

# Read at import, before the autouse fixture clears it for each test.
_ENV = os.environ.get("ATTNLAB_DATA_DIR")
REAL_DATA_DIR = Path(_ENV) if _ENV else Path(__file__).resolve().parents[3] / "shared" / "data"
CORA = REAL_DATA_DIR / "planetoid"
needs_cora = pytest.mark.skipif(
    not (CORA / "ind.cora.graph").is_file(), reason="Cora files not in the data directory"
)


@pytest.fixture(scope="module")
def cora():
    return load_planetoid("cora", data_dir=REAL_DATA_DIR)


@needs_cora
def test_cora_sizes_and_split(cora):
    assert cora.x.shape == (2708, 1433) and cora.x.dtype == torch.float32
    assert cora.y.shape == (2708,) and cora.y.dtype == torch.long and cora.classes == 7
    assert cora.num_edges == 10556 and cora.edge_index.dtype == torch.long
    assert torch.equal(cora.train_mask.nonzero().flatten(), torch.arange(140))
    assert torch.equal(cora.val_mask.nonzero().flatten(), torch.arange(140, 640))
    assert int(cora.test_mask.sum()) == 1000
    assert (
        not (cora.train_mask & cora.test_mask).any() and not (cora.val_mask & cora.test_mask).any()
    )
    assert torch.bincount(cora.y[cora.train_mask], minlength=7).tolist() == [20] * 7
    torch.testing.assert_close(cora.x.sum(1), torch.ones(2708))


@needs_cora
def test_cora_edges_symmetric_unique_no_self_loops(cora):
    src, dst = cora.edge_index
    assert not (src == dst).any()
    keys = set(zip(src.tolist(), dst.tolist()))
    assert len(keys) == cora.num_edges
    assert keys == {(j, i) for i, j in keys}


@needs_cora
def test_cora_matches_pyg(cora, tmp_path):
    from torch_geometric.datasets import Planetoid

    raw = tmp_path / "Cora" / "raw"
    raw.mkdir(parents=True)
    for suffix in PLANETOID_SUFFIXES:
        shutil.copy(CORA / f"ind.cora.{suffix}", raw)
    ref = Planetoid(str(tmp_path), "Cora")[0]
    ref_x = ref.x / ref.x.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(cora.x, ref_x)
    assert torch.equal(cora.y, ref.y)
    for ours, theirs in [
        (cora.train_mask, ref.train_mask),
        (cora.val_mask, ref.val_mask),
        (cora.test_mask, ref.test_mask),
    ]:
        assert torch.equal(ours, theirs)
    assert set(map(tuple, cora.edge_index.T.tolist())) == set(map(tuple, ref.edge_index.T.tolist()))


def _write_toy(folder: Path, name: str) -> dict:
    """Six nodes, 2 features, 2 classes; test ids 3 and 5 (4 is an isolated test node)."""
    folder.mkdir(parents=True, exist_ok=True)
    allx = sp.csr_matrix(np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]))
    ally = np.array([[1, 0], [0, 1], [1, 0]])
    tx = sp.csr_matrix(np.array([[0.0, 5.0], [4.0, 4.0]]))  # rows for ids 5 and 3
    ty = np.array([[0, 1], [1, 0]])
    objects = {
        "x": allx[:1],
        "y": ally[:1],
        "tx": tx,
        "ty": ty,
        "allx": allx,
        "ally": ally,
        "graph": {0: [1, 1, 0], 1: [0, 2], 2: [5], 3: [], 4: [], 5: [2]},
    }
    for suffix, obj in objects.items():
        with open(folder / f"ind.{name}.{suffix}", "wb") as f:
            pickle.dump(obj, f, protocol=2)
    (folder / f"ind.{name}.test.index").write_text("5\n3\n")
    return objects


def test_citeseer_isolated_test_nodes_get_zero_rows(tmp_path):
    _write_toy(tmp_path, "citeseer")
    g = read_planetoid(tmp_path, "citeseer")
    assert g.x.shape == (6, 2) and g.classes == 2
    expected = torch.tensor([[0.5, 0.5], [1, 0], [0, 1], [0.5, 0.5], [0, 0], [0, 1]])
    torch.testing.assert_close(g.x, expected)
    assert g.y.tolist() == [0, 1, 0, 0, 0, 1]  # id 3 <- tx row 1, id 5 <- tx row 0
    assert g.train_mask.tolist() == [True] + [False] * 5
    assert g.val_mask.tolist() == [False] + [True] * 5  # the 500 after training, cut at N
    assert g.test_mask.tolist() == [False, False, False, True, False, True]
    assert g.edge_index.tolist() == [[0, 1, 1, 2, 2, 5], [1, 0, 2, 1, 5, 2]]


def test_missing_file_is_a_clear_error(tmp_path):
    _write_toy(tmp_path, "citeseer")
    (tmp_path / "ind.citeseer.ty").unlink()
    with pytest.raises(FileNotFoundError, match="ind.citeseer.ty"):
        read_planetoid(tmp_path, "citeseer")


def test_unknown_name_and_unpinned_dataset():
    with pytest.raises(ValueError, match="unknown Planetoid dataset 'reddit'"):
        load_planetoid("reddit")  # type: ignore[arg-type]
    with pytest.raises(DataNotFoundError, match="pubmed is not ready .ready: cora, citeseer.: no "):
        load_planetoid("pubmed")


def test_checksums_verified_and_offline_error_names_file(tmp_path, monkeypatch):
    _write_toy(tmp_path / "planetoid", "cora")  # right names, wrong bytes
    with pytest.raises(DataChecksumError, match="ind.cora.x"):
        load_planetoid("cora", data_dir=tmp_path)

    def offline(url, dest, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(planetoid, "download_url", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="kimiyoung/planetoid/raw/master/data/ind.cora.x"):
        load_planetoid("cora", data_dir=empty)


def test_citeseer_is_pinned_fetched_from_its_address_and_verified(tmp_path, monkeypatch):
    assert "citeseer" in planetoid.READY and "pubmed" not in planetoid.READY
    assert all(f"planetoid/ind.citeseer.{s}" in planetoid.CHECKSUMS for s in PLANETOID_SUFFIXES)
    _write_toy(tmp_path / "planetoid", "citeseer")  # right names, wrong bytes
    with pytest.raises(DataChecksumError, match="ind.citeseer.x"):
        load_planetoid("citeseer", data_dir=tmp_path)
    asked = []

    def offline(url, dest, **kwargs):
        asked.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(planetoid, "download_url", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="planetoid/ind.citeseer.x") as error:
        load_planetoid("citeseer", data_dir=empty)
    assert "\n" not in str(error.value).strip()
    assert asked and asked[0].endswith("kimiyoung/planetoid/raw/master/data/ind.citeseer.x")


def test_a_verified_local_citeseer_copy_is_used(tmp_path, monkeypatch):
    # The real files are not here: pin the toy files' own digests, as a verified copy.
    folder = tmp_path / "planetoid"
    _write_toy(folder, "citeseer")
    digests = {
        f"planetoid/ind.citeseer.{s}": hashlib.sha256(
            (folder / f"ind.citeseer.{s}").read_bytes()
        ).hexdigest()
        for s in PLANETOID_SUFFIXES
    }
    monkeypatch.setattr(planetoid, "CHECKSUMS", {**planetoid.CHECKSUMS, **digests})
    monkeypatch.setattr(planetoid, "download_url", lambda *a, **k: pytest.fail("downloaded"))
    g = load_planetoid("citeseer", data_dir=tmp_path)
    assert g.x.shape == (6, 2) and g.classes == 2


def test_pinned_citeseer_digests_match_the_data_readme():
    readme = REAL_DATA_DIR / "README.md"
    if not readme.is_file():
        pytest.skip("the shared data README is not beside this checkout")
    text = readme.read_text(encoding="utf-8")
    for suffix in PLANETOID_SUFFIXES:
        digest = planetoid.CHECKSUMS[f"planetoid/ind.citeseer.{suffix}"]
        assert f"{suffix} `{digest}`" in text


class _Call:
    """Pickles as a call of ``func(*args)``, which a careless unpickler makes."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payload(kind: str, marker: Path) -> bytes:
    """A pickle that creates ``marker`` when loaded with plain ``pickle``."""
    if kind == "os.system":
        return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # protocol 0, by hand
    if kind == "subprocess.check_call":
        return pickle.dumps(_Call(subprocess.check_call, ["touch", str(marker)]), protocol=4)
    code = f"open({str(marker)!r}, 'w').close()"
    # Protocol 2 writes Python 2's module name, protocol 4 Python 3's.
    return pickle.dumps(_Call(eval, code), protocol=2 if kind.startswith("__") else 4)


@pytest.mark.parametrize(
    "kind", ["os.system", "builtins.eval", "__builtin__.eval", "subprocess.check_call"]
)
def test_read_planetoid_refuses_foreign_globals_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "marker"
    payload = _payload(kind, marker)
    pickle.loads(payload)  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()

    _write_toy(tmp_path / "data", "citeseer")
    evil = tmp_path / "data" / "ind.citeseer.graph"
    evil.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError) as err:
        read_planetoid(tmp_path / "data", "citeseer")
    assert str(err.value) == (
        f"Planetoid file {evil} names the global {kind}, which a Planetoid file never "
        "holds; refusing to load it"
    )
    assert not marker.exists()


@needs_cora
def test_allow_list_admits_exactly_what_the_real_files_name():
    named = set()
    for suffix in PLANETOID_SUFFIXES[:-1]:  # test.index is text
        data = (CORA / f"ind.cora.{suffix}").read_bytes()
        named |= {tuple(arg.split(" ")) for op, arg, _ in pickletools.genops(data)
                  if op.name == "GLOBAL"}  # fmt: skip
    assert named == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("scipy.sparse.csr", "csr_matrix"),
        ("collections", "defaultdict"),
        ("__builtin__", "list"),
    }
    assert named <= planetoid._PICKLE_GLOBALS
