import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks import (
    and_masks,
    causal_mask,
    causal_mask_mod,
    key_padding_mask,
    lengths_to_mask,
    materialize_mask_mod,
    padding_mask_mod,
    query_key_padding_mask,
    sliding_window_mask,
    sliding_window_mask_mod,
)

FAST = settings(max_examples=60, deadline=None)
sizes = st.integers(min_value=0, max_value=9)
alignments = st.sampled_from(["upper_left", "lower_right"])


def golden(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# ---------------------------------------------------------------- causal, golden


CAUSAL_GOLDEN = {
    # (Lq, Lk, alignment): matrix derived on paper
    (3, 5, "upper_left"): [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]],
    (3, 5, "lower_right"): [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
    (5, 3, "upper_left"): [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
    (5, 3, "lower_right"): [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]],
    (2, 4, "upper_left"): [[1, 0, 0, 0], [1, 1, 0, 0]],
    (2, 4, "lower_right"): [[1, 1, 1, 0], [1, 1, 1, 1]],
    (3, 3, "lower_right"): [[1, 0, 0], [1, 1, 0], [1, 1, 1]],
}


@pytest.mark.parametrize(("lq", "lk", "alignment"), list(CAUSAL_GOLDEN))
def test_causal_mask_golden(lq: int, lk: int, alignment: str) -> None:
    mask = causal_mask(lq, lk, alignment=alignment)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, golden(CAUSAL_GOLDEN[lq, lk, alignment]))


def test_causal_mask_defaults_to_square_upper_left() -> None:
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize(("lq", "lk"), [(1, 1), (2, 4), (4, 2), (3, 7), (7, 3), (5, 5), (0, 3)])
def test_causal_mask_matches_torch_causal_bias(lq: int, lk: int) -> None:
    bias_module = pytest.importorskip("torch.nn.attention.bias")  # imported lazily: slow
    bias = bias_module.causal_upper_left(lq, lk)
    if not hasattr(bias, "_materialize"):
        pytest.skip("this torch has no CausalBias._materialize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about lower-right with Lq > Lk
        lower = bias_module.causal_lower_right(lq, lk)._materialize()
    upper = bias._materialize()
    assert torch.equal(causal_mask(lq, lk, alignment="upper_left"), upper)
    assert torch.equal(causal_mask(lq, lk, alignment="lower_right"), lower)


def test_causal_mask_on_device(device: str) -> None:
    mask = causal_mask(2, 3, alignment="lower_right", device=device)
    assert mask.device.type == device
    assert sliding_window_mask(2, 3, window=1, device=device).device.type == device


def test_builders_create_on_meta_device() -> None:
    assert causal_mask(3, 5, device="meta").device.type == "meta"
    assert sliding_window_mask(3, 5, window=1, device="meta").is_meta


# ---------------------------------------------------------------- sliding window, golden


WINDOW_GOLDEN = [
    # (Lq, Lk, window, causal, alignment, matrix)
    (5, 5, 1, False, "upper_left",
     [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]),
    (5, 5, (2, 1), False, "upper_left",
     [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [0, 1, 1, 1, 1], [0, 0, 1, 1, 1]]),
    (5, 5, 2, True, "upper_left",
     [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1]]),
    (4, 4, (0, 2), False, "upper_left",
     [[1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]),
    (4, 4, 0, False, "upper_left",
     [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
    (3, 6, 1, False, "upper_left",
     [[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0]]),
    (3, 6, 1, False, "lower_right",
     [[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]]),
    (2, 5, 1, True, "lower_right",
     [[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]),
    (4, 2, (1, 0), False, "lower_right",
     [[0, 0], [0, 0], [1, 0], [1, 1]]),
    (4, 2, (1, 0), True, "upper_left",
     [[1, 0], [1, 1], [0, 1], [0, 0]]),
]  # fmt: skip


@pytest.mark.parametrize(("lq", "lk", "window", "causal", "alignment", "rows"), WINDOW_GOLDEN)
def test_sliding_window_golden(lq, lk, window, causal, alignment, rows) -> None:
    mask = sliding_window_mask(lq, lk, window=window, causal=causal, alignment=alignment)
    assert torch.equal(mask, golden(rows))


# ---------------------------------------------------------------- lengths


def test_lengths_to_mask_golden() -> None:
    mask = lengths_to_mask(torch.tensor([2, 0, 3]), 4)
    assert torch.equal(mask, golden([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]))


def test_lengths_to_mask_default_max_len_and_lists() -> None:
    assert lengths_to_mask([1, 3]).shape == (2, 3)
    assert lengths_to_mask(torch.tensor([], dtype=torch.long)).shape == (0, 0)
    assert lengths_to_mask(torch.tensor([0, 0])).shape == (2, 0)
    assert lengths_to_mask(torch.tensor([2], dtype=torch.int32), 2).all()


def test_lengths_to_mask_device(device: str) -> None:
    assert lengths_to_mask([1, 2], device=device).device.type == device
    assert lengths_to_mask(torch.tensor([1, 2], device=device)).device.type == device


def test_key_padding_mask_shape_and_values() -> None:
    mask = key_padding_mask(torch.tensor([2, 3]), 5)
    assert mask.shape == (2, 1, 1, 5)
    assert torch.equal(mask[:, 0, 0], golden([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]))


def test_query_key_padding_mask_golden() -> None:
    mask = query_key_padding_mask(torch.tensor([2, 1]), torch.tensor([3, 1]), 3, 4)
    assert mask.shape == (2, 1, 3, 4)
    assert torch.equal(mask[0, 0], golden([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]))
    assert torch.equal(mask[1, 0], golden([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: lengths_to_mask(torch.tensor([2, -1])), ValueError, ">= 0"),
        (lambda: lengths_to_mask(torch.tensor([2, 5]), 4), ValueError, "max_len=4"),
        (lambda: lengths_to_mask(torch.tensor([2, 1]), -1), ValueError, "max_len must be >= 0"),
        (lambda: lengths_to_mask(torch.tensor([2.0, 1.0])), TypeError, "integer"),
        (lambda: lengths_to_mask(torch.tensor([True])), TypeError, "integer"),
        (lambda: lengths_to_mask(torch.tensor([[2, 1]])), ValueError, "1-D"),
        (lambda: lengths_to_mask("abc"), TypeError, "integer"),
        (lambda: query_key_padding_mask([1, 2], [1]), ValueError, "same batch size"),
        (lambda: causal_mask(-1), ValueError, "lq must be >= 0"),
        (lambda: causal_mask(2, -3), ValueError, "lk must be >= 0"),
        (lambda: causal_mask(2.5), TypeError, "lq must be an int"),
        (lambda: causal_mask(True), TypeError, "lq must be an int"),
        (lambda: causal_mask(2, alignment="lower-right"), ValueError, "'lower_right'"),
        (lambda: sliding_window_mask(3, window=-1), ValueError, "window must be >= 0"),
        (lambda: sliding_window_mask(3, window=(1, -2)), ValueError, "window right"),
        (lambda: sliding_window_mask(3, window=(1, 2, 3)), ValueError, "(left, right)"),
        (lambda: sliding_window_mask(3, window=(2, 1), causal=True), ValueError, "causal=True"),
        (lambda: sliding_window_mask(3, window=1, alignment="left"), ValueError, "alignment"),
    ],
)
def test_bad_input_raises_one_clear_line(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert words in message
    assert "\n" not in message


# ---------------------------------------------------------------- properties


@FAST
@given(lq=sizes, lk=sizes, left=sizes, alignment=alignments)
def test_causal_window_is_causal_and_window(lq, lk, left, alignment) -> None:
    banded = sliding_window_mask(lq, lk, window=left, causal=True, alignment=alignment)
    expected = and_masks(
        causal_mask(lq, lk, alignment=alignment),
        sliding_window_mask(lq, lk, window=left, alignment=alignment),
    )
    assert torch.equal(banded, expected)
    pair = sliding_window_mask(lq, lk, window=(left, 0), causal=True, alignment=alignment)
    assert torch.equal(pair, banded)


@FAST
@given(lq=sizes, lk=sizes, left=sizes, right=sizes, alignment=alignments)
def test_window_matches_definition(lq, lk, left, right, alignment) -> None:
    mask = sliding_window_mask(lq, lk, window=(left, right), alignment=alignment)
    offset = 0 if alignment == "upper_left" else lk - lq
    expected = [[-left <= j - (i + offset) <= right for j in range(lk)] for i in range(lq)]
    assert mask.shape == (lq, lk)
    assert mask.tolist() == expected


@FAST
@given(lq=sizes, lk=sizes, w=sizes, alignment=alignments)
def test_int_window_is_symmetric_pair(lq, lk, w, alignment) -> None:
    single = sliding_window_mask(lq, lk, window=w, alignment=alignment)
    pair = sliding_window_mask(lq, lk, window=(w, w), alignment=alignment)
    assert torch.equal(single, pair)
    assert torch.equal(single.T, sliding_window_mask(lk, lq, window=w, alignment=alignment))


@FAST
@given(lq=sizes, lk=sizes, alignment=alignments)
def test_wide_windows_reduce_to_causal_and_full(lq, lk, alignment) -> None:
    wide = lq + lk
    full = sliding_window_mask(lq, lk, window=wide, alignment=alignment)
    assert bool(full.all())
    causal_band = sliding_window_mask(lq, lk, window=wide, causal=True, alignment=alignment)
    assert torch.equal(causal_band, causal_mask(lq, lk, alignment=alignment))


@FAST
@given(lq=sizes, lk=sizes)
def test_lower_right_is_the_tail_of_a_square_causal_mask(lq, lk) -> None:
    # Decoding with a KV cache: the lq new queries are the last lq of lk positions.
    mask = causal_mask(lq, lk, alignment="lower_right")
    if lq <= lk:
        assert torch.equal(mask, causal_mask(lk)[lk - lq :])
    else:  # the first lq - lk rows see nothing, the rest is a square causal mask
        assert not bool(mask[: lq - lk].any())
        assert torch.equal(mask[lq - lk :], causal_mask(lk))
    if lq == lk:
        assert torch.equal(mask, causal_mask(lq, lk, alignment="upper_left"))


@FAST
@given(lengths=st.lists(st.integers(0, 7), max_size=5), extra=st.integers(0, 3))
def test_lengths_mask_property(lengths, extra) -> None:
    max_len = max(lengths, default=0) + extra
    mask = lengths_to_mask(torch.tensor(lengths, dtype=torch.long), max_len)
    assert mask.shape == (len(lengths), max_len)
    assert mask.sum(-1).tolist() == lengths
    assert torch.equal(mask, torch.arange(max_len)[None] < torch.tensor(lengths)[:, None])


@FAST
@given(lq=sizes, lk=sizes, left=sizes, right=sizes, alignment=alignments)
def test_mask_mods_materialize_to_the_builders(lq, lk, left, right, alignment) -> None:
    mod = sliding_window_mask_mod(lq, lk, window=(left, right), alignment=alignment)
    built = sliding_window_mask(lq, lk, window=(left, right), alignment=alignment)
    assert torch.equal(materialize_mask_mod(mod, lq, lk)[0, 0], built)
    mod = causal_mask_mod(lq, lk, alignment=alignment)
    assert torch.equal(
        materialize_mask_mod(mod, lq, lk, heads=2)[0, 1], causal_mask(lq, lk, alignment=alignment)
    )


def test_padding_mask_mod_materializes_to_query_key_padding_mask() -> None:
    q_len, k_len = torch.tensor([2, 3, 0]), torch.tensor([4, 1, 2])
    mod = padding_mask_mod(k_len, q_len)
    dense = materialize_mask_mod(mod, 3, 5, batch=3, heads=2)
    assert dense.shape == (3, 2, 3, 5)
    assert torch.equal(dense, query_key_padding_mask(q_len, k_len, 3, 5).expand(3, 2, 3, 5))
    keys_only = materialize_mask_mod(padding_mask_mod(k_len), 3, 5, batch=3)
    assert torch.equal(keys_only, key_padding_mask(k_len, 5).expand(3, 1, 3, 5))


def test_mask_mods_agree_with_flex_create_mask() -> None:
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    mod = sliding_window_mask_mod(3, 7, window=(2, 1), alignment="lower_right")
    flex_mask = flex.create_mask(mod, None, None, 3, 7, device="cpu")
    assert torch.equal(
        flex_mask[0, 0], sliding_window_mask(3, 7, window=(2, 1), alignment="lower_right")
    )
    mod = padding_mask_mod(torch.tensor([1, 3]), torch.tensor([2, 1]))
    flex_mask = flex.create_mask(mod, 2, 2, 3, 4, device="cpu")
    assert torch.equal(flex_mask, query_key_padding_mask([2, 1], [1, 3], 3, 4).expand(2, 2, 3, 4))


def test_materialize_rejects_non_bool_mask_mod() -> None:
    with pytest.raises(TypeError, match="bool tensor"):
        materialize_mask_mod(lambda b, h, q, kv: q - kv, 2, 3)
