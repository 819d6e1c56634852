from functools import partial

import pytest
import torch

from attnlab._validate import lookup
from attnlab.models import POOLINGS, TextClassifier
from attnlab.nn.pooling import AdditivePooling, FeedForwardPooling, LastStatePooling


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_does_not_change_logits(pooling):
    torch.manual_seed(0)
    model = TextClassifier(30, 3, embedding_dim=8, hidden_size=6, pooling=POOLINGS[pooling]).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    longer = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    lengths = torch.tensor([3])
    torch.testing.assert_close(model(longer, lengths), model(ids, lengths))
    torch.testing.assert_close(model(ids, lengths), model(ids[:, :3], lengths))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_shapes_and_weights(pooling):
    model = TextClassifier(
        30, 3, embedding_dim=8, hidden_size=6, pooling=POOLINGS[pooling], bidirectional=True
    )
    ids = torch.randint(1, 30, (4, 9))
    lengths = torch.tensor([9, 5, 1, 3])
    logits, weights = model.forward_with_weights(ids, lengths)
    assert logits.shape == (4, 3)
    if pooling == "last":
        assert weights is None
    else:
        assert weights.shape == (4, 9)
        torch.testing.assert_close(weights.sum(-1), torch.ones(4))
        assert (weights[1, 5:] == 0).all() and (weights[2, 1:] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown pooling 'max'; known: additive, attention"):
        lookup(POOLINGS, "max", "pooling")
    with pytest.raises(TypeError, match="pooling must be a pooling class or factory"):
        TextClassifier(10, pooling="max")
    with pytest.raises(TypeError, match="pooling must be a pooling class or factory"):
        TextClassifier(10, pooling=LastStatePooling(4))
    model = TextClassifier(10)
    with pytest.raises(ValueError, match=r"ids \(B, L\)"):
        model(torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long))


def test_word_dropout_only_in_training_and_never_on_padding():
    torch.manual_seed(0)
    model = TextClassifier(30, embedding_dim=4, hidden_size=3, word_dropout=1.0)
    ids = torch.tensor([[5, 6, 0]])
    lengths = torch.tensor([2])
    unk = torch.tensor([[1, 1, 0]])
    model.eval()
    assert not torch.equal(model(ids, lengths), model(unk, lengths))
    model.train()
    model.dropout.p = 0.0
    torch.testing.assert_close(model(ids, lengths), model(unk, lengths))


def test_pooling_options_and_the_default():
    model = TextClassifier(30, hidden_size=6, bidirectional=True)
    assert isinstance(model.pooling, LastStatePooling) and model.pooling.width == 12
    model = TextClassifier(30, hidden_size=6, pooling=partial(AdditivePooling, hidden_size=5))
    assert model.pooling.attention.hidden_size == 5
    model = TextClassifier(30, hidden_size=6, pooling=partial(FeedForwardPooling, query=True))
    assert model.pooling.attention.context is not None


@pytest.mark.parametrize("pooling", ["attention", "additive", "luong"])
def test_checkpoints_from_before_the_pooling_module_load(pooling):
    # Older checkpoints hold the pooling's parts at the top ("attention.*", "query",
    # "combine.*"): they load into the pooling module.
    torch.manual_seed(0)
    model = TextClassifier(30, 3, embedding_dim=8, hidden_size=6, pooling=POOLINGS[pooling])
    old = {k.removeprefix("pooling."): v for k, v in model.state_dict().items()}
    assert any(k.startswith(("attention.", "query", "combine.")) for k in old)
    copy = TextClassifier(30, 3, embedding_dim=8, hidden_size=6, pooling=POOLINGS[pooling])
    copy.load_state_dict(old)
    for key, value in model.state_dict().items():
        assert torch.equal(copy.state_dict()[key], value), key
