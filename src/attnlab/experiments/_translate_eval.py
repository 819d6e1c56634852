"""Batches, scoring and pictures of the translation experiment (perplexity, alignments)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from attnlab.experiments._translate_config import TranslateConfig
from attnlab.interpret import plot_alignment
from attnlab.interpret.grid import AlignmentPanel, plot_alignment_grid
from attnlab.interpret.subwords import merge_subword_alignment
from attnlab.models.search import beam_search
from attnlab.models.seq2seq import Seq2Seq


def length_batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int | None
) -> list[tuple[torch.Tensor, ...]]:
    """Batches of similar source length, trimmed to their longest row, in seeded order.

    Returns ``(src, src_lengths, tgt_in, tgt_out)`` tuples; ``seed=None`` keeps the
    corpus order (for evaluation).
    """
    src, src_len, tgt, tgt_len = tensors
    order = torch.arange(len(src_len))
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        order = order[torch.randperm(len(order), generator=g)]
        order = order[torch.sort(src_len[order], stable=True).indices]
    chunks = list(torch.split(order, batch_size))
    if seed is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]
    out = []
    for idx in chunks:
        s_len, t_len = src_len[idx], tgt_len[idx]
        t = tgt[idx, : int(t_len.max())]
        out.append((src[idx, : int(s_len.max())], s_len, t[:, :-1], t[:, 1:]))
    return out


@torch.no_grad()
def perplexity(model: Seq2Seq, batches: Iterable[tuple[torch.Tensor, ...]]) -> float:
    """``exp`` of the mean negative log-likelihood per target piece, teacher-forced."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        for batch in batches:
            _, nll, count = model.loss(*batch)
            total, tokens = total + float(nll), tokens + int(count)
    finally:
        model.train(was_training)
    return math.exp(total / max(tokens, 1))


def _word_alignment(
    model: Seq2Seq, data: Any, cfg: TranslateConfig, index: int, beam: int
) -> tuple:
    """Beam-decode test sentence ``index``; its alignment over words, and the words."""
    src, src_len, _, _ = data.tensors["test_2016_flickr"]
    length = int(src_len[index])
    hyp = beam_search(
        model,
        src[index : index + 1, :length],
        src_len[index : index + 1],
        bos_id=data.tgt_tok.bos_id,
        eos_id=data.tgt_tok.eos_id,
        beam_size=beam,
        max_len=cfg.max_len,
        length_penalty=cfg.length_penalty,
    )[0]
    source = data.src_tok.pieces(data.corpora["test_2016_flickr"].src[index], cfg.max_len)
    target = [data.tgt_tok.id_to_piece(t) for t in hyp.tokens]
    target = (
        target + ["</s>"] if hyp.weights is not None and len(hyp.weights) > len(target) else target
    )
    weights = None if hyp.weights is None else hyp.weights[: len(target)]
    if weights is None:
        return None, source, target
    return merge_subword_alignment(weights, source, target)


def draw_alignments(
    model: Seq2Seq, data: Any, name: str, cfg: TranslateConfig, out: Path
) -> list[str]:
    """Alignment heatmaps (source words x target words) of the first test sentences."""
    pictures = []
    # Never more than the test split holds (Multi30k's has 1000; a toy split fewer).
    for index in range(min(cfg.examples, len(data.tensors["test_2016_flickr"][1]))):
        weights, source, target = _word_alignment(model, data, cfg, index, cfg.beam_size)
        path = out / f"alignment-{name}-{index}.png"
        plot_alignment(
            weights,
            x_tokens=source,
            y_tokens=target,
            path=path,
            title=f"{name}: test sentence {index}",
            x_label=f"source ({cfg.src})",
            y_label=f"output ({cfg.tgt})",
        )
        pictures.append(path.name)
    return pictures


def draw_comparison(models: dict[str, Seq2Seq], data: Any, cfg: TranslateConfig, out: Path) -> str:
    """One picture: every variant's alignment of the same test sentence, side by side."""
    panels = []
    for name, model in models.items():
        weights, source, target = _word_alignment(model, data, cfg, 0, cfg.beam_size)
        panels.append(AlignmentPanel(name, weights, source, target))
    path = out / "alignments-compared.png"
    plot_alignment_grid(panels, path, columns=5, suptitle=data.corpora["test_2016_flickr"].src[0])
    return path.name
