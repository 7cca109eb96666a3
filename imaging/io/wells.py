"""Well names: ``A1``, ``A01`` and ``a01`` are the same well, written canonically as ``A01``.

Rows are letters (``A``..``Z`` then ``AA``..``AF`` for 1536-well plates), columns are
1-based integers up to 48.
"""

from __future__ import annotations

import re

from imaging.errors import InputError

MAX_ROWS = 32  # 1536-well plates: rows A..AF
MAX_COLUMNS = 48

_WELL_RE = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,2})\s*$")


def row_letters_to_index(letters: str) -> int:
    """Return the 1-based row number of ``A``, ``B``, ... ``Z``, ``AA``, ... ``AF``."""
    letters = letters.upper()
    index = 0
    for char in letters:
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index


def row_index_to_letters(index: int) -> str:
    """Inverse of :func:`row_letters_to_index` (1 -> ``A``, 27 -> ``AA``)."""
    if index < 1:
        raise ValueError(f"row index must be >= 1, got {index}")
    letters = ""
    while index > 0:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def parse_well(name: str) -> tuple[int, int] | None:
    """Return (row, column), both 1-based, or None when ``name`` is not a well name."""
    match = _WELL_RE.match(str(name))
    if match is None:
        return None
    row = row_letters_to_index(match.group(1))
    column = int(match.group(2))
    if not (1 <= row <= MAX_ROWS and 1 <= column <= MAX_COLUMNS):
        return None
    return row, column


def format_well(row: int, column: int) -> str:
    """Canonical well name: row letters and a two-digit column (``A01``, ``P24``, ``AF48``)."""
    return f"{row_index_to_letters(int(row))}{int(column):02d}"


def normalize_well(name: str, *, source: str | None = None) -> str:
    """Canonical form of a well name (``a1`` -> ``A01``); InputError when malformed."""
    parsed = parse_well(name)
    if parsed is None:
        raise InputError(
            f"{name!r} is not a well name",
            path=source,
            fix="write wells as a row letter and a column number, e.g. A1 or A01 (rows A-AF, columns 1-48)",
        )
    return format_well(*parsed)
