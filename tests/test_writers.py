"""The table and label writers: what they write reads back exactly, as pandas and tifffile would write it."""

import io

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.io.writers import (
    StreamedTable,
    label_file_dtype,
    write_csv,
    write_csv_rows,
    write_labels,
    write_parquet,
)


def awkward_table(n: int = 400) -> pd.DataFrame:
    """Every dtype the tables hold, with the values that format differently."""
    rng = np.random.default_rng(3)
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-20, 20, n)
    floats[:12] = [0.0, -0.0, 1e16, 1e-5, 1e-4, 0.1, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, np.nan, 123.0]
    text = rng.choice(["DMSO", "tam, palbo", 'say "hi"', "", "line\nbreak", "=1+1", "-1", "µM"], n).astype(object)
    text[3] = None
    return pd.DataFrame(
        {
            "plate": "P1",
            "well": rng.choice(["A01", "B12"], n),
            "site": rng.integers(1, 10, n),
            "big": rng.integers(-(2**62), 2**62, n),
            "area_px": floats,
            "mean": rng.random(n).astype(np.float64),
            "low": rng.random(n).astype(np.float32),
            "positive": rng.random(n) > 0.5,
            "pjnk_high": pd.array(rng.choice([True, False, None], n), dtype="boolean"),  # a call
            "treatment": text,
            "compound": pd.Series(text, dtype="str"),  # pandas' own text dtype, as a plate map's
            "mixed": pd.Series([1.5, "x", None, 2] * (n // 4), dtype=object),
            "empty": np.nan,
        }
    )


def pandas_csv(table: pd.DataFrame, header: bool = True) -> str:
    from imaging.io.writers import safe_for_spreadsheets

    buffer = io.StringIO()
    safe_for_spreadsheets(table).to_csv(buffer, index=False, header=header, lineterminator="\n")
    return buffer.getvalue()


def test_csv_rows_are_byte_for_byte_what_pandas_writes(monkeypatch):
    table = awkward_table()
    expected = {header: pandas_csv(table, header) for header in (True, False)}

    def not_pandas(*args, **kwargs):
        raise AssertionError("these dtypes are written without DataFrame.to_csv")

    monkeypatch.setattr(pd.DataFrame, "to_csv", not_pandas)
    for header in (True, False):
        buffer = io.StringIO()
        write_csv_rows(buffer, table, header=header)
        assert buffer.getvalue() == expected[header]
    assert "'=1+1" in buffer.getvalue() and "\n-1," not in buffer.getvalue()  # formulas neutralised, numbers not


def test_columns_pandas_formats_itself_still_match():
    table = awkward_table(40)
    table["day"] = pd.to_datetime("2026-12-04") + pd.to_timedelta(np.arange(40), "D")
    table["line"] = pd.Categorical(np.where(np.arange(40) % 2, "MAPK8", "NTC"))
    table["count"] = pd.array([1, None] * 20, dtype="Int64")
    buffer = io.StringIO()
    write_csv_rows(buffer, table, header=True)
    assert buffer.getvalue() == pandas_csv(table)


def test_streamed_and_whole_csv_read_back_the_same_values(tmp_path):
    table = awkward_table()
    with StreamedTable(tmp_path / "cells", table_format="csv") as out:
        out.write(table.iloc[:150])
        out.write(table.iloc[150:])
    write_csv(table, tmp_path / "whole.csv")
    streamed = (tmp_path / "cells.csv").read_text(encoding="utf-8")
    assert streamed == (tmp_path / "whole.csv").read_text(encoding="utf-8") == pandas_csv(table)
    back = pd.read_csv(tmp_path / "cells.csv")
    np.testing.assert_array_equal(back["area_px"].to_numpy(), table["area_px"].to_numpy())  # full precision


def test_parquet_work_file_keeps_every_value_and_dtype(tmp_path):
    table = awkward_table().drop(columns="mixed")  # Parquet holds one type a column
    path = write_parquet(table, tmp_path / "f.cells.parquet")
    back = pd.read_parquet(path)
    assert list(back.columns) == list(table.columns)
    for column in table.columns:
        assert back[column].dtype.kind == table[column].dtype.kind, column
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(
    ("top", "expected"), [(0, np.uint16), (2670, np.uint16), (65535, np.uint16), (65536, np.int32)]
)
def test_label_tiffs_are_uint16_while_the_labels_fit(tmp_path, top, expected):
    labels = np.zeros((64, 80), np.int64)
    labels[5:9, 7:20] = top
    labels[30:40, 30:33] = min(top, 7)
    assert label_file_dtype(labels) == expected
    back = tifffile.imread(write_labels(labels, tmp_path / "nuclei.tif"))
    assert back.dtype == expected
    np.testing.assert_array_equal(back, labels)


@pytest.mark.parametrize("shape", [(600, 333), (1, 7), (256, 40), (257, 3)])
def test_label_tiffs_in_zlib_ng_strips_read_back_in_tifffile_libtiff_and_pillow(tmp_path, shape):
    """Strips deflated by zlib-ng (the last one short) are standard TIFF deflate: the same
    pixels through tifffile, libtiff (imagecodecs) and Pillow."""
    import imagecodecs
    from PIL import Image

    rng = np.random.default_rng(shape[0])
    labels = rng.integers(0, 65536, shape) * (rng.random(shape) < 0.7)  # up to the largest uint16
    path = write_labels(labels, tmp_path / "cells.tif")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.compression == 8 and page.dtype == np.uint16
        assert len(page.dataoffsets) == -(-shape[0] // 256)
    for back in (tifffile.imread(path), imagecodecs.tiff_decode(path.read_bytes()), np.array(Image.open(path))):
        np.testing.assert_array_equal(back, labels)


def test_negative_labels_stay_int32(tmp_path):
    labels = np.array([[0, -1], [3, 2]], np.int32)
    back = tifffile.imread(write_labels(labels, tmp_path / "odd.tif"))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
