"""Luong's scores as strategies: one table of names, instances injected, old checkpoints."""

import pytest
import torch

from attnlab.functional import Additive, Dot, General, Location
from attnlab.nn import (
    LUONG_SCORES,
    ConcatScore,
    DotScore,
    GeneralScore,
    LocalAttention,
    LocationScore,
    LuongAttention,
)

B, LQ, LK, DQ, DK = 2, 3, 7, 5, 6


@pytest.mark.parametrize("name", sorted(LUONG_SCORES))
def test_a_name_and_the_strategy_it_names_compute_the_same(name):
    key_size = DQ if name == "dot" else DK
    options = {"hidden_size": 4, "max_source_len": LK}
    torch.manual_seed(0)
    by_name = LuongAttention(DQ, key_size, score=name, **options)
    torch.manual_seed(0)
    strategy = LUONG_SCORES[name].from_options(DQ, key_size, **options)
    injected = LuongAttention(DQ, key_size, score=strategy)
    assert injected.scorer is strategy and injected.score_name == name == strategy.name
    assert by_name.state_dict().keys() == injected.state_dict().keys()
    for a, b in zip(by_name.state_dict().values(), injected.state_dict().values()):
        assert torch.equal(a, b)  # same parameters drawn in the same order
    q, k = torch.randn(B, LQ, DQ), torch.randn(B, LK, key_size)
    torch.testing.assert_close(
        by_name(q, k, need_weights=True).weights, injected(q, k, need_weights=True).weights
    )
    assert repr(by_name) == repr(injected)


def test_each_strategy_owns_its_parameters_score_and_key_projection():
    expected = {
        DotScore(DQ, DQ): (Dot, False, []),
        GeneralScore(DQ, DK): (General, False, ["weight"]),
        ConcatScore(DQ, DK, hidden_size=4): (
            Additive,
            True,
            ["v", "query_proj.weight", "key_proj.weight", "key_proj.bias"],
        ),
        LocationScore(DQ, DK, max_source_len=LK): (
            Location,
            False,
            ["location.weight", "location.bias"],
        ),
    }
    for strategy, (score, projected, names) in expected.items():
        assert isinstance(strategy.score(), score)
        assert strategy.projected_keys is projected
        assert sorted(n for n, _ in strategy.named_parameters()) == sorted(names)
        attn = LuongAttention(DQ, strategy.key_size, score=strategy)
        assert attn.projected_keys is projected
        assert [p for p in attn.parameters()] == [p for p in strategy.parameters()]


def test_the_scores_parameters_read_as_the_modules_own():
    attn = LuongAttention(DQ, DK, score="concat", hidden_size=4)
    assert attn.v is attn.scorer.v and attn.query_proj is attn.scorer.query_proj
    assert LuongAttention(DQ, DK, score="general").weight.shape == (DQ, DK)
    with pytest.raises(AttributeError):
        LuongAttention(DQ, DK, score="general").v


def test_checkpoints_from_before_the_strategies_still_load():
    torch.manual_seed(0)
    attn = LuongAttention(DQ, DK, score="concat", hidden_size=4)
    old = {k.removeprefix("scorer."): v for k, v in attn.state_dict().items()}
    assert "query_proj.weight" in old  # the flat keys LuongAttention used to write
    fresh = LuongAttention(DQ, DK, score="concat", hidden_size=4)
    fresh.load_state_dict(old)
    for a, b in zip(attn.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_strategies_are_checked_against_the_attention_and_local_attention():
    with pytest.raises(ValueError, match="built for query_size=5, key_size=5"):
        LuongAttention(DQ, DK, score=GeneralScore(DQ, DQ))
    with pytest.raises(ValueError, match="score must be one of .* or a LuongScore"):
        LuongAttention(DQ, score=General(torch.eye(DQ)))
    with pytest.raises(ValueError, match="query_size == key_size"):
        DotScore(DQ, DK)
    local = LocalAttention(DQ, DK, half_width=1, mode="monotonic", score=ConcatScore(DQ, DK))
    assert local.content.score_name == "concat" and local.projected_keys
