"""Attention rollout and flow: golden cases, invariants, references and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tqdm import tqdm

from attnlab.interpret.rollout import (
    _maxflow_rows,
    attention_flow,
    attention_rollout,
    fuse_layers,
)

H, L = 3, 5  # distinct sizes, so a transposed or mis-reduced axis cannot hide


def softmax_layers(n: int, *shape: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` layers of random attention of shape ``(*shape, L)``, where L = shape[-1]."""
    g = torch.Generator().manual_seed(seed)
    size = (*shape, shape[-1])
    return [torch.softmax(2 * torch.randn(size, generator=g), dim=-1) for _ in range(n)]


def row_normalise(a: np.ndarray) -> np.ndarray:
    return a / a.sum(axis=-1, keepdims=True)


def reference_layer(heads: np.ndarray, fusion: str, ratio: float, residual: bool) -> np.ndarray:
    """Slow, obvious per-row version of one fused layer (no padding)."""
    a = {"mean": heads.mean(0), "max": heads.max(0), "min": heads.min(0)}[fusion].copy()
    n = a.shape[0]
    for i in range(n):
        others = [j for j in range(n) if j != i]
        drop = sorted(others, key=lambda j: (a[i, j], j))[: math.floor(ratio * (n - 1))]
        a[i, drop] = 0.0
    a = row_normalise(a)
    return row_normalise(0.5 * a + 0.5 * np.eye(n)) if residual else a


# --- rollout: golden cases -----------------------------------------------------------


def test_one_layer_without_residual_is_the_fused_matrix() -> None:
    (layer,) = softmax_layers(1, H, L)
    out = attention_rollout([layer], residual=False)
    torch.testing.assert_close(out, layer.mean(0))


def test_one_layer_with_residual_is_half_attention_half_identity() -> None:
    (layer,) = softmax_layers(1, H, L)
    out = attention_rollout([layer])
    torch.testing.assert_close(out, 0.5 * layer.mean(0) + 0.5 * torch.eye(L))


def test_identity_attention_rolls_out_to_identity() -> None:
    eye = torch.eye(L).expand(2, H, L, L)
    for residual in (True, False):
        out = attention_rollout([eye] * 4, residual=residual)
        torch.testing.assert_close(out, torch.eye(L).expand(2, L, L))


def test_layers_multiply_top_down() -> None:
    layers = softmax_layers(3, H, L)
    a1, a2, a3 = (0.5 * a.mean(0) + 0.5 * torch.eye(L) for a in layers)
    out = attention_rollout(layers)
    torch.testing.assert_close(out, a3 @ a2 @ a1)
    assert not torch.allclose(out, a1 @ a2 @ a3, atol=1e-3)  # the order is observable


def test_doc_example_on_paper() -> None:
    # Token 1 reads token 0: with the residual, layer = [[1, 0], [.5, .5]]; squared:
    # row 1 = .5 * [1, 0] + .5 * [.5, .5] = [.75, .25].
    layer = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    expected = torch.tensor([[1.0, 0.0], [0.75, 0.25]])
    torch.testing.assert_close(attention_rollout([layer, layer]), expected)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75])
@pytest.mark.parametrize("residual", [True, False])
def test_matches_slow_reference(fusion: str, ratio: float, residual: bool) -> None:
    layers = softmax_layers(3, H, L, seed=1)
    got = attention_rollout(
        [a.double() for a in layers], head_fusion=fusion, discard_ratio=ratio, residual=residual
    )
    ref = np.eye(L)
    for a in layers:
        ref = reference_layer(a.double().numpy(), fusion, ratio, residual) @ ref
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_head_fusion_max_and_min_by_hand() -> None:
    heads = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.6, 0.4]]])
    # max over heads: [[.9, .7], [.6, .8]] -> rows / 1.6 and / 1.4; min: [[.3, .1], [.2, .4]]
    mx = attention_rollout([heads], head_fusion="max", residual=False)
    mn = attention_rollout([heads], head_fusion="min", residual=False)
    torch.testing.assert_close(mx, torch.tensor([[0.9 / 1.6, 0.7 / 1.6], [0.6 / 1.4, 0.8 / 1.4]]))
    torch.testing.assert_close(mn, torch.tensor([[0.75, 0.25], [1 / 3, 2 / 3]]))


# --- rollout: invariants -------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_rows_sum_to_one(fusion: str, ratio: float) -> None:
    out = attention_rollout(
        softmax_layers(4, 2, H, 7), head_fusion=fusion, discard_ratio=ratio, residual=True
    )
    assert out.shape == (2, 7, 7)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 7))
    assert bool((out >= 0).all())


def test_discard_ratio_drops_lowest_off_diagonal_weights_and_keeps_diagonal() -> None:
    # The diagonal is each row's smallest weight, yet it is never dropped.
    a = torch.tensor(
        [
            [0.01, 0.2, 0.3, 0.49],
            [0.4, 0.01, 0.2, 0.39],
            [0.3, 0.29, 0.01, 0.4],
            [0.5, 0.3, 0.19, 0.01],
        ]
    )
    fused = fuse_layers([a[None]], discard_ratio=0.5, residual=False)[0][0, 0]
    # floor(0.5 * 3) = 1 off-diagonal weight dropped per row: the smallest one.
    assert (fused == 0).sum(-1).tolist() == [1, 1, 1, 1]
    assert [int(i) for i in (fused == 0).nonzero()[:, 1]] == [1, 2, 1, 2]
    assert bool((fused.diagonal() > 0).all())
    # With more tokens more is dropped; 0.9 of 3 candidates -> 2 per row.
    fused = fuse_layers([a[None]], discard_ratio=0.9, residual=False)[0][0, 0]
    assert (fused == 0).sum(-1).tolist() == [2, 2, 2, 2]


def test_batch_is_a_loop_over_items() -> None:
    layers = softmax_layers(3, 4, H, L, seed=2)
    out = attention_rollout(layers, head_fusion="max", discard_ratio=0.4)
    for b in range(4):
        item = attention_rollout([a[b] for a in layers], head_fusion="max", discard_ratio=0.4)
        torch.testing.assert_close(out[b], item)


def padded_batch(n_layers: int = 3) -> tuple[list[torch.Tensor], torch.Tensor, list[int]]:
    """Two items, 4 and 6 real tokens of 6; padding rows/columns zero, as a model gives."""
    lengths = [4, 6]
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    scores = torch.randn(n_layers, 2, H, 6, 6, generator=torch.Generator().manual_seed(3))
    scores = scores.masked_fill(~mask[None, :, None, None, :], -torch.inf)
    att = torch.softmax(scores, dim=-1) * mask[None, :, None, :, None]
    return list(att), mask, lengths


@pytest.mark.parametrize("give_mask", [True, False])
def test_padding_stays_zero_and_matches_the_unpadded_item(give_mask: bool) -> None:
    layers, mask, lengths = padded_batch()
    out = attention_rollout(layers, mask=mask if give_mask else None, discard_ratio=0.3)
    assert not bool(out.isnan().any())
    n = lengths[0]
    assert bool((out[0, n:] == 0).all()) and bool((out[0, :, n:] == 0).all())
    alone = attention_rollout([a[0, :, :n, :n] for a in layers], discard_ratio=0.3)
    torch.testing.assert_close(out[0, :n, :n], alone)
    torch.testing.assert_close(out[0, :n].sum(-1), torch.ones(n))


def test_mask_zeroes_garbage_in_padding() -> None:
    layers = softmax_layers(2, 1, H, L)  # padding rows are *not* zero here
    mask = torch.tensor([[True, True, True, False, False]])
    out = attention_rollout(layers, mask=mask)
    assert bool((out[0, 3:] == 0).all()) and bool((out[0, :, 3:] == 0).all())
    torch.testing.assert_close(out[0].sum(-1), torch.tensor([1.0, 1, 1, 0, 0]))


def test_accepts_numpy_and_keeps_float64_widens_bf16() -> None:
    layers = softmax_layers(2, H, L)
    assert attention_rollout([a.double().numpy() for a in layers]).dtype == torch.float64
    assert attention_rollout([a.bfloat16() for a in layers]).dtype == torch.float32


# --- flow ----------------------------------------------------------------------------


def widest_path(fused: np.ndarray, i: int, j: int) -> float:
    """Bottleneck of the best single path from input j to output i: a lower bound."""
    width = fused[0][:, j]
    for a in fused[1:]:
        width = np.minimum(a, width[None, :]).max(axis=1)
    return float(width[i])


def test_flow_of_one_layer_is_the_fused_matrix() -> None:
    layers = softmax_layers(1, H, L)
    torch.testing.assert_close(attention_flow(layers), fuse_layers(layers)[0][0, 0])


def test_flow_on_a_hand_checked_graph() -> None:
    # Three layers, token 1 reads token 0 (with residual: [[1, 0], [.5, .5]] per layer).
    # Input 1 -> output 1: the only route is 1 -> 1 -> 1 -> 1, bottleneck 0.5.
    # Input 0 -> output 1: (2,1) takes .5 from (1,0); (2,0) takes .5 from (1,0), which
    # gets 1 from (0,0): total 1. Input 1 -> output 0: no path. Input 0 -> output 0: 1.
    layer = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    flow = attention_flow([layer] * 3)
    torch.testing.assert_close(flow, torch.tensor([[1.0, 0.0], [1.0, 0.5]]))


def test_two_layer_flow_closed_form_by_hand() -> None:
    a1 = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])[None]
    a2 = torch.tensor([[0.3, 0.3, 0.4], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])[None]
    flow = attention_flow([a1, a2], residual=False)
    # F[0, 2] = min(.0, .3) + min(.6, .3) + min(.8, .4) = 0.7
    assert float(flow[0, 2]) == pytest.approx(0.7)
    # F[1, 0] = min(.5, 1) + min(.2, 0) + min(.1, 0) = 0.5
    assert float(flow[1, 0]) == pytest.approx(0.5)


def test_scipy_path_equals_closed_form_for_two_layers() -> None:
    layers = softmax_layers(2, H, 6)
    fused = fuse_layers(layers)[0][:, 0].double().numpy()
    by_scipy = _maxflow_rows(fused, list(range(6)), tqdm(disable=True))
    np.testing.assert_allclose(by_scipy, attention_flow(layers).double().numpy(), atol=1e-6)


@pytest.mark.parametrize("n_layers", [3, 4])
def test_flow_matches_networkx(n_layers: int) -> None:
    nx = pytest.importorskip("networkx")
    layers = [a.double() for a in softmax_layers(n_layers, H, L, seed=n_layers)]
    fused = fuse_layers(layers)[0][:, 0].numpy()
    g = nx.DiGraph()
    for lay, a in enumerate(fused, start=1):
        for i in range(L):
            for j in range(L):
                g.add_edge((lay - 1, j), (lay, i), capacity=float(a[i, j]))
    ref = [[nx.maximum_flow_value(g, (0, j), (n_layers, i)) for j in range(L)] for i in range(L)]
    np.testing.assert_allclose(attention_flow(layers).numpy(), np.array(ref), atol=1e-6)


def test_flow_between_widest_path_and_min_cut_bounds() -> None:
    layers = [a.double() for a in softmax_layers(5, H, 7, seed=4)]
    fused = fuse_layers(layers, head_fusion="max")[0][:, 0].numpy()
    flow = attention_flow(layers, head_fusion="max").numpy()
    source_cut = fused[0].sum(axis=0)  # all edges out of input j
    sink_cut = fused[-1].sum(axis=1)  # all edges into output i (= 1)
    for i in range(7):
        for j in range(7):
            assert widest_path(fused, i, j) - 1e-7 <= flow[i, j]
            assert flow[i, j] <= min(source_cut[j], sink_cut[i]) + 1e-7


def test_flow_outputs_selects_rows_in_order() -> None:
    layers = softmax_layers(3, 2, H, L, seed=5)
    full = attention_flow(layers)
    part = attention_flow(layers, outputs=[4, 0, -1])
    assert part.shape == (2, 3, L)
    torch.testing.assert_close(part, full[:, [4, 0, 4]])


def test_flow_batch_and_padding() -> None:
    layers, mask, lengths = padded_batch(3)
    flow = attention_flow(layers, mask=mask, outputs=[0, 5])
    assert flow.shape == (2, 2, 6) and not bool(flow.isnan().any())
    n = lengths[0]
    assert bool((flow[0, 1] == 0).all())  # output 5 of item 0 is padding
    assert bool((flow[0, :, n:] == 0).all())
    alone = attention_flow([a[0, :, :n, :n] for a in layers], outputs=[0])
    torch.testing.assert_close(flow[0, 0, :n], alone[0])
    torch.testing.assert_close(flow[1], attention_flow([a[1] for a in layers], outputs=[0, 5]))


# --- bad input -----------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("layers", "kwargs", "error", "match"),
    [
        ([torch.ones(H, L, L), torch.ones(H, L + 1, L + 1)], {}, ValueError, "attentions\\[1\\]"),
        ([torch.ones(1, H, L, L), torch.ones(H, L, L)], {}, ValueError, "has shape"),
        ([torch.ones(L, L)], {}, ValueError, "must have shape"),
        ([torch.ones(1, 1, H, L, L)], {}, ValueError, "must have shape"),
        ([torch.ones(H, L, L + 1)], {}, ValueError, "must have shape"),
        ([], {}, ValueError, "empty"),
        (torch.ones(2, H, L, L), {}, TypeError, "one tensor per layer"),
        ([torch.ones(H, L, L)], {"discard_ratio": 1.0}, ValueError, "discard_ratio"),
        ([torch.ones(H, L, L)], {"discard_ratio": -0.1}, ValueError, "discard_ratio"),
        ([torch.ones(H, L, L)], {"discard_ratio": float("nan")}, ValueError, "discard_ratio"),
        ([torch.ones(H, L, L)], {"head_fusion": "median"}, ValueError, "head_fusion"),
        ([-torch.ones(H, L, L)], {}, ValueError, "non-negative"),
        ([torch.full((H, L, L), float("nan"))], {}, ValueError, "NaN"),
        ([torch.ones(H, L, L)], {"mask": torch.ones(L)}, TypeError, "boolean"),
        ([torch.ones(H, L, L)], {"mask": torch.ones(1, L, dtype=torch.bool)}, ValueError, "mask"),
    ],
)
def test_rollout_bad_input_one_line_errors(
    layers: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as exc:
        attention_rollout(layers, **kwargs)  # type: ignore[arg-type]
    one_line(exc)


@pytest.mark.parametrize(
    ("outputs", "error", "match"),
    [([L], ValueError, "out of range"), ([], ValueError, "empty"), ([0.5], TypeError, "integer")],
)
def test_flow_bad_outputs(outputs: list, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as exc:
        attention_flow([torch.ones(H, L, L)] * 3, outputs=outputs)
    one_line(exc)


def test_flow_progress_bar_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    attention_flow(softmax_layers(3, H, L), outputs=[0], progress=True)
    assert "attention flow" in capsys.readouterr().err
    attention_flow(softmax_layers(3, H, L), outputs=[0])  # small: no bar by default
    assert capsys.readouterr().err == ""
