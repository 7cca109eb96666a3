"""Parquet tables: the same values as the CSVs, written as a stream, and read back by review."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imaging.cli import main
from imaging.io.writers import StreamedTable
from tests.conftest import copy_sample_wells

pytest.importorskip("pyarrow")

WELLS = ["A01", "A02", "B01", "B02"]


def _run(pipelines, root, out, *extra) -> int:
    return main(
        [
            "run",
            str(pipelines / "pjnk.yaml"),
            str(root / "images"),
            "--out",
            str(out),
            "--workers",
            "1",
            "--platemap",
            str(root / "map.csv"),
            *extra,
        ]
    )


def test_parquet_tables_hold_the_csv_values_and_a_format_change_reuses_every_field(
    samples, pipelines, tmp_path, capsys
):
    root = copy_sample_wells(samples, WELLS, tmp_path / "plate", assay="pjnk")
    out = tmp_path / "out"
    assert _run(pipelines, root, out, "--table-format", "both") == 0
    annotations = json.loads((out / "run.json").read_text())["annotation_columns"]
    assert "replicate" in annotations
    for name in ("cells", "fields", "wells"):
        from_csv = pd.read_csv(out / "PJNK01" / f"{name}.csv", dtype={c: str for c in annotations})
        from_parquet = pd.read_parquet(out / "PJNK01" / f"{name}.parquet")
        assert list(from_parquet.columns) == list(from_csv.columns)
        for column in from_csv.columns:
            left, right = from_csv[column], from_parquet[column]
            if pd.api.types.is_numeric_dtype(right) and not pd.api.types.is_bool_dtype(right):
                np.testing.assert_array_equal(left.to_numpy(float), right.to_numpy(float), err_msg=column)
            else:  # text (an all-empty text column reads back from CSV as missing numbers)
                assert (
                    left.astype(object).fillna("").astype(str).tolist()
                    == right.astype(object).fillna("").astype(str).tolist()
                ), column
    cells = pd.read_parquet(out / "PJNK01" / "cells.parquet")
    assert cells["pjnk_high"].dtype == bool and cells["pjnk_nuclear_mean"].dtype == np.float64
    assert len(cells) == len(pd.read_csv(out / "PJNK01" / "cells.csv")) > 100
    capsys.readouterr()
    # parquet only: the CSV of the cells goes (it would be stale), every field is reused
    assert _run(pipelines, root, out, "--table-format", "parquet") == 0
    assert "8 reused" in capsys.readouterr().out
    assert not (out / "PJNK01" / "cells.csv").exists() and (out / "PJNK01" / "wells.csv").is_file()
    from imaging.plate.review import RunReview

    review = RunReview.open_run(out)
    field = next(iter(review._fields.values()))
    assert len(review.field_cells(field.plate, field.well, field.site)) == int(
        ((cells["well"] == field.well) & (cells["site"] == field.site)).sum()
    )


def test_a_streamed_table_is_whole_or_absent(tmp_path):
    with pytest.raises(RuntimeError):
        with StreamedTable(tmp_path / "cells", table_format="both") as table:
            table.write(pd.DataFrame({"a": [1.0]}))
            raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []
    with StreamedTable(tmp_path / "cells", table_format="both") as table:
        table.write(pd.DataFrame({"well": ["A01"], "note": [None], "x": [1.0]}))
        table.write(pd.DataFrame({"well": ["A02"], "note": ["=HYPERLINK()"], "x": [np.nan]}))
    assert pd.read_parquet(tmp_path / "cells.parquet")["note"].tolist()[1] == "=HYPERLINK()"  # no spreadsheet
    assert pd.read_csv(tmp_path / "cells.csv")["note"].tolist()[1] == "'=HYPERLINK()"
    with pytest.raises(ValueError, match="differ"):
        with StreamedTable(tmp_path / "other", table_format="csv") as table:
            table.write(pd.DataFrame({"a": [1]}))
            table.write(pd.DataFrame({"b": [1]}))
    assert not (tmp_path / "other.csv").exists()
