"""Seq2Seq models trained on the copy task until they have learnt it, shared by the tests.

A fixed number of steps is one trajectory, and trajectories differ between CPUs and
thread counts (rounding-level changes in the kernels move Bahdanau's alignment between
0.75 and 0.98 at 200 steps while its loss is already near 0). So training stops on a
criterion measured on a validation batch, checked every ``CHECK_EVERY`` steps: the
argmax of attention lands on the source token being copied for ``ALIGNED`` of the
tokens and teacher-forced predictions are right for ``COPIED`` of them. A model that
never gets there within ``STEP_CAP`` steps is returned as it is, and the tests' own
assertions on a separate held-out batch then fail.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from attnlab.data.synthetic import AlignedBatch, copy_task
from attnlab.models.seq2seq import Seq2Seq
from attnlab.models.seq2seq_attentions import SEQ2SEQ_ATTENTIONS, Seq2SeqOptions

COPY = {"symbols": 12, "min_len": 4, "max_len": 8}
ALIGNED = 0.95
COPIED = 0.98
CHECK_EVERY = 25
STEP_CAP = 1500


class CopyModel(NamedTuple):
    """A trained model and the steps it took (``STEP_CAP`` when it never converged)."""

    model: Seq2Seq
    steps: int


def copy_batch(n: int, seed: int) -> AlignedBatch:
    """A batch of the copy task drawn from its own seed."""
    return copy_task(n, generator=torch.Generator().manual_seed(seed), **COPY)


def held_out_copy_batch(n: int = 256) -> AlignedBatch:
    """The batch the tests assert on: never seen in training or in the stopping rule."""
    return copy_batch(n, seed=12345)


@torch.no_grad()
def alignment_and_accuracy(model: Seq2Seq, batch: AlignedBatch) -> tuple[float, float]:
    """Share of real target tokens whose attention argmax is their source position, and
    share predicted right under teacher forcing (EOS included)."""
    was_training = model.training
    model.eval()
    out = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    model.train(was_training)
    real = batch.alignment >= 0
    aligned = (out.weights.argmax(-1) == batch.alignment)[real].float().mean().item()
    scored = batch.tgt_out != 0
    right = (out.logits.argmax(-1) == batch.tgt_out)[scored].float().mean().item()
    return aligned, right


@functools.lru_cache(maxsize=None)
def trained_copy_model(attention: str) -> CopyModel:
    """A Seq2Seq trained on the copy task until it has learnt it (cached; do not mutate)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    vocab = COPY["symbols"] + 3
    options = Seq2SeqOptions(half_width=2, max_source_len=COPY["max_len"])
    model = Seq2Seq(
        vocab,
        vocab,
        **SEQ2SEQ_ATTENTIONS[attention](32, options).as_kwargs(),
        embedding_dim=16,
        hidden_size=32,
        dropout=0.0,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    validation = copy_batch(256, seed=999)
    model.train()
    step = 0
    while step < STEP_CAP:
        b = copy_task(64, generator=g, **COPY)
        loss, _, _ = model.loss(b.src, b.src_lengths, b.tgt_in, b.tgt_out)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % CHECK_EVERY == 0:
            aligned, right = alignment_and_accuracy(model, validation)
            if aligned >= ALIGNED and right >= COPIED:
                break
    return CopyModel(model.eval(), step)
