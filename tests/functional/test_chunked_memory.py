"""The chunked engine never builds an (Lq x Lk) tensor, in forward or backward."""

import pytest
import torch

from attnlab.functional import additive, attention

from ._probes import LargestTensor


def _largest(backend, score=None, lq=96, lk=112, d=4):
    q = torch.randn(1, 1, lq, d, requires_grad=True)
    k = torch.randn(1, 1, lk, d, requires_grad=True)
    v = torch.randn(1, 1, lk, d, requires_grad=True)
    mask = torch.ones(1, 1, 1, lk, dtype=torch.bool)
    with LargestTensor() as mode:
        out = attention(
            q, k, v, score=score, mask=mask, causal="lower_right", backend=backend
        ).output
        out.sum().backward()
    return mode.largest


@pytest.mark.parametrize("kind", ["dot", "additive"])
def test_chunked_stays_below_the_score_matrix(kind, small_blocks):
    import attnlab.functional.chunked as chunked

    chunked.DOT_BLOCK = 16
    chunked.GENERIC_BLOCK_ELEMENTS = 16 * 16 * 3
    score = (
        None if kind == "dot" else additive(torch.randn(3), torch.randn(3, 4), torch.randn(3, 4))
    )
    assert _largest("chunked", score) < 96 * 112 / 4
    assert _largest("math", score) >= 96 * 112  # the yardstick does build it
