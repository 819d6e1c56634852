"""PatchEmbed (ViT eq. 1) against its formula, the 2-D sin-cos table, and bad input."""

import math
from pathlib import Path

import pytest
import torch

from attnlab.vision.patches import PatchEmbed, as_pair, sincos_2d_table

from ._suite import (
    C,
    H,
    ImageCase,
    W,
    check_channels_last,
    check_factory_kwargs,
    check_finite,
    check_gradients,
    check_shape,
    check_state_dict_and_repr,
)

FIXTURE = Path(__file__).parent / "fixtures" / "vit.pt"


def test_tokens_are_the_flattened_patches_times_e_in_row_major_order():
    # z^i = x_p^i E + b, patches of 2x3 pixels on a 4x9 image: grid 2 x 3.
    torch.manual_seed(0)
    embed = PatchEmbed((4, 9), (2, 3), 5, 7, dtype=torch.float64)
    x = torch.randn(2, 5, 4, 9, dtype=torch.float64)
    e = embed.proj.weight.reshape(7, -1)  # (D, C * P_h * P_w)
    patches = []
    for r in range(2):
        for c in range(3):
            patch = x[:, :, 2 * r : 2 * r + 2, 3 * c : 3 * c + 3]  # (B, C, 2, 3)
            patches.append(patch.reshape(2, -1) @ e.T + embed.proj.bias)
    expected = torch.stack(patches, dim=1)
    torch.testing.assert_close(embed(x), expected, rtol=0, atol=1e-12)
    assert embed.grid == (2, 3) and embed.num_patches == 6


def test_flatten_false_keeps_the_grid():
    embed = PatchEmbed(8, 4, 3, 6)
    x = torch.randn(2, 3, 8, 8)
    grid = PatchEmbed(8, 4, 3, 6, flatten=False)
    grid.load_state_dict(embed.state_dict())
    out = grid(x)
    assert out.shape == (2, 6, 2, 2)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), embed(x))


def test_repr_names_sizes():
    text = repr(PatchEmbed(28, 7, 1, 16))
    assert "image_size=(28, 28)" in text and "patch_size=(7, 7)" in text and "grid=(4, 4)" in text


# The suite of every image block, on the grid form (B, D, H / P, W / P) of the embedding.
CASE = ImageCase(
    PatchEmbed,
    {"image_size": (H, W), "patch_size": 1, "in_channels": C, "dim": 4, "flatten": False},
    (4, H, W),
)


def test_conformance_suite():
    check_shape(CASE)
    check_state_dict_and_repr(CASE)
    check_channels_last(CASE)
    check_gradients(CASE)
    for device in ("cpu", "meta"):
        check_factory_kwargs(CASE, device, torch.bfloat16)
    for dtype in (torch.bfloat16, torch.float16):
        check_finite(CASE, dtype)


# -- 2-D sin-cos positions --------------------------------------------------------------


def test_sincos_hand_case():
    # dim 8: omega = [1, 1e-2]; row 1, column 2 of a 2 x 3 grid is token 5.
    table = sincos_2d_table((2, 3), 8, dtype=torch.float64)
    assert table.shape == (6, 8)
    c, r = 2.0, 1.0
    expected = [math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]
    expected += [math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)]
    torch.testing.assert_close(table[5], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(table[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]).double())


def test_sincos_equals_timms_table_up_to_its_documented_layout():
    # timm's build_sincos2d_pos_embed(interleave_sin_cos=True) puts the row first,
    # [sin r, cos r, sin c, cos c]; MAE's (ours) puts the column first.
    saved = torch.load(FIXTURE, weights_only=True)["sincos"]
    ours = sincos_2d_table(saved["grid"], saved["dim"], dtype=torch.float64)
    half = saved["dim"] // 2
    theirs = torch.cat([saved["table"][:, half:], saved["table"][:, :half]], dim=1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_sincos_dtype_and_device():
    table = sincos_2d_table(4, 16, dtype=torch.bfloat16, device="meta")
    assert table.dtype == torch.bfloat16 and table.device.type == "meta"
    assert table.shape == (16, 16)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"image_size": 30, "patch_size": 16}, ValueError, "does not divide image_size 30x30"),
        ({"image_size": (28, 30), "patch_size": 7}, ValueError, "does not divide"),
        ({"image_size": 8, "patch_size": 16}, ValueError, "does not divide"),
        ({"image_size": (8, 8, 8)}, ValueError, "(height, width) pair"),
        ({"patch_size": 2.0}, TypeError, "patch_size must be an int"),
        ({"in_channels": 0}, ValueError, "in_channels must be >= 1"),
        ({"dim": -1}, ValueError, "dim must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line(kwargs, error, words):
    args = {"image_size": 16, "patch_size": 4, "in_channels": 3, "dim": 8, **kwargs}
    with pytest.raises(error, match="^[^\n]+$") as info:
        PatchEmbed(**args)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("images", "error", "words"),
    [
        (torch.randn(3, 16, 16), ValueError, "takes images (B, C, H, W), got shape (3, 16, 16)"),
        (torch.randn(1, 1, 3, 16, 16), ValueError, "takes images (B, C, H, W)"),
        (torch.randn(2, 1, 16, 16), ValueError, "built for 3 input channel(s), got 1"),
        (torch.randn(2, 3, 16, 12), ValueError, "built for 16x16 images, got 16x12"),
        (torch.randn(2, 3, 15, 16), ValueError, "image_size=(15, 16)"),
        (torch.randn(2, 3, 16, 16).double(), TypeError, "images is float64"),
        (torch.ones(2, 3, 16, 16, dtype=torch.long), TypeError, "floating"),
        ([[1.0]], TypeError, "images must be a torch.Tensor"),
    ],
)
def test_bad_images_are_one_line(images, error, words):
    embed = PatchEmbed(16, 4, 3, 8)
    with pytest.raises(error, match="^[^\n]+$") as info:
        embed(images)
    assert words in str(info.value)


def test_sincos_dim_must_divide_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_table(4, 18)


def test_as_pair():
    assert as_pair("x", 3) == (3, 3) and as_pair("x", [2, 5]) == (2, 5)
    with pytest.raises(TypeError, match="x must be an int"):
        as_pair("x", True)
