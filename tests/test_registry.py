"""The index of name tables (attnlab.registry): each table once, found, described."""

import functools
import importlib
import re
from pathlib import Path

import pytest

import attnlab
import attnlab.vision
from attnlab.experiments import available
from attnlab.registry import REGISTRIES, Registry, first_line

# Tables that exist today; the models' tables join the listing as they are defined.
PRESENT = {
    "experiments",
    "mechanisms",
    "graph",
    "image-blocks",
    "patterns",
    "luong-scores",
    "gat-layers",
}
# Packages whose public upper-case dicts are name tables people type names from.
TABLE_PACKAGES = ("attnlab.nn", "attnlab.masks", "attnlab.models", "attnlab.vision")


def test_every_table_is_indexed_once():
    tables = [registry.table for registry in REGISTRIES.values()]
    titles = [registry.title for registry in REGISTRIES.values()]
    assert len(set(tables)) == len(tables) and len(set(titles)) == len(titles)
    for package in TABLE_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            if name.isupper() and isinstance(getattr(module, name), dict):
                assert f"{package}.{name}" in tables, f"{package}.{name} is not in REGISTRIES"


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_present_tables_map_names_to_entries(key):
    entries = REGISTRIES[key].entries()
    if key in PRESENT:
        assert entries is not None
    if entries is not None:
        assert all(isinstance(name, str) and name for name in entries)
        assert list(entries) == sorted(entries)


def test_the_index_finds_the_tables_themselves():
    import attnlab.masks
    import attnlab.nn

    assert REGISTRIES["mechanisms"].entries() == dict(sorted(attnlab.nn.MECHANISMS.items()))
    assert REGISTRIES["patterns"].entries() == dict(sorted(attnlab.masks.PATTERNS.items()))
    assert REGISTRIES["image-blocks"].entries() == attnlab.vision.IMAGE_BLOCKS
    assert REGISTRIES["experiments"].entries() == available()  # shipped ones loaded


class Documented:
    """First line of the doc.

    More that the listing leaves out.
    """


class Undocumented(Documented):
    pass


def undocumented_function():
    pass


def test_an_entrys_description_is_the_first_line_of_its_own_docstring(monkeypatch):
    table = {
        "documented": Documented,
        "subclass": Undocumented,  # not its base class's docstring
        "function": undocumented_function,
        "partial": functools.partial(Documented),
    }
    monkeypatch.setattr(attnlab.vision, "IMAGE_BLOCKS", table)
    assert REGISTRIES["image-blocks"].rows() == [
        ("documented", "First line of the doc."),
        ("function", ""),
        ("partial", "First line of the doc."),
        ("subclass", ""),
    ]
    assert first_line(Documented) == "First line of the doc."


def test_experiments_are_described_by_their_spec():
    rows = dict(REGISTRIES["experiments"].rows())
    assert rows == {name: spec.description for name, spec in available().items()}


def test_an_absent_table_has_no_rows(monkeypatch):
    monkeypatch.delattr(attnlab.vision, "IMAGE_BLOCKS")
    assert REGISTRIES["image-blocks"].entries() is None
    assert REGISTRIES["image-blocks"].rows() is None


def test_a_table_that_is_not_a_mapping_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(attnlab.vision, "IMAGE_BLOCKS", ("a", "b"))
    with pytest.raises(TypeError, match=r"^attnlab.vision.IMAGE_BLOCKS must be a dict .*tuple$"):
        REGISTRIES["image-blocks"].entries()


def test_heading_names_where_and_inputs():
    registry = Registry("Things", "attnlab.vision.IMAGE_BLOCKS", "x (B, C, H, W)")
    assert registry.heading == "Things (attnlab.vision; x (B, C, H, W)):"
    assert REGISTRIES["experiments"].heading.startswith("Experiments (attnlab run NAME; ")


def test_nothing_below_the_index_imports_it():
    # The index sits beside the CLI, above nn/, models/ and experiments/: imports point down.
    root = Path(attnlab.__file__).parent
    pattern = re.compile(r"attnlab\.registry|from attnlab import .*\bregistry\b")
    importers = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    }
    assert importers <= {"registry.py", "cli/_run.py"}, importers
