"""One mask check everywhere: the same message and exception type from every entry point."""

import pytest
import torch

from attnlab.functional import attention, linear_attention
from attnlab.masks import check_mask
from attnlab.nn import (
    AdditiveAttention,
    AttentionPooling,
    HierarchicalAttention,
    LinearAttention,
    LocalAttention,
    LuongAttention,
    MultiHeadAttention,
    SequenceEncoder,
)

B, L, E = 2, 5, 8
FLOAT = torch.ones(B, L)  # a float mask where a boolean one belongs
x4 = torch.randn(B, 2, L, 4)
x3 = torch.randn(B, L, E)
ENTRY_POINTS = {
    "check_mask": lambda m: check_mask(m),
    "attention": lambda m: attention(x4, x4, x4, mask=m),
    "linear_attention": lambda m: linear_attention(x4, x4, x4, mask=m),
    "MultiHeadAttention": lambda m: MultiHeadAttention(E, 2)(x3, mask=m),
    "LinearAttention": lambda m: LinearAttention(E, 2)(x3, mask=m),
    "AdditiveAttention": lambda m: AdditiveAttention(E, E, 4)(x3, x3, mask=m),
    "LuongAttention": lambda m: LuongAttention(E)(x3, x3, mask=m),
    "LocalAttention": lambda m: LocalAttention(E, half_width=1)(x3, x3, mask=m),
    "AttentionPooling": lambda m: AttentionPooling(E)(x3, mask=m),
    "SequenceEncoder": lambda m: SequenceEncoder(E, 3)(x3, mask=m),
    "HierarchicalAttention": lambda m: HierarchicalAttention(E, 3)(x3.unsqueeze(1), mask=m),
}


def _message(call, mask, error):
    with pytest.raises(error) as info:
        call(mask)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_float_mask_is_one_type_error_with_one_wording_everywhere():
    messages = {name: _message(call, FLOAT, TypeError) for name, call in ENTRY_POINTS.items()}
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    assert "from_additive_mask" in message and "from_key_padding_mask" in message


def test_a_non_tensor_mask_is_one_type_error_everywhere():
    for name, call in ENTRY_POINTS.items():
        message = _message(call, [[True]], TypeError)
        assert message == "mask must be a torch.Tensor or None, got list", name


@pytest.mark.parametrize(
    ("name", "mask"),
    [
        ("attention", torch.ones(B, 2, L, L + 1, dtype=torch.bool)),
        ("linear_attention", torch.ones(B, 2, L, L, dtype=torch.bool)),
        ("MultiHeadAttention", torch.ones(B, L + 1, dtype=torch.bool)),
        ("LuongAttention", torch.ones(B, L + 1, dtype=torch.bool)),
        ("LocalAttention", torch.ones(B, L + 1, dtype=torch.bool)),
        ("AttentionPooling", torch.ones(B + 1, L, dtype=torch.bool)),
        ("HierarchicalAttention", torch.ones(B, 1, L + 1, dtype=torch.bool)),
    ],
)
def test_a_mask_of_the_wrong_shape_is_a_value_error_naming_both_shapes(name, mask):
    message = _message(ENTRY_POINTS[name], mask, ValueError)
    assert f"mask of shape {tuple(mask.shape)} does not broadcast to" in message
