"""Thin attention modules: they own parameters and call :mod:`attnlab.functional`."""

from attnlab.nn.additive import AdditiveAttention
from attnlab.nn.luong import LuongAttention
from attnlab.nn.pooling import AttentionPooling

# Every module of the library, for `attnlab list` and the conformance tests.
MECHANISMS = {
    "additive": AdditiveAttention,
    "luong": LuongAttention,
    "attention-pooling": AttentionPooling,
}

__all__ = ["AdditiveAttention", "AttentionPooling", "LuongAttention", "MECHANISMS"]
