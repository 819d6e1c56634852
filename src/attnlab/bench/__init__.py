"""Speed and memory benchmarks: the harness, the suites, and the files they write.

``attnlab bench --suite NAME`` runs ``SUITES[NAME](quick=...)``, which returns rows
(plain dicts, one per measurement), and :func:`attnlab.bench.report.write_bench`
writes them as JSON, CSV, a memory plot and a markdown summary.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SUITES", "get_suite"]


def _core(quick: bool = False) -> list[dict]:
    # Imported on use: the suite pulls in the engines, and tests replace `run_core`.
    from attnlab.bench import core

    return core.run_core(quick=quick)


def _engines(quick: bool = False) -> list[dict]:
    from attnlab.bench import engines

    return engines.run_engines(quick=quick)


def _linear(quick: bool = False) -> list[dict]:
    from attnlab.bench import linear

    return linear.run_linear(quick=quick)


def _multihead(quick: bool = False) -> list[dict]:
    from attnlab.bench import multihead

    return multihead.run_multihead(quick=quick)


def _equivalence(quick: bool = False) -> list[dict]:
    from attnlab.bench import equivalence

    return equivalence.run_equivalence(quick=quick)


def _mechanisms(quick: bool = False) -> list[dict]:
    from attnlab.bench import mechanisms

    return mechanisms.run_mechanisms(quick=quick)


def _reversible(quick: bool = False) -> list[dict]:
    from attnlab.bench import reversible

    return reversible.run_reversible(quick=quick)


def _gat(quick: bool = False) -> list[dict]:
    from attnlab.bench import graph

    return graph.run_gat(quick=quick)


def _vision(quick: bool = False) -> list[dict]:
    from attnlab.bench import vision

    return vision.run_vision(quick=quick)


# Suite name -> function(quick: bool) -> rows. Add a suite by adding an entry.
SUITES: dict[str, Callable[..., list[dict]]] = {
    "core": _core,
    "engines": _engines,
    "linear": _linear,
    "mha": _multihead,
    "equivalence": _equivalence,
    "gat": _gat,
    "mechanisms": _mechanisms,
    "reversible": _reversible,
    "vision": _vision,
}


def get_suite(name: str) -> Callable[..., list[dict]]:
    """Look up a benchmark suite.

    Args:
        name: A key of ``SUITES`` (``"core"``, ``"engines"``, ``"mha"``, ...).

    Returns:
        The suite's function, ``suite(quick=False) -> list[dict]``.

    Raises:
        ValueError: If no suite has this name.
    """
    if name not in SUITES:
        raise ValueError(f"unknown bench suite {name!r}; available: {', '.join(SUITES)}")
    return SUITES[name]
