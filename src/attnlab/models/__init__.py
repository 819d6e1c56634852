"""Complete networks assembled from :mod:`attnlab.nn`."""

from attnlab.models.classifier import POOLINGS, TextClassifier
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.models.search import Hypothesis, beam_search, greedy_search
from attnlab.models.seq2seq import ATTENTIONS, Seq2Seq

__all__ = [
    "ATTENTIONS",
    "POOLINGS",
    "FlatClassifier",
    "HANClassifier",
    "Hypothesis",
    "Seq2Seq",
    "TextClassifier",
    "beam_search",
    "greedy_search",
]
