r"""Read RecBole atomic files: tab-separated tables whose header names ``field:type``.

Zhao et al., "RecBole: Towards a Unified, Comprehensive and Efficient Framework for
Recommendation Algorithms", CIKM 2021. An atomic file (``.inter``, ``.item``, ``.user``)
has one header line such as ``user_id:token\titem_id:token\trating:float`` and one
record per line. Only reading is done here; no RecBole code is used.

Example:
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "a.inter"
    >>> _ = f.write_text("user_id:token\trating:float\tname:token\n7\t4.5\tx\n")
    >>> read_atomic(f, ("user_id:token", "rating:float", "name:token"), "ifs", fix="fix it")
    [[7, 4.5, 'x']]
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_atomic"]


def read_atomic(path: Path, columns: tuple[str, ...], types: str, *, fix: str) -> list[list]:
    """The typed rows of an atomic file, after checking its header and every row.

    Args:
        path: The file (UTF-8).
        columns: The exact header fields expected, in order.
        types: One letter per column: ``i`` integer (``"3.0"`` accepted), ``f`` float,
            ``s`` string, ``y`` year (an integer, 0 where the field holds no digits).
        fix: What the reader should do, ending every error message.

    Returns:
        One list of typed values per record, in file order.

    Raises:
        ValueError: Not UTF-8, another header, a line with another number of fields
            (a blank line inside the table included) or an unreadable number: one line
            naming the file (and the line).
    """
    try:
        # Trailing newlines end the table; a blank line inside it is a malformed row.
        lines = path.read_text(encoding="utf-8").rstrip("\r\n").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason}); {fix}") from None
    header = tuple(lines[0].split("\t")) if lines else ()
    if header != columns:
        raise ValueError(
            f"{path} has header {'|'.join(header) or '(empty)'}, expected the columns "
            f"{'|'.join(columns)} (tab-separated); {fix}"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise ValueError(
                f"{path} line {number} has {len(fields)} tab-separated fields, expected "
                f"{len(columns)}; {fix}"
            )
        rows.append(
            [
                _value(v, t, f"{path} line {number}: {c.split(':')[0]}", fix)
                for v, t, c in zip(fields, types, columns)
            ]
        )
    return rows


def _value(text: str, kind: str, where: str, fix: str) -> object:
    """One field read as its column's type; one clear line if it does not parse."""
    if kind == "s":
        return text
    if kind == "y":
        # MovieLens has movies without a readable year ("unkonwn", "V"): 0 marks unknown.
        return int(text) if text.strip().isdigit() else 0
    try:
        if kind == "f":
            return float(text)
        # RecBole writes some integer columns as floats ("timestamp:float").
        value = float(text) if "." in text or "e" in text.lower() else int(text)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (ValueError, OverflowError):
        wanted = "an integer" if kind == "i" else "a number"
        raise ValueError(f"{where} {text!r} is not {wanted}; {fix}") from None
