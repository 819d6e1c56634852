"""What the translation models share: the step output, input checks and the token loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn._checks import check_ids, check_tensor


@dataclass
class StepOutput:
    """One decoder step (``T = 1``) or a teacher-forced sequence."""

    logits: Tensor  # (B, T, V)
    weights: Tensor | None  # (B, T, S)
    log_prob: Tensor | None  # (B, T), hard attention only
    entropy: Tensor | None


def check_source(src: Tensor, src_lengths: Tensor, vocab_size: int) -> None:
    """One-line errors for a source batch that is not ``(B, S)`` ids with lengths in ``1..S``."""
    check_tensor("src", src)
    check_tensor("src_lengths", src_lengths)
    if src.dim() != 2 or src_lengths.shape != src.shape[:1]:
        raise ValueError(
            f"src must be (B, S) with src_lengths (B,); got {tuple(src.shape)} and "
            f"{tuple(src_lengths.shape)}"
        )
    if src_lengths.is_floating_point() or src_lengths.dtype == torch.bool:
        raise TypeError(f"src_lengths must be an integer tensor, got {src_lengths.dtype}")
    check_ids("src", src, vocab_size, dims=2, layout="(B, S)")
    if src_lengths.numel():
        shortest, longest = torch.stack(torch.aminmax(src_lengths)).tolist()
        if shortest < 1:
            raise ValueError(
                f"every source sentence needs at least one token; got a length {shortest}"
            )
        if longest > src.shape[1]:
            raise ValueError(
                f"src_lengths holds {longest} but src has only {src.shape[1]} positions"
            )


def check_target(name: str, ids: Tensor, vocab_size: int, batch: int | None = None) -> None:
    """Target ids ``(B, T)`` inside the target vocabulary (and of ``batch`` rows if given)."""
    check_ids(name, ids, vocab_size, dims=2, layout="(B, T)")
    if batch is not None and ids.shape[0] != batch:
        raise ValueError(f"{name} has {ids.shape[0]} rows but src has {batch}; pair them up")


def sequence_loss(
    logits: Tensor, target: Tensor, *, pad_id: int, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Label-smoothed token cross-entropy of a decoder, padding ignored.

    Smoothing is cross-entropy against ``(1 - eps)`` one-hot plus ``eps`` uniform.

    Args:
        logits: ``(B, T, V)``.
        target: ``(B, T)`` ids; ``pad_id`` positions do not count.
        pad_id: padding id.
        label_smoothing: ``eps``.

    Returns:
        ``(loss per real token, summed NLL (detached), real-token count, per-token
        log-likelihood (B, T))``.
    """
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets {tuple(target.shape)} must match the decoder's (B, T) = "
            f"{tuple(logits.shape[:-1])}; tgt_out is tgt_in shifted by one"
        )
    real = target != pad_id
    count = real.sum()
    log_p = F.log_softmax(logits.float(), dim=-1)  # once, shared by both terms
    token_ll = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    nll = -(token_ll * real).sum()
    smooth = -(log_p.mean(-1) * real).sum()
    loss = ((1 - label_smoothing) * nll + label_smoothing * smooth) / count.clamp(min=1)
    return loss, nll.detach(), count, token_ll
