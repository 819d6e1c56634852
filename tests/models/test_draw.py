from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models.draw import DRAW, DrawOutput
from attnlab.vision.draw_attention import DrawRead, DrawWrite, FullRead, draw_window

H, W, T = 10, 12, 3


def attentive(**kwargs) -> DRAW:
    sizes = {"steps": T, "latent_size": 4, "encoder_size": 16, "decoder_size": 16} | kwargs
    return DRAW(H, W, read=partial(DrawRead, size=2), write=partial(DrawWrite, size=3), **sizes)


def plain(**kwargs) -> DRAW:
    sizes = {"steps": T, "latent_size": 4, "encoder_size": 16, "decoder_size": 16} | kwargs
    return DRAW(H, W, **sizes)


def binary(b: int, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, H, W, generator=g) > 0.5).float()


def shapes(n: int = 32, side: int = 12, seed: int = 0) -> torch.Tensor:
    """Tiny binarised set: 4x4 squares and crosses at random places."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, side, side)
    for i in range(n):
        r, c = torch.randint(0, side - 4, (2,), generator=g).tolist()
        if i % 2:
            x[i, 0, r : r + 4, c + 1] = x[i, 0, r + 1, c : c + 4] = 1
        else:
            x[i, 0, r : r + 4, c : c + 4] = 1
    return x


@pytest.mark.parametrize("build", [attentive, plain], ids=["attention", "no-attention"])
def test_shapes_and_loss_terms(build):
    torch.manual_seed(0)
    model, x = build(), binary(5)
    out = model(x, return_steps=True)
    assert isinstance(out, DrawOutput)
    assert out.reconstruction.shape == out.kl.shape == out.nll.shape == (5,)
    assert out.kl_steps.shape == (5, T) and out.canvas.shape == (5, 1, H, W)
    assert torch.isfinite(out.loss) and out.loss.dim() == 0
    assert (out.kl_steps >= 0).all()
    assert torch.allclose(out.nll, out.reconstruction + out.kl_steps.sum(1))
    # L^x: Bernoulli cross-entropy of sigmoid(c_T), summed over pixels, in nats.
    bce = F.binary_cross_entropy(torch.sigmoid(out.canvas), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(out.reconstruction, bce, atol=1e-3)
    assert out.steps.canvases.shape == (5, T, 1, H, W)
    assert torch.allclose(out.steps.canvases[:, -1], torch.sigmoid(out.canvas))
    assert model(x).steps is None


def test_glimpse_windows_are_returned_per_step():
    torch.manual_seed(0)
    model = attentive()
    out = model(binary(4), return_steps=True)
    assert out.steps.read.shape == out.steps.write.shape == (4, T, 5)
    # Step 1 reads from the zero decoder state: its window is the read layer's bias.
    first = draw_window(model.read.window.bias.expand(4, 5), size=2, height=H, width=W)
    assert torch.allclose(out.steps.read[:, 0], first)
    # Later windows depend on what was seen, so they move and differ between images.
    assert not torch.allclose(out.steps.read[:, 1], first)
    assert not torch.allclose(out.steps.write[0, 1], out.steps.write[1, 1])
    plain_steps = plain()(binary(4), return_steps=True).steps
    assert plain_steps.read is None and plain_steps.write is None


def test_kl_is_zero_when_the_posterior_is_the_prior():
    model = attentive()
    with torch.no_grad():
        model.posterior.weight.zero_()
        model.posterior.bias.zero_()
    assert torch.equal(model(binary(3)).kl, torch.zeros(3))


def test_the_noise_generator_makes_the_bound_repeatable():
    model, x = attentive(), binary(3)
    a, b = (model(x, generator=torch.Generator().manual_seed(7)).nll for _ in range(2))
    c = model(x, generator=torch.Generator().manual_seed(8)).nll
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_nll_bound_falls_clearly_with_training():
    torch.manual_seed(0)
    x = shapes()
    model = DRAW(
        12,
        12,
        steps=4,
        latent_size=4,
        encoder_size=32,
        decoder_size=32,
        read=partial(DrawRead, size=3),
        write=partial(DrawWrite, size=3),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def bound() -> float:
        with torch.no_grad():
            return model(x, generator=torch.Generator().manual_seed(1)).nll.mean().item()

    before = bound()
    for _ in range(100):
        optimizer.zero_grad()
        model(x).loss.backward()
        optimizer.step()
    after = bound()
    # 144 pixels at p = 1/2 start near 100 nats; about 36 after training (seed 0).
    assert before > 80 and after < 0.7 * before


def test_no_attention_twin_trains_one_step():
    model, x = plain(), binary(4)
    model(x).loss.backward()
    assert isinstance(model.read, FullRead)
    assert all(p.grad is not None for p in model.parameters())


def test_samples():
    torch.manual_seed(0)
    model = attentive()
    sample = model.sample(6, return_steps=True, generator=torch.Generator().manual_seed(3))
    assert sample.images.shape == (6, 1, H, W) and not sample.images.requires_grad
    assert ((sample.images >= 0) & (sample.images <= 1)).all()
    assert sample.steps.canvases.shape == (6, T, 1, H, W) and sample.steps.write.shape == (6, T, 5)
    assert sample.steps.read is None
    assert model.sample(2, 7).images.shape == (2, 1, H, W) and model.sample(2).steps is None
    again = model.sample(6, generator=torch.Generator().manual_seed(3)).images
    assert torch.equal(again, sample.images)
    assert plain().sample(3, 2).images.shape == (3, 1, H, W)


def test_channels_dtype_and_repr():
    model = attentive(dtype=torch.float64)
    model_rgb = DRAW(
        H,
        W,
        3,
        steps=2,
        latent_size=3,
        encoder_size=8,
        decoder_size=8,
        read=DrawRead,
        write=DrawWrite,
    )
    assert model(binary(2).double()).nll.dtype == torch.float64
    assert model_rgb(binary(2, 3), return_steps=True).steps.canvases.shape == (2, 2, 3, H, W)
    assert model_rgb.read.out_features == 2 * 3 * 2 * 2
    assert "steps=3" in repr(model)


class NoWidth(nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: attentive()(binary(2)[:, :, :8]), ValueError, rf"x must be \(B, 1, {H}, {W}\)"),
        (lambda: attentive()(binary(2, 3)), ValueError, "the image size this DRAW was built for"),
        (lambda: attentive()(binary(2) * 255), ValueError, r"pixels in \[0, 1\].*binarize"),
        (lambda: attentive()(binary(2).double()), TypeError, "float64"),
        (lambda: attentive(steps=0), ValueError, "steps must be >= 1"),
        (lambda: DRAW(H, W, read=FullRead(16, H, W)), TypeError, "read must be a read class"),
        (lambda: DRAW(H, W, read=NoWidth), TypeError, "int out_features"),
        (lambda: attentive().sample(0), ValueError, "n must be >= 1"),
    ],
    ids=["size", "channels", "range", "dtype", "steps", "built-module", "no-width", "sample-n"],
)
def test_bad_input_is_one_clear_line(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_learned_canvas_is_where_drawing_and_sampling_start():
    model = plain(learned_canvas=True)
    assert model.initial_canvas is not None and plain().initial_canvas is None
    with torch.no_grad():
        model.initial_canvas.fill_(-3.0)
        for p in model.write.parameters():  # nothing is written: c_T = c_0
            p.zero_()
    x = binary(4)
    out = model(x)
    expected = F.binary_cross_entropy_with_logits(torch.full_like(x, -3.0), x, reduction="none")
    torch.testing.assert_close(out.reconstruction, expected.flatten(1).sum(1))
    torch.testing.assert_close(
        model.sample(2).images, torch.full((2, *x.shape[1:]), 0.0474), atol=1e-4, rtol=0
    )
    out.loss.backward()
    assert model.initial_canvas.grad is not None and model.initial_canvas.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="learned_canvas"):
        plain(learned_canvas=1)
