"""Sizing, label and saving helpers shared by the PNG plots of :mod:`attnlab.interpret`.

Pictures are sized from the number of tokens (in inches) so that labels stay readable
and a longer input always gives a larger picture.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "cell_inches",
    "check_max_tokens",
    "escape_mathtext",
    "font_pt",
    "save_png",
    "text_inches",
    "tick_label",
    "wrap_text",
]

# Cells shrink gently as inputs grow, so a long sentence stays a reasonable size while
# the picture's total size (n * cell) still grows with every extra token.
_CELL_MAX_IN = 0.28
_CELL_MIN_IN = 0.16
_LABEL_MAX_CHARS = 18
_CHAR_WIDTH_EM = 0.62  # average glyph width of DejaVu Sans, in font sizes


def cell_inches(n: int) -> float:
    """Side of one heatmap cell, in inches, for ``n`` tokens along the longer axis."""
    return _CELL_MIN_IN + (_CELL_MAX_IN - _CELL_MIN_IN) * 20.0 / (n + 20.0)


def font_pt(cell_in: float) -> float:
    """Tick-label font size, in points, that fits a cell of ``cell_in`` inches."""
    # A tick label must fit in its cell: about 55% of the cell's height in points.
    return float(np.clip(cell_in * 72.0 * 0.55, 6.5, 10.0))


def text_inches(chars: int, size_pt: float) -> float:
    """Approximate length, in inches, of ``chars`` characters at ``size_pt`` points."""
    return chars * size_pt * _CHAR_WIDTH_EM / 72.0


def escape_mathtext(text: str) -> str:
    """Escape ``$`` so matplotlib prints the text literally instead of as mathtext."""
    # Without this a token such as "$5" or "a$b$" is parsed as math and may even raise.
    return text.replace("$", r"\$")


def tick_label(token: str) -> str:
    """Make a token printable as a tick label: visible whitespace, shortened, escaped."""
    if not token.strip():
        return "\u2423"  # "open box": a whitespace token would otherwise be invisible
    token = token.replace("\n", "\\n")
    if len(token) > _LABEL_MAX_CHARS:
        token = token[: _LABEL_MAX_CHARS - 1] + "\u2026"
    return escape_mathtext(token)


def wrap_text(text: str, width_in: float, size_pt: float) -> str:
    """Wrap text to lines that fit ``width_in`` inches at ``size_pt`` points."""
    chars = max(20, int(width_in * 72.0 / (size_pt * _CHAR_WIDTH_EM)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def check_max_tokens(max_tokens: int) -> None:
    """Raise ``ValueError`` unless ``max_tokens`` is a positive count."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")


def save_png(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Render ``fig`` with Agg and write it as PNG, creating parent folders.

    Args:
        fig: The figure (built with the object API, not through ``pyplot``).
        path: Output file.
        dpi: Resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach an Agg canvas explicitly: no display, no pyplot state
    # bbox_inches="tight" grows the canvas around long labels instead of clipping them.
    fig.savefig(out, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return out
