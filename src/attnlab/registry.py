"""The index of every name table: what ``attnlab list`` shows, found through one lookup.

Names exist only where people type them (CLI flags, experiment Configs), and each kind
of thing has one table from those names to what they build: the attention modules,
graph layers and image blocks the conformance suites run, the sparsity patterns, the
Luong scores, the model-level choices and the experiments. :data:`REGISTRIES` lists
each table once, with a title, the inputs its entries take (or where they plug in)
and the import path of the table, so a new table is one entry here and
``attnlab list`` shows it.

This module sits above :mod:`attnlab.nn`, :mod:`attnlab.models` and
:mod:`attnlab.experiments` (like :mod:`attnlab.cli`): it imports a table only when
asked for its entries, and nothing below it imports it.

Example:
    >>> from attnlab.registry import REGISTRIES
    >>> REGISTRIES["graph"].heading
    'Graph mechanisms (attnlab.nn; x (N, F), edge_index):'
    >>> sorted(REGISTRIES["graph"].entries())
    ['gat', 'gatv2']
"""

from __future__ import annotations

import functools
import importlib
import inspect
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["REGISTRIES", "Registry", "first_line"]


def first_line(obj: object) -> str:
    """The first line of ``obj``'s own docstring, or ``""`` where it has none.

    A class without a docstring gives ``""``, not its base class's; a
    :func:`functools.partial` is described by the function it wraps.

    Args:
        obj: A class, function or partial.

    Returns:
        The summary line ``attnlab list`` shows beside the entry's name.
    """
    while isinstance(obj, functools.partial):
        obj = obj.func
    doc = inspect.cleandoc(obj.__doc__ or "")
    return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class Registry:
    """One name table: where it lives, what its entries take, how each is described.

    Attributes:
        title: What the entries are, for ``attnlab list`` (``"Mechanisms"``).
        table: Import path of the table, a ``dict`` from name to entry
            (``"attnlab.nn.MECHANISMS"``); with ``loader``, of a function returning it.
        inputs: The inputs the entries take, or where they plug in
            (``"x (N, F), edge_index"``, ``"pattern= of attention"``).
        where: How people reach the entries; empty means the table's module.
        loader: ``table`` names a function that fills the table and returns it (the
            experiments register themselves when their modules are imported).
        describe: An entry's one-line description; the first docstring line by default.
    """

    title: str
    table: str
    inputs: str
    where: str = ""
    loader: bool = False
    describe: Callable[[Any], str] = first_line

    @property
    def heading(self) -> str:
        """The section heading: ``"Title (where; inputs):"``."""
        where = self.where or self.table.rpartition(".")[0]
        return f"{self.title} ({where}; {self.inputs}):"

    def entries(self) -> dict[str, Any] | None:
        """The table, sorted by name; None while its module does not define it.

        Returns:
            Name to entry, or None where the table's module has no such attribute.

        Raises:
            TypeError: If the table is not a mapping from names to entries.
        """
        module, _, name = self.table.rpartition(".")
        found = getattr(importlib.import_module(module), name, None)
        if found is None:
            return None
        if self.loader:
            found = found()
        if not isinstance(found, Mapping):
            raise TypeError(
                f"{self.table} must be a dict from names to entries; got {type(found).__name__}"
            )
        return dict(sorted(found.items()))

    def rows(self) -> list[tuple[str, str]] | None:
        """``(name, description)`` per entry, sorted by name; None while the table is absent."""
        entries = self.entries()
        if entries is None:
            return None
        return [(name, self.describe(entry)) for name, entry in entries.items()]


# Every name table, once, in the order `attnlab list` prints them; a table its module
# does not define is left out of the listing.
REGISTRIES: dict[str, Registry] = {
    "experiments": Registry(
        "Experiments",
        "attnlab.experiments.available",
        "add -h for its flags",
        where="attnlab run NAME",
        loader=True,
        describe=operator.attrgetter("description"),
    ),
    "mechanisms": Registry("Mechanisms", "attnlab.nn.MECHANISMS", "x (B, L, D), key mask (B, L)"),
    "graph": Registry("Graph mechanisms", "attnlab.nn.GRAPH_MECHANISMS", "x (N, F), edge_index"),
    "image-blocks": Registry("Image blocks", "attnlab.vision.IMAGE_BLOCKS", "x (B, C, H, W)"),
    "patterns": Registry(
        "Sparsity patterns",
        "attnlab.masks.PATTERNS",
        "pattern= of attention and MultiHeadAttention",
    ),
    "luong-scores": Registry("Luong scores", "attnlab.nn.LUONG_SCORES", "score= of LuongAttention"),
    "seq2seq-attentions": Registry(
        "Seq2Seq attentions",
        "attnlab.models.SEQ2SEQ_ATTENTIONS",
        "attention= of Seq2Seq; --attention of attnlab run translate",
    ),
    "poolings": Registry("Poolings", "attnlab.models.POOLINGS", "pooling= of TextClassifier"),
    "gat-layers": Registry(
        "GAT layers",
        "attnlab.models.GAT_LAYERS",
        "conv= of GAT; --models of attnlab run gat",
    ),
    "positions": Registry(
        "Position schemes",
        "attnlab.models.POSITIONS",
        "positions= of TransformerLM and TransformerSeq2Seq",
    ),
    "caption-attentions": Registry(
        "Caption attentions",
        "attnlab.models.CAPTION_ATTENTIONS",
        "attention= of ShowAttendTell; --models of attnlab run caption",
    ),
}
