import pytest
import torch

from attnlab.functional import AttentionOutput
from attnlab.vision.draw_attention import (
    WINDOW_FIELDS,
    DrawRead,
    DrawWrite,
    FullRead,
    FullWrite,
    draw_read,
    draw_window,
    draw_write,
    filterbanks,
    gaussian_filterbank,
    glimpse_boxes,
)

# Height and width differ so that a transposition cannot hide.
H, W = 11, 13


def window(gx: float, gy: float, variance: float, stride: float, gamma: float = 1.0, b: int = 1):
    return torch.tensor([[gx, gy, variance, stride, gamma]]).expand(b, 5).clone()


def centres_of_mass(f: torch.Tensor) -> torch.Tensor:
    """Where each filter row is centred, in the paper's 1-based pixel coordinates."""
    return (f * torch.arange(1, f.shape[-1] + 1, dtype=f.dtype)).sum(-1)


def raw_params(gx_t: float, gy_t: float, log_var: float, log_stride: float, log_gamma: float):
    return torch.tensor([[gx_t, gy_t, log_var, log_stride, log_gamma]])


# ---------------------------------------------------------------- the window follows its parameters


def test_window_from_the_linear_outputs_is_the_papers_formula():
    n = 4
    params = raw_params(0.2, -0.4, 0.3, -0.5, 0.7)
    got = draw_window(params, size=n, height=H, width=W)[0]
    expected = [
        (W + 1) / 2 * 1.2,
        (H + 1) / 2 * 0.6,
        torch.tensor(0.3).exp().item(),
        (max(H, W) - 1) / (n - 1) * torch.tensor(-0.5).exp().item(),
        torch.tensor(0.7).exp().item(),
    ]
    assert torch.allclose(got, torch.tensor(expected))
    # N = 1 has no spacing: its stride is scaled as if N - 1 were 1, never a division by 0.
    assert torch.isfinite(draw_window(params, size=1, height=H, width=W)).all()


@pytest.mark.parametrize(
    ("gx", "gy", "stride"), [(11.0, 10.0, 1.5), (9.5, 12.25, 0.8), (12.0, 9.5, 2.0)]
)
def test_filter_centres_and_spacing_equal_the_values_set(gx, gy, stride):
    n, height, width = 4, 21, 23
    fx, fy = filterbanks(window(gx, gy, 0.6, stride), size=n, height=height, width=width)
    offsets = (torch.arange(1, n + 1) - n / 2 - 0.5) * stride
    # Filters a few sigma inside the image, sigma near a pixel: each row's centre of
    # mass is mu^i itself (a sampled Gaussian's mean is off by ~exp(-2 pi^2 sigma^2)).
    assert torch.allclose(centres_of_mass(fx)[0], gx + offsets, atol=1e-3)
    assert torch.allclose(centres_of_mass(fy)[0], gy + offsets, atol=1e-3)
    # So the grid is centred on (gx, gy) and its spacing is the stride.
    assert torch.allclose(centres_of_mass(fx).mean(), torch.tensor(gx), atol=1e-3)
    assert torch.allclose(centres_of_mass(fy).diff(), torch.tensor(stride), atol=1e-3)


def test_module_window_follows_its_linear_layer():
    height, width = 21, 23
    read = DrawRead(6, height, width, size=3)
    with torch.no_grad():
        read.window.weight.zero_()
        read.window.bias.copy_(raw_params(-0.3, 0.1, -0.5, -1.5, 0.0)[0])
    x = torch.rand(2, 1, height, width)
    out = read(x, x, torch.randn(2, 6))
    gx, gy = (width + 1) / 2 * 0.7, (height + 1) / 2 * 1.1
    stride = (width - 1) / 2 * torch.tensor(-1.5).exp()
    assert dict(zip(WINDOW_FIELDS, out.weights[0].tolist()))["centre_x"] == pytest.approx(gx)
    assert torch.allclose(centres_of_mass(out.filterbank_x)[:, 1], torch.tensor(gx), atol=1e-3)
    assert torch.allclose(centres_of_mass(out.filterbank_y)[:, 1], torch.tensor(gy), atol=1e-3)
    assert torch.allclose(centres_of_mass(out.filterbank_x).diff(), stride, atol=1e-3)


@pytest.mark.parametrize(("n", "gx", "gy"), [(3, 5.0, 4.0), (4, 6.5, 7.5), (1, 13.0, 1.0)])
def test_stride_one_read_with_tiny_variance_is_the_crop(n, gx, gy):
    x = torch.randn(2, 3, H, W)
    out = draw_read(x, window(gx, gy, 1e-4, 1.0, b=2), size=n)
    # The filters sit on pixels gx - (N-1)/2 .. gx + (N-1)/2 (1-based).
    col, row = int(gx - (n - 1) / 2) - 1, int(gy - (n - 1) / 2) - 1
    assert torch.allclose(out.context, x[:, :, row : row + n, col : col + n], atol=1e-5)


def test_read_equals_the_filterbank_product_and_scales_by_gamma():
    x = torch.randn(2, 3, H, W)
    win = torch.cat([window(6.0, 5.0, 2.0, 1.7, 0.5), window(3.0, 9.0, 0.7, 0.9, 2.0)])
    out = draw_read(x, win, size=4)
    fx, fy = filterbanks(win, size=4, height=H, width=W)
    expected = torch.einsum("bjh,bchw,biw->bcji", fy, x, fx) * win[:, 4, None, None, None]
    assert torch.allclose(out.context, expected, atol=1e-5)
    # The core's weights are the pure function's filterbanks.
    assert torch.allclose(out.filterbank_x, fx, atol=1e-6)
    assert torch.allclose(out.filterbank_y, fy, atol=1e-6)
    assert out.weights is win and draw_read(x, win, size=4, need_weights=False).weights is None


def test_filterbank_rows_sum_to_one_even_far_outside_the_image():
    one = torch.ones(3)
    for centre in (-40.0, 5.0, 90.0):
        f = gaussian_filterbank(
            centre * one, 3 * one, torch.tensor([1e-8, 1.0, 1e4]), size=5, length=W
        )
        assert torch.isfinite(f).all() and torch.allclose(f.sum(-1), torch.ones(3, 5))
    far = gaussian_filterbank(torch.tensor([-40.0]), one[:1], 1e-3 * one[:1], size=2, length=W)
    assert far.argmax(-1).tolist() == [[0, 0]]  # the mass sits on the nearest edge pixel


def test_write_is_the_transpose_of_read():
    x, w = (
        torch.randn(2, 3, H, W, dtype=torch.float64),
        torch.randn(2, 3, 4, 4, dtype=torch.float64),
    )
    win = torch.cat([window(6.0, 5.0, 2.0, 1.7), window(3.0, 9.0, 0.7, 0.9)]).double()
    read = draw_read(x, win, size=4).context
    write = draw_write(w, win, height=H, width=W).context
    # <read(x), w> = <x, write(w)> for gamma = 1: write applies F_Y^T . F_X.
    assert torch.allclose((read * w).sum((1, 2, 3)), (x * write).sum((1, 2, 3)))
    # And write divides by gamma where read multiplies.
    win[:, 4] = 4.0
    assert torch.allclose(draw_write(w, win, height=H, width=W).context, write / 4)


# ---------------------------------------------------------------- the modules


def test_module_shapes_channels_and_contract():
    read = DrawRead(6, H, W, channels=3, size=2)
    x, h = torch.rand(4, 3, H, W), torch.randn(4, 6)
    out = read(x, x - 0.5, h)
    assert isinstance(out, AttentionOutput) and read.out_features == 2 * 3 * 2 * 2
    assert out.context.shape == (4, 6, 2, 2) and out.weights.shape == (4, 5)
    assert out.filterbank_x.shape == (4, 2, W) and out.filterbank_y.shape == (4, 2, H)
    # The first C channels read x, the next C read x_hat, through one window.
    only_x = draw_read(x, out.weights, size=2).context
    assert torch.allclose(out.context[:, :3], only_x, atol=1e-6)
    write = DrawWrite(6, H, W, channels=3, size=5)
    update = write(h)
    assert update.context.shape == (4, 3, H, W) and update.weights.shape == (4, 5)
    assert write(h, need_weights=False).weights is None
    assert FullRead(6, H, W, 3)(x, x, h).context.shape == (4, 6, H, W)
    assert FullRead(6, H, W, 3).out_features == 6 * H * W
    full = FullWrite(6, H, W, 3)(h)
    assert full.context.shape == (4, 3, H, W) and full.weights is None
    assert "size=2" in repr(read)


def test_gradients_reach_images_state_and_parameters():
    read, write = DrawRead(6, H, W, size=3), DrawWrite(6, H, W, size=4)
    x = torch.rand(2, 1, H, W, requires_grad=True)
    h = torch.randn(2, 6, requires_grad=True)
    glimpse = read(x, x.detach() - 0.5, h).context
    (glimpse.square().sum() + write(h).context.sum()).backward()
    for t in (
        x.grad,
        h.grad,
        read.window.weight.grad,
        write.window.weight.grad,
        write.patch.weight.grad,
    ):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0


def test_window_gradcheck_float64():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    params = torch.tensor([[0.1, -0.2, 0.3, -0.4, 0.2]], dtype=torch.float64, requires_grad=True)

    def read(p):
        return draw_read(x, draw_window(p, size=3, height=5, width=6), size=3).context

    def write(p):
        patch = torch.ones(1, 2, 3, 3, dtype=torch.float64)
        return draw_write(
            patch, draw_window(p, size=3, height=5, width=6), height=5, width=6
        ).context

    assert torch.autograd.gradcheck(read, (params,))
    assert torch.autograd.gradcheck(write, (params,))


def test_half_precision_and_device_dtype_kwargs():
    read = DrawRead(6, H, W, size=3, dtype=torch.bfloat16)
    x = torch.rand(2, 1, H, W, dtype=torch.bfloat16)
    out = read(x, x, torch.randn(2, 6, dtype=torch.bfloat16))
    assert out.context.dtype == torch.bfloat16 and torch.isfinite(out.context).all()
    tiny = draw_read(x.half(), window(5.25, 4.25, 1e-6, 1.0, b=2).half(), size=2).context
    assert torch.isfinite(tiny).all()  # logits far below fp16's range do not make NaN
    assert glimpse_boxes(window(14.5, 14.5, 1.0, 2.0), 5).tolist() == [[8.5, 8.5, 18.5, 18.5]]


# ---------------------------------------------------------------- bad input, one line


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: DrawRead(6, H, W, size=0), ValueError, "size must be >= 1; got 0"),
        (lambda: DrawWrite(6, H, W, size=-1), ValueError, "size must be >= 1"),
        (lambda: FullWrite(6, 0, W), ValueError, "height must be >= 1"),
        (
            lambda: draw_read(torch.rand(1, 1, H, W), window(1, 1, 1, 1), size=0),
            ValueError,
            "size must be >= 1",
        ),
        (
            lambda: DrawRead(6, H, W)(
                torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), torch.zeros(2, 6)
            ),
            ValueError,
            rf"x must be \(B, 1, {H}, {W}\), the size this DrawRead was built for; got \(2, 1, 28",
        ),
        (
            lambda: DrawRead(6, H, W)(
                torch.rand(2, 3, H, W), torch.rand(2, 3, H, W), torch.zeros(2, 6)
            ),
            ValueError,
            "with 1 channels in dim 1",
        ),
        (
            lambda: DrawRead(6, H, W)(
                torch.rand(2, 1, H, W), torch.rand(3, 1, H, W), torch.zeros(2, 6)
            ),
            ValueError,
            "x_hat must have x's shape",
        ),
        (
            lambda: DrawRead(6, H, W)(
                torch.rand(2, 1, H, W), torch.rand(2, 1, H, W), torch.zeros(2, 5)
            ),
            ValueError,
            r"h must be \(2, 6\)",
        ),
        (lambda: DrawWrite(6, H, W)(torch.zeros(2, 6).double()), TypeError, "float64"),
        (
            lambda: draw_read(torch.rand(1, 1, H, W), torch.zeros(1, 4), size=2),
            ValueError,
            r"window must be \(B, 5\)",
        ),
        (lambda: draw_window(torch.zeros(1, 3), size=2, height=H, width=W), ValueError, "g~X, g~Y"),
        (
            lambda: draw_write(torch.rand(1, 1, 2, 3), window(1, 1, 1, 1), height=H, width=W),
            ValueError,
            "square",
        ),
        (
            lambda: draw_read(torch.rand(2, 1, H, W), window(1, 1, 1, 1), size=2),
            ValueError,
            "one row per image",
        ),
    ],
    ids=[
        "read-size",
        "write-size",
        "height",
        "fn-size",
        "image-size",
        "channels",
        "x-hat",
        "state",
        "dtype",
        "window-shape",
        "params-shape",
        "patch",
        "batch",
    ],
)
def test_bad_input_is_one_clear_line(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)
