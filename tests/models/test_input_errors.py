"""Bad arguments to the models: one line, the right type, before any work."""

import pytest
import torch

from attnlab.data.pretrained import BertConfig
from attnlab.models import (
    GAT,
    POOLINGS,
    SEQ2SEQ_ATTENTIONS,
    BertEncoder,
    FlatClassifier,
    HANClassifier,
    PooledClassifier,
    Seq2Seq,
    Seq2SeqOptions,
    TextClassifier,
    TransformerLM,
    TransformerSeq2Seq,
    beam_search,
    greedy_search,
)

SRC_V, TGT_V, V = 11, 13, 17
SRC = torch.tensor([[3, 4, 5], [6, 7, 0]])
LENGTHS = torch.tensor([3, 2])
TGT = torch.tensor([[1, 8], [1, 9]])


def _seq2seq(**kw):
    variant = SEQ2SEQ_ATTENTIONS["luong-general"](6).as_kwargs()
    return Seq2Seq(SRC_V, TGT_V, **{"embedding_dim": 4, "hidden_size": 6, **variant, **kw})


def _transformer(**kw):
    return TransformerSeq2Seq(SRC_V, TGT_V, **{"d_model": 8, "num_heads": 2, "ff_dim": 16, **kw})


def _lm(**kw):
    return TransformerLM(V, **{"d_model": 8, "num_heads": 2, "ff_dim": 16, "layers": 1, **kw})


def _bert():
    return BertEncoder(BertConfig(V, 8, 1, 2, 16, max_position_embeddings=8))


def _raises(build, error, words):
    with pytest.raises(error, match=words) as info:
        build()
    assert "\n" not in str(info.value)
    assert type(info.value) is error
    return str(info.value)


CONSTRUCTORS = [
    (lambda: Seq2Seq(0, TGT_V, attention=None), ValueError, "src_vocab must be >= 1; got 0"),
    (lambda: _seq2seq(layers=1.0), TypeError, "layers must be an int"),
    (lambda: _seq2seq(dropout=1.5), ValueError, r"dropout must be in \[0, 1\)"),
    (lambda: _seq2seq(pad_id=TGT_V), ValueError, "pad_id 13 is outside the vocabulary of 11"),
    (lambda: Seq2SeqOptions(hard_temperature=0.0), ValueError, "hard_temperature must be > 0"),
    (lambda: Seq2SeqOptions(max_source_len=0), ValueError, "max_source_len must be >= 1"),
    (lambda: _seq2seq(attention="bahdanau"), TypeError, "attention must be an attention module"),
    (lambda: _seq2seq(attention=None, input_feeding=True), ValueError, "with attention=None"),
    (lambda: _seq2seq(attend_before=True, input_feeding=True), ValueError, "choose one"),
    (lambda: _seq2seq(hidden_size=8), ValueError, "query_size is 6 but hidden_size is 8"),
    (lambda: _seq2seq(baseline=0.9), TypeError, "baseline must be an nn.Module"),
    (lambda: SEQ2SEQ_ATTENTIONS["bahdanau"](6, dtype=torch.int64), TypeError, "dtype must be"),
    (lambda: _seq2seq(dtype=torch.int64), TypeError, "dtype must be a floating torch.dtype"),
    (lambda: _seq2seq(device="bogus"), ValueError, "is not a device; pass a torch.device"),
    (lambda: _transformer(d_model=10, num_heads=4), ValueError, "d_model 10 does not divide"),
    (lambda: _transformer(encoder_layers=0), ValueError, "encoder_layers must be >= 1"),
    (lambda: _transformer(max_len=-1), ValueError, "max_len must be >= 1"),
    (lambda: _lm(layers=0), ValueError, "layers must be >= 1; got 0"),
    (lambda: _lm(num_heads=2.0), TypeError, "num_heads must be an int"),
    (lambda: _lm(pad_id=-1), ValueError, "pad_id must be >= 0"),
    (lambda: _lm(positions="rope"), ValueError, "unknown positions 'rope'; known: alibi"),
    (lambda: _lm(positions=3), TypeError, "positions must be a name of POSITIONS"),
    (lambda: _transformer(positions="relative"), ValueError, "sinusoidal, learned or rotary"),
    (lambda: _lm(attn_layer="mha"), TypeError, "attn_layer must be a class or factory"),
    (lambda: TransformerLM(0), ValueError, "vocab must be >= 1"),
    (lambda: TextClassifier(10, word_dropout=1.5), ValueError, r"word_dropout must be in \[0, 1\]"),
    (lambda: TextClassifier(10, num_classes=0), ValueError, "num_classes must be >= 1"),
    (lambda: TextClassifier(10, pooling="luong"), TypeError, "pooling must be a pooling class"),
    (lambda: POOLINGS["additive"](0), ValueError, "width must be >= 1"),
    (lambda: POOLINGS["luong"](4, hidden_size=0), ValueError, "hidden_size must be >= 1"),
    (lambda: HANClassifier(10, embedding_dim=0), ValueError, "embedding_dim must be >= 1"),
    (lambda: FlatClassifier(10, dropout="0.5"), TypeError, "dropout must be a number"),
    (
        lambda: GAT(5, 3, conv="gcn"),
        TypeError,
        "conv must be a graph attention layer class or factory",
    ),
    (lambda: GAT(5, 0), ValueError, "classes must be >= 1"),
    (lambda: GAT(5, 3, dtype=torch.int32), TypeError, "dtype must be a floating"),
    (lambda: PooledClassifier(8, 2, encoder="bert"), TypeError, "encoder must be a BertEncoder"),
    (
        lambda: BertEncoder(BertConfig(V, 8, 1, 2, 16, hidden_dropout_prob=1.0)),
        ValueError,
        r"hidden_dropout_prob must be in \[0, 1\)",
    ),
]


@pytest.mark.parametrize(("build", "error", "words"), CONSTRUCTORS)
def test_bad_constructor_arguments_are_one_line(build, error, words):
    _raises(build, error, words)


IDS = [
    # token ids outside the vocabulary: torch would say "index out of range in self"
    (lambda: _lm()(torch.tensor([[1, V]])), ValueError, f"ids holds id {V} .*has {V} ids"),
    (lambda: _lm()(torch.tensor([[-1, 2]])), ValueError, "ids holds id -1"),
    (lambda: _lm()(torch.tensor([[1.0, 2.0]])), TypeError, "ids must be an integer tensor"),
    (lambda: _lm()([[1, 2]]), TypeError, "ids must be a torch.Tensor, got list"),
    (lambda: _lm()(torch.tensor([[1]]), cache=[]), ValueError, "one KVCache per layer"),
    (lambda: _lm().generate(torch.tensor([[V + 3]]), 2), ValueError, f"prompt holds id {V + 3}"),
    (lambda: _seq2seq()(SRC + 8, LENGTHS, TGT), ValueError, f"src holds id 15 .*has {SRC_V}"),
    (lambda: _seq2seq()(SRC, LENGTHS, TGT + 12), ValueError, f"tgt_in holds id 21 .*{TGT_V}"),
    (lambda: _seq2seq().loss(SRC, LENGTHS, TGT, TGT - 2), ValueError, "tgt_out holds id -1"),
    (lambda: _seq2seq()(SRC, LENGTHS, TGT[:1]), ValueError, "tgt_in has 1 rows but src has 2"),
    (lambda: _seq2seq()(SRC, torch.tensor([4, 2]), TGT), ValueError, "src_lengths holds 4"),
    (lambda: _seq2seq()(SRC, LENGTHS.float(), TGT), TypeError, "src_lengths must be an integer"),
    (lambda: _seq2seq().encode(SRC, [3, 2]), TypeError, "src_lengths must be a torch.Tensor"),
    (lambda: _transformer()(SRC, LENGTHS, TGT + 12), ValueError, "tgt_in holds id 21"),
    (lambda: _transformer().encode(SRC - 1, LENGTHS), ValueError, "src holds id -1"),
    (lambda: _transformer().loss(SRC, LENGTHS, TGT, TGT[:, :1]), ValueError, "targets"),
    (lambda: TextClassifier(10)(torch.tensor([[3, 10]]), torch.tensor([2])), ValueError, "id 10"),
    (lambda: TextClassifier(10)(torch.tensor([[3, 4]]), torch.tensor([3])), ValueError, "lengths"),
    (lambda: HANClassifier(10)(torch.full((1, 2, 2), 12)), ValueError, "ids holds id 12"),
    (lambda: FlatClassifier(10)(torch.tensor([[1, 2.5]])), TypeError, r"ids \(B, L\)"),
    (lambda: _bert()(torch.tensor([[2, V]])), ValueError, f"input_ids holds id {V}"),
    (
        lambda: _bert()(torch.tensor([[2, 3]]), token_type_ids=torch.tensor([[0, 2]])),
        ValueError,
        "token_type_ids holds id 2 .*2 ids",
    ),
    (lambda: GAT(5, 3)("x", torch.tensor([[0], [1]])), TypeError, "x must be a torch.Tensor"),
]


@pytest.mark.parametrize(("call", "error", "words"), IDS)
def test_bad_forward_inputs_are_one_line(call, error, words):
    message = _raises(call, error, words)
    assert "index out of range" not in message


DECODING = [
    (lambda m: m.generate(torch.tensor([[1]]), 2, top_k=0), ValueError, "top_k must be >= 1"),
    (lambda m: m.generate(torch.tensor([[1]]), -1), ValueError, "max_new_tokens must be >= 0"),
    (lambda m: m.generate(torch.tensor([[1]]), 2.0), TypeError, "max_new_tokens must be an int"),
    (lambda m: m.generate(torch.tensor([[1]]), 2, temperature=0), ValueError, "temperature"),
    (lambda m: m.generate(torch.tensor([[1]]), 2, temperature=-1.0), ValueError, "> 0"),
]


@pytest.mark.parametrize(("call", "error", "words"), DECODING)
def test_bad_generation_arguments_are_one_line(call, error, words):
    _raises(lambda: call(_lm()), error, words)


def test_generation_edge_cases_that_are_fine():
    lm = _lm().eval()
    prompt = torch.tensor([[1, 2]])
    assert torch.equal(lm.generate(prompt, 0), prompt)
    # top_k above the vocabulary keeps every token: the same draw as no top_k at all
    a = lm.generate(prompt, 4, top_k=V + 5, generator=torch.Generator().manual_seed(0))
    b = lm.generate(prompt, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


SEARCH = [
    ({"beam_size": 0}, ValueError, "beam_size must be >= 1; got 0"),
    ({"beam_size": -2}, ValueError, "beam_size must be >= 1; got -2"),
    ({"beam_size": 2.0}, TypeError, "beam_size must be an int"),
    ({"max_len": 0}, ValueError, "max_len must be >= 1"),
    ({"length_penalty": "1"}, TypeError, "length_penalty must be a number"),
    ({"bos_id": TGT_V}, ValueError, f"bos_id {TGT_V} is outside the vocabulary of {TGT_V}"),
    ({"eos_id": -1}, ValueError, "eos_id must be >= 0"),
]


@pytest.mark.parametrize(("kwargs", "error", "words"), SEARCH)
@pytest.mark.parametrize("build", [_seq2seq, _transformer], ids=["rnn", "transformer"])
def test_bad_search_arguments_are_one_line(build, kwargs, error, words):
    args = {"bos_id": 1, "eos_id": 2, **kwargs}
    _raises(lambda: beam_search(build(), SRC, LENGTHS, **args), error, words)


def test_greedy_search_checks_its_ids_too():
    _raises(
        lambda: greedy_search(_seq2seq(), SRC, LENGTHS, bos_id=1, eos_id=TGT_V + 1),
        ValueError,
        "eos_id 14 is outside",
    )


def test_models_reject_inputs_of_another_dtype_than_their_parameters():
    edges = torch.tensor([[0, 1], [1, 2]])
    _raises(lambda: GAT(5, 3)(torch.rand(3, 5).double(), edges), TypeError, "x is float64 but")
    pooled = PooledClassifier(8, 2)
    states, mask = torch.randn(2, 3, 8).double(), torch.ones(2, 3, dtype=torch.bool)
    _raises(lambda: pooled(states, mask), TypeError, "inputs is float64 but AttentionPooling")
    _raises(lambda: pooled(states.float(), mask.long()), TypeError, "mask must be boolean")
