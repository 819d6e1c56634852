"""The ``mha`` suite: :class:`~attnlab.nn.MultiHeadAttention` against torch's module and SDPA.

Self-attention, forward+backward, float32, ``E = 512``, 8 heads of 64, at several
lengths with ``B * L = 4096`` tokens (fewer rows at long lengths), timed side by side:

* ``attnlab``: ``MultiHeadAttention(x)`` (its default engine, no weights);
* ``torch``: ``torch.nn.MultiheadAttention(x, x, x, need_weights=False)``, batch-first;
* ``bare``: the floor: one packed input projection, bare
  :func:`torch.nn.functional.scaled_dot_product_attention`, the output projection.

Each figure is the median over rounds of the per-round ratio (machines here are noisy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnlab.bench.harness import paired_ratio, time_interleaved
from attnlab.nn.multihead import MultiHeadAttention

EMBED, HEADS, TOKENS = 512, 8, 4096


@dataclass(frozen=True)
class MultiheadSizes:
    """Lengths and rounds; ``quick`` is a smaller run."""

    lengths: tuple[int, ...] = (128, 1024, 4096)
    rounds: int = 9

    @classmethod
    def quick(cls) -> MultiheadSizes:
        """A smaller run for ``attnlab bench --suite mha --quick``."""
        return cls((128, 1024), 3)


def _modules() -> tuple[MultiHeadAttention, torch.nn.MultiheadAttention]:
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
    return MultiHeadAttention.from_torch(theirs), theirs


def _bare(theirs: torch.nn.MultiheadAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """Packed projection + bare SDPA + output projection, on torch's own parameters."""

    def run(x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        qkv = F.linear(x, theirs.in_proj_weight, theirs.in_proj_bias)
        q, k, v = qkv.view(b, length, 3, HEADS, EMBED // HEADS).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return theirs.out_proj(out.transpose(1, 2).reshape(b, length, EMBED))

    return run


def _step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params) -> Callable:
    dout = torch.randn_like(x)

    def run() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        fn(x).backward(dout)

    return run


def multihead_rows(sizes: MultiheadSizes) -> list[dict]:
    """One row per length: seconds per forward+backward of each candidate, and ratios."""
    ours, theirs = _modules()
    rows = []
    for length in tqdm(sizes.lengths, desc="mha", leave=False):
        batch = max(1, TOKENS // length)
        x = torch.randn(batch, length, EMBED, requires_grad=True)
        candidates = {
            "attnlab": _step(lambda t: ours(t)[0], x, list(ours.parameters())),
            "torch": _step(
                lambda t: theirs(t, t, t, need_weights=False)[0], x, list(theirs.parameters())
            ),
            "bare": _step(_bare(theirs), x, list(theirs.parameters())),
        }
        t = time_interleaved(candidates, rounds=sizes.rounds)
        rows.append(
            {
                "figure": "multihead_forward_backward",
                "length": length,
                "batch": batch,
                "embed_dim": EMBED,
                "heads": HEADS,
                **{f"{name}_s": timing.median for name, timing in t.items()},
                "vs_torch": paired_ratio(t["attnlab"], t["torch"]),
                "vs_bare": paired_ratio(t["attnlab"], t["bare"]),
            }
        )
    return rows


def run_multihead(quick: bool = False) -> list[dict]:
    """All rows of the ``mha`` suite."""
    return multihead_rows(MultiheadSizes.quick() if quick else MultiheadSizes())
