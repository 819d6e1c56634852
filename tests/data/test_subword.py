import io
import itertools
import os
import pickle
import warnings
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from attnlab.data import subword
from attnlab.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SubwordTokenizer
from attnlab.data.translation import load_multi30k

# Read at import, before the autouse fixture clears it for each test.
REAL_DATA_DIR = os.environ.get("ATTNLAB_DATA_DIR")

SUBJECTS = [
    "A man",
    "Two women",
    "The little girl",
    "A brown dog",
    "Several children",
    "An old man",
]
VERBS = ["is walking along", "are playing near", "jumps over", "stands beside", "looks at"]
OBJECTS = ["the river.", "a red car.", "the crowded market!", "some tall trees.", "the fountain?"]
TEXTS = [f"{s} {v} {o}" for s, v, o in itertools.product(SUBJECTS, VERBS, OBJECTS)]
VOCAB = 100


@pytest.fixture(scope="module")
def tok() -> SubwordTokenizer:
    return SubwordTokenizer.train(TEXTS, VOCAB, byte_fallback=False)


@pytest.fixture(scope="module")
def tok_bytes() -> SubwordTokenizer:
    return SubwordTokenizer.train(TEXTS, 340)


def test_special_ids(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert len(tok) == tok.vocab_size == VOCAB
    assert repr(tok) == f"SubwordTokenizer(vocab_size={VOCAB})"
    with pytest.raises(ValueError, match="outside this vocabulary"):
        tok.id_to_piece(VOCAB)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_training_is_deterministic(model_type):
    first = SubwordTokenizer.train(TEXTS, 50, model_type, byte_fallback=False)
    again = SubwordTokenizer.train(list(TEXTS), 50, model_type, byte_fallback=False)
    assert first.model_proto == again.model_proto
    assert first == again


def test_round_trip(tok, tok_bytes):
    sentences = ["A brown dog jumps over the river.", "Two women look at a red car!"]
    for t in (tok, tok_bytes):
        ids, _ = t.encode(sentences, bos=True, eos=True)
        assert t.decode(ids) == sentences
        ids, lengths = t.encode(sentences)
        assert t.decode(ids, lengths) == sentences


def test_byte_fallback_spells_unseen_characters(tok, tok_bytes):
    text = "Zoë sees a 🐕 near Ærø."
    ids, _ = tok_bytes.encode([text])
    assert UNK_ID not in ids.tolist()[0]
    assert tok_bytes.decode(ids) == [text]
    # Without byte fallback unseen characters become <unk>.
    ids, _ = tok.encode([text])
    assert UNK_ID in ids.tolist()[0]


def test_encode_layout(tok):
    ids, lengths = tok.encode(["A man looks at the river.", "A man"], bos=True, eos=True)
    body = tok.encode(["A man"])[0][0].tolist()
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.shape == (2, int(lengths.max()))
    assert ids[1, : lengths[1]].tolist() == [BOS_ID, *body, EOS_ID]
    assert (ids[1, lengths[1] :] == PAD_ID).all()
    assert (ids[:, 0] == BOS_ID).all()
    assert ids[0, lengths[0] - 1] == EOS_ID


def test_blank_text(tok):
    ids, lengths = tok.encode(["", "   "])
    assert ids.tolist() == [[UNK_ID], [UNK_ID]] and lengths.tolist() == [1, 1]
    ids, _ = tok.encode([""], bos=True, eos=True)
    assert ids.tolist() == [[BOS_ID, EOS_ID]]
    ids, lengths = tok.encode([])
    assert ids.shape == (0, 0) and lengths.shape == (0,)


def test_truncation_warns_once_and_keeps_eos(tok):
    long = "Several children are playing near the crowded market!"
    with pytest.warns(UserWarning, match=r"truncated 2 of 3 texts to max_len=5") as record:
        ids, lengths = tok.encode([long, long, "A man"], 5, bos=True, eos=True)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert lengths.tolist()[:2] == [5, 5] and ids.shape[1] == 5
    assert ids[0].tolist() == [BOS_ID, *tok.encode([long])[0][0, :3].tolist(), EOS_ID]
    with pytest.warns(UserWarning, match="truncated 1 of 1"):
        pieces = tok.pieces(long, 5, bos=True, eos=True)
    assert pieces == [tok.id_to_piece(i) for i in ids[0].tolist()]


def test_no_warning_when_texts_fit(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode(TEXTS, 64, eos=True)


def test_max_len_too_small(tok):
    with pytest.raises(ValueError, match="max_len must be >= 3"):
        tok.encode(["A man"], 2, bos=True, eos=True)


def test_pieces(tok):
    pieces = tok.pieces("A man jumps over the river.", bos=True, eos=True)
    assert pieces[0] == "<s>" and pieces[-1] == "</s>"
    assert "".join(pieces[1:-1]).replace("▁", " ").strip() == "A man jumps over the river."
    ids, _ = tok.encode(["A man jumps over the river."], bos=True, eos=True)
    assert len(pieces) == ids.shape[1]
    with pytest.raises(TypeError, match="one str"):
        tok.pieces(["A man"])


def test_decode_stops_at_eos_and_drops_padding(tok):
    ids, _ = tok.encode(["A man", "A brown dog"], bos=True, eos=True)
    garbage = tok.encode(["the river."])[0][0].tolist()
    rows = [row + garbage for row in ids.tolist()]  # a model keeps going after EOS
    assert tok.decode(rows) == ["A man", "A brown dog"]
    assert tok.decode(ids[1]) == ["A brown dog"]  # one row
    assert tok.decode([]) == []


def test_decode_rejects_bad_ids(tok):
    with pytest.raises(ValueError, match="outside this vocabulary"):
        tok.decode([[5, VOCAB]])
    with pytest.raises(ValueError, match=r"\(N, L\) or \(L,\)"):
        tok.decode(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="2 lengths for 1 rows"):
        tok.decode([[5, 6]], lengths=[1, 2])


def test_save_load(tok, tmp_path):
    path = tok.save(tmp_path / "sub" / "de.model")
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # no .part left
    assert SubwordTokenizer.load(path) == tok
    assert pickle.loads(pickle.dumps(tok)) == tok


def test_load_rejects_garbage_and_foreign_ids(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        SubwordTokenizer.load(bad)
    writer = io.BytesIO()  # sentencepiece's default ids: unk 0, bos 1, eos 2, no pad
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS), model_writer=writer, vocab_size=50, minloglevel=2
    )
    with pytest.raises(ValueError, match="special ids"):
        SubwordTokenizer(writer.getvalue())
    with pytest.raises(TypeError, match="must be bytes"):
        SubwordTokenizer(str(bad))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("A man",), {}, TypeError, "not one str"),
        ((["A man", 3],), {}, TypeError, r"texts\[1\] is int"),
        ((["", "  "],), {"vocab_size": 50}, ValueError, "no non-blank sentence"),
        ((TEXTS, 50, "word"), {}, ValueError, "unknown model_type 'word'"),
        ((TEXTS, 4), {}, ValueError, "vocab_size must be an int > 4"),
        ((TEXTS, 50), {"character_coverage": 0.0}, ValueError, "character_coverage"),
        ((TEXTS, 50), {"seed": -1}, ValueError, "seed must be"),
        ((TEXTS, 5000, "unigram"), {}, ValueError, r"Vocabulary size too high .*<= \d+"),
    ],
)
def test_train_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        SubwordTokenizer.train(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_train_cached(isolated_env, monkeypatch):
    first = SubwordTokenizer.train_cached(TEXTS, 60, name="toy-en", byte_fallback=False)
    files = list((isolated_env / "tokenizers").iterdir())
    assert len(files) == 1 and files[0].name.startswith("toy-en-bpe60-")
    assert files[0].suffix == ".model"
    assert first == SubwordTokenizer.train(TEXTS, 60, byte_fallback=False)

    def fail(*args, **kwargs):
        raise AssertionError("retrained although cached")

    with monkeypatch.context() as patch:
        patch.setattr(subword, "_train_proto", fail)
        again = SubwordTokenizer.train_cached(TEXTS, 60, name="toy-en", byte_fallback=False)
    assert again == first
    # Other texts or settings get their own entry; a damaged entry is retrained.
    SubwordTokenizer.train_cached(TEXTS[:-1], 60, name="toy-en", byte_fallback=False)
    SubwordTokenizer.train_cached(TEXTS, 61, name="toy-en", byte_fallback=False)
    assert len(list((isolated_env / "tokenizers").glob("*.model"))) == 3
    files[0].write_bytes(b"damaged")
    assert SubwordTokenizer.train_cached(TEXTS, 60, name="toy-en", byte_fallback=False) == first
    with pytest.raises(ValueError, match="name must use only"):
        SubwordTokenizer.train_cached(TEXTS, 60, name="../escape")


@pytest.mark.skipif(
    not (REAL_DATA_DIR and (Path(REAL_DATA_DIR) / "multi30k").is_dir()),
    reason="ATTNLAB_DATA_DIR does not hold multi30k/",
)
def test_real_multi30k_round_trip(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", REAL_DATA_DIR)
    corpus = load_multi30k("val")
    for texts in (corpus.src, corpus.tgt):
        tok = SubwordTokenizer.train(texts, 1000)
        ids, lengths = tok.encode(texts, bos=True, eos=True)
        assert tok.decode(ids) == [" ".join(t.split()) for t in texts]
        assert UNK_ID not in ids.unique().tolist()
