"""HierarchicalAttention against a sentence-by-sentence reference, and its padding rules."""

import pytest
import torch

from attnlab.functional import AttentionOutput
from attnlab.nn.hierarchical import CONTEXT_POOLING, HierarchicalAttention, SequenceEncoder
from attnlab.nn.pooling import AttentionPooling, LastStatePooling

POOLINGS = {"attention": CONTEXT_POOLING, "last": LastStatePooling}

B, S, W, E, H, A = 3, 4, 5, 6, 7, 9  # all distinct


def _mask():
    """Doc 0: sentences of 3, 5, 1 words; doc 1: one word; doc 2: no words at all."""
    mask = torch.zeros(B, S, W, dtype=torch.bool)
    for s, n in enumerate([3, 5, 1]):
        mask[0, s, :n] = True
    mask[1, 0, 0] = True
    return mask


def _module(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return HierarchicalAttention(E, H, attention_size=A, dtype=dtype)


def _bigru(level, x):
    """One unpadded sequence (L, D) through a level's two GRUs: (1, L, 2H)."""
    forward, _ = level.forward_rnn(x.unsqueeze(0))
    backward, _ = level.backward_rnn(x.flip(0).unsqueeze(0))
    return torch.cat([forward, backward.flip(1)], dim=-1)


def _reference(han, inputs, mask):
    """Each sentence alone (no padding anywhere), then each document alone."""
    docs, words, sentences = [], torch.zeros(B, S, W, dtype=inputs.dtype), []
    for b in range(B):
        vectors = []
        for s in range(S):
            n = int(mask[b, s].sum())
            if n == 0:
                continue
            states = _bigru(han.words, inputs[b, s, :n])
            e = han.words.pooling.attention.logits(states)
            alpha = e.softmax(-1)
            words[b, s, :n] = alpha[0]
            vectors.append((alpha.unsqueeze(-1) * states).sum(1))
        if not vectors:
            docs.append(inputs.new_zeros(2 * H))
            sentences.append(inputs.new_zeros(S))
            continue
        states = _bigru(han.sentences, torch.cat(vectors))
        alpha = han.sentences.pooling.attention.logits(states).softmax(-1)
        docs.append((alpha.unsqueeze(-1) * states).sum(1)[0])
        sentences.append(torch.cat([alpha[0], alpha.new_zeros(S - len(vectors))]))
    return torch.stack(docs), words, torch.stack(sentences)


def test_matches_sentence_by_sentence_reference():
    han = _module()
    inputs = torch.randn(B, S, W, E, dtype=torch.float64)
    mask = _mask()
    out = han(inputs, mask=mask, need_weights=True)
    doc, words = out
    ref_doc, ref_words, ref_sentences = _reference(han, inputs, mask)
    assert isinstance(out, AttentionOutput)
    assert doc.shape == (B, 2 * H) and words.shape == (B, S, W)
    assert out.sentence_weights.shape == (B, S)
    torch.testing.assert_close(doc, ref_doc)
    torch.testing.assert_close(words, ref_words)
    torch.testing.assert_close(out.sentence_weights, ref_sentences)
    fast, none = han(inputs, mask=mask)
    assert none is None
    torch.testing.assert_close(fast, doc)


def test_padding_gets_exactly_zero_weight_and_does_not_matter():
    han = _module()
    inputs = torch.randn(B, S, W, E, dtype=torch.float64)
    mask = _mask()
    out = han(inputs, mask=mask, need_weights=True)
    doc, words = out
    assert (words[~mask] == 0).all()
    assert (out.sentence_weights[~mask.any(-1)] == 0).all()
    real_sentences = mask.any(-1)
    sums = words.sum(-1)
    torch.testing.assert_close(sums[real_sentences], torch.ones_like(sums[real_sentences]))
    torch.testing.assert_close(out.sentence_weights[:2].sum(-1), torch.ones(2, dtype=torch.float64))
    # Garbage in padded positions, and extra padded sentences and words, change nothing.
    noisy = inputs.masked_fill(~mask.unsqueeze(-1), 1e4)
    bigger = torch.zeros(B, S + 2, W + 3, E, dtype=torch.float64)
    bigger[:, :S, :W] = noisy
    big_mask = torch.zeros(B, S + 2, W + 3, dtype=torch.bool)
    big_mask[:, :S, :W] = mask
    big_doc, big_words = han(bigger, mask=big_mask, need_weights=True)
    torch.testing.assert_close(big_doc, doc)
    torch.testing.assert_close(big_words[:, :S, :W], words)
    assert big_words[:, S:].abs().sum() == 0 and big_words[..., W:].abs().sum() == 0


def test_empty_document_gives_zeros_without_nan_and_finite_gradients():
    han = _module(torch.float32)
    inputs = torch.randn(B, S, W, E, requires_grad=True)
    out = han(inputs, mask=_mask(), need_weights=True)
    doc, words = out
    assert torch.isfinite(doc).all() and (doc[2] == 0).all()
    assert (out.sentence_weights[2] == 0).all() and (words[2] == 0).all()
    doc.square().sum().backward()
    assert torch.isfinite(inputs.grad).all()
    assert (inputs.grad[~_mask()] == 0).all()  # padding gets no gradient either
    for name, p in han.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_a_batch_of_only_padding_and_no_mask():
    han = _module(torch.float32)
    inputs = torch.randn(2, 3, 4, E)
    out = han(inputs, mask=torch.zeros(2, 3, 4, dtype=torch.bool), need_weights=True)
    doc, words = out
    assert (doc == 0).all() and (words == 0).all() and (out.sentence_weights == 0).all()
    out = han(inputs, need_weights=True)  # no mask: every word is real
    torch.testing.assert_close(out.sentence_weights.sum(-1), torch.ones(2))
    assert (out.weights > 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_factory_kwargs(dtype):
    han = HierarchicalAttention(E, H, device="cpu", dtype=dtype)
    assert all(p.dtype == dtype for p in han.parameters())
    out = han(torch.randn(B, S, W, E, dtype=dtype), mask=_mask(), need_weights=True)
    doc, words = out
    assert doc.dtype == dtype and torch.isfinite(doc).all()
    assert torch.isfinite(words).all() and torch.isfinite(out.sentence_weights).all()


def test_repr_and_state_dict_round_trip():
    a, b = _module(seed=0), _module(seed=1)
    b.load_state_dict(a.state_dict())
    inputs = torch.randn(B, S, W, E, dtype=torch.float64)
    torch.testing.assert_close(a(inputs, mask=_mask())[0], b(inputs, mask=_mask())[0])
    assert f"input_size={E}, hidden_size={H}, attention_size={A}" in repr(a)


def test_bad_inputs_are_one_clear_line():
    han = _module(torch.float32)
    x = torch.randn(B, S, W, E)
    with pytest.raises(ValueError, match=r"inputs must be \(B, S, W, 6\)"):
        han(torch.randn(B, W, E))
    with pytest.raises(TypeError, match="floating"):
        han(torch.ones(B, S, W, E, dtype=torch.long))
    with pytest.raises(TypeError, match="boolean"):
        han(x, mask=_mask().float())
    with pytest.raises(ValueError, match=r"mask must be \(B, S, W\)"):
        han(x, mask=_mask()[:, :2])
    holey = _mask()
    holey[0, 0, 1] = False  # a padded word between real ones
    with pytest.raises(ValueError, match="right-padded"):
        han(x, mask=holey)
    gap = _mask()
    gap[0, 1] = False  # an empty sentence before a real one
    with pytest.raises(ValueError, match="empty .* sentences must come after"):
        han(x, mask=gap)


@pytest.mark.parametrize("pooling", ["attention", "last"])
def test_sequence_encoder_matches_each_row_alone(pooling):
    torch.manual_seed(0)
    encoder = SequenceEncoder(
        E, H, pooling=POOLINGS[pooling], attention_size=A, dtype=torch.float64
    )
    inputs = torch.randn(B, W, E, dtype=torch.float64)
    mask = torch.zeros(B, W, dtype=torch.bool)
    mask[0, :3], mask[1, :W] = True, True  # row 2: empty
    vector, weights = encoder(inputs, mask=mask, need_weights=True)
    for b, n in enumerate([3, W]):
        states = _bigru(encoder, inputs[b, :n])[0]
        if pooling == "last":
            expected = torch.cat([states[-1, :H], states[0, H:]])
        else:
            alpha = encoder.pooling.attention.logits(states).softmax(-1)
            expected = alpha @ states
            torch.testing.assert_close(weights[b, :n], alpha)
        torch.testing.assert_close(vector[b], expected)
    assert (vector[2] == 0).all()
    assert weights is None if pooling == "last" else (weights[~mask] == 0).all()
    assert f"(pooling): {type(encoder.pooling).__name__}(" in repr(encoder)


def test_sequence_encoder_bad_arguments():
    with pytest.raises(TypeError, match="pooling must be a pooling class or factory"):
        SequenceEncoder(E, H, pooling="max")
    with pytest.raises(TypeError, match="pooling must be a pooling class or factory"):
        SequenceEncoder(E, H, pooling=LastStatePooling(2 * H))
    with pytest.raises(TypeError, match="pooling must build an nn.Module, got str"):
        SequenceEncoder(E, H, pooling=lambda width, **kwargs: "last")
    encoder = SequenceEncoder(E, H)
    with pytest.raises(ValueError, match=r"inputs must be \(B, L, 6\)"):
        encoder(torch.randn(B, W, E + 1))
    holey = torch.tensor([[True, False, True]])
    with pytest.raises(ValueError, match="right-padded"):
        encoder(torch.randn(1, 3, E), mask=holey)


def test_parameters_are_created_in_the_order_of_before():
    """GRUs, then the pooling's: the same draws as the encoder that held its attention."""
    torch.manual_seed(0)
    encoder = SequenceEncoder(E, H, attention_size=A)
    torch.manual_seed(0)
    parts = [
        torch.nn.GRU(E, H, batch_first=True),
        torch.nn.GRU(E, H, batch_first=True),
        AttentionPooling(2 * H, query=True, hidden_size=A),
    ]
    before = [t for part in parts for t in part.state_dict().values()]
    assert len(before) == len(encoder.state_dict())
    for (name, now), then in zip(encoder.state_dict().items(), before):
        assert torch.equal(now, then), name


def _legacy(state):
    """A state dict as written when the encoders held their attention ("attention.*")."""
    return {k.replace("pooling.attention.", "attention."): v for k, v in state.items()}


def test_checkpoints_from_before_the_pooling_was_injected_still_load():
    torch.manual_seed(0)
    han = _module()
    old = _legacy(han.state_dict())
    assert "words.attention.context" in old and "sentences.attention.proj.weight" in old
    fresh = _module(seed=1)
    fresh.load_state_dict(old)  # strict: no key missing or unexpected
    for name, tensor in han.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    encoder = SequenceEncoder(E, H, attention_size=A)
    again = SequenceEncoder(E, H, attention_size=A)
    again.load_state_dict(_legacy(encoder.state_dict()))
    assert torch.equal(again.pooling.attention.context, encoder.pooling.attention.context)
