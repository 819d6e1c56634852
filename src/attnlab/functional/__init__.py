"""Stateless attention math: score functions, the entry point and its engines."""

from attnlab.functional.attention import ENGINES, AttentionOutput, attention, select_engine
from attnlab.functional.scores import (
    Additive,
    Cosine,
    Dot,
    General,
    Location,
    ScaledDot,
    Score,
    Zero,
    additive,
    concat,
    cosine,
    dot,
    general,
    location,
    scaled_dot,
)

__all__ = [
    "ENGINES",
    "AttentionOutput",
    "attention",
    "select_engine",
    "Score",
    "Dot",
    "ScaledDot",
    "General",
    "Additive",
    "Location",
    "Cosine",
    "dot",
    "scaled_dot",
    "general",
    "additive",
    "concat",
    "location",
    "cosine",
    "Zero",
]
