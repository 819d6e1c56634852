r"""Self-contained HTML pages of two-level (sentence and word) attention over documents.

The picture of Yang et al., "Hierarchical Attention Networks for Document
Classification" (NAACL 2016), Figures 5 and 6: each sentence starts with a bar whose
length and colour give its sentence weight, and each word is shaded by its word
weight. As in the paper, word shading is by default scaled by the square root of the
sentence weight, :math:`\sqrt{p_s}\, p_w`, so only important words in important
sentences stand out; the word tooltips still give the word's own weight :math:`p_w`.
Words use the colour and the ``<span>`` of :mod:`attnlab.interpret.html`; the page
has inline CSS only and fetches nothing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attnlab.interpret._common import as_weights, check_tokens, format_weight, html_page
from attnlab.interpret.html import _CSS, _RGB, _token_span

__all__ = ["DocumentAttentionExample", "document_html", "write_document_html"]

WordScale = Literal["sentence", "none"]
_SCALES = ("sentence", "none")
_BAR_RGB = (31, 119, 180)  # matplotlib's blue, apart from the words' orange

_DOC_CSS = """
.sentence { display: flex; align-items: baseline; gap: 0.6em; margin: 0.15em 0; }
.slot { flex: 0 0 3em; height: 0.9em; background: #f2f2f2; border-radius: 0.2em; }
.bar { display: block; height: 100%; border-radius: 0.2em; }
.sentence .tokens { flex: 1; line-height: 1.7; }
""".strip()


@dataclass(frozen=True)
class DocumentAttentionExample:
    """One document with its sentence and word attention, for :func:`document_html`.

    Inputs are checked on construction, so a bad example fails where it is made.

    Attributes:
        sentences: One token list per sentence.
        word_weights: One weight sequence per sentence (list, numpy array or tensor of
            shape ``(len(tokens),)``), non-negative and finite.
        sentence_weights: ``(S,)`` weights, one per sentence, non-negative and finite.
        caption: Text shown above the document, e.g. "true: positive, predicted: ...".
        label: A short tag shown as a badge before the caption.

    Raises:
        ValueError: If the numbers of sentences, words and weights do not match, or
            a weight is negative, NaN or infinite.
        TypeError: If a sentence is a single string instead of a token list.

    Example:
        >>> ex = DocumentAttentionExample([["so", "good"], ["ok"]], [[0.2, 0.8], [1.0]], [0.9, 0.1])
    """

    sentences: list[list[str]]
    word_weights: Sequence[Any]
    sentence_weights: Sequence[float] | Any
    caption: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.sentences, (str, bytes)):
            raise TypeError("sentences must be a list of token lists, got a single string")
        s = as_weights(self.sentence_weights, ndim=1, name="sentence_weights", allow_negative=False)
        if not len(self.sentences) == len(self.word_weights) == s.size:
            raise ValueError(
                f"got {len(self.sentences)} sentences, {len(self.word_weights)} word-weight "
                f"rows and {s.size} sentence weights; they must match"
            )
        for i, (tokens, weights) in enumerate(zip(self.sentences, self.word_weights)):
            name = f"word_weights[{i}]"
            w = as_weights(weights, ndim=1, name=name, allow_negative=False)
            check_tokens(tokens, w.size, name=f"sentences[{i}]", axis="word weights")

    def weight_values(self) -> tuple[list[float], list[list[float]]]:
        """Return ``(sentence weights, word weights per sentence)`` as Python floats."""
        sentence = [float(x) for x in as_weights(self.sentence_weights, ndim=1)]
        words = [[float(x) for x in as_weights(w, ndim=1)] for w in self.word_weights]
        return sentence, words


def _sentence_block(
    tokens: list[str], words: list[float], weight: float, bar: float, peak: float
) -> str:
    r, g, b = _BAR_RGB
    spans = " ".join(_token_span(str(t), w, peak) for t, w in zip(tokens, words, strict=True))
    return (
        f'<div class="sentence"><span class="slot" title="sentence weight '
        f'{format_weight(weight)}"><span class="bar" data-weight="{weight:.6g}" style="width: '
        f'{100 * bar:.1f}%; background-color: rgba({r}, {g}, {b}, {0.25 + 0.75 * bar:.3f})">'
        f'</span></span><p class="tokens">{spans}</p></div>'
    )


def _document_block(example: DocumentAttentionExample, scale: WordScale) -> str:
    sentence, words = example.weight_values()
    top = max(sentence, default=0.0)
    # A word's shade is factor * w / peak: factor = sqrt(sentence weight) in the paper's
    # scaling. Passing peak / factor to the shared span keeps its tooltip at w itself.
    factors = [math.sqrt(s) if scale == "sentence" else 1.0 for s in sentence]
    peak = max((f * w for f, ws in zip(factors, words) for w in ws), default=0.0)
    blocks = [
        _sentence_block(
            [str(t) for t in tokens],
            ws,
            s,
            s / top if top > 0 else 0.0,
            peak / f if f > 0 else 0.0,
        )
        for tokens, ws, s, f in zip(example.sentences, words, sentence, factors)
    ]
    head = f'<span class="label">{html.escape(example.label)}</span>' if example.label else ""
    head += html.escape(example.caption)
    caption = f'<p class="caption">{head}</p>\n' if head else ""
    return f'<div class="example">\n{caption}' + "\n".join(blocks) + "\n</div>"


def _legend(scale: WordScale) -> str:
    r, g, b = _RGB
    words = "sqrt(sentence weight) x word weight" if scale == "sentence" else "word weight"
    return (
        '<p class="legend">Bar at the left: sentence weight (length and colour relative to '
        "the document's largest). Words: "
        f'<span class="swatch" style="background-color: rgba({r}, {g}, {b}, 1)">1</span> '
        f"{words}, relative to the document's largest. Hover a bar or a word to see its "
        "weight.</p>"
    )


def document_html(
    examples: Sequence[DocumentAttentionExample], *, title: str, word_scale: WordScale = "sentence"
) -> str:
    """Render documents as one self-contained HTML page with two-level attention.

    All text is escaped, so a token such as ``<script>`` shows as text.

    Args:
        examples: The documents, rendered in order.
        title: Page title and heading.
        word_scale: ``"sentence"`` shades words by ``sqrt(p_s) * p_w`` as in Yang et
            al. 2016; ``"none"`` by the word weight alone. Either is divided by its
            document's largest value.

    Returns:
        The HTML document as a string (inline CSS, no external resources).

    Raises:
        TypeError: If an item is not a :class:`DocumentAttentionExample`.
        ValueError: If ``word_scale`` is unknown.

    Example:
        >>> ex = DocumentAttentionExample([["hi"]], [[1.0]], [1.0])
        >>> document_html([ex], title="demo").startswith("<!DOCTYPE html>")
        True
    """
    if word_scale not in _SCALES:
        raise ValueError(f"word_scale must be one of {_SCALES}, got {word_scale!r}")
    for i, ex in enumerate(examples):
        if not isinstance(ex, DocumentAttentionExample):
            raise TypeError(
                f"examples[{i}] must be a DocumentAttentionExample, got {type(ex).__name__}"
            )
    body = "\n".join(_document_block(ex, word_scale) for ex in examples) or "<p>No examples.</p>"
    return html_page(title, f"{_CSS}\n{_DOC_CSS}", f"{_legend(word_scale)}\n{body}")


def write_document_html(
    examples: Sequence[DocumentAttentionExample],
    path: str | Path,
    *,
    title: str,
    word_scale: WordScale = "sentence",
) -> Path:
    """Write :func:`document_html`'s page to a UTF-8 file, creating parent folders.

    Args:
        examples: The documents, rendered in order.
        path: Output file, e.g. ``runs/han/attention_han.html``.
        title: Page title and heading.
        word_scale: ``"sentence"`` (the paper's scaling) or ``"none"``.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "doc.html"
        >>> ex = DocumentAttentionExample([["hi"]], [[1.0]], [1.0])
        >>> write_document_html([ex], out, title="t").name
        'doc.html'
    """
    out = Path(path)
    page = document_html(examples, title=title, word_scale=word_scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
