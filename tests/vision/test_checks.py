"""check_image: the one input check of the image blocks."""

import pytest
import torch

from attnlab.vision._checks import check_image


def test_returns_the_input():
    x = torch.zeros(2, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    assert check_image(x, 3) is x
    assert check_image(x, None) is x


@pytest.mark.parametrize(
    ("dims", "shape", "words"),
    [
        (2, (3, 5, 7), r"x must be \(B, C, H, W\); got \(3, 5, 7\)"),
        (3, (2, 3, 5, 7), r"x must be \(B, C, D, H, W\); got \(2, 3, 5, 7\)"),
        (1, (2, 3, 5, 7), r"x must be \(B, C, L\); got"),
        (2, (2, 4, 5, 7), r"x must be \(B, 3, H, W\), i.e. \(B, C, H, W\) with 3 channels"),
        (3, (2, 4, 1, 5, 7), r"x must be \(B, 3, D, H, W\), i.e. \(B, C, D, H, W\) with 3 "),
    ],
)
def test_wrong_shape(dims, shape, words):
    with pytest.raises(ValueError, match=words):
        check_image(torch.zeros(shape), 3, dims=dims)


def test_names_the_argument_and_checks_the_owner_dtype():
    with pytest.raises(ValueError, match=r"^skip must be"):
        check_image(torch.zeros(2, 3), 3, name="skip")
    with pytest.raises(TypeError, match="skip must be a torch.Tensor, got list"):
        check_image([1.0], 3, name="skip")
    conv = torch.nn.Conv2d(3, 1, 1)
    with pytest.raises(TypeError, match="x is float64 but Conv2d's parameters are float32"):
        check_image(torch.zeros(1, 3, 2, 2, dtype=torch.float64), 3, owner=conv)
    with pytest.raises(TypeError, match="floating tensor"):
        check_image(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), 3, owner=torch.nn.ReLU())
    check_image(torch.zeros(1, 3, 2, 2, dtype=torch.float16), 3, owner=torch.nn.ReLU())
