import hashlib
import os
from pathlib import Path

import pytest
import torch

from attnlab.data import movielens, sources
from attnlab.data.movielens import (
    CHECKSUMS,
    MOVIELENS_MEMBERS,
    MOVIELENS_RELPATHS,
    MovieLens100K,
    histories,
    leave_one_out,
    load_movielens_100k,
    parse_movielens,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError

# Read at import, before the autouse fixture points the index at an empty folder.
_INDEX = os.environ.get("PIP_INDEX_URL")

INTER_HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEAD = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
USER_HEAD = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"

# Raw ids are sparse and out of order so that remapping and sorting both show.
# user 30: items 500 (t=50), 100 (t=10), 900 (t=10, after 100 in the file: tie), 700 (t=70)
# user 8:  items 900 (t=5), 100 (t=3), 500 (t=9)
# user 99: item 700 only (t=1)
INTER = INTER_HEAD + (
    "30\t500\t4\t50\n"
    "8\t900\t3\t5\n"
    "30\t100\t5\t10\n"
    "99\t700\t1\t1\n"
    "30\t900\t2\t10\n"
    "8\t100\t4.5\t3\n"
    "30\t700\t3\t70\n"
    "8\t500\t1\t9\n"
)
ITEM = ITEM_HEAD + (
    "100\tToy Story\t1995\tAnimation Children's Comedy\n"
    "500\tHeat\t1995\tAction Crime Thriller\n"
    "700\tunkonwn\tunkonwn\tunknown\n"
    "900\tCasablanca\t1942\tDrama Romance War\n"
    "999\tNever Rated\t1990\tWestern\n"
)
USER = USER_HEAD + "8\t24\tM\ttechnician\t85711\n30\t53\tF\tother\t94043\n99\t33\tF\twriter\t1\n"


def put(folder: Path, monkeypatch, *, inter=INTER, item=ITEM, user=USER, skip=()) -> Path:
    """Write the trio as folder/movielens/ml-100k/ml-100k.* and pin their digests."""
    for kind, text in {"inter": inter, "item": item, "user": user}.items():
        if kind in skip:
            continue
        target = folder / MOVIELENS_RELPATHS[kind]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        monkeypatch.setitem(CHECKSUMS, MOVIELENS_RELPATHS[kind], digest)
    return folder


def test_parses_remaps_and_sorts(tmp_path, monkeypatch, isolated_env):
    ml = load_movielens_100k(data_dir=put(tmp_path, monkeypatch))
    assert isinstance(ml, MovieLens100K) and len(ml) == 8
    assert (ml.num_users, ml.num_items) == (3, 4)
    # Ranks of the raw ids that occur in the interactions; 0 is padding; item 999 dropped.
    assert ml.user_raw_ids.tolist() == [0, 8, 30, 99]
    assert ml.item_raw_ids.tolist() == [0, 100, 500, 700, 900]
    raw = list(
        zip(
            ml.user_raw_ids[ml.users].tolist(),
            ml.item_raw_ids[ml.items].tolist(),
            ml.ratings.tolist(),
            ml.timestamps.tolist(),
        )
    )
    # Sorted by user, then time; the tie at t=10 keeps file order (100 before 900).
    assert raw == [
        (8, 100, 4.5, 3),
        (8, 900, 3.0, 5),
        (8, 500, 1.0, 9),
        (30, 100, 5.0, 10),
        (30, 900, 2.0, 10),
        (30, 500, 4.0, 50),
        (30, 700, 3.0, 70),
        (99, 700, 1.0, 1),
    ]
    assert ml.users.tolist() == [1, 1, 1, 2, 2, 2, 2, 3]
    assert ml.items.tolist() == [1, 4, 2, 1, 4, 2, 3, 3]
    assert [t.dtype for t in (ml.users, ml.items, ml.ratings, ml.timestamps)] == [
        torch.int64,
        torch.int64,
        torch.float32,
        torch.int64,
    ]
    # Nothing was written to the cache: every file came from the data dir.
    assert not isolated_env.exists()


def test_item_and_user_side_information(tmp_path, monkeypatch):
    ml = load_movielens_100k(data_dir=put(tmp_path, monkeypatch))
    assert ml.titles == ("", "Toy Story", "Heat", "unkonwn", "Casablanca")
    assert ml.years.tolist() == [0, 1995, 1995, 0, 1942]  # unreadable year -> 0
    # The genre vocabulary is the whole file's (Western only on the unrated item), sorted.
    assert ml.genre_names == (
        "Action",
        "Animation",
        "Children's",
        "Comedy",
        "Crime",
        "Drama",
        "Romance",
        "Thriller",
        "War",
        "Western",
        "unknown",
    )
    assert ml.genres.shape == (5, 11) and ml.genres.dtype == torch.float32
    on = [{ml.genre_names[j] for j in row.nonzero().flatten().tolist()} for row in ml.genres]
    assert on == [
        set(),
        {"Animation", "Children's", "Comedy"},
        {"Action", "Crime", "Thriller"},
        {"unknown"},
        {"Drama", "Romance", "War"},
    ]
    assert ml.ages.tolist() == [0, 24, 53, 33]
    assert ml.genders == ("", "M", "F", "F")
    assert ml.occupations == ("", "technician", "other", "writer")


def test_histories_and_leave_one_out(tmp_path, monkeypatch):
    ml = load_movielens_100k(data_dir=put(tmp_path, monkeypatch))
    hist = histories(ml)
    assert [h.tolist() for h in hist] == [[1, 4, 2], [1, 4, 2, 3], [3]]
    # Copies: changing one leaves the dataset alone.
    hist[0][0] = 99
    assert ml.items[0] == 1
    split = leave_one_out(histories(ml))
    assert [t.tolist() for t in split.train] == [[1], [1, 4], [3]]
    assert split.valid.tolist() == [4, 2, 0] and split.test.tolist() == [2, 3, 0]
    assert split.valid.dtype == split.test.dtype == torch.int64


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_leave_one_out_short_histories(length):
    # Fewer than 3 items: everything to train, valid = test = 0 (padding: skip the user).
    h = torch.arange(1, length + 1)
    train, valid, test = leave_one_out([h])
    if length < 3:
        assert train[0].tolist() == h.tolist() and valid.tolist() == test.tolist() == [0]
    else:
        assert train[0].tolist() == [1] and valid.tolist() == [2] and test.tolist() == [3]
    assert leave_one_out([]).valid.shape == (0,)


def test_leave_one_out_and_histories_bad_input_is_one_clear_line():
    with pytest.raises(TypeError, match="histories must be a list of int64 tensors"):
        leave_one_out(torch.arange(4))
    with pytest.raises(TypeError, match=r"histories\[1\] must be an int64 tensor"):
        leave_one_out([torch.arange(4), torch.ones(3)])
    with pytest.raises(ValueError, match=r"histories\[0\] must be 1-D"):
        leave_one_out([torch.ones(2, 3, dtype=torch.int64)])
    with pytest.raises(TypeError, match="data must be a MovieLens100K"):
        histories([torch.arange(3)])


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("inter", "user\titem\trating\ttime\n1\t2\t3\t4\n", r"ml-100k\.inter has header"),
        ("item", INTER_HEAD, r"ml-100k\.item has header .*expected the columns item_id:token"),
        ("user", "", r"ml-100k\.user has header \(empty\)"),
        ("inter", INTER_HEAD + "30\t500\t4\n", r"ml-100k\.inter line 2 has 3 tab-separated"),
        ("inter", INTER.replace("\t5\t10", "\tfive\t10"), r"line 4: rating 'five' is not a"),
        ("inter", INTER.replace("99\t700", "9.5\t700"), r"line 5: user_id '9\.5' is not an"),
        ("inter", INTER_HEAD, r"ml-100k\.inter holds no interactions"),
        ("inter", INTER.replace("\n8\t900", "\n\n8\t900"), r"line 3 has 1 tab-separated"),
        ("item", ITEM.replace("900\t", "100\t"), r"ml-100k\.item line 5 repeats item id 100"),
        ("user", USER.replace("99\t", "98\t"), r"ml-100k\.user lacks user id 99"),
        ("item", ITEM + "1\t\xe9\t1\tDrama\n\n\n", None),
    ],
    ids=[
        "inter-header",
        "item-header",
        "empty",
        "fields",
        "float",
        "int",
        "no-rows",
        "blank-line",
        "repeat",
        "missing-user",
        "utf8-ok",
    ],
)
def test_malformed_file_is_one_clear_line_naming_it(tmp_path, monkeypatch, kind, text, message):
    folder = put(tmp_path, monkeypatch, **{kind: text})
    if message is None:  # non-ASCII titles (the real file has some) and trailing newlines are fine
        load_movielens_100k(data_dir=folder)
        return
    with pytest.raises(ValueError, match=message) as info:
        load_movielens_100k(data_dir=folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_not_utf8_is_one_clear_line(tmp_path):
    for kind, text in {"inter": INTER, "item": ITEM, "user": USER}.items():
        (tmp_path / kind).write_text(text)
    (tmp_path / "item").write_bytes(ITEM.encode() + b"1\t\xff\t1\tDrama\n")
    with pytest.raises(ValueError, match=r"item is not UTF-8 text") as info:
        parse_movielens(tmp_path / "inter", tmp_path / "item", tmp_path / "user")
    assert "\n" not in str(info.value)


def test_missing_file_names_the_wheel_and_grouplens(tmp_path, monkeypatch):
    folder = put(tmp_path, monkeypatch, skip=("user",))
    with pytest.raises(DataNotFoundError) as info:
        load_movielens_100k(data_dir=folder)
    message = str(info.value)
    assert "\n" not in message and "movielens/ml-100k/ml-100k.user not found" in message
    assert "recbole/1.2.1" in message and MOVIELENS_MEMBERS["user"] in message
    assert "files.grouplens.org/datasets/movielens/ml-100k.zip" in message


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    folder = put(tmp_path, monkeypatch)
    monkeypatch.setitem(CHECKSUMS, MOVIELENS_RELPATHS["item"], "0" * 64)
    with pytest.raises(DataChecksumError, match="expected 0000"):
        load_movielens_100k(data_dir=folder)


def test_fetch_reads_the_members_out_of_the_pinned_wheel(
    package_index, monkeypatch, isolated_env, no_subprocess
):
    members = {
        MOVIELENS_MEMBERS[k]: t.encode()
        for k, t in zip(tuple(MOVIELENS_RELPATHS), (INTER, ITEM, USER))
    }
    wheel = package_index.add_zip("recbole", "recbole-1.2.1-py3-none-any.whl", members)
    monkeypatch.setattr(movielens, "MOVIELENS_WHEEL", wheel)
    for kind in tuple(MOVIELENS_RELPATHS):
        data = members[MOVIELENS_MEMBERS[kind]]
        monkeypatch.setitem(CHECKSUMS, MOVIELENS_RELPATHS[kind], hashlib.sha256(data).hexdigest())
    downloads = []
    real = sources.download_package_file
    monkeypatch.setattr(
        sources, "download_package_file", lambda *a: downloads.append(a) or real(*a)
    )
    ml = load_movielens_100k()
    assert (ml.num_users, ml.num_items, len(ml)) == (3, 4, 8)
    assert (isolated_env / MOVIELENS_RELPATHS["item"]).read_text() == ITEM
    assert len(downloads) == 1  # one wheel for the three missing files


@pytest.mark.slow
def test_real_wheel_counts(monkeypatch, isolated_env):
    # Downloads the recbole wheel (2 MB) from the real index into a fresh cache.
    if _INDEX:
        monkeypatch.setenv("PIP_INDEX_URL", _INDEX)
    else:
        monkeypatch.delenv("PIP_INDEX_URL")
    ml = load_movielens_100k()
    assert (ml.num_users, ml.num_items, len(ml)) == (943, 1682, 100_000)
    assert torch.equal(ml.user_raw_ids, torch.arange(944))
    assert sorted(ml.ratings.unique().tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert ml.genres.shape == (1683, 19) and ml.titles[1] == "Toy Story"
    hist = histories(ml)
    assert min(len(h) for h in hist) == 20  # every ML-100K user rated at least 20 movies
    assert all(bool((ml.timestamps[ml.users == u].diff() >= 0).all()) for u in (1, 500, 943))
    assert int((leave_one_out(hist).test == 0).sum()) == 0
