"""Complete networks assembled from :mod:`attnlab.nn`."""

from attnlab.models.bert import (
    BertEmbeddings,
    BertEncoder,
    PooledClassifier,
    convert_hf_bert,
    hf_bert_key_map,
)
from attnlab.models.classifier import POOLINGS, TextClassifier
from attnlab.models.gat import GAT, GAT_KINDS
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.models.search import Hypothesis, beam_search, greedy_search
from attnlab.models.seq2seq import ATTENTIONS, Seq2Seq
from attnlab.models.transformer import POSITIONS, TransformerLM, TransformerSeq2Seq

__all__ = [
    "GAT",
    "GAT_KINDS",
    "BertEmbeddings",
    "BertEncoder",
    "PooledClassifier",
    "convert_hf_bert",
    "hf_bert_key_map",
    "ATTENTIONS",
    "POOLINGS",
    "POSITIONS",
    "FlatClassifier",
    "HANClassifier",
    "Hypothesis",
    "Seq2Seq",
    "TextClassifier",
    "TransformerLM",
    "TransformerSeq2Seq",
    "beam_search",
    "greedy_search",
]
