import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from attnlab.data.documents import encode_documents, flatten_documents, synthetic_documents
from attnlab.data.text import Vocab
from attnlab.models.han import FlatClassifier, HANClassifier
from attnlab.nn.hierarchical import CONTEXT_POOLING
from attnlab.nn.pooling import LastStatePooling
from attnlab.train import evaluate, fit, make_generator, seed_everything


def _ids():
    ids = torch.zeros(3, 4, 5, dtype=torch.long)
    ids[0, 0, :3] = torch.tensor([5, 6, 7])
    ids[0, 1, :2] = torch.tensor([8, 9])
    ids[1, 0, :5] = torch.arange(2, 7)
    ids[2, 0, :1] = 4
    return ids


def test_han_shapes_weights_and_padding():
    torch.manual_seed(0)
    model = HANClassifier(30, 3, embedding_dim=8, hidden_size=6, attention_size=7).eval()
    ids = _ids()
    out = model.forward_with_weights(ids)
    logits, words = out
    sentences = out.sentence_weights
    assert logits.shape == (3, 3) and words.shape == (3, 4, 5) and sentences.shape == (3, 4)
    assert (words[ids == 0] == 0).all() and (sentences[(ids == 0).all(-1)] == 0).all()
    torch.testing.assert_close(sentences.sum(-1), torch.ones(3))
    # More padding (sentences and words) changes nothing.
    bigger = torch.zeros(3, 6, 8, dtype=torch.long)
    bigger[:, :4, :5] = ids
    torch.testing.assert_close(model(bigger), logits)
    torch.testing.assert_close(model(ids), logits)


@pytest.mark.parametrize("pooling", ["attention", "last"])
def test_flat_sees_the_same_tokens_and_ignores_padding(pooling):
    torch.manual_seed(0)
    factory = {"attention": CONTEXT_POOLING, "last": LastStatePooling}[pooling]
    model = FlatClassifier(30, 2, embedding_dim=8, hidden_size=6, pooling=factory).eval()
    flat, lengths = flatten_documents(_ids())
    assert lengths.tolist() == [5, 5, 1]
    logits, w = model.forward_with_weights(flat)
    longer = torch.cat([flat, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(longer), logits)
    if pooling == "last":
        assert w is None
    else:
        assert (w[flat == 0] == 0).all()


def test_bad_ids_are_one_clear_line():
    with pytest.raises(ValueError, match=r"ids \(B, S, W\)"):
        HANClassifier(10)(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"ids \(B, L\)"):  # float ids: a wrong dtype
        FlatClassifier(10)(torch.ones(2, 3))


def test_trains_with_fit_and_sentence_attention_finds_the_key_sentence():
    """The issue's check: one key sentence decides the label; attention must go there."""
    seed_everything(0)
    corpus, keys = synthetic_documents(360, seed=0)
    vocab = Vocab.build(" ".join(doc) for doc in corpus.documents)
    ids = encode_documents(vocab, corpus.documents, max_sentences=10, max_words=10)
    labels, keys = torch.tensor(corpus.labels), torch.tensor(keys)
    train = DataLoader(
        TensorDataset(ids[:300], labels[:300]), batch_size=20, shuffle=True,
        generator=make_generator(0),
    )  # fmt: skip
    val = DataLoader(TensorDataset(ids[300:330], labels[300:330]), batch_size=30)
    test = DataLoader(TensorDataset(ids[330:], labels[330:]), batch_size=30)
    model = HANClassifier(len(vocab), 3, embedding_dim=16, hidden_size=8, attention_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Trained to convergence (early stopping on validation accuracy), not for a fixed
    # number of epochs: after 5 epochs one seed in eight was still at 80% (mass 0.6); so
    # trained, seeds 0-15 all reach >= 0.967 accuracy with >= 0.91 of the mass on the key.
    fit(model, train, val, optimizer=optimizer, epochs=20, patience=4, progress=False)
    assert evaluate(model, test)["accuracy"] >= 0.9
    model.eval()
    with torch.no_grad():
        out = model.forward_with_weights(ids[330:])
    keyed = keys[330:] >= 0
    mass = out.sentence_weights[keyed].gather(1, keys[330:][keyed, None])
    assert mass.mean() >= 0.8, mass.mean()
    assert torch.isfinite(out.weights).all()


def test_gradients_are_finite_with_an_empty_document():
    model = HANClassifier(30, 2, embedding_dim=8, hidden_size=6)
    ids = _ids()
    ids[2] = 0  # nothing at all
    logits = model(ids)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_flat_classifier_checkpoints_from_before_the_injected_pooling_still_load():
    torch.manual_seed(0)
    model = FlatClassifier(30, 2, embedding_dim=8, hidden_size=6)
    old = {k.replace("encoder.pooling.", "encoder."): v for k, v in model.state_dict().items()}
    assert "encoder.attention.context" in old  # the keys FlatClassifier wrote before
    fresh = FlatClassifier(30, 2, embedding_dim=8, hidden_size=6)
    fresh.load_state_dict(old)
    ids = torch.tensor([[3, 4, 5, 0]])
    torch.testing.assert_close(fresh.eval()(ids), model.eval()(ids), rtol=0, atol=0)
