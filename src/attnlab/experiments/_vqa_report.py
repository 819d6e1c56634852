"""The ``vqa`` experiment's report: accuracy by question kind and hop, the goal, the hops' aim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attnlab.data.scenes import QUESTION_HOPS
from attnlab.experiments._images import TRAINING_SHARE
from attnlab.experiments._report import summarise
from attnlab.experiments._results import ModelResult, Outcome
from attnlab.experiments._scene_features import encoder_line
from attnlab.experiments._worlds import PAGE

__all__ = ["goal", "report"]

_TWO = "test_accuracy_hops_2"
_INLINE = 4


def _cell(result: ModelResult, metric: str, scale: float = 100.0) -> str:
    if metric not in result.metrics:
        return "n/a"
    stats = summarise(result.metrics[metric])
    return f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


def _mean(result: ModelResult, metric: str) -> float:
    return summarise(result.metrics[metric])["mean"]


def goal(results: Sequence[ModelResult]) -> list[str]:
    """The goal paragraph: SAN-2 >= CNN + LSTM + 10 points on two-hop questions, and > SAN-1.

    Empty when the run lacks SAN-2 or both baselines it is compared with.
    """
    by = {r.model: r for r in results if _TWO in r.metrics}
    if "san-2" not in by or not {"cnn-lstm", "san-1"} & set(by):
        return []
    san2 = 100 * _mean(by["san-2"], _TWO)
    parts, met = [], []
    if "cnn-lstm" in by:
        base = 100 * _mean(by["cnn-lstm"], _TWO)
        gap = san2 - base
        met.append(gap >= 10)
        parts.append(
            f"SAN-2 {san2:.2f}% against CNN + LSTM {base:.2f}% on two-hop questions "
            f"({gap:+.2f} points): {'reached' if gap >= 10 else 'not reached'}"
        )
    if "san-1" in by:
        one = 100 * _mean(by["san-1"], _TWO)
        overall = (
            100 * _mean(by["san-2"], "test_accuracy"),
            100 * _mean(by["san-1"], "test_accuracy"),
        )
        met.append(san2 > one)
        parts.append(
            f"SAN-2 {san2:.2f}% against SAN-1 {one:.2f}% on two-hop questions (overall "
            f"{overall[0]:.2f}% against {overall[1]:.2f}%): "
            f"{'reached' if san2 > one else 'not reached'}"
        )
    verdict = "reached" if all(met) else "not reached"
    return [
        "Goal (issue 15): SAN-2 at least 10 points above CNN + LSTM on two-hop questions, "
        f"and above SAN-1. Measured (means over seeds): {'; '.join(parts)}. Goal {verdict}.",
        "",
    ]


def report(cfg: Any, outcome: Outcome[Any], *, budget: float, page: bool) -> str:
    """The markdown appended to ``report.md`` (worlds, tables, goal, recipe, pictures)."""
    data, results = outcome.data, outcome.results
    kinds = [k for k in QUESTION_HOPS if f"test_accuracy_{k}" in results[0].metrics]
    counts = {k: sum(1 for q in data.test.kinds if q == k) for k in kinds}
    two = int((data.test.hops == 2).sum())
    lines = [
        "",
        f"Scenes: {len(data.train.images):,} training scenes ({data.items[0]:,} items, no "
        f"held-out class-colour pair; {len(data.train):,} questions), "
        f"{len(data.val.images):,} validation ({data.items[1]:,} held-out training items; "
        f"{len(data.val):,} questions), {len(data.test.images):,} test ({data.items[2]:,} "
        f"test items, a held-out pair in every scene; {len(data.test):,} questions, {two:,} "
        "of two hops).",
        "",
        *goal(results),
        "Test accuracy (%) by question kind and hop count, mean ± std over seeds:",
        "",
        "| model | all | "
        + " | ".join(f"{k} ({counts[k]})" for k in kinds)
        + " | 1 hop | 2 hops |",
        "|---|" + "---:|" * (len(kinds) + 3),
    ]
    for r in results:
        cells = [_cell(r, "test_accuracy")] + [_cell(r, f"test_accuracy_{k}") for k in kinds]
        cells += [_cell(r, "test_accuracy_hops_1"), _cell(r, _TWO)]
        lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    sans = [r for r in results if "last_hop_on_answer" in r.metrics]
    if sans:
        lines += [
            "",
            "Where the hops look on two-hop questions (share of attention mass, mean ± std): "
            "the first hop in the box of the object the question names, the last hop in the "
            "answer object's box; a uniform map scores the box's share of the canvas.",
            "",
            "| model | first hop on the named object | last hop on the answer | uniform |",
            "|---|---:|---:|---:|",
        ]
        for r in sans:
            cells = [
                _cell(r, m, 1.0)
                for m in ("first_hop_on_reference", "last_hop_on_answer", "answer_box_share")
            ]
            lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    epochs = ", ".join(f"{r.model} {'/'.join(map(str, r.extra['epochs_runs']))}" for r in results)
    lines += [
        "",
        encoder_line(data.pretrained),
        "",
        f"Recipe: CNN widths {'-'.join(map(str, cfg.widths))}, embeddings "
        f"{cfg.embedding_dim}, LSTM and regions {cfg.hidden_size}, attention "
        f"{cfg.attention_size}, dropout {cfg.dropout}; AdamW (rate {cfg.lr:g}), batch "
        f"{cfg.batch_size}; {budget:.0f} s of training and validation per (model, seed) on "
        f"{torch.get_num_threads()} thread(s) "
        f"({TRAINING_SHARE - cfg.pretrain_share:.0%} of {cfg.budget_minutes:g} min over "
        f"{len(cfg.models) * cfg.seeds} runs); epochs {epochs}.",
        "",
    ]
    for r in results:  # the first few pictures inline, the others linked
        pictures = r.extra.get("pictures", [])
        lines += [f"![{r.model}]({p})" for p in pictures[:_INLINE]]
        lines += [f"- [{r.model}: {p}]({p})" for p in pictures[_INLINE:]]
    if page:
        lines += ["", f"- [test questions with each hop's attention]({PAGE})"]
    return "\n".join(lines) + "\n"
