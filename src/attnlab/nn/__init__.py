"""Thin attention modules: they own parameters and call :mod:`attnlab.functional`."""

from attnlab.nn.additive import AdditiveAttention
from attnlab.nn.hard import HardAttention, HardAttentionOutput, MovingAverageBaseline
from attnlab.nn.hierarchical import HierarchicalAttention, HierarchicalWeights, SequenceEncoder
from attnlab.nn.local import LocalAttention
from attnlab.nn.luong import LuongAttention
from attnlab.nn.pooling import AttentionPooling

# Every module of the library, for `attnlab list` and the conformance tests.
MECHANISMS = {
    "additive": AdditiveAttention,
    "luong": LuongAttention,
    "local": LocalAttention,
    "hard": HardAttention,
    "hierarchical": HierarchicalAttention,
    "sequence-encoder": SequenceEncoder,
    "attention-pooling": AttentionPooling,
}

__all__ = [
    "AdditiveAttention",
    "AttentionPooling",
    "HardAttention",
    "HardAttentionOutput",
    "HierarchicalAttention",
    "HierarchicalWeights",
    "SequenceEncoder",
    "LocalAttention",
    "LuongAttention",
    "MECHANISMS",
    "MovingAverageBaseline",
]
