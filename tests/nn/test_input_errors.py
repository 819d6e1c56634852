"""Bad arguments to the modules of attnlab.nn: one line, the right type, before any work."""

import pytest
import torch

from attnlab.nn import (
    GRAPH_MECHANISMS,
    MECHANISMS,
    AdditiveAttention,
    ALiBi,
    AttentionPooling,
    FeedForward,
    GATConv,
    GATv2Conv,
    HardAttention,
    HierarchicalAttention,
    LearnedPositionalEmbedding,
    LinearAttention,
    LocalAttention,
    LuongAttention,
    MovingAverageBaseline,
    MultiHeadAttention,
    RelativePositionBias,
    ReversibleBlock,
    ReversibleSequence,
    ReversibleTransformerEncoder,
    RotaryEmbedding,
    SequenceEncoder,
    SinusoidalPositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

from .test_conformance import CASES, DK, LK

B, L, E, H = 2, 3, 8, 2


def _raises(build, error, words):
    with pytest.raises(error, match=words) as info:
        build()
    assert "\n" not in str(info.value)
    assert type(info.value) is error  # not a torch RuntimeError dressed up
    return str(info.value)


CONSTRUCTORS = [
    # sizes: ints >= 1, no bools, no floats such as 2.0
    (lambda: AdditiveAttention(4, 4, -1), ValueError, "hidden_size must be >= 1; got -1"),
    (lambda: AdditiveAttention(0, 4, 4), ValueError, "query_size must be >= 1; got 0"),
    (lambda: AdditiveAttention(4, True, 4), TypeError, "key_size must be an int; got bool"),
    (lambda: MultiHeadAttention(8, 2.0), TypeError, "num_heads must be an int; got float 2.0"),
    (lambda: MultiHeadAttention(8, 3), ValueError, "embed_dim 8 does not divide into 3 heads"),
    (lambda: MultiHeadAttention(8, 2, kdim=0), ValueError, "kdim must be >= 1"),
    (lambda: MultiHeadAttention(8, 2, kv_heads=-1), ValueError, "kv_heads must be >= 1"),
    (lambda: LuongAttention(4, hidden_size=0, score="concat"), ValueError, "hidden_size"),
    (lambda: LuongAttention(4, score="location", max_source_len=0), ValueError, "max_source_len"),
    (lambda: LocalAttention(4, half_width=1, position_hidden=0), ValueError, "position_hidden"),
    (lambda: AttentionPooling(0), ValueError, "input_size must be >= 1"),
    (lambda: AttentionPooling(4, query=True, hidden_size=-2), ValueError, "hidden_size"),
    (lambda: SequenceEncoder(4, hidden_size=0), ValueError, "hidden_size must be >= 1"),
    (lambda: HierarchicalAttention(4, attention_size=0), ValueError, "attention_size"),
    (lambda: LinearAttention(8, 2, chunk_size=1.5), TypeError, "chunk_size must be an int"),
    (lambda: GATConv(4, 0), ValueError, "out_channels must be >= 1; got 0"),
    (lambda: GATv2Conv(4, 3, heads=2.0), TypeError, "heads must be an int"),
    (lambda: FeedForward(8, 0), ValueError, "ff_dim must be >= 1"),
    (lambda: TransformerEncoderLayer(8, 3, 16), ValueError, "d_model 8 does not divide"),
    (lambda: TransformerEncoder(0, 8, 2, 16), ValueError, "num_layers must be >= 1; got 0"),
    (lambda: ReversibleTransformerEncoder(8, 2, 16, 0), ValueError, "num_layers must be >= 1"),
    (lambda: SinusoidalPositionalEncoding(8, max_len=0), ValueError, "max_len must be >= 1"),
    (lambda: RelativePositionBias(2, num_buckets="32"), TypeError, "num_buckets must be an int"),
    (lambda: ALiBi(-4), ValueError, "num_heads must be >= 1; got -4"),
    # probabilities and other numbers
    (lambda: MultiHeadAttention(8, 2, dropout="0.1"), TypeError, "dropout must be a number"),
    (lambda: MultiHeadAttention(8, 2, dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    (lambda: GATConv(4, 3, dropout=float("nan")), ValueError, "dropout must be in"),
    (lambda: GATConv(4, 3, negative_slope="0.2"), TypeError, "negative_slope must be a number"),
    (lambda: FeedForward(8, 16, dropout=-0.1), ValueError, "dropout must be in"),
    (lambda: TransformerEncoderLayer(8, 2, 16, attention_dropout=1.2), ValueError, "attention_"),
    (lambda: TransformerEncoderLayer(8, 2, 16, layer_norm_eps=0), ValueError, "layer_norm_eps"),
    (lambda: LearnedPositionalEmbedding(8, 4, dropout=2), ValueError, "dropout must be in"),
    (lambda: RotaryEmbedding(8, base="big"), TypeError, "base must be a number"),
    (lambda: MovingAverageBaseline(momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: HardAttention(LuongAttention(4), temperature="1"), TypeError, "temperature must"),
    (lambda: HardAttention("luong"), TypeError, "attention must be a soft attention nn.Module"),
    # the engine is checked when the module is built, not at its first call
    (lambda: MultiHeadAttention(8, 2, backend="bogus"), ValueError, "backend must be one of"),
    (lambda: MultiHeadAttention(8, 2, pattern="window"), TypeError, "pattern must be"),
    (lambda: MultiHeadAttention(8, 2, rotary=lambda x: x), TypeError, "rotary must be"),
    (lambda: ReversibleBlock(torch.nn.Linear(4, 4), print), TypeError, "g must be an nn.Module"),
]


@pytest.mark.parametrize(("build", "error", "words"), CONSTRUCTORS)
def test_bad_constructor_arguments_are_one_line(build, error, words):
    _raises(build, error, words)


def test_every_engine_name_is_accepted_at_construction():
    for backend in ("auto", "math", "sdpa", "chunked", "banded", "block_sparse", "flex"):
        assert MultiHeadAttention(8, 2, backend=backend).backend == backend


FACTORIES = [
    ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),
    ({"dtype": "float32"}, TypeError, "dtype must be a floating torch.dtype"),
    ({"device": "bogus"}, ValueError, "'bogus' is not a device; pass a torch.device or a name"),
    ({"device": "cuda:7"}, ValueError, "'cuda:7'"),
]


def _every_module_builder():
    builders = {name: build for name, (build, _) in CASES.items()}
    builders.update(
        {name: (lambda c=cls, **f: c(5, 3, **f)) for name, cls in GRAPH_MECHANISMS.items()}
    )
    builders["transformer-layer"] = lambda **f: TransformerEncoderLayer(8, 2, 16, **f)
    builders["reversible"] = lambda **f: ReversibleTransformerEncoder(8, 2, 16, 1, **f)
    builders["feed-forward"] = lambda **f: FeedForward(8, 16, **f)
    builders["sinusoidal"] = lambda **f: SinusoidalPositionalEncoding(8, **f)
    builders["relative-bias"] = lambda **f: RelativePositionBias(2, **f)
    return builders


BUILDERS = _every_module_builder()


def test_the_builders_cover_every_registered_mechanism():
    assert set(MECHANISMS) | set(GRAPH_MECHANISMS) <= set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(("factory", "error", "words"), FACTORIES)
def test_dtype_and_device_are_checked_by_every_module(name, factory, error, words):
    if factory.get("device") == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _raises(lambda: BUILDERS[name](**factory), error, words)


def test_cuda_without_a_gpu_and_an_index_beyond_the_machine_are_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    words = "device 'cuda': this machine has no CUDA device; use 'cpu'"
    _raises(lambda: MultiHeadAttention(8, 2, device="cuda"), ValueError, words)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    words = "'cuda:7': this machine has 1 CUDA device"
    _raises(lambda: MultiHeadAttention(8, 2, device="cuda:7"), ValueError, words)


def test_meta_and_cpu_devices_and_floating_dtypes_are_fine():
    assert MultiHeadAttention(8, 2, device="meta").q_proj.weight.is_meta
    m = MultiHeadAttention(8, 2, device=torch.device("cpu"), dtype=torch.bfloat16)
    assert m.q_proj.weight.dtype == torch.bfloat16


# MeanAttention holds no parameters: there is no dtype to disagree with, any float works.
@pytest.mark.parametrize("name", sorted(set(CASES) - {"mean"}))
def test_every_mechanism_rejects_inputs_of_another_dtype_than_its_parameters(name):
    build, call = CASES[name]
    module = build()
    message = _raises(
        lambda: call(module, torch.randn(B, LK, DK, dtype=torch.float64), None, False),
        TypeError,
        "is float64 but .*'s parameters are float32; call module.to\\(torch.float64\\)",
    )
    assert "pass float32 inputs" in message


def test_mean_attention_has_no_parameters_so_any_float_dtype_is_fine():
    build, call = CASES["mean"]
    module = build()
    assert not list(module.parameters())
    for dtype in (torch.float64, torch.bfloat16):
        context, _ = call(module, torch.randn(B, LK, DK, dtype=dtype), None, False)
        assert context.dtype == dtype


@pytest.mark.parametrize("cls", [GATConv, GATv2Conv])
def test_graph_layers_reject_another_dtype_and_non_tensors(cls):
    conv, edges = cls(5, 3), torch.tensor([[0, 1], [1, 2]])
    _raises(lambda: conv(torch.randn(3, 5).double(), edges), TypeError, "x is float64 but")
    _raises(lambda: conv("x", edges), TypeError, "x must be a torch.Tensor, got str")


FORWARDS = [
    (lambda: MultiHeadAttention(E, H)(torch.randn(B, L, E).double()), "query is float64 but"),
    (lambda: MultiHeadAttention(E, H)(torch.randn(B, L, E), "keys"), "key must be a torch.Tensor"),
    (lambda: MultiHeadAttention(E, H)(torch.randn(B, L, E), mask=[True]), "mask must be a torch"),
    (lambda: MultiHeadAttention(E, H)(torch.randn(B, L, E), cache=[]), "cache must be a KVCache"),
    (lambda: AdditiveAttention(E, E, 4)(torch.randn(B, E), torch.randn(B, L, E).half()), "keys is"),
    (lambda: AdditiveAttention(E, E, 4)(torch.randn(B, E), torch.randn(B, L, E), 3), "values must"),
    (lambda: LuongAttention(E)(torch.randn(B, E), torch.randn(B, L, E), mask=1), "mask must be a"),
    (lambda: LocalAttention(E, half_width=1)(torch.randn(B, E), "k"), "keys must be a torch"),
    (lambda: AttentionPooling(E)("x"), "inputs must be a torch.Tensor, got str"),
    (lambda: SequenceEncoder(E, 4)(None), "inputs must be a torch.Tensor, got NoneType"),
    (lambda: HierarchicalAttention(E, 4)([[[0.0] * E]]), "inputs must be a torch.Tensor"),
    (lambda: LinearAttention(E, H)(torch.randn(B, L, E), value=()), "value must be a torch"),
    (lambda: LinearAttention(E, H)(torch.randn(B, L, E), mask=[1]), "mask must be a torch"),
    (lambda: HardAttention(LuongAttention(E))(torch.randn(B, E), 1.0), "keys must be a torch"),
    (lambda: FeedForward(E, 16)(torch.randn(B, L, E).double()), "x is float64 but FeedForward"),
    (
        lambda: TransformerEncoder(1, E, H, 16)(torch.randn(B, L, E).double()),
        "x is float64 but TransformerEncoderLayer's",
    ),
    (
        lambda: TransformerDecoderLayer(E, H, 16)(
            torch.randn(B, L, E), torch.randn(B, L, E).half()
        ),
        "memory is float16 but",
    ),
    (
        lambda: ReversibleTransformerEncoder(E, H, 16, 1)(torch.randn(B, L, E).double()),
        "x is float64 but ReversibleTransformerEncoder's",
    ),
    (
        lambda: ReversibleSequence([ReversibleBlock(FeedForward(E, 4), FeedForward(E, 4))])(1, 2),
        "x1",
    ),
    (lambda: SinusoidalPositionalEncoding(E)("x"), "x must be a torch.Tensor"),
    (lambda: RotaryEmbedding(E)(torch.ones(1, 1, 2, E, dtype=torch.long)), "floating"),
    (lambda: MovingAverageBaseline().update(1.0), "reward must be a torch.Tensor"),
    (lambda: MultiHeadAttention(E, H)(torch.ones(B, L, E, dtype=torch.long)), "floating tensor"),
]


@pytest.mark.parametrize(("call", "words"), FORWARDS)
def test_bad_forward_inputs_are_one_line_type_errors(call, words):
    _raises(call, TypeError, words)


def test_converted_modules_and_autocast_keep_working():
    x = torch.randn(B, L, E)
    mha = MultiHeadAttention(E, H).to(torch.float64)
    assert mha(x.double())[0].dtype == torch.float64
    bf16 = TransformerEncoder(1, E, H, 16).to(torch.bfloat16)
    assert bf16(x.bfloat16()).last_hidden.dtype == torch.bfloat16
    layer = TransformerEncoderLayer(E, H, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MultiHeadAttention(E, H)(x.bfloat16())[0].dtype == torch.bfloat16
        layer(x)[0].float().sum()
    pooled, _ = AttentionPooling(E).double()(x.double())
    assert pooled.dtype == torch.float64
