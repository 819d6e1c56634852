"""Complete networks assembled from :mod:`attnlab.nn`.

Models take the modules they use (``Seq2Seq(attention=...)``,
``TextClassifier(pooling=...)``, ``GAT(conv=...)``, the Transformers' ``attn_layer=``);
the names people type resolve through one table per kind: :data:`SEQ2SEQ_ATTENTIONS`,
:data:`POOLINGS`, :data:`POSITIONS`, :data:`GAT_LAYERS`.
"""

from attnlab.models._embeddings import PositionScheme
from attnlab.models.bert import (
    BertEmbeddings,
    BertEncoder,
    PooledClassifier,
    convert_hf_bert,
    hf_bert_key_map,
)
from attnlab.models.classifier import POOLINGS, TextClassifier
from attnlab.models.convnet import ConvNet
from attnlab.models.draw import DRAW, DrawOutput, DrawSample, DrawSteps
from attnlab.models.gat import GAT, GAT_LAYERS
from attnlab.models.gated_classifier import GatedClassifier
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.models.search import Hypothesis, beam_search, greedy_search
from attnlab.models.seq2seq import Seq2Seq
from attnlab.models.seq2seq_attentions import SEQ2SEQ_ATTENTIONS, Seq2SeqOptions, Seq2SeqVariant
from attnlab.models.show_attend_tell import (
    CAPTION_ATTENTIONS,
    CaptionLoss,
    ShowAttendTell,
    decode_captions,
)
from attnlab.models.stacked_attention import (
    ConvGridEncoder,
    QuestionEncoder,
    StackedAttentionNetwork,
)
from attnlab.models.transformer import POSITIONS, TransformerLM, TransformerSeq2Seq
from attnlab.models.unet import UNet
from attnlab.models.vit import VisionTransformer, timm_key_map

__all__ = [
    "ConvGridEncoder",
    "QuestionEncoder",
    "StackedAttentionNetwork",
    "CAPTION_ATTENTIONS",
    "DRAW",
    "CaptionLoss",
    "DrawOutput",
    "DrawSample",
    "DrawSteps",
    "ShowAttendTell",
    "decode_captions",
    "GAT",
    "GAT_LAYERS",
    "BertEmbeddings",
    "BertEncoder",
    "ConvNet",
    "PooledClassifier",
    "convert_hf_bert",
    "hf_bert_key_map",
    "POOLINGS",
    "POSITIONS",
    "SEQ2SEQ_ATTENTIONS",
    "FlatClassifier",
    "GatedClassifier",
    "HANClassifier",
    "Hypothesis",
    "PositionScheme",
    "Seq2Seq",
    "Seq2SeqOptions",
    "Seq2SeqVariant",
    "TextClassifier",
    "TransformerLM",
    "TransformerSeq2Seq",
    "UNet",
    "VisionTransformer",
    "beam_search",
    "greedy_search",
    "timm_key_map",
]
