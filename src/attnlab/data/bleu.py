"""Corpus BLEU as everyone reports it: sacreBLEU with its default settings.

BLEU (Papineni et al., ACL 2002) is computed by sacreBLEU (Post, WMT 2018) on
detokenised text - what :meth:`attnlab.data.subword.SubwordTokenizer.decode`
returns - with its defaults: one reference per sentence, mixed case, the
``13a`` tokeniser, exponential smoothing. Publish the score with
:func:`bleu_signature`, which says exactly how it was computed.

sacreBLEU is imported on first use, so importing :mod:`attnlab.data` stays quick.
"""

from collections.abc import Sequence
from typing import Any

from attnlab.data.translation import check_strings

__all__ = ["bleu_signature", "corpus_bleu", "reference_bleu"]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Return corpus-level BLEU of detokenised hypotheses against one reference each.

    Args:
        hypotheses: System outputs, one detokenised string per sentence.
        references: The reference translations, aligned with ``hypotheses``.

    Returns:
        BLEU on sacreBLEU's 0-100 scale.

    Raises:
        TypeError: An argument is one string, or holds a non-string.
        ValueError: The lists are empty or differ in length.

    Example:
        >>> round(corpus_bleu(["A dog runs on the beach."], ["A dog runs on the beach."]), 2)
        100.0
    """
    hyps = check_strings("hypotheses", hypotheses)
    refs = check_strings("references", references)
    if len(hyps) != len(refs):
        raise ValueError(
            f"got {len(hyps)} hypotheses but {len(refs)} references; pass one reference per "
            "hypothesis"
        )
    if not hyps:
        raise ValueError("hypotheses and references are empty; pass at least one sentence")
    return float(_bleu().corpus_score(hyps, [refs]).score)


def reference_bleu(hypotheses: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (sacreBLEU's defaults, 0-100) of each hypothesis against all its references.

    :func:`corpus_bleu` with several references per sentence (captions). Sentences may
    have different numbers of references; sacreBLEU takes one stream per
    reference slot, with None where a scene has fewer.

    Example:
        >>> round(reference_bleu(["a red bag above a blue boot"],
        ...                      [["a blue boot below a red bag", "a red bag above a blue boot"]]))
        100
    """
    hyps = check_strings("hypotheses", hypotheses)
    if len(hypotheses) != len(refs) or not hypotheses:
        raise ValueError(
            f"give one list of references per hypothesis (at least one), got "
            f"{len(hypotheses)} hypotheses and {len(refs)} reference lists"
        )
    slots = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(slots)]
    return float(_bleu().corpus_score(hyps, streams).score)


def bleu_signature() -> str:
    """Return sacreBLEU's signature for :func:`corpus_bleu`'s settings.

    Returns:
        E.g. ``"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"``.

    Example:
        >>> bleu_signature().startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
        True
    """
    metric = _bleu()
    # sacreBLEU learns the number of references from a scored corpus.
    metric.corpus_score(["x"], [["x"]])
    return str(metric.get_signature())


def _bleu() -> Any:
    """Return a sacreBLEU BLEU metric with default settings."""
    from sacrebleu.metrics import BLEU

    return BLEU()
