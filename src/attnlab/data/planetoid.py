"""Planetoid citation graphs (Cora, CiteSeer, PubMed) with the standard public split.

Yang, Cohen & Salakhutdinov, "Revisiting Semi-Supervised Learning with Graph
Embeddings" (ICML 2016) published the split that GCN (Kipf & Welling, 2017) and GAT
(Velickovic et al., 2018) report on: 20 labelled nodes per class for training, 500
validation nodes and 1000 test nodes. The files ``ind.<name>.{x,y,tx,ty,allx,ally,
graph,test.index}`` are Python 2 pickles (scipy sparse matrices, numpy arrays and a
dict-of-lists graph) plus a text file of test node ids.

The assembly follows Kipf's ``gcn/utils.py`` and PyTorch Geometric's
``read_planetoid_data``: nodes are ``allx`` then ``tx``, the test rows are moved to the
ids listed in ``test.index``, and CiteSeer's isolated test nodes (ids inside the test
range that have no row in ``tx``) get zero features and label 0, and belong to no split.

Files are found by :func:`attnlab.data.sources.resolve` in ``<data dir>/planetoid/``,
then the cache, then downloaded from :data:`PLANETOID_URL` and checked against
:data:`CHECKSUMS`. Cora's and CiteSeer's files are pinned (:data:`READY`); PubMed needs
its sha256 values added to :data:`CHECKSUMS` before :func:`load_planetoid` will fetch
it (:func:`read_planetoid` reads already-verified files from any folder).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from attnlab.data._unpickle import load_restricted
from attnlab.data.sources import DataNotFoundError, download_url, resolve

__all__ = [
    "CHECKSUMS",
    "PLANETOID_NAMES",
    "PLANETOID_SUFFIXES",
    "PLANETOID_URL",
    "READY",
    "PlanetoidGraph",
    "load_planetoid",
    "read_planetoid",
]

PlanetoidName = Literal["cora", "citeseer", "pubmed"]
PLANETOID_NAMES: tuple[str, ...] = ("cora", "citeseer", "pubmed")
PLANETOID_SUFFIXES = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/ind.{name}.{suffix}"
_VAL_SIZE = 500

# The only globals a Planetoid pickle may name: numpy arrays and dtypes, scipy sparse
# matrices and the graph's defaultdict(list), each under the module paths of the
# Python 2 era that wrote the published files and of today's numpy/scipy; and
# _codecs.encode, a pure function by which Python 3 writes bytes at protocol 2.
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("scipy.sparse.csr", "csr_matrix"),
        ("scipy.sparse._csr", "csr_matrix"),
        ("scipy.sparse.csc", "csc_matrix"),
        ("scipy.sparse._csc", "csc_matrix"),
        ("collections", "defaultdict"),
        ("__builtin__", "list"),
        ("builtins", "list"),
        ("_codecs", "encode"),
    }
)

# Expected sha256 of each file, keyed by relpath (the publisher's bytes).
CHECKSUMS: dict[str, str] = {
    "planetoid/ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "planetoid/ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    "planetoid/ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "planetoid/ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "planetoid/ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "planetoid/ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "planetoid/ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "planetoid/ind.cora.test.index": (
        "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"
    ),
    "planetoid/ind.citeseer.x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "planetoid/ind.citeseer.y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    "planetoid/ind.citeseer.tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "planetoid/ind.citeseer.ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "planetoid/ind.citeseer.allx": (
        "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"
    ),
    "planetoid/ind.citeseer.ally": (
        "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"
    ),
    "planetoid/ind.citeseer.graph": (
        "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"
    ),
    "planetoid/ind.citeseer.test.index": (
        "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"
    ),
}

READY: tuple[str, ...] = ("cora", "citeseer")
"""The datasets whose files are pinned in :data:`CHECKSUMS`, so :func:`load_planetoid`
fetches and verifies them (PubMed waits for its checksums)."""


@dataclass(frozen=True)
class PlanetoidGraph:
    """A Planetoid citation graph with the public split.

    Attributes:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
        x: Node features, each row divided by its sum (all-zero rows stay zero).
        y: Class index per node.
        edge_index: Directed edges ``[source; target]``, symmetric (both directions of
            every citation), sorted, without duplicates or self-loops.
        train_mask: The first 20 labelled nodes per class (``range(len(ind.y))``).
        val_mask: The 500 nodes after the training ones (fewer if the graph ends first).
        test_mask: The ids in ``ind.<name>.test.index`` (1000 nodes).
        classes: Number of classes.

    Shapes:
        x: (N, F) float32; y: (N,) int64; edge_index: (2, E) int64; masks: (N,) bool.
    """

    name: str
    x: Tensor
    y: Tensor
    edge_index: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    classes: int

    @property
    def num_nodes(self) -> int:
        """Number of nodes N."""
        return int(self.y.numel())

    @property
    def num_edges(self) -> int:
        """Number of directed edges E."""
        return int(self.edge_index.shape[1])


def _check_name(name: str) -> str:
    if name not in PLANETOID_NAMES:
        raise ValueError(f"unknown Planetoid dataset {name!r}; choose one of {PLANETOID_NAMES}")
    return name


def _read(path: Path) -> Any:
    if path.name.endswith(".test.index"):
        return np.loadtxt(path, dtype=np.int64, ndmin=1)
    # latin1: the files were pickled under Python 2, and numpy's buffers are str there.
    return load_restricted(path, _PICKLE_GLOBALS, kind="Planetoid file", encoding="latin1")


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.todense() if sp.issparse(matrix) else matrix, dtype=np.float64)


def _edges(graph: dict[int, list[int]], num_nodes: int) -> Tensor:
    """Symmetric, sorted, duplicate- and self-loop-free edge list of a dict-of-lists graph."""
    src = np.fromiter((s for s, ts in graph.items() for _ in ts), dtype=np.int64)
    dst = np.fromiter((t for ts in graph.values() for t in ts), dtype=np.int64)
    both = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
    both = both[:, both[0] != both[1]]
    if both.size and (both.min() < 0 or both.max() >= num_nodes):
        raise ValueError(f"graph names node {int(both.max())} but there are {num_nodes} nodes")
    keys = np.unique(both[0] * num_nodes + both[1])  # sorted by source, then target
    return torch.from_numpy(np.stack([keys // num_nodes, keys % num_nodes]))


def _mask(index: np.ndarray, size: int) -> Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.from_numpy(np.asarray(index, dtype=np.int64))] = True
    return mask


def read_planetoid(folder: str | Path, name: PlanetoidName = "cora") -> PlanetoidGraph:
    """Assemble a Planetoid graph from the eight ``ind.<name>.*`` files in ``folder``.

    No checksum is verified here (use :func:`load_planetoid` for that). The pickles are
    read by a restricted unpickler that admits only the numpy, scipy and ``defaultdict``
    classes Planetoid files hold, so a file naming any other global (``os.system``) is
    refused before anything in it runs.

    Args:
        folder: Folder holding ``ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``.
        name: Dataset name; CiteSeer's isolated test nodes get zero rows.

    Returns:
        The graph.

    Raises:
        FileNotFoundError: A file is missing.
        pickle.UnpicklingError: A file names a global no Planetoid file holds.
    """
    name = _check_name(name)
    return _assemble(name, {s: Path(folder) / f"ind.{name}.{s}" for s in PLANETOID_SUFFIXES})


def _assemble(name: str, paths: dict[str, Path]) -> PlanetoidGraph:
    """Build the graph from the eight files, Kipf's and PyG's way."""
    files = {s: _read(p) for s, p in paths.items()}
    y_train, tx, ty = files["y"], _dense(files["tx"]), _dense(files["ty"])
    allx, ally = _dense(files["allx"]), _dense(files["ally"])
    test_index = files["test.index"]
    test_sorted = np.sort(test_index)
    if name == "citeseer":
        # Isolated test nodes have no row in tx/ty: pad the test range with zeros.
        low = int(test_sorted[0])
        span = int(test_sorted[-1]) - low + 1
        tx_ext, ty_ext = np.zeros((span, tx.shape[1])), np.zeros((span, ty.shape[1]))
        tx_ext[test_sorted - low], ty_ext[test_sorted - low] = tx, ty
        tx, ty = tx_ext, ty_ext
    x = np.concatenate([allx, tx])
    onehot = np.concatenate([ally, ty])
    x[test_index], onehot[test_index] = x[test_sorted], onehot[test_sorted]
    sums = x.sum(1, keepdims=True)
    x = np.divide(x, sums, out=np.zeros_like(x), where=sums != 0)
    n = x.shape[0]
    return PlanetoidGraph(
        name=name,
        x=torch.from_numpy(x).float(),
        y=torch.from_numpy(onehot.argmax(1)).long(),
        edge_index=_edges(files["graph"], n),
        train_mask=_mask(np.arange(len(y_train)), n),
        val_mask=_mask(np.arange(len(y_train), min(len(y_train) + _VAL_SIZE, n)), n),
        test_mask=_mask(test_index, n),
        classes=int(onehot.shape[1]),
    )


def _fetch(dest: Path, *, url: str) -> None:
    download_url(url, dest)


def load_planetoid(
    name: PlanetoidName = "cora", *, data_dir: str | Path | None = None
) -> PlanetoidGraph:
    """Load a Planetoid graph with the public split, finding and verifying its files.

    Args:
        name: ``"cora"`` (2708 nodes, 10556 directed edges, 1433 features, 7 classes,
            split 140/500/1000), ``"citeseer"`` or ``"pubmed"``.
        data_dir: Data directory holding ``planetoid/``; None uses
            ``$ATTNLAB_DATA_DIR``, then the cache, then the download.

    Returns:
        The graph.

    Raises:
        ValueError: Unknown name.
        DataNotFoundError: No copy anywhere and the download failed, or the dataset's
            checksums are not pinned in :data:`CHECKSUMS`.
        DataChecksumError: A copy was found but its checksum is wrong.

    Example:
        >>> g = load_planetoid("cora")  # doctest: +SKIP
        >>> g.x.shape, int(g.train_mask.sum()), g.classes  # doctest: +SKIP
        (torch.Size([2708, 1433]), 140, 7)
    """
    name = _check_name(name)
    paths = {}
    for suffix in PLANETOID_SUFFIXES:
        relpath = f"planetoid/ind.{name}.{suffix}"
        url = PLANETOID_URL.format(name=name, suffix=suffix)
        if relpath not in CHECKSUMS:
            raise DataNotFoundError(
                f"{name} is not ready (ready: {', '.join(READY)}): no pinned sha256 for "
                f"{relpath}; add it to attnlab.data.planetoid.CHECKSUMS (file from {url}) or "
                f"read verified files with read_planetoid(folder, {name!r})"
            )
        fetch = functools.partial(_fetch, url=url)
        paths[suffix] = resolve(
            relpath, sha256=CHECKSUMS[relpath], fetch=fetch, url=url, data_dir=data_dir
        )
    return _assemble(name, paths)
