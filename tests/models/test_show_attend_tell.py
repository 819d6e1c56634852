"""Show, Attend and Tell: shapes, the penalty against its formula, decoding, hard attention,
and a short training after which soft attention finds the bright square."""

import pytest
import torch
from torch import nn

from attnlab.models.search import beam_search, greedy_search
from attnlab.models.show_attend_tell import (
    CAPTION_ATTENTIONS,
    ShowAttendTell,
    coverage_penalty,
    decode_captions,
)
from attnlab.nn import AdditiveAttention, HardAttention, MeanAttention

PAD, BOS, EOS = 0, 1, 2
V, C, H, W = 11, 3, 8, 12  # all distinct; the default trunk of two stages pools once
GRID = (H // 2, W // 2)
L = GRID[0] * GRID[1]
EMB, HID, ATT = 5, 7, 6


def _model(kind="soft", seed=0, **kwargs):
    torch.manual_seed(seed)
    attention = CAPTION_ATTENTIONS[kind](HID, 9, ATT)
    return ShowAttendTell(
        V,
        in_channels=C,
        widths=(4, 9),
        attention=attention,
        embedding_dim=EMB,
        hidden_size=HID,
        **kwargs,
    )


def _images(b=2, seed=1):
    return torch.randn(b, C, H, W, generator=torch.Generator().manual_seed(seed))


def _captions(b=2, t=4, seed=2):
    return torch.randint(3, V, (b, t), generator=torch.Generator().manual_seed(seed))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# -- shapes and weights --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["soft", "hard", "none"])
def test_shapes_and_weights_sum_to_one_over_the_grid(kind):
    model = _model(kind)
    out = model(_images(), _captions(t=3), need_weights=True)
    assert out.logits.shape == (2, 3, V)
    assert out.weights.shape == (2, 3, L)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(2, 3))
    assert (out.weights >= 0).all()
    memory = model.encode(_images())
    assert memory.grid == GRID and memory.values.shape == (2, L, 9)
    assert model(_images(), _captions(t=3)).weights is None  # only when asked


def test_no_attention_twin_has_uniform_weights_and_the_mean_context():
    model = _model("none")
    out = model(_images(), _captions(), need_weights=True)
    torch.testing.assert_close(out.weights, torch.full((2, 4, L), 1 / L))
    keys = torch.randn(2, 5, 9)
    context, weights = MeanAttention(HID, 9)(torch.randn(2, HID), keys, need_weights=True)
    torch.testing.assert_close(context, keys.mean(1))
    torch.testing.assert_close(weights, torch.full((2, 5), 0.2))


def test_soft_model_with_copied_weights_is_deterministic():
    a, b = _model(seed=0), _model(seed=1)
    images, captions = _images(), _captions()
    assert not torch.equal(a(images, captions).logits, b(images, captions).logits)
    b.load_state_dict(a.state_dict())
    for mode in (False, True):  # eval first: a training forward moves BatchNorm's statistics
        a.train(mode), b.train(mode)
        first = a(images, captions, need_weights=True)
        second = b(images, captions, need_weights=True)  # the same engine as ``first``
        torch.testing.assert_close(first.logits, second.logits, rtol=0, atol=0)
        again = a(images, captions, need_weights=True)
        torch.testing.assert_close(first.weights, again.weights, rtol=0, atol=0)


# -- the loss ------------------------------------------------------------------------------
def test_doubly_stochastic_penalty_equals_the_formula_written_out():
    model = _model(doubly_stochastic=0.7)
    images, captions = _images(3), _captions(3, 5)
    tgt_in, tgt_out = captions[:, :-1], captions[:, 1:].clone()
    tgt_out[1, 2:] = PAD  # a shorter caption
    terms = model.loss_terms(images, tgt_in, tgt_out)
    weights = model(images, tgt_in, need_weights=True).weights.detach()
    total = 0.0
    for b in range(3):
        for i in range(L):
            attended = sum(float(weights[b, t, i]) for t in range(4) if tgt_out[b, t] != PAD)
            total += (1 - attended) ** 2
    assert terms.doubly_stochastic.item() == pytest.approx(0.7 * total / 3, rel=1e-5)
    torch.testing.assert_close(
        terms.total, terms.cross_entropy + terms.doubly_stochastic + terms.reinforce
    )
    assert terms.reinforce.item() == 0.0 and int(terms.tokens) == 10


def test_padded_steps_do_not_contribute():
    weights = torch.rand(2, 4, 3).softmax(-1)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    garbage = weights.clone()
    garbage[1, 2:] = 100.0
    torch.testing.assert_close(coverage_penalty(garbage, mask), coverage_penalty(weights, mask))
    torch.testing.assert_close(
        coverage_penalty(weights, mask)[1:], coverage_penalty(weights[1:, :2], mask[1:, :2])
    )
    # Through the model: a caption padded to length 5 scores as the same caption alone.
    model = _model()
    images, caption = _images(1), _captions(1, 3)
    padded = torch.cat([caption, torch.full((1, 3), PAD)], dim=1)
    short = model.loss_terms(images, caption[:, :-1], caption[:, 1:])
    long = model.loss_terms(images, padded[:, :-1], padded[:, 1:])
    for name in ("cross_entropy", "doubly_stochastic", "entropy", "nll", "tokens"):
        torch.testing.assert_close(getattr(long, name), getattr(short, name))


def test_hard_attention_returns_log_prob_and_entropy_and_its_loss_backpropagates():
    model = _model("hard", entropy_weight=0.1)
    assert isinstance(model.attention, HardAttention) and model.baseline is not None
    out = model(_images(), _captions(), need_weights=True)
    assert out.log_prob.shape == out.entropy.shape == (2, 4)
    assert (out.log_prob <= 0).all() and (out.entropy > 0).all()
    captions = _captions(t=5)
    terms = model.loss_terms(_images(), captions[:, :-1], captions[:, 1:])
    assert bool(model.baseline.started) and terms.reinforce.item() != 0.0
    terms.total.backward()
    # The sampled context carries no gradient to the scores: REINFORCE (and the penalty) do.
    score = model.attention.attention.v.grad
    assert score is not None and score.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    gumbel = _model("hard-gumbel")
    assert gumbel.baseline is None
    terms = gumbel.loss_terms(_images(), captions[:, :-1], captions[:, 1:])
    assert terms.reinforce.item() == 0.0


# -- decoding ------------------------------------------------------------------------------
@torch.no_grad()
def _hand_greedy(model, images, max_len):
    model.eval()
    results = []
    for i in range(images.shape[0]):
        memory = model.encode(images[i : i + 1])
        state, token, words, rows = model.initial_state(memory), BOS, [], []
        for t in range(max_len):
            out, state, _ = model.step(
                memory, torch.tensor([token]), state, None, t, need_weights=True
            )
            token = int(out.logits[0, 0].argmax())
            rows.append(out.weights[0, 0])
            if token == EOS:
                break
            words.append(token)
        results.append((words, torch.stack(rows)))
    return results


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_beam_of_one_equals_greedy(kind):
    model, images = _model(kind, seed=3), _images(3, seed=4)
    model.train()
    source, src, lengths = model.searchable(images)
    assert src.shape == (3, L) and model.training  # encoding did not change the mode
    beam = beam_search(source, src, lengths, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=6)
    greedy = greedy_search(source, src, lengths, bos_id=BOS, eos_id=EOS, max_len=6)
    captions = decode_captions(model, images, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=6)
    assert model.training  # restored
    for (words, rows), b, g, c in zip(
        _hand_greedy(model, images, 6), beam, greedy, captions, strict=True
    ):
        assert b.tokens == g.tokens == c.tokens == words
        torch.testing.assert_close(b.weights, rows)
        torch.testing.assert_close(c.weights, rows.view(-1, *GRID))


def test_beam_search_records_the_attention_of_every_word():
    model = _model(seed=5)
    hyps = decode_captions(model, _images(2), bos_id=BOS, eos_id=EOS, beam_size=3, max_len=5)
    assert len(hyps) == 2
    for hyp in hyps:
        assert all(0 <= w < V and w != EOS for w in hyp.tokens)
        assert hyp.weights.shape[1:] == GRID
        assert hyp.weights.shape[0] in (len(hyp.tokens), len(hyp.tokens) + 1)
        torch.testing.assert_close(hyp.weights.sum((1, 2)), torch.ones(hyp.weights.shape[0]))


# -- bad input -----------------------------------------------------------------------------
def test_bad_input_says_what_is_wrong_in_one_line():
    model = _model()
    with pytest.raises(ValueError, match="3 channels") as err:
        model(torch.randn(2, 1, H, W), _captions())
    _one_line(err)
    with pytest.raises(TypeError) as err:
        model.encode([[1.0]])
    _one_line(err)
    with pytest.raises(ValueError, match="too small") as err:
        model.encode(torch.randn(1, C, 1, 5))
    _one_line(err)
    sized = _model(image_size=(H, W))
    with pytest.raises(ValueError, match=f"must be {H}x{W} pixels") as err:
        sized.encode(torch.randn(1, C, H, W + 2))
    _one_line(err)
    with pytest.raises(ValueError, match="vocabulary") as err:
        model(_images(), torch.full((2, 3), V))
    _one_line(err)
    with pytest.raises(ValueError, match="rows but images has 2") as err:
        model(_images(), _captions(b=3))
    _one_line(err)
    for beam in (0, -1):
        with pytest.raises(ValueError, match="beam_size must be >= 1") as err:
            decode_captions(model, _images(), bos_id=BOS, eos_id=EOS, beam_size=beam)
        _one_line(err)
    source, src, lengths = model.searchable(_images())
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(source, src, lengths, bos_id=BOS, eos_id=EOS, beam_size=0)
    with pytest.raises(ValueError, match="grid positions") as err:
        beam_search(source, src[:, :3], lengths, bos_id=BOS, eos_id=EOS)
    _one_line(err)


def test_bad_construction_says_what_is_wrong_in_one_line():
    with pytest.raises(ValueError, match="feature_size") as err:
        ShowAttendTell(V, encoder=nn.Identity())
    _one_line(err)
    with pytest.raises(ValueError, match="key_size is 9 but the model's feature_size is 4"):
        ShowAttendTell(V, widths=(4,), hidden_size=HID, attention=AdditiveAttention(HID, 9, 3))
    with pytest.raises(TypeError, match="attention must be"):
        ShowAttendTell(V, attention="soft")
    wrong = ShowAttendTell(V, in_channels=C, encoder=nn.Identity(), feature_size=5)
    with pytest.raises(ValueError, match=r"\(B, 5, h, w\)") as err:
        wrong.encode(_images())
    _one_line(err)


# -- it learns to look ---------------------------------------------------------------------
TOP, BOTTOM, LEFT, RIGHT = 3, 4, 5, 6
SIDE = 8  # an 8x8 grid of 3 features: [bright square?, row coordinate, column coordinate]


def _square_task(n, seed):
    """Captions "top left" ... name the quadrant of the one bright cell.

    The annotation of a cell holds its coordinates, so the context tells the position only
    if it concentrates on the bright cell; the mean grid is the same for every image.
    """
    g = torch.Generator().manual_seed(seed)
    row, col = torch.randint(0, SIDE, (n,), generator=g), torch.randint(0, SIDE, (n,), generator=g)
    grid = torch.zeros(n, 3, SIDE, SIDE)
    grid[torch.arange(n), 0, row, col] = 1.0
    coords = torch.linspace(-1, 1, SIDE)
    grid[:, 1], grid[:, 2] = coords.view(SIDE, 1), coords.view(1, SIDE)
    first = torch.where(row < SIDE // 2, TOP, BOTTOM)
    second = torch.where(col < SIDE // 2, LEFT, RIGHT)
    caption = torch.stack([torch.full_like(first, BOS), first, second, torch.full_like(first, EOS)])
    return grid, caption.T[:, :-1], caption.T[:, 1:], row * SIDE + col


@torch.no_grad()
def _mass_and_accuracy(model, batch):
    """Attention on the bright cell at the first word, and teacher-forced accuracy.

    The first word is where attention must do the work: ``h_0`` comes from the mean grid,
    the same for every image. (Later words may reuse what the LSTM already read.)
    """
    grid, tgt_in, tgt_out, cell = batch
    model.eval()
    out = model(grid, tgt_in, need_weights=True)
    model.train()
    mass = out.weights[torch.arange(len(cell)), 0, cell].mean().item()
    return mass, (out.logits.argmax(-1) == tgt_out).float().mean().item()


def _train(kind, seed, steps):
    torch.manual_seed(seed)
    model = ShowAttendTell(
        7,
        in_channels=3,
        encoder=nn.Identity(),
        feature_size=3,
        attention=CAPTION_ATTENTIONS[kind](16, 3, 16),
        embedding_dim=8,
        hidden_size=16,
        doubly_stochastic=0.0,  # with 3 words over 64 cells the penalty asks for spread
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    check = _square_task(256, seed=1)
    for step in range(steps):
        model.loss(*_square_task(32, seed=1000 + step)[:3])[0].backward()
        optimiser.step(), optimiser.zero_grad()
        if step % 25 == 24:
            mass, accuracy = _mass_and_accuracy(model, check)
            if mass > 0.45 and accuracy == 1.0:
                return model, True
    return model, False


def _trained_soft():
    """A soft model that meets the criterion on a validation batch.

    Training stops on the criterion, not a step count, since trajectories differ between
    CPUs. About one start in ten settles on a degenerate solution instead: attend to
    every cell *but* the square, whose coordinates then show as a small dent in the
    average. So up to three seeded starts, the first one that meets the criterion wins.
    """
    for seed in range(3):
        model, converged = _train("soft", seed, steps=600)
        if converged:
            break
    return model


def test_soft_attention_finds_the_bright_square_after_short_training():
    held_out = _square_task(512, seed=12345)
    uniform = 1 / SIDE**2
    mass, accuracy = _mass_and_accuracy(_trained_soft(), held_out)
    assert mass > 20 * uniform  # 0.31; about 0.9 once trained
    assert accuracy > 0.95
    blind_mass, blind_accuracy = _mass_and_accuracy(_train("none", 0, steps=100)[0], held_out)
    assert blind_mass == pytest.approx(uniform)
    assert blind_accuracy < 0.8  # EOS and chance on the two words: about 2/3
