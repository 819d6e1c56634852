"""See what a model attends to: pictures (PNG) and HTML pages of attention weights.

Text for now:

- :func:`plot_alignment`: query x key alignment heatmap (e.g. translation).
- :func:`plot_token_weights`: one strip per sentence for an attention-pooling classifier.
- :func:`highlight_html` / :func:`write_highlight_html`: a self-contained page in which
  each word is shaded by its weight, from a list of :class:`TextAttentionExample`.

Weights may be torch tensors (any dtype or device) or numpy arrays. The module draws
with matplotlib's object API and the Agg backend: no display, no global pyplot state.
"""

from attnlab.interpret.heatmap import (
    alignment_figure,
    plot_alignment,
    plot_token_weights,
    token_weights_figure,
)
from attnlab.interpret.html import TextAttentionExample, highlight_html, write_highlight_html

__all__ = [
    "TextAttentionExample",
    "alignment_figure",
    "highlight_html",
    "plot_alignment",
    "plot_token_weights",
    "token_weights_figure",
    "write_highlight_html",
]
