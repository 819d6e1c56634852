import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.masks import (
    and_mask_mods,
    and_masks,
    causal_mask,
    causal_mask_mod,
    check_mask,
    key_padding_mask,
    materialize_mask_mod,
    or_mask_mods,
    or_masks,
    sliding_window_mask,
    sliding_window_mask_mod,
)

FAST = settings(max_examples=60, deadline=None)
FLOAT_MESSAGE = (
    "mask must be boolean with True = may attend; got torch.float32. An additive float mask "
    "goes through attnlab.masks.from_additive_mask (or bias=); a torch key_padding_mask "
    "(True = ignore) through attnlab.masks.from_key_padding_mask"
)


def test_and_masks_broadcasts_padding_with_causal() -> None:
    pad = key_padding_mask(torch.tensor([2, 3]))  # (2, 1, 1, 3)
    mask = and_masks(pad, None, causal_mask(3))
    assert mask.shape == (2, 1, 3, 3)
    expected_0 = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected_0)
    assert torch.equal(mask[1, 0], causal_mask(3))


def test_and_masks_none_handling() -> None:
    causal = causal_mask(3)
    assert and_masks() is None
    assert and_masks(None, None) is None
    assert and_masks(None, causal) is causal


def test_or_masks_none_handling() -> None:
    causal = causal_mask(3)
    assert or_masks(causal, None) is None
    assert or_masks(None) is None
    assert or_masks(causal) is causal
    with pytest.raises(ValueError, match="at least one mask"):
        or_masks()


def test_or_masks_golden() -> None:
    mask = or_masks(causal_mask(3), sliding_window_mask(3, window=(0, 1)))
    assert mask.int().tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("combine", [and_masks, or_masks])
def test_combinators_reject_float_masks_with_the_standard_message(combine) -> None:
    with pytest.raises(TypeError) as info:
        combine(causal_mask(3), torch.zeros(3, 3))
    assert str(info.value) == FLOAT_MESSAGE


@pytest.mark.parametrize("combine", [and_masks, or_masks])
def test_combinators_reject_shapes_that_do_not_broadcast(combine) -> None:
    with pytest.raises(ValueError, match=r"do not broadcast together: \(3, 3\), \(4, 4\)"):
        combine(causal_mask(3), causal_mask(4))


def test_check_mask_messages() -> None:
    mask = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    assert check_mask(mask) is mask
    assert check_mask(mask, shape=(2, 4, 3, 5)) is mask
    with pytest.raises(TypeError) as info:
        check_mask(torch.zeros(3, 3))
    assert str(info.value) == FLOAT_MESSAGE
    with pytest.raises(TypeError, match="got list"):
        check_mask([[True]])
    with pytest.raises(ValueError, match="at most 4 dims"):
        check_mask(torch.ones(1, 1, 1, 1, 1, dtype=torch.bool))
    assert check_mask(torch.ones(1, 1, 1, 1, 1, dtype=torch.bool), ndim_max=5).ndim == 5
    with pytest.raises(ValueError, match=r"does not broadcast to \(2, 4, 3, 6\)"):
        check_mask(mask, shape=(2, 4, 3, 6))
    with pytest.raises(ValueError, match="does not broadcast"):
        check_mask(mask, shape=(3, 5))


masks_3x4 = st.lists(st.booleans(), min_size=12, max_size=12).map(
    lambda bits: torch.tensor(bits).view(3, 4)
)


@FAST
@given(a=masks_3x4, b=masks_3x4, c=masks_3x4)
def test_de_morgan_and_associativity(a, b, c) -> None:
    assert torch.equal(~and_masks(a, b), or_masks(~a, ~b))
    assert torch.equal(and_masks(a, b, c), a & b & c)
    assert torch.equal(or_masks(a, b, c), a | b | c)
    assert torch.equal(and_masks(a[:, :1], b), a[:, :1] & b)  # broadcasting


@FAST
@given(lq=st.integers(0, 8), lk=st.integers(0, 8), w=st.integers(0, 4))
def test_mask_mod_combinators_match_tensor_combinators(lq, lk, w) -> None:
    mods = (causal_mask_mod(lq, lk), sliding_window_mask_mod(lq, lk, window=(0, w)))
    tensors = (causal_mask(lq, lk), sliding_window_mask(lq, lk, window=(0, w)))
    both = materialize_mask_mod(and_mask_mods(*mods), lq, lk)[0, 0]
    either = materialize_mask_mod(or_mask_mods(*mods), lq, lk)[0, 0]
    assert torch.equal(both, and_masks(*tensors))
    assert torch.equal(either, or_masks(*tensors))
    assert bool(materialize_mask_mod(and_mask_mods(), lq, lk).all())


def test_mask_mod_combinator_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        or_mask_mods()
    with pytest.raises(TypeError, match="argument 1 is Tensor"):
        and_mask_mods(causal_mask_mod(3), causal_mask(3))
