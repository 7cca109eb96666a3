"""Atomic writers: a file appears complete under its final name, or not at all.

Each writer writes to a hidden temporary file in the destination folder, flushes it to
disk, then renames it over the destination (``os.replace`` is atomic on POSIX and
Windows). An interrupted run therefore never leaves a truncated CSV that looks complete,
and an older complete file stays in place until its replacement is whole.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

TEMPORARY_PREFIX = ".tmp-"  # a killed run's leftovers are found by it (io.run_folder)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same name at the end (writers such as tifffile look at the extension, e.g. .ome.tif)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
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
        # plain arrays: pandas' string dtypes keep map() results as text, and '&' then fails
        if isinstance(values.dtype, pd.StringDtype):  # every value text but the missing ones
            is_text = values.notna().to_numpy(dtype=bool)
        else:
            is_text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        starts = text.str.startswith(FORMULA_STARTS).to_numpy(dtype=bool, na_value=False)
        risky = pd.Series(is_text & starts, index=values.index)
        if not risky.any():
            continue
        risky &= pd.to_numeric(text.where(risky), errors="coerce").isna()
        if risky.any():
            changed = table.copy() if changed is None else changed
            changed[column] = values.where(~risky, "'" + text)
    return table if changed is None else changed


def _csv_cells(values: pd.Series) -> list | np.ndarray | None:
    """One column's CSV cells as ``DataFrame.to_csv`` writes them (``na_rep=""``, no
    ``float_format``), or None for a dtype left to pandas."""
    kind = values.dtype.kind
    if values.dtype == np.float64:
        # Python's float repr is the shortest round-trip text, numpy's astype(str) for float64
        # as pandas uses it, at a third of the time
        cells = list(map(float.__repr__, values.to_numpy().tolist()))
        for i in np.flatnonzero(values.isna().to_numpy()):
            cells[i] = ""
        return cells
    if kind == "f" and isinstance(values.dtype, np.dtype):  # float32: numpy's text, as pandas
        cells = values.to_numpy().astype(str).astype(object)
        cells[values.isna().to_numpy()] = ""
        return cells
    if kind in "iub" and isinstance(values.dtype, np.dtype):
        return values.to_numpy().tolist()  # ints and bools: csv writes str(), as pandas does
    if kind == "O" or isinstance(values.dtype, (pd.StringDtype, pd.BooleanDtype)):  # calls are "boolean"
        cells = values.to_numpy(dtype=object, copy=True)
        cells[values.isna().to_numpy()] = ""
        return cells
    return None


def write_csv_rows(handle, table: pd.DataFrame, *, header: bool) -> None:
    """Append ``table`` (no index) to an open text file as ``table.to_csv(handle, index=False,
    header=header, lineterminator="\\n")`` would, byte for byte (tested), text cells that would
    run as spreadsheet formulas neutralised (:func:`safe_for_spreadsheets`).

    Written here, not by ``to_csv``: pandas formats each float with numpy's ``astype(str)``,
    two thirds of the 43 ms it takes for a dense 2048 px field's cells (2,670 rows, 23
    columns); the same rows by Python's float repr and the csv module take 28 ms. Columns of
    other dtypes (categories, dates, nullable integers) go to pandas whole.

    Parameters
    ----------
    handle : text file
        Opened with ``newline=""``.
    table : pandas.DataFrame
        The rows.
    header : bool
        Write the column names first.
    """
    table = safe_for_spreadsheets(table)
    columns = [_csv_cells(table[c]) for c in table.columns]
    if any(c is None for c in columns) or not table.columns.is_unique:
        table.to_csv(handle, index=False, header=header, lineterminator="\n")
        return
    writer = csv.writer(handle, lineterminator="\n")  # pandas' dialect: excel's, QUOTE_MINIMAL
    if header:
        writer.writerow([str(c) for c in table.columns])
    writer.writerows(zip(*columns))


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV (no index) atomically; floats keep full precision; text cells
    that would run as spreadsheet formulas are neutralised (:func:`safe_for_spreadsheets`)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        write_csv_rows(handle, table, header=True)
    return Path(path)


def write_parquet(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as Parquet (no index) atomically; every value and dtype comes back as
    written (:func:`pandas.read_parquet`).

    For tables the tool itself reads back, such as the per-field cells of a plate run: on a
    dense 2048 px field (2,670 cells, 23 columns) 4.6 ms against 43 ms for CSV, and no text
    round trip of the floats. Without dictionary pages or column statistics (measurements
    seldom repeat, and the file is read whole): 4.6 against 7.4 ms, 16 % smaller."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as temporary:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        pq.write_table(arrow, temporary, use_dictionary=False, write_statistics=False)
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


def label_file_dtype(labels: np.ndarray) -> np.dtype:
    """The pixel type a label TIFF is written in: uint16 when every label fits (up to 65,535
    objects a field), else int32.

    uint16 is the label type Fiji, QuPath and CellProfiler read natively (ImageJ has no 32-bit
    integer type and opens int32 as float), and it halves the bytes to compress: a dense
    2048 px field's nuclei in 17 ms against 31 ms as int32.

    Parameters
    ----------
    labels : ndarray of int
        A label image.

    Returns
    -------
    numpy.dtype
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.dtype(np.uint16)
    if labels.dtype.kind == "i":  # seen unsigned, a negative label is above any uint16: one pass
        labels = labels.view(np.dtype(f"u{labels.dtype.itemsize}"))
    top = np.iinfo(np.uint16).max
    fits = labels.max() <= top if labels.dtype.kind in "ub" else (labels.min() >= 0 and labels.max() <= top)
    return np.dtype(np.uint16) if fits else np.dtype(np.int32)


LABEL_ROWS_PER_STRIP = 256
LABEL_DEFLATE_LEVEL = 2  # zlib-ng's: 12 % larger files than libdeflate's level 1 at half the time


def _deflated_strips(pixels: np.ndarray) -> Iterator[bytes]:
    """The image's strips of LABEL_ROWS_PER_STRIP rows, each a zlib stream made by zlib-ng."""
    import imagecodecs

    for start in range(0, pixels.shape[0], LABEL_ROWS_PER_STRIP):
        strip = np.ascontiguousarray(pixels[start : start + LABEL_ROWS_PER_STRIP])
        yield imagecodecs.zlibng_encode(strip, level=LABEL_DEFLATE_LEVEL)


def write_labels(labels: np.ndarray, path: str | Path) -> Path:
    """Write an instance label image as a compressed TIFF atomically, in
    :func:`label_file_dtype` (uint16, or int32 past 65,535 labels).

    Deflate (TIFF compression 8, zlib streams), which every TIFF reader decodes (Fiji,
    QuPath, napari, CellProfiler, libtiff), made by zlib-ng at level 2 strip by strip: a
    dense 2048 px field's nuclei in 9 ms against 21 ms for tifffile's own deflate (libdeflate)
    at level 1, the file 12 % larger (347 against 309 kB). Without zlib-ng in imagecodecs,
    or for an image that is not 2-D, tifffile's deflate at level 1."""
    import imagecodecs

    pixels = np.asarray(labels).astype(label_file_dtype(labels), copy=False)
    with atomic_path(path) as temporary:
        if pixels.ndim == 2 and pixels.size and imagecodecs.ZLIBNG.available:
            strips = _deflated_strips(pixels)
            tifffile.imwrite(
                temporary,
                strips,
                shape=pixels.shape,
                dtype=pixels.dtype,
                compression="zlib",
                rowsperstrip=LABEL_ROWS_PER_STRIP,
            )
        else:
            tifffile.imwrite(temporary, pixels, compression="zlib", compressionargs={"level": 1})
    return Path(path)


def write_labels_ome_zarr(
    labels: np.ndarray, path: str | Path, *, name: str, pixel_size_um: float | None = None
) -> Path:
    """Write an instance label image as an OME-Zarr label image, atomically.

    NGFF 0.4 (zarr v2), the version napari-ome-zarr, Fiji (MoBIE, n5-viewer), QuPath and bioio
    all read: one resolution level of int32, ``image-label`` metadata (so readers show it as
    labels), the pixel size in micrometres when known. Written with ome-zarr-py into a
    temporary folder beside ``path`` that replaces ``path`` when complete.
    """
    import shutil

    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import add_metadata, write_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    labels = np.asarray(labels, dtype=np.int32)
    try:
        root = zarr.open_group(str(temporary), mode="w", zarr_format=2)
        scale = {"y": pixel_size_um, "x": pixel_size_um} if pixel_size_um else None
        write_image(
            labels,
            root,
            scale_factors=[],
            fmt=FormatV04(),
            axes="yx",
            name=name,
            scale=scale,
            axes_units={"y": "micrometer", "x": "micrometer"} if scale else None,
            storage_options={"chunks": tuple(min(n, 1024) for n in labels.shape)},
        )
        add_metadata(root, {"image-label": {"version": "0.4", "source": {}}}, fmt=FormatV04())
        if path.exists():  # a previous run's: moved aside first, so a reader never sees a mix
            stale = path.with_name(f"{TEMPORARY_PREFIX}old-{uuid.uuid4().hex[:8]}-{path.name}")
            os.replace(path, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return path


def read_labels_ome_zarr(path: str | Path) -> np.ndarray:
    """The full-resolution level of an OME-Zarr label image (:func:`write_labels_ome_zarr`)."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    dataset = root.attrs["multiscales"][0]["datasets"][0]["path"]
    return np.asarray(root[dataset][:], dtype=np.int32)


def write_float_image(image: np.ndarray, path: str | Path) -> Path:
    """Write a float32 image (a flat-field) as a compressed TIFF atomically."""
    with atomic_path(path) as temporary:
        tifffile.imwrite(temporary, np.asarray(image, dtype=np.float32), compression="zlib")
    return Path(path)


TABLE_FORMATS = {"csv": ("csv",), "parquet": ("parquet",), "both": ("csv", "parquet")}


def _arrow_schema(chunk: pd.DataFrame):
    """The Parquet schema of a streamed table, from its first chunk: columns with no value yet
    (all missing) are taken as float64, the type pandas gives a missing number, or as text
    when pandas holds them as objects (a plate-map column empty in the first well)."""
    import pyarrow as pa

    schema = pa.Table.from_pandas(chunk, preserve_index=False).schema
    fields = [
        f
        if not pa.types.is_null(f.type)
        else pa.field(f.name, pa.string() if chunk[f.name].dtype == object else pa.float64())
        for f in schema
    ]
    return pa.schema(fields)


class StreamedTable:
    """A table written chunk by chunk, as CSV and/or Parquet, each file atomic (see
    :func:`atomic_path`): memory holds one chunk, the files appear whole or not at all.

    CSV cells that a spreadsheet would run as formulas are neutralised
    (:func:`safe_for_spreadsheets`); Parquet keeps every value as it is (no spreadsheet reads it).
    All chunks must have the first chunk's columns. ``empty`` gives the columns of a table
    with no rows.
    """

    def __init__(self, path_without_suffix: str | Path, *, table_format: str = "csv", empty: list[str] = ()):
        self.base = Path(path_without_suffix)
        self.formats = TABLE_FORMATS[table_format]
        self.empty = list(empty)
        self._stack = contextlib.ExitStack()
        self._csv = None
        self._parquet = None  # the pyarrow writer, opened with the first chunk's schema
        self._parquet_path = None
        self._schema = None
        self._columns = None

    def __enter__(self) -> StreamedTable:
        if "csv" in self.formats:
            temporary = self._stack.enter_context(atomic_path(self.base.with_name(self.base.name + ".csv")))
            self._csv = self._stack.enter_context(open(temporary, "w", newline="", encoding="utf-8"))
        if "parquet" in self.formats:
            self._parquet_path = self._stack.enter_context(
                atomic_path(self.base.with_name(self.base.name + ".parquet"))
            )
        return self

    def write(self, chunk: pd.DataFrame) -> None:
        if self._columns is None:
            self._columns = list(chunk.columns)
        elif list(chunk.columns) != self._columns:
            raise ValueError(f"chunk columns {list(chunk.columns)} differ from the table's {self._columns}")
        if self._csv is not None:
            write_csv_rows(self._csv, chunk, header=self._csv.tell() == 0)
        if self._parquet_path is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                self._schema = _arrow_schema(chunk)
                self._parquet = pq.ParquetWriter(self._parquet_path, self._schema)
            self._parquet.write_table(pa.Table.from_pandas(chunk, schema=self._schema, preserve_index=False))

    def __exit__(self, kind, value, traceback) -> bool:
        error = value
        if error is None and self._columns is None:  # no rows at all: a header-only table
            try:
                self.write(pd.DataFrame({c: pd.Series(dtype=float) for c in self.empty}))
            except BaseException as exc:
                error = exc
        if self._parquet is not None:
            self._parquet.close()
        if error is None:
            self._stack.__exit__(None, None, None)  # the temporaries are renamed into place
            return False
        self._stack.__exit__(type(error), error, error.__traceback__)  # ... or removed
        if error is not value:
            raise error
        return False


def write_table(table: pd.DataFrame, path_without_suffix: str | Path, *, table_format: str = "csv") -> None:
    """Write a whole table as CSV and/or Parquet (:class:`StreamedTable` in one chunk)."""
    with StreamedTable(path_without_suffix, table_format=table_format, empty=list(table.columns)) as out:
        out.write(table)
