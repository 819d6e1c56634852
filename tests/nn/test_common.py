"""SourceAttention: one forward for every encoder-decoder attention module."""

import pytest
import torch

from attnlab.functional import AttentionOutput
from attnlab.nn import (
    AdditiveAttention,
    HardAttention,
    LocalAttention,
    LuongAttention,
    SourceAttention,
)

B, LQ, LK, D = 2, 3, 9, 6


def _modules():
    torch.manual_seed(0)
    return {
        "additive": AdditiveAttention(D, D, 4),
        "luong": LuongAttention(D, score="general"),
        "local-m": LocalAttention(D, half_width=1, mode="monotonic"),
        "local-p": LocalAttention(D, half_width=2, mode="predictive"),
        "hard": HardAttention(LocalAttention(D, half_width=1, mode="monotonic")).eval(),
    }


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_is_called_the_same_way(name):
    module = _modules()[name]
    assert isinstance(module, SourceAttention)
    keys = torch.randn(B, LK, D)
    prepared = module.prepare_keys(keys)
    mask = torch.ones(B, LK, dtype=torch.bool)
    mask[1, 6:] = False
    out = module(
        torch.randn(B, D), prepared, keys, mask=mask, steps=4, need_weights=True,
        keys_prepared=True,
    )  # fmt: skip
    assert isinstance(out, AttentionOutput) and out.context.shape == (B, D)
    assert out.weights.shape == (B, LK) and (out.weights[1, 6:] == 0).all()


def test_global_attention_ignores_steps_and_local_m_follows_them():
    modules = _modules()
    q, k = torch.randn(B, LQ, D), torch.randn(B, LK, D)
    luong = modules["luong"]
    torch.testing.assert_close(luong(q, k, steps=5)[0], luong(q, k)[0])
    local = modules["local-m"]
    _, w = local(q, k, steps=torch.tensor([5, 6, 7]), need_weights=True)
    assert (w[:, 0, 4:7] > 0).all() and (w[:, 0, :4] == 0).all() and (w[:, 0, 7:] == 0).all()


def test_hard_attention_passes_steps_to_the_module_it_wraps():
    hard = _modules()["hard"]
    q, k = torch.randn(B, D), torch.randn(B, LK, D)
    for t in (0, 4, 8):
        out = hard(q, k, steps=t, need_weights=True)
        chosen = out.weights.argmax(-1)
        assert ((chosen - t).abs() <= 1).all()  # inside the window around t
        assert out.log_prob.shape == out.entropy.shape == (B,)


def test_prepared_projections_need_values():
    attn = AdditiveAttention(D, D, 4)
    with pytest.raises(ValueError, match="pass values= with keys_prepared=True"):
        attn(torch.randn(B, D), attn.prepare_keys(torch.randn(B, LK, D)), keys_prepared=True)
    with pytest.raises(ValueError, match=r"shapes do not match: .*values \(2, 8, 6\)"):
        attn(torch.randn(B, D), torch.randn(B, LK, D), torch.randn(B, LK - 1, D))
