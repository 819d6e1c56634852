"""LSTMN (Cheng et al. 2016): the paper's step, causality, padding, injection, bad input."""

import pytest
import torch

from attnlab.nn import AdditiveAttention
from attnlab.nn.lstmn import LSTMN


def _x(b=3, t=5, d=4, seed=0):
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed))


def test_one_step_by_hand_is_the_papers_formula():
    torch.manual_seed(0)
    model = LSTMN(4, 6)
    x = _x(2, 3, 4)
    out, weights = model(x, need_weights=True)
    att = model.attention
    # Replay every step by hand: the tapes start with zeros, the query is [x_t; h~_t-1].
    c_tape, summary = [torch.zeros(2, 6)], torch.zeros(2, 6)
    for t in range(3):
        keys = torch.cat([torch.zeros(2, 1, 6), out[:, :t]], 1)
        values = torch.cat([keys, torch.stack(c_tape, 1)], -1)
        context, w = att(torch.cat([x[:, t], summary], -1), keys, values, need_weights=True)
        torch.testing.assert_close(w, weights[:, t, : t + 1])
        summary, carried = context.split(6, -1)
        i, f, o, g = model.gates(torch.cat([summary, x[:, t]], -1)).chunk(4, -1)
        c = torch.sigmoid(f) * carried + torch.sigmoid(i) * torch.tanh(g)
        torch.testing.assert_close(torch.sigmoid(o) * torch.tanh(c), out[:, t])
        c_tape.append(c)


def test_weights_cover_the_past_only_and_sum_to_one():
    out, weights = LSTMN(4, 6)(_x(), need_weights=True)
    assert out.shape == (3, 5, 6) and weights.shape == (3, 5, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    future = torch.triu(torch.ones(5, 6, dtype=torch.bool), diagonal=2)  # column j + 1 > t + 1
    assert (weights[:, future] == 0).all()
    assert (weights[:, 0, 0] == 1).all()


def test_a_step_never_sees_later_words():
    model, x = LSTMN(4, 6), _x()
    changed = x.clone()
    changed[:, 3:] = torch.randn(3, 2, 4)
    torch.testing.assert_close(model(x).context[:, :3], model(changed).context[:, :3])


def test_padding_changes_nothing_real_and_is_zero():
    model, x = LSTMN(4, 6), _x()
    lengths = torch.tensor([5, 2, 3])
    out, weights = model(x, lengths, need_weights=True)
    for b, n in enumerate(lengths.tolist()):
        alone, w_alone = model(x[b : b + 1, :n], need_weights=True)
        torch.testing.assert_close(out[b, :n], alone[0])
        torch.testing.assert_close(weights[b, :n, : n + 1], w_alone[0])
        assert (out[b, n:] == 0).all() and (weights[b, n:] == 0).all()


def test_gradients_reach_every_parameter_and_the_input():
    model, x = LSTMN(4, 6), _x().requires_grad_()
    model(x).context.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_injected_attention_is_the_one_used():
    attention = AdditiveAttention(4 + 6, 6, 3)
    model = LSTMN(4, 6, attention=attention)
    assert model.attention is attention
    assert LSTMN(4, 6, attention_size=5).attention.hidden_size == 5
    with pytest.raises(ValueError, match="query_size is 9 but .* needs 10"):
        LSTMN(4, 6, attention=AdditiveAttention(9, 6, 3))
    with pytest.raises(TypeError, match="nn.Module"):
        LSTMN(4, 6, attention="additive")


@pytest.mark.parametrize(
    ("x", "lengths", "error", "match"),
    [
        (torch.randn(3, 4), None, ValueError, r"x must be \(B, T, 4\)"),
        (torch.randn(3, 5, 7), None, ValueError, r"x must be \(B, T, 4\)"),
        (torch.ones(3, 5, 4, dtype=torch.long), None, TypeError, "embed token ids first"),
        (torch.randn(3, 5, 4), torch.tensor([5, 0, 2]), ValueError, r"lengths must lie in 1..5"),
        (torch.randn(3, 5, 4), torch.tensor([5, 6, 2]), ValueError, r"lengths must lie in 1..5"),
        (torch.randn(3, 5, 4), torch.tensor([5.0, 1, 2]), TypeError, "integer tensor"),
        (torch.randn(3, 5, 4), torch.tensor([5, 1]), ValueError, r"lengths must be \(B,\)"),
    ],
)
def test_bad_input_is_one_clear_line(x, lengths, error, match):
    with pytest.raises(error, match=match):
        LSTMN(4, 6)(x, lengths)


def test_no_steps_gives_empty_outputs():
    out, weights = LSTMN(4, 6)(torch.randn(2, 0, 4), need_weights=True)
    assert out.shape == (2, 0, 6) and weights.shape == (2, 0, 1)


def test_on_a_copy_task_the_last_step_attends_to_the_copied_word():
    # Six words, each with its position; the last input asks for the word at position p.
    # Seeds 0-2 gave 0.78-0.86 of the weight on that word's slot (uniform: 1/8).
    torch.manual_seed(0)
    vocab, steps = 8, 6
    embed = torch.nn.Embedding(vocab + 1, 8)
    reader, head = LSTMN(8 + steps, 32), torch.nn.Linear(32, vocab)
    params = [*embed.parameters(), *reader.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def batch(n, generator):
        words = torch.randint(0, vocab, (n, steps), generator=generator)
        p = torch.randint(0, steps, (n,), generator=generator)
        tokens = torch.cat([words, torch.full((n, 1), vocab)], 1)  # the query token
        positions = torch.cat([torch.arange(steps).expand(n, steps), p[:, None]], 1)
        x = torch.cat([embed(tokens), torch.nn.functional.one_hot(positions, steps)], -1)
        return x.float(), p, words[torch.arange(n), p]

    generator = torch.Generator().manual_seed(1)
    for _ in range(300):
        x, _, target = batch(64, generator)
        loss = torch.nn.functional.cross_entropy(head(reader(x).context[:, -1]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x, p, target = batch(500, torch.Generator().manual_seed(99))
        out, weights = reader(x, need_weights=True)
    assert (head(out[:, -1]).argmax(-1) == target).float().mean() > 0.9
    assert weights[torch.arange(500), -1, p + 1].mean() > 0.5  # four times uniform
