"""Thin attention modules: they own parameters and call :mod:`attnlab.functional`.

Every attention module returns one :class:`~attnlab.functional.AttentionOutput`,
``(context, weights | None)`` plus named extras where the mechanism has them.
"""

from attnlab.functional import AttentionOutput
from attnlab.nn._common import SourceAttention
from attnlab.nn.additive import AdditiveAttention
from attnlab.nn.feedforward import FeedForward
from attnlab.nn.graph import GATConv, GATv2Conv
from attnlab.nn.hard import HardAttention, HardAttentionOutput, MovingAverageBaseline
from attnlab.nn.hierarchical import HierarchicalAttention, SequenceEncoder
from attnlab.nn.linear import LinearAttention
from attnlab.nn.local import LocalAttention
from attnlab.nn.lstmn import LSTMN
from attnlab.nn.luong import LuongAttention
from attnlab.nn.luong_scores import (
    LUONG_SCORES,
    ConcatScore,
    DotScore,
    GeneralScore,
    LocationScore,
    LuongScore,
)
from attnlab.nn.mean import MeanAttention
from attnlab.nn.multihead import KVCache, MultiHeadAttention
from attnlab.nn.pooling import (
    AdditivePooling,
    AttentionPooling,
    FeedForwardPooling,
    LastStatePooling,
    LuongPooling,
    StatePooling,
)
from attnlab.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    relative_position_bucket,
)
from attnlab.nn.protocol import AttentionFactory, build_attention, call_attention
from attnlab.nn.reversible import (
    ReversibleBlock,
    ReversibleSequence,
    ReversibleTransformerEncoder,
)
from attnlab.nn.transformer import (
    EncoderOutput,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

# Every module of the library, for `attnlab list` and the conformance tests.
MECHANISMS = {
    "additive": AdditiveAttention,
    "luong": LuongAttention,
    "local": LocalAttention,
    "hard": HardAttention,
    "hierarchical": HierarchicalAttention,
    "sequence-encoder": SequenceEncoder,
    "attention-pooling": AttentionPooling,
    "multihead": MultiHeadAttention,
    "linear": LinearAttention,
    "mean": MeanAttention,
}

# Graph layers take node features (N, F) and an edge_index instead of batched sequences,
# so they have their own registry (and their own checks in tests/nn/test_graph.py).
GRAPH_MECHANISMS = {"gat": GATConv, "gatv2": GATv2Conv}

__all__ = [
    "ALiBi",
    "AdditiveAttention",
    "AttentionFactory",
    "AttentionOutput",
    "ConcatScore",
    "DotScore",
    "GeneralScore",
    "LUONG_SCORES",
    "MeanAttention",
    "LocationScore",
    "LuongScore",
    "SourceAttention",
    "build_attention",
    "call_attention",
    "EncoderOutput",
    "GATConv",
    "GATv2Conv",
    "GRAPH_MECHANISMS",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "LinearAttention",
    "MultiHeadAttention",
    "RelativePositionBias",
    "ReversibleBlock",
    "ReversibleSequence",
    "ReversibleTransformerEncoder",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "alibi_slopes",
    "relative_position_bucket",
    "AttentionPooling",
    "AdditivePooling",
    "FeedForwardPooling",
    "LastStatePooling",
    "LuongPooling",
    "StatePooling",
    "HardAttention",
    "HardAttentionOutput",
    "HierarchicalAttention",
    "SequenceEncoder",
    "LocalAttention",
    "LSTMN",
    "LuongAttention",
    "MECHANISMS",
    "MovingAverageBaseline",
]
