"""Self-contained HTML pages that highlight the words a text model attends to.

Each example becomes a paragraph in which every word's background is shaded in
proportion to its attention weight (divided by the example's largest weight), with
the exact weight in a hover tooltip, in the style of the attention visualisations of
Yang et al., "Hierarchical Attention Networks for Document Classification" (NAACL 2016).
The page has inline CSS only: no scripts, fonts or images are fetched, so it can be
opened offline, attached to a report, or archived with a run's results.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.interpret._common import as_weights, check_tokens, format_weight, html_page

__all__ = ["TextAttentionExample", "highlight_html", "write_highlight_html"]

# One highlight colour (matplotlib's orange, as in the PNG strips) at varying opacity;
# black text stays readable on it even at full intensity.
_RGB = (255, 127, 14)
_LEGEND_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.4em; }
.legend { font-size: 0.85em; color: #555; margin-bottom: 1.5em; }
.legend .swatch { display: inline-block; width: 2.2em; text-align: center;
                  border: 1px solid #ccc; margin: 0 1px; }
.example { border-top: 1px solid #e5e5e5; padding: 0.8em 0; }
.caption { font-size: 0.9em; color: #444; margin: 0 0 0.4em 0; }
.label { display: inline-block; font-size: 0.8em; padding: 0 0.5em; margin-right: 0.5em;
         border-radius: 0.6em; background: #eee; color: #333; }
.tokens { line-height: 1.9; margin: 0; }
.tok { padding: 0.1em 0.15em; border-radius: 0.2em; }
""".strip()


@dataclass(frozen=True)
class TextAttentionExample:
    """One text and its attention weights, to be highlighted by :func:`highlight_html`.

    Inputs are checked on construction, so a bad example fails where it is made.

    Attributes:
        tokens: The words (or subword tokens), in order.
        weights: One non-negative finite weight per token: a list, numpy array or
            torch tensor of shape (L,). They need not sum to 1.
        caption: Text shown above the example, e.g.
            "true: positive, predicted: positive (0.93)".
        label: A short tag shown as a badge before the caption, e.g. "correct".

    Raises:
        ValueError: If the token count differs from the number of weights, or a
            weight is negative, NaN or infinite.

    Example:
        >>> ex = TextAttentionExample(["a", "fine", "film"], [0.1, 0.7, 0.2], caption="pos")
    """

    tokens: list[str]
    weights: Sequence[float] | Any
    caption: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        w = as_weights(self.weights, ndim=1, allow_negative=False)
        check_tokens(self.tokens, w.size, name="tokens", axis="entries")

    def weight_values(self) -> list[float]:
        """Return the weights as a list of Python floats.

        Returns:
            One float per token.
        """
        return [float(x) for x in as_weights(self.weights, ndim=1)]


def _token_span(token: str, weight: float, peak: float) -> str:
    alpha = weight / peak if peak > 0 else 0.0
    r, g, b = _RGB
    # The tooltip carries the weight rounded for reading; data-weight keeps six
    # significant digits for anyone scraping the page.
    return (
        f'<span class="tok" style="background-color: rgba({r}, {g}, {b}, {alpha:.3f})" '
        f'title="{format_weight(weight)}" data-weight="{weight:.6g}">'
        f"{html.escape(token, quote=True)}</span>"
    )


def _example_block(example: TextAttentionExample) -> str:
    weights = example.weight_values()
    peak = max(weights, default=0.0)
    spans = " ".join(
        _token_span(str(t), w, peak) for t, w in zip(example.tokens, weights, strict=True)
    )
    head = ""
    if example.label:
        head += f'<span class="label">{html.escape(example.label)}</span>'
    if example.caption:
        head += html.escape(example.caption)
    caption = f'<p class="caption">{head}</p>\n' if head else ""
    return f'<div class="example">\n{caption}<p class="tokens">{spans}</p>\n</div>'


def _legend() -> str:
    r, g, b = _RGB
    swatches = "".join(
        f'<span class="swatch" style="background-color: rgba({r}, {g}, {b}, {a})">{a:g}</span>'
        for a in _LEGEND_STEPS
    )
    return (
        '<p class="legend">Shading: attention weight divided by the largest weight in its '
        f"example {swatches} &nbsp;Hover a word to see its weight.</p>"
    )


def highlight_html(examples: Sequence[TextAttentionExample], *, title: str) -> str:
    """Render examples as one self-contained HTML page with attention-shaded words.

    Each word is a ``<span>`` whose background opacity is its weight divided by the
    largest weight of its example, with the weight in its ``title`` tooltip (e.g.
    "0.231"). All text is escaped, so a token such as ``<script>`` shows as text.

    Args:
        examples: The examples, rendered in order.
        title: Page title and heading.

    Returns:
        The HTML document as a string (inline CSS, no external resources).

    Raises:
        TypeError: If an item is not a :class:`TextAttentionExample`.

    Example:
        >>> page = highlight_html([TextAttentionExample(["hi"], [1.0])], title="demo")
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    for i, ex in enumerate(examples):
        if not isinstance(ex, TextAttentionExample):
            raise TypeError(
                f"examples[{i}] must be a TextAttentionExample, got {type(ex).__name__}"
            )
    body = "\n".join(_example_block(ex) for ex in examples) or "<p>No examples.</p>"
    return html_page(title, _CSS, f"{_legend()}\n{body}")


def write_highlight_html(
    examples: Sequence[TextAttentionExample], path: str | Path, *, title: str
) -> Path:
    """Write :func:`highlight_html`'s page to a UTF-8 file, creating parent folders.

    Args:
        examples: The examples, rendered in order.
        path: Output file, e.g. ``runs/sentiment/attention.html``.
        title: Page title and heading.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.html"
        >>> write_highlight_html([TextAttentionExample(["hi"], [1.0])], out, title="t").name
        'a.html'
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(highlight_html(examples, title=title), encoding="utf-8")
    return out
