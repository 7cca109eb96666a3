"""Atomic writers: a file appears complete under its final name, or not at all.

Each writer writes to a hidden temporary file in the destination folder, flushes it to
disk, then renames it over the destination (``os.replace`` is atomic on POSIX and
Windows). An interrupted run therefore never leaves a truncated CSV that looks complete,
and an older complete file stays in place until its replacement is whole.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import tifffile


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same name at the end (writers such as tifffile look at the extension, e.g. .ome.tif)
    temporary = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_for_spreadsheets(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with text cells that a spreadsheet would run as a formula neutralised.

    OWASP's rule for CSV injection: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab
    or carriage return (a plate-map value ``=HYPERLINK(...)``) gets a leading single quote,
    which Excel and LibreOffice show as text. Numbers are untouched, also when stored as
    text (``-1``, ``+1``: CellProfiler's control codes).
    """
    changed = None
    for column in table.columns:
        values = table[column]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        text = values.astype(str)
        risky = values.map(lambda v: isinstance(v, str)) & text.str.startswith(FORMULA_STARTS)
        if not risky.any():
            continue
        risky &= pd.to_numeric(text.where(risky), errors="coerce").isna()
        if risky.any():
            changed = table.copy() if changed is None else changed
            changed[column] = values.where(~risky, "'" + text)
    return table if changed is None else changed


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV (no index) atomically; floats keep full precision; text cells
    that would run as spreadsheet formulas are neutralised (:func:`safe_for_spreadsheets`)."""
    with atomic_path(path) as temporary:
        safe_for_spreadsheets(table).to_csv(temporary, index=False, lineterminator="\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _finite(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars and paths allowed)."""
    text = json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))), indent=2)
    with atomic_path(path) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def write_labels(labels: np.ndarray, path: str | Path) -> Path:
    """Write an instance label image as a compressed int32 TIFF atomically."""
    with atomic_path(path) as temporary:
        tifffile.imwrite(temporary, np.asarray(labels, dtype=np.int32), compression="zlib")
    return Path(path)
