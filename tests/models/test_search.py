"""Beam and greedy search for Seq2Seq, against a hand-written greedy loop and rescoring."""

import pytest
import torch

from attnlab.data.synthetic import BOS, EOS
from attnlab.models.search import Hypothesis, beam_search, greedy_search
from attnlab.models.seq2seq import Seq2Seq
from attnlab.models.seq2seq_attentions import SEQ2SEQ_ATTENTIONS, Seq2SeqOptions

from ._copy import held_out_copy_batch, trained_copy_model

SRC_V, TGT_V, EMB, HID, S, B = 11, 7, 5, 8, 6, 3  # all distinct; few words so EOS comes up
MAX_LEN = 9
LENGTHS = torch.tensor([S, 2, 4])


def _model(attention="luong-general", input_feeding=False, rnn="gru", seed=0):
    torch.manual_seed(seed)
    options = Seq2SeqOptions(half_width=1, max_source_len=S, input_feeding=input_feeding)
    return Seq2Seq(
        SRC_V,
        TGT_V,
        **SEQ2SEQ_ATTENTIONS[attention](HID, options).as_kwargs(),
        rnn=rnn,
        embedding_dim=EMB,
        hidden_size=HID,
        dropout=0.1,
    )


@pytest.fixture
def src():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, SRC_V, (B, S), generator=g)
    src[torch.arange(S) >= LENGTHS.unsqueeze(-1)] = 0
    return src


@torch.no_grad()
def _hand_greedy(model, src, lengths, max_len):
    """Argmax at every step until EOS, one sentence at a time."""
    model.eval()
    results = []
    for i in range(src.shape[0]):
        memory = model.encode(src[i : i + 1], lengths[i : i + 1])
        state, feed, token = model.initial_state(memory), None, BOS
        words, score, rows = [], 0.0, []
        for t in range(max_len):
            out, state, feed = model.step(
                memory, torch.tensor([token]), state, feed, t, need_weights=True
            )
            log_p = torch.log_softmax(out.logits[0, 0], -1)
            token = int(log_p.argmax())
            score += float(log_p[token])
            if out.weights is not None:
                rows.append(out.weights[0, 0])
            if token == EOS:
                break
            words.append(token)
        results.append((words, score, torch.stack(rows) if rows else None))
    return results


@torch.no_grad()
def _rescore(model, src, lengths, hyp: Hypothesis, finished: bool):
    """log p(tokens [+ EOS]) by teacher forcing."""
    model.eval()
    target = hyp.tokens + ([EOS] if finished else [])
    tgt_in = torch.tensor([[BOS] + target[:-1]])
    logits = model(src, lengths, tgt_in).logits[0]
    return float(torch.log_softmax(logits, -1)[torch.arange(len(target)), target].sum())


@pytest.mark.parametrize(
    ("attention", "input_feeding"),
    [("luong-general", False), ("luong-dot", True), ("bahdanau", False), ("local-m", True)],
)
def test_beam_of_one_is_the_hand_written_greedy_loop(src, attention, input_feeding):
    model = _model(attention, input_feeding).train()
    expected = _hand_greedy(model, src, LENGTHS, MAX_LEN)
    model.train()
    for hyps in (
        greedy_search(model, src, LENGTHS, bos_id=BOS, eos_id=EOS, max_len=MAX_LEN),
        beam_search(
            model,
            src,
            LENGTHS,
            bos_id=BOS,
            eos_id=EOS,
            beam_size=1,
            max_len=MAX_LEN,
            length_penalty=0.0,
        ),
    ):
        assert model.training  # restored after the search
        assert len(hyps) == B
        for hyp, (words, score, rows) in zip(hyps, expected):
            assert hyp.tokens == words
            assert hyp.score == pytest.approx(score, abs=1e-4)
            torch.testing.assert_close(hyp.weights, rows)


def test_beam_scores_are_teacher_forced_log_probs(src):
    model = _model("luong-concat", input_feeding=True)
    for alpha in (0.0, 1.0):
        hyps = beam_search(
            model,
            src,
            LENGTHS,
            bos_id=BOS,
            eos_id=EOS,
            beam_size=4,
            max_len=MAX_LEN,
            length_penalty=alpha,
        )
        for i, hyp in enumerate(hyps):
            finished = len(hyp.tokens) < MAX_LEN
            n = len(hyp.tokens) + int(finished)
            log_p = _rescore(model, src[i : i + 1], LENGTHS[i : i + 1], hyp, finished)
            assert hyp.score == pytest.approx(log_p / n**alpha, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_finds_at_least_the_greedy_log_prob(src, seed):
    model = _model("luong-general", seed=seed)
    greedy = greedy_search(model, src, LENGTHS, bos_id=BOS, eos_id=EOS, max_len=MAX_LEN)
    beam = beam_search(
        model,
        src,
        LENGTHS,
        bos_id=BOS,
        eos_id=EOS,
        beam_size=5,
        max_len=MAX_LEN,
        length_penalty=0.0,
    )
    for g, b in zip(greedy, beam):
        assert b.score >= g.score - 1e-5


@pytest.mark.parametrize(
    ("attention", "rnn", "input_feeding"),
    [
        ("luong-general", "gru", False),
        ("local-p", "lstm", True),
        ("bahdanau", "lstm", False),
        ("hard-gumbel", "gru", True),
        ("luong-location", "gru", False),
    ],
)
def test_batched_search_equals_each_sentence_alone(src, attention, rnn, input_feeding):
    model = _model(attention, input_feeding, rnn)
    kw = {"bos_id": BOS, "eos_id": EOS, "beam_size": 3, "max_len": MAX_LEN}
    batched = beam_search(model, src, LENGTHS, **kw)
    for i in range(B):
        n = int(LENGTHS[i])
        (alone,) = beam_search(model, src[i : i + 1, :n], LENGTHS[i : i + 1], **kw)
        assert batched[i].tokens == alone.tokens
        assert batched[i].score == pytest.approx(alone.score, abs=1e-4)
        torch.testing.assert_close(batched[i].weights[:, :n], alone.weights)
        assert (batched[i].weights[:, n:] == 0).all()


@pytest.mark.parametrize("beam_size", [1, 4])
def test_weights_one_row_per_emitted_token(src, beam_size):
    model = _model("luong-general")
    hyps = beam_search(
        model, src, LENGTHS, bos_id=BOS, eos_id=EOS, beam_size=beam_size, max_len=MAX_LEN
    )
    for i, hyp in enumerate(hyps):
        finished = len(hyp.tokens) < MAX_LEN
        assert hyp.weights.shape == (len(hyp.tokens) + int(finished), S)
        n = int(LENGTHS[i])
        torch.testing.assert_close(hyp.weights[:, :n].sum(-1), torch.ones(len(hyp.weights)))
        assert (hyp.weights[:, n:] == 0).all()
        assert EOS not in hyp.tokens


def test_need_weights_false_and_none_model_give_no_weights(src):
    kw = {"bos_id": BOS, "eos_id": EOS, "beam_size": 2, "max_len": MAX_LEN}
    for hyp in beam_search(_model("luong-general"), src, LENGTHS, need_weights=False, **kw):
        assert hyp.weights is None
    none = beam_search(_model("none"), src, LENGTHS, **kw)
    assert len(none) == B
    for hyp in none:
        assert hyp.weights is None and isinstance(hyp.score, float)


def test_max_len_caps_the_hypotheses(src):
    hyps = beam_search(_model("luong-dot"), src, LENGTHS, bos_id=BOS, eos_id=EOS, max_len=2)
    for hyp in hyps:
        assert len(hyp.tokens) <= 2 and len(hyp.weights) <= 2


@pytest.mark.parametrize(("beam_size", "max_len"), [(0, 5), (-2, 5), (3, 0)])
def test_invalid_arguments(src, beam_size, max_len):
    with pytest.raises(ValueError, match="(beam_size|max_len) must be >= 1"):
        beam_search(
            _model(), src, LENGTHS, bos_id=BOS, eos_id=EOS, beam_size=beam_size, max_len=max_len
        )


# -- a trained model copies its input ------------------------------------------------------
@pytest.mark.parametrize("beam_size", [1, 5])
def test_trained_copy_model_reproduces_the_source(beam_size):
    # Trained until it aligns and copies 98% of tokens under teacher forcing (see _copy).
    model = trained_copy_model("luong-location").model
    held = held_out_copy_batch(128)
    hyps = beam_search(
        model,
        held.src,
        held.src_lengths,
        bos_id=BOS,
        eos_id=EOS,
        beam_size=beam_size,
        max_len=held.src.shape[1] + 3,
    )
    correct = 0
    for i, hyp in enumerate(hyps):
        n = int(held.src_lengths[i])
        correct += hyp.tokens == held.src[i, :n].tolist()
        if hyp.tokens == held.src[i, :n].tolist():  # attention follows the copy diagonal
            assert hyp.weights.shape == (n + 1, held.src.shape[1])
            assert (hyp.weights[:n].argmax(-1) == torch.arange(n)).float().mean() >= 0.5
    assert correct / len(hyps) >= 0.9, f"beam {beam_size}: {correct}/{len(hyps)} copied"
