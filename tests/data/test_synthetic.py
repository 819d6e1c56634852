"""copy_task: shapes, gold alignment, EOS placement, padding and errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.data.synthetic import BOS, EOS, FIRST_SYMBOL, PAD, AlignedBatch, copy_task


def test_special_ids():
    assert (PAD, BOS, EOS, FIRST_SYMBOL) == (0, 1, 2, 3)


def test_shapes_and_dtypes():
    b = copy_task(5, symbols=7, min_len=2, max_len=6, generator=torch.Generator().manual_seed(0))
    assert isinstance(b, AlignedBatch)
    assert b.src.shape == (5, 6) and b.src_lengths.shape == (5,)
    for t in (b.tgt_in, b.tgt_out, b.alignment):
        assert t.shape == (5, 7)  # max_len + 1: BOS / EOS
    for t in b:
        assert t.dtype == torch.long


def test_hand_checked_example():
    b = copy_task(3, symbols=4, min_len=1, max_len=3, generator=torch.Generator().manual_seed(2))
    for i in range(3):
        n = int(b.src_lengths[i])
        s = b.src[i, :n].tolist()
        assert b.src[i].tolist() == s + [PAD] * (3 - n)
        assert b.tgt_in[i].tolist() == [BOS] + s + [PAD] * (3 - n)
        assert b.tgt_out[i].tolist() == s + [EOS] + [PAD] * (3 - n)
        assert b.alignment[i].tolist() == list(range(n)) + [-1] * (4 - n)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 6),
    symbols=st.integers(1, 9),
    min_len=st.integers(1, 5),
    extra=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_copy_task_invariants(batch, symbols, min_len, extra, seed):
    max_len = min_len + extra
    b = copy_task(
        batch,
        symbols=symbols,
        min_len=min_len,
        max_len=max_len,
        generator=torch.Generator().manual_seed(seed),
    )
    lengths = b.src_lengths
    assert ((lengths >= min_len) & (lengths <= max_len)).all()
    real = torch.arange(max_len) < lengths.unsqueeze(-1)
    # source: symbols at real positions, padding after
    assert ((b.src[real] >= FIRST_SYMBOL) & (b.src[real] < FIRST_SYMBOL + symbols)).all()
    assert (b.src[~real] == PAD).all()
    # teacher forcing input is BOS + source; output is source + EOS
    assert (b.tgt_in[:, 0] == BOS).all()
    assert torch.equal(b.tgt_in[:, 1:], b.src)
    rows = torch.arange(batch)
    assert (b.tgt_out[rows, lengths] == EOS).all()
    assert ((b.tgt_out == EOS).sum(-1) == 1).all()  # exactly one EOS per row
    real_out = torch.arange(max_len + 1) < lengths.unsqueeze(-1)
    assert torch.equal(b.tgt_out[:, :max_len][real], b.src[real])
    after_eos = torch.arange(max_len + 1) > lengths.unsqueeze(-1)
    assert (b.tgt_out[after_eos] == PAD).all()
    # the gold alignment points at the copied source token, -1 for EOS and padding
    assert (b.alignment[~real_out] == -1).all()
    src_at = b.src.gather(1, b.alignment.clamp(min=0))
    assert torch.equal(src_at[real_out], b.tgt_out[real_out])
    assert torch.equal(
        b.alignment[real_out], torch.arange(max_len + 1).expand_as(real_out)[real_out]
    )


def test_generator_reproducible_and_lengths_vary():
    a = copy_task(64, generator=torch.Generator().manual_seed(5))
    b = copy_task(64, generator=torch.Generator().manual_seed(5))
    c = copy_task(64, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.src, c.src)
    assert set(a.src_lengths.tolist()) == set(range(4, 9))  # defaults: lengths 4..8


def test_equal_min_and_max_length():
    b = copy_task(4, symbols=1, min_len=3, max_len=3)
    assert (b.src_lengths == 3).all() and (b.src == FIRST_SYMBOL).all()
    assert (b.tgt_out[:, 3] == EOS).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch": 0},
        {"batch": 2, "symbols": 0},
        {"batch": 2, "min_len": 0},
        {"batch": 2, "min_len": 5, "max_len": 4},
    ],
)
def test_errors(kwargs):
    with pytest.raises(ValueError, match=r"need batch >= 1, symbols >= 1 and 1 <= min_len"):
        copy_task(**kwargs)
