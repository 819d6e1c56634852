"""The markdown table every benchmark summary uses."""

from __future__ import annotations

__all__ = ["markdown_table"]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a markdown table: the first column left-aligned, the others right.

    Example:
        >>> markdown_table(["a", "b"], [["x", "1"]])
        ['| a | b |', '|---|---:|', '| x | 1 |']
    """
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]
