"""VisionTransformer: equal to timm's (saved fixture and live), attention from outside, errors.

The fixture (tests/vision/fixtures/make_vit.py) holds timm's outputs, input gradients
and parameter gradients in float64 for ``global_pool='token'`` and ``'avg'``; the
live tests (marker ``timm``) compare with timm itself where it imports.
"""

import math
from pathlib import Path

import pytest
import torch

from attnlab.interpret import attention_rollout, capture
from attnlab.interpret.vit import mean_attention_distance, patch_rollout
from attnlab.models.vit import VisionTransformer, timm_key_map
from attnlab.vision.patches import sincos_2d_table
from vision._suite import (  # tests/ is on sys.path (rootdir packages)
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

FIXTURE = Path(__file__).parents[1] / "vision" / "fixtures" / "vit.pt"
SMALL = {"image_size": (12, 16), "patch_size": 4, "in_channels": 3, "num_classes": 5}
SMALL_SIZES = {"dim": 16, "depth": 2, "heads": 4}


@pytest.fixture(scope="module")
def saved():
    return torch.load(FIXTURE, weights_only=True)


def _vit(**kwargs) -> VisionTransformer:
    return VisionTransformer(**{**SMALL, **SMALL_SIZES, **kwargs})


def _compare_with_timm_run(ours, x, grad_out, output, input_grad, param_grads, tol):
    """Our output, input gradient and every parameter gradient against timm's."""
    x = x.clone().requires_grad_(True)
    out = ours(x)
    out.backward(grad_out)
    close = {"rtol": tol, "atol": tol}
    torch.testing.assert_close(out, output.to(out.dtype), **close)
    torch.testing.assert_close(x.grad, input_grad.to(out.dtype), **close)
    grads = {name: p.grad for name, p in ours.named_parameters()}
    names = timm_key_map(len(ours.encoder.layers), ours.pool)
    assert len(param_grads) == len(names)
    for theirs, want in param_grads.items():
        mine = names[theirs]
        if ".qkv." in mine:
            prefix, p = mine.rsplit(".qkv.", 1)
            got = torch.cat([grads[f"{prefix}.{part}_proj.{p}"] for part in "qkv"])
        else:
            got = grads[mine]
        torch.testing.assert_close(got, want.to(got.dtype), **close, msg=theirs)


# -- equal to timm: the saved fixture ---------------------------------------------------


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_equals_timm_fixture(saved, pool, dtype, tol):
    case = saved["cases"][pool]
    state = {k: v.to(dtype) for k, v in case["state_dict"].items()}
    config = saved["config"]
    ours = VisionTransformer.from_timm(state, heads=config["heads"], image_size=(12, 16))
    assert ours.pool == pool and not ours.training
    assert {k: getattr(ours.patch_embed, k) for k in ("image_size", "patch_size")} == {
        "image_size": (12, 16),
        "patch_size": (4, 4),
    }
    x, g = saved["input"].to(dtype), saved["output_grad"].to(dtype)
    grads = case["param_grads"]
    _compare_with_timm_run(ours, x, g, case["output"], case["input_grad"], grads, tol)


def test_from_timm_with_the_full_config(saved):
    state = saved["cases"]["cls"]["state_dict"]
    ours = VisionTransformer.from_timm(state, **saved["config"], dtype=torch.float32)
    assert ours.cls_token.dtype == torch.float32
    out = ours(saved["input"].float())
    torch.testing.assert_close(out, saved["cases"]["cls"]["output"].float(), rtol=0, atol=1e-5)


def test_loading_the_sincos_table_checks_it(saved):
    state = dict(saved["cases"]["cls"]["state_dict"])
    config = {"heads": 4, "image_size": (12, 16), "position": "sincos"}
    with pytest.raises(ValueError, match="not the 2-D sin-cos table.*position='learned'"):
        VisionTransformer.from_timm(state, **config)
    table = sincos_2d_table((3, 4), 16, dtype=torch.float64)
    state["pos_embed"] = torch.cat([table.new_zeros(1, 16), table])[None]
    ours = VisionTransformer.from_timm(state, **config)
    assert "pos_embed" not in ours.state_dict()
    torch.testing.assert_close(ours.pos_embed, state["pos_embed"])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda s: s.pop("blocks.1.attn.qkv.bias"),
            r"lacks 1 tensor\(s\) .*blocks.1.attn.qkv.bias",
        ),
        (lambda s: s.pop("blocks.0.norm2.weight"), "lacks 1 tensor"),
        (
            lambda s: s.update({"blocks.0.ls1.gamma": torch.ones(16)}),
            "has 1 tensor.* no place for .*blocks.0.ls1.gamma",
        ),
        (lambda s: s.update({"reg_token": torch.ones(1, 4, 16)}), "no place for .*reg_token"),
        (
            lambda s: s.update({"head.bias": torch.zeros(6)}),
            r"head.bias has shape \(6,\) but this configuration needs \(5,\)",
        ),
        (lambda s: s.pop("cls_token"), "missing cls_token"),
        (
            lambda s: [s.pop(k) for k in list(s) if k.startswith("blocks.")],
            "no blocks.0.attn.qkv.weight",
        ),
    ],
)
def test_from_timm_errors_are_one_line(saved, change, words):
    state = dict(saved["cases"]["cls"]["state_dict"])
    change(state)
    with pytest.raises(ValueError, match=f"^[^\n]*{words}[^\n]*$"):
        VisionTransformer.from_timm(state, heads=4, image_size=(12, 16))


def test_from_timm_needs_heads_and_a_size_it_cannot_infer(saved):
    state = saved["cases"]["cls"]["state_dict"]
    with pytest.raises(ValueError, match="cannot infer the image size .*image_size"):
        VisionTransformer.from_timm(state, heads=4)
    with pytest.raises(ValueError, match="does not record the number of heads; pass heads="):
        VisionTransformer.from_timm(state, image_size=(12, 16))
    with pytest.raises(ValueError, match=r"pos_embed has shape \(1, 13, 16\) .*\(1, 17, 16\)"):
        VisionTransformer.from_timm(state, heads=4, image_size=16)
    with pytest.raises(TypeError, match="timm VisionTransformer or its state_dict, got list"):
        VisionTransformer.from_timm([1, 2])


# -- equal to timm: live -----------------------------------------------------------------

LIVE = [
    # (image, patch, channels, classes, dim, depth, heads, mlp_ratio, pool, dtype)
    ((16, 16), 4, 3, 5, 32, 2, 4, 4.0, "token", torch.float32),
    ((16, 16), 4, 3, 5, 32, 2, 4, 4.0, "avg", torch.float32),
    ((15, 10), 5, 2, 7, 24, 3, 3, 2.0, "token", torch.float64),
    ((8, 12), (4, 2), 1, 3, 12, 1, 2, 3.0, "avg", torch.float64),
]


@pytest.mark.timm
@pytest.mark.parametrize("case", LIVE, ids=lambda c: f"{c[8]}-{str(c[9])[6:]}-d{c[4]}")
def test_equals_timm_live(case):
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    image, patch, chans, classes, dim, depth, heads, ratio, pool, dtype = case
    torch.manual_seed(0)
    theirs = timm_vit.VisionTransformer(
        img_size=image,
        patch_size=patch,
        in_chans=chans,
        num_classes=classes,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=ratio,
        global_pool=pool,
        dtype=dtype,
    ).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = VisionTransformer.from_timm(theirs)  # every size read from the model
    assert not ours.training and ours.pool == {"token": "cls", "avg": "mean"}[pool]
    x = torch.randn(3, chans, *image, dtype=dtype, requires_grad=True)
    out = theirs(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    grads = {k: p.grad for k, p in theirs.named_parameters()}
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    _compare_with_timm_run(ours, x.detach(), grad_out, out.detach(), x.grad, grads, tol)


@pytest.mark.timm
def test_equals_timm_live_with_sincos_positions():
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    theirs = timm_vit.VisionTransformer(
        img_size=(8, 12), patch_size=4, num_classes=3, embed_dim=16, depth=1, num_heads=2
    ).eval()
    table = sincos_2d_table((2, 3), 16)
    with torch.no_grad():
        theirs.pos_embed.copy_(torch.cat([table.new_zeros(1, 16), table])[None])
    ours = VisionTransformer.from_timm(theirs, position="sincos")
    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.timm
def test_timm_options_without_an_equivalent_fail_in_one_line():
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    sizes = {"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}
    for options, words in (
        ({"reg_tokens": 2}, "no place for .*reg_token"),
        ({"init_values": 0.1}, "no place for .*ls1"),
        ({"qkv_bias": False}, "lacks .*qkv.bias"),
        ({"global_pool": "max"}, "global_pool='max' has no attnlab equivalent"),
        ({"global_pool": "avg", "fc_norm": False}, "lacks .*fc_norm.weight"),
    ):
        with pytest.raises(ValueError, match=f"^[^\n]*{words}[^\n]*$"):
            VisionTransformer.from_timm(timm_vit.VisionTransformer(**sizes, **options))


# -- the model itself --------------------------------------------------------------------


def test_mean_pool_normalises_after_averaging_the_patch_tokens():
    torch.manual_seed(0)
    vit = _vit(pool="mean", dtype=torch.float64).eval()
    x = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    tokens = vit.encode(x).last_hidden
    assert tokens.shape == (2, 13, 16)
    expected = vit.head(vit.norm(tokens[:, 1:].mean(dim=1)))
    torch.testing.assert_close(vit(x), expected)


def test_positions_learned_in_state_dict_sincos_fixed():
    learned, fixed = _vit(), _vit(position="sincos")
    assert "pos_embed" in learned.state_dict() and "pos_embed" not in fixed.state_dict()
    assert not any(p is fixed.pos_embed for p in fixed.parameters())
    torch.testing.assert_close(fixed.pos_embed[0, 0], torch.zeros(16))
    torch.testing.assert_close(fixed.pos_embed[0, 1:], sincos_2d_table((3, 4), 16))


def test_dropout_only_while_training():
    torch.manual_seed(0)
    vit = _vit(dropout=0.5)
    x = torch.randn(2, 3, 12, 16)
    assert not torch.equal(vit(x), vit(x))
    vit.eval()
    assert torch.equal(vit(x), vit(x))


# The suite of every image block, on the logits (B, classes) seen as a (B, classes, 1, 1) map.
CASE = ImageCase(
    VisionTransformer,
    {
        "image_size": (H, W),
        "patch_size": 1,
        "in_channels": C,
        "num_classes": 3,
        "dim": 8,
        "depth": 1,
        "heads": 2,
    },
    (3, 1, 1),
    call=lambda module, x: module(x)[:, :, None, None],
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


# -- attention from outside --------------------------------------------------------------


def test_capture_collects_every_layers_weights_and_rollout_runs():
    torch.manual_seed(0)
    vit = _vit(depth=3).eval()
    x = torch.randn(2, 3, 12, 16)
    plain = vit(x)
    with capture(vit) as seen:
        logits = vit(x)
    torch.testing.assert_close(logits, plain)
    assert seen.names == [f"encoder.layers.{i}.self_attn" for i in range(3)]
    for w in seen.attentions:
        assert w.shape == (2, 4, 13, 13)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 13))
    # The same weights the encoder returns when asked.
    asked = vit.encode(x, need_weights=True).attentions
    for w, a in zip(seen.attentions, asked, strict=True):
        torch.testing.assert_close(w, a)
    rollout = attention_rollout(seen.attentions)
    assert rollout.shape == (2, 13, 13)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 13))
    maps = patch_rollout(seen.attentions, vit.grid)
    assert maps.shape == (2, 3, 4)
    torch.testing.assert_close(maps.reshape(2, -1), rollout[:, 0, 1:])
    distance = mean_attention_distance(seen.attentions, vit.grid, patch_size=4)
    assert distance.shape == (3, 4) and (distance > 0).all()


def test_mean_attention_distance_hand_case():
    # A 2x2 grid of 10-pixel patches, class token first. Layer 0: head 0 looks only at
    # itself (0 px), head 1 spreads evenly over the four patches: each query sees
    # 0, 10, 10 and 10*sqrt(2) -> (20 + 10 sqrt 2) / 4. Layer 1: head 0 puts all weight
    # on the class token (no distance, counted as 0), head 1 half on the class token and
    # half on the diagonally opposite patch (renormalised: 10 sqrt 2).
    eye = torch.eye(5)
    spread = torch.full((5, 5), 0.25)
    spread[:, 0] = 0.0
    on_cls = torch.zeros(5, 5)
    on_cls[:, 0] = 1.0
    opposite = torch.zeros(5, 5)
    opposite[:, 0] = 0.5
    for i, j in ((1, 4), (2, 3), (3, 2), (4, 1)):
        opposite[i, j] = 0.5
    layers = [torch.stack([eye, spread])[None], torch.stack([on_cls, opposite])[None]]
    got = mean_attention_distance(layers, (2, 2), patch_size=10)
    root2 = math.sqrt(2)
    expected = torch.tensor([[0.0, (20 + 10 * root2) / 4], [0.0, 10 * root2]])
    torch.testing.assert_close(got, expected)
    # Patch units by default; rectangular patches scale rows and columns apart.
    torch.testing.assert_close(mean_attention_distance(layers, 2)[1, 1], torch.tensor(root2))
    tall = mean_attention_distance(layers, (2, 2), patch_size=(3, 4))
    torch.testing.assert_close(tall[1, 1], torch.tensor(5.0))


def test_interpret_errors_are_one_line():
    w = [torch.full((1, 2, 5, 5), 0.2)]
    with pytest.raises(ValueError, match="cover 5 tokens but a 3x3 grid with 1 prefix"):
        mean_attention_distance(w, 3)
    with pytest.raises(ValueError, match="query must be a token index in"):
        patch_rollout(w, 2, query=5)
    with pytest.raises(TypeError, match="one tensor per layer"):
        mean_attention_distance(w[0], 2)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "words"),
    [
        (torch.randn(3, 12, 16), "takes images (B, C, H, W), got shape (3, 12, 16)"),
        (torch.randn(2, 1, 12, 16), "built for 3 input channel(s), got 1"),
        (torch.randn(2, 3, 16, 16), "built for 12x16 images, got 16x16"),
    ],
)
def test_bad_images_are_one_line(images, words):
    with pytest.raises(ValueError, match="^[^\n]+$") as info:
        _vit()(images)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"image_size": 30, "patch_size": 4}, ValueError, "patch_size 4x4 does not divide"),
        ({"heads": 3}, ValueError, "dim 16 does not divide into 3 heads"),
        ({"pool": "max"}, ValueError, "unknown pool 'max'; known: cls, mean"),
        ({"position": "rope"}, ValueError, "unknown position 'rope'"),
        ({"position": "sincos", "dim": 18, "heads": 3}, ValueError, "divisible by 4"),
        ({"num_classes": 0}, ValueError, "num_classes must be >= 1"),
        ({"mlp_ratio": 0.0}, ValueError, "mlp_ratio must be > 0"),
        ({"dropout": 1.0}, ValueError, "dropout must be in [0, 1)"),
        ({"depth": 0}, ValueError, "num_layers must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line(kwargs, error, words):
    with pytest.raises(error, match="^[^\n]+$") as info:
        _vit(**kwargs)
    assert words in str(info.value)


# -- the benchmark of one training step (attnlab.bench.vit) ------------------------------

TINY = {"image_size": 16, "patch_size": 8, "dim": 8, "depth": 1, "heads": 2, "num_classes": 3}


def test_vit_rows_tiny_say_how_to_get_timms_figures_where_timm_is_missing():
    from attnlab.bench.vit import TIMM_HINT, VitSizes, timm_problem, vit_rows

    sizes = VitSizes(**TINY, batch=2, rounds=1, warmup=0)
    (row,) = vit_rows(sizes=sizes, memory=False)
    assert row["figure"] == "vit_train_step" and row["batch"] == 2 and row["attnlab_s"] > 0
    assert row["config"] == "ViT depth 1, width 8, 2 heads, 16x16, patch 8"
    problem = timm_problem()
    if problem is None:
        assert row["timm_s"] > 0 and row["vs_timm"] > 0 and row["max_abs_difference"] < 1e-5
    else:
        assert row["timm_s"] is None and row["vs_timm"] is None
        assert row["note"] == f"{problem}; {TIMM_HINT}"


def test_vit_memory_point_tiny():
    from attnlab.bench.vit import run_memory_point

    assert run_memory_point("attnlab", **TINY, batch=2) >= 0
    with pytest.raises(ValueError, match="impl must be one of attnlab, timm"):
        run_memory_point("flax", **TINY, batch=2)
