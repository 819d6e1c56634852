import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.data.text import PAD, UNK, Vocab, split_indices, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (
            "I didn't like it... 3.5/10!",
            ["i", "didn't", "like", "it", ".", ".", ".", "3.5", "/", "10", "!"],
        ),
        ("Don’t STOP", ["don't", "stop"]),
        ("$1,000 for 2 tickets?!", ["$", "1,000", "for", "2", "tickets", "?", "!"]),
        ("'quoted' dogs' o'neil", ["'", "quoted", "'", "dogs", "'", "o'neil"]),
        ("Québec clichés", ["québec", "clichés"]),
        ("snake_case mp3", ["snake", "_", "case", "mp3"]),
        ("a\u0085b\tc\n", ["a", "b", "c"]),
        ("", []),
        ("   ", []),
    ],
)
def test_tokenize_golden(text, tokens):
    assert tokenize(text) == tokens


TRAIN = ["the cat sat", "the dog sat", "the cat ran!"]


def test_vocab_build_order_and_specials():
    vocab = Vocab.build(TRAIN)
    # by frequency (the=3, cat=2, sat=2), ties alphabetical
    assert vocab.itos == [PAD, UNK, "the", "cat", "sat", "!", "dog", "ran"]
    assert vocab.pad_id == 0 and vocab.unk_id == 1 and len(vocab) == 8
    assert vocab.id("cat") == 3 and vocab.id("zebra") == vocab.unk_id
    assert "dog" in vocab and "zebra" not in vocab
    assert Vocab.build(reversed(TRAIN)) == vocab  # independent of text order


def test_vocab_min_freq_and_max_size():
    assert Vocab.build(TRAIN, min_freq=2).itos == [PAD, UNK, "the", "cat", "sat"]
    assert Vocab.build(TRAIN, max_size=4).itos == [PAD, UNK, "the", "cat"]
    assert Vocab.build(TRAIN, max_size=2).itos == [PAD, UNK]
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(TRAIN, max_size=1)
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(TRAIN, min_freq=0)
    with pytest.raises(TypeError, match="wrap it in a list"):
        Vocab.build("the cat")


def test_encode_golden():
    vocab = Vocab.build(TRAIN)
    ids, lengths = vocab.encode(["The cat flew", "", "dog"], max_len=10)
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.tolist() == [[2, 3, 1], [1, 0, 0], [6, 0, 0]]
    assert lengths.tolist() == [3, 1, 1]


def test_encode_truncates_to_max_len():
    vocab = Vocab.build(TRAIN)
    ids, lengths = vocab.encode(["the cat sat the dog", "cat"], max_len=2)
    assert ids.tolist() == [[2, 3], [3, 0]] and lengths.tolist() == [2, 1]


def test_encode_edge_cases():
    vocab = Vocab.build(TRAIN)
    ids, lengths = vocab.encode([], max_len=5)
    assert ids.shape == (0, 0) and lengths.shape == (0,)
    with pytest.raises(TypeError, match="wrap it in a list"):
        vocab.encode("the cat", max_len=5)
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode(["x"], max_len=0)


def test_tokens_align_with_encode_and_decode():
    vocab = Vocab.build(TRAIN)
    text = "The zebra sat"
    ids, lengths = vocab.encode([text, "the cat sat the dog"], max_len=4)
    assert vocab.tokens(text, 4) == ["the", "zebra", "sat"]
    assert vocab.decode(ids[0]) == ["the", UNK, "sat"]
    assert vocab.decode(ids[0], length=int(lengths[0])) == ["the", UNK, "sat"]
    assert vocab.decode([2, 0, 0], length=2) == ["the", PAD]
    assert vocab.tokens("", 4) == [UNK] and vocab.decode(vocab.encode([""], 4)[0][0]) == [UNK]
    with pytest.raises(ValueError, match="one row"):
        vocab.decode(ids)
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([99])


def test_vocab_json_round_trip():
    vocab = Vocab.build(TRAIN)
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.itos == vocab.itos
    with pytest.raises(ValueError, match="not a saved Vocab"):
        Vocab.from_dict({"tokens": vocab.itos})
    with pytest.raises(ValueError, match="start with"):
        Vocab(["a", PAD, UNK])
    with pytest.raises(ValueError, match="unique"):
        Vocab([PAD, UNK, "a", "a"])


LABELS = [0] * 60 + [1] * 40


def test_split_sizes_and_stratification():
    train, val, test = split_indices(LABELS)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    for part, n in ((train, 80), (val, 10), (test, 10)):
        assert sum(LABELS[i] for i in part) == round(0.4 * n)  # 40% positive everywhere
    assert sorted(train + val + test) == list(range(100))
    assert train == sorted(train)


def test_split_deterministic_and_independent_of_global_rng():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    first = split_indices(LABELS, seed=3)
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    torch.rand(10)
    assert split_indices(LABELS, seed=3) == first
    assert split_indices(LABELS, seed=4) != first
    assert split_indices(torch.tensor(LABELS), seed=3) == first
    assert split_indices(np.array(LABELS), seed=3) == first


def test_split_custom_fractions():
    train, val, test = split_indices(LABELS, fractions=(0.5, 0.0, 0.5))
    assert (len(train), len(val), len(test)) == (50, 0, 50)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_split_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_indices(LABELS, fractions=fractions)


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=0, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_partitions_property(labels, seed):
    parts = split_indices(labels, seed=seed)
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(len(labels)))
    for cls in set(labels):
        n = labels.count(cls)
        n_train = sum(1 for i in parts[0] if labels[i] == cls)
        assert abs(n_train - 0.8 * n) <= 0.5
