from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models.stacked_attention import (
    ConvGridEncoder,
    QuestionEncoder,
    StackedAttentionNetwork,
)
from attnlab.nn import AdditiveAttention

# Images of 20 x 28 through two pooling stages: a 5 x 7 grid (all sizes distinct).
SMALL = partial(ConvGridEncoder, widths=(4, 6))


def _san(hops=2, **kw):
    options = dict(
        in_channels=3,
        hops=hops,
        embedding_dim=5,
        hidden_size=8,
        attention_size=9,
        image_encoder=SMALL,
    )
    options.update(kw)
    return StackedAttentionNetwork(11, 4, **options)


def _batch(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 20, 28, generator=g, dtype=dtype)
    questions = torch.tensor([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0], [2, 7, 8, 9, 10]])
    return images, questions, torch.tensor([3, 1, 5])


class GridFeatures(nn.Module):
    """An image encoder that passes given grid features through (D = in_channels)."""

    def __init__(self, in_channels, **_):
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x):
        return x


def test_shapes_and_every_hop_is_a_distribution_over_the_grid():
    torch.manual_seed(0)
    images, questions, lengths = _batch()
    for hops in (0, 1, 2, 3):
        logits, maps = _san(hops).eval().forward_with_weights(images, questions, lengths)
        assert logits.shape == (3, 4) and maps.shape == (3, hops, 5, 7)
        torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(3, hops))
        assert (maps >= 0).all()
    only = _san(0, image_encoder=None).eval()
    logits, maps = only.forward_with_weights(images, questions, lengths)
    assert logits.shape == (3, 4) and maps is None
    # The question-only model ignores the images entirely, so an experiment may pass None.
    torch.testing.assert_close(only(None, questions, lengths), logits)
    # forward gives the logits alone (what attnlab.train.fit calls).
    san = _san(2).eval()
    torch.testing.assert_close(
        san(images, questions, lengths),
        san.forward_with_weights(images, questions, lengths, need_weights=False)[0],
    )
    assert san.forward_with_weights(images, questions, lengths, need_weights=False)[1] is None


@pytest.mark.parametrize("hops", [0, 2])
def test_padded_question_positions_do_not_change_the_output(hops):
    torch.manual_seed(0)
    san = _san(hops).eval()
    images, questions, lengths = _batch()
    logits, maps = san.forward_with_weights(images, questions, lengths)
    # Other ids after each question's end, and more padding columns: the same answer.
    noisy = torch.cat([questions, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    after = torch.arange(noisy.shape[1])[None, :] >= lengths[:, None]
    noisy[after] = torch.randint(1, 11, (int(after.sum()),))
    logits2, maps2 = san.forward_with_weights(images, noisy, lengths)
    torch.testing.assert_close(logits2, logits)
    torch.testing.assert_close(maps2, maps)


def test_hop_update_is_the_papers_formula_with_the_modules_weights():
    torch.manual_seed(0)
    san = _san(2, dtype=torch.float64).eval()
    images, questions, lengths = _batch(torch.float64)
    logits, maps = san.forward_with_weights(images, questions, lengths)
    # v_I = tanh(W_I f_I + b_I), regions in row-major order of the 5 x 7 grid.
    f = san.image_encoder(images).flatten(2).transpose(1, 2)
    v = torch.tanh(f @ san.image_proj.weight.T + san.image_proj.bias)
    u = san.question_encoder(questions, lengths)
    for k, att in enumerate(san.attentions):
        # h_A = tanh(W_IA v_I + (W_QA u + b_A)), p_I = softmax(W_P h_A), u^k = u^{k-1} + p_I v_I.
        h = torch.tanh(
            v @ att.key_proj.weight.T
            + att.key_proj.bias
            + (u @ att.query_proj.weight.T)[:, None, :]
        )
        p = torch.softmax(h @ att.v, dim=-1)
        torch.testing.assert_close(maps[:, k].flatten(1), p)
        u = u + (p[..., None] * v).sum(dim=1)
    torch.testing.assert_close(logits, u @ san.classifier.weight.T + san.classifier.bias)
    # hops=0 is CNN + LSTM: u = v_Q + mean_i v_i.
    base = _san(0, dtype=torch.float64).eval()
    v0, _ = base.encode_image(images)
    u0 = base.question_encoder(questions, lengths) + v0.mean(dim=1)
    torch.testing.assert_close(base(images, questions, lengths), base.classifier(u0))


def test_each_hop_adds_one_attention_layer_of_parameters():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    d, k = 8, 9
    per_hop = 2 * d * k + 2 * k  # W_QA, W_IA + b_A, W_P
    assert count(_san(2)) - count(_san(1)) == per_hop == count(_san(1)) - count(_san(0))
    assert count(AdditiveAttention(d, d, k)) == per_hop
    assert len(_san(3).attentions) == 3 and len(_san(0).attentions) == 0
    image_part = count(SMALL(3)) + 6 * d + d  # the CNN and the projection to d
    assert count(_san(0)) - count(_san(0, image_encoder=None)) == image_part


def test_hops_are_built_by_the_injected_factory():
    calls = []

    def factory(*args, **kw):
        calls.append(args)
        return AdditiveAttention(*args, bias=False, **kw)

    san = _san(2, attention=factory)
    assert calls == [(8, 8, 9), (8, 8, 9)] and san.attentions[0].key_proj.bias is None
    assert san.attentions[0] is not san.attentions[1]
    images, questions, lengths = _batch()
    assert san(images, questions, lengths).shape == (3, 4)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    san = _san(2)
    images, questions, lengths = _batch()
    F.cross_entropy(san(images, questions, lengths), torch.tensor([0, 1, 3])).backward()
    for name, p in san.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "question_encoder.embedding.weight":  # only the question words' rows
            assert p.grad.abs().sum() > 0, name
    rows = san.question_encoder.embedding.weight.grad.abs().sum(-1)
    assert rows[0] == 0 and (rows[1:11] > 0).sum() == 9  # padding and the unused id 1 get none


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = _san(2).eval(), _san(2).eval()
    b.load_state_dict(a.state_dict())
    images, questions, lengths = _batch()
    torch.testing.assert_close(b(images, questions, lengths), a(images, questions, lengths))
    assert "hops=2" in repr(a)


def test_bad_input_is_one_clear_line():
    san = _san(2, image_size=(20, 28))
    images, questions, lengths = _batch()
    cases = [
        ((torch.randn(3, 1, 20, 28), questions, lengths), r"images must be \(B, 3, H, W\)"),
        ((torch.randn(3, 3, 24, 24), questions, lengths), r"must be 20x28 pixels"),
        ((images[:2], questions, lengths), r"same batch, got 2 images and 3 questions"),
        ((images, questions + 9, lengths), r"holds id 19 .* vocabulary has 11 ids"),
        ((images, questions, torch.tensor([3, 1, 6])), r"lengths must lie in 1\.\.5"),
        ((images, questions, torch.tensor([3, 0, 5])), r"lengths must lie in 1\.\.5"),
        ((images, questions, torch.tensor([3, 1])), r"lengths must be \(B,\) = \(3,\)"),
        ((images, questions[0], lengths), r"questions must be an integer tensor"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            san(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="lengths must be an integer tensor"):
        san(images, questions, lengths.float())
    with pytest.raises(TypeError, match="questions must be an integer tensor"):
        san(images, questions.float(), lengths)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        san(None, questions, lengths)
    with pytest.raises(ValueError, match="too small for 2 pooling stages"):
        _san(2)(torch.randn(3, 3, 3, 28), questions, lengths)
    with pytest.raises(ValueError, match="with image_encoder=None .* give hops=0"):
        _san(1, image_encoder=None)
    with pytest.raises(TypeError, match="must have an int out_channels"):
        _san(1, image_encoder=lambda c, **kw: nn.Identity())
    with pytest.raises(TypeError, match="image_encoder must be an image encoder class"):
        _san(1, image_encoder=SMALL(3))
    with pytest.raises(TypeError, match="image_size must be None, an int or a pair"):
        _san(1, image_size=[20, 28])
    with pytest.raises(ValueError, match="hops"):
        _san(-1)
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.3"):
        QuestionEncoder(5, 2, 3)(torch.ones(1, 3, dtype=torch.long), torch.tensor([4]))


def _marker_world(n, g, side=3, props=4):
    """Grid features where the answer is the property of the cell right of the marker.

    Each cell holds its position (one-hot of side*side), a random property (one-hot of
    ``props``) and, for the one marker cell (never in the last column), a marker flag.
    One hop cannot answer: no cell's features say "I am right of the marker"; hop 1 must
    locate the marker, hop 2 the cell whose position is one column further.
    """
    cells = side * side
    feats = torch.zeros(n, 1 + cells + props, side, side)
    prop = torch.randint(props, (n, side, side), generator=g)
    feats[:, 1 : 1 + cells] = torch.eye(cells).view(cells, side, side)
    feats[:, 1 + cells :] = F.one_hot(prop, props).permute(0, 3, 1, 2).float()
    row = torch.randint(side, (n,), generator=g)
    col = torch.randint(side - 1, (n,), generator=g)
    batch = torch.arange(n)
    feats[batch, 0, row, col] = 1.0
    questions = torch.tensor([[2, 3]]).expand(n, 2)  # "what is right of the marker?"
    return feats, questions, prop[batch, row, col + 1], row * side + col + 1


def test_second_hop_moves_to_the_cell_the_first_hop_points_to():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    san = StackedAttentionNetwork(
        4,
        4,
        in_channels=14,
        hops=2,
        embedding_dim=8,
        hidden_size=64,
        attention_size=64,
        image_encoder=GridFeatures,
    )
    opt = torch.optim.Adam(san.parameters(), lr=1e-2)
    lengths = torch.full((64,), 2)
    for _ in range(700):
        feats, questions, answers, _ = _marker_world(64, g)
        loss = F.cross_entropy(san(feats, questions, lengths), answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
    feats, questions, answers, target = _marker_world(400, g)
    with torch.no_grad():
        logits, maps = san.eval().forward_with_weights(feats, questions, torch.full((400,), 2))
    on_target = maps.flatten(2)[torch.arange(400), :, target].mean(0)  # (hops,)
    accuracy = (logits.argmax(-1) == answers).float().mean()
    # Chance is 1/4 for the answer and 1/9 for uniform attention; the second hop's
    # mass sits on the related cell, the first hop's does not.
    assert accuracy > 0.5, accuracy
    assert on_target[1] > 0.4 and on_target[1] > on_target[0] + 0.25, on_target
