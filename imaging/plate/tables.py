"""Per-plate tables from per-field results: QC decisions, calls, curation, aggregation.

Both a run (:func:`imaging.plate.execute`) and a rebuild after curation
(:func:`rebuild_tables`, behind ``imaging report`` and the napari plugin) go through
:func:`assemble_plate`, so the tables always follow the same rules:

1. field QC is decided relative to the plate; curated exclusions are added;
2. each call's threshold is resolved from the cells of the fields used;
3. cells get their calls, then curated call overrides;
4. ``cells.csv`` is streamed one well at a time; ``fields.csv`` and ``wells.csv`` follow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from imaging import curation as curation_log
from imaging.config import Pipeline
from imaging.curation import Curation, field_name
from imaging.errors import InputError
from imaging.features.qc import decide_field_qc
from imaging.features.thresholds import (
    Threshold,
    apply_call,
    reporter_expressed,
    reporter_gate_threshold,
    resolve_threshold,
)
from imaging.io.discover import field_key
from imaging.io.platemap import RESERVED_COLUMNS, join_annotations
from imaging.io.run_folder import claimed
from imaging.io.writers import TABLE_FORMATS, StreamedTable, write_json, write_table
from imaging.plate.summary import summarize_cells, summary_columns
from imaging.run.record import file_seal, file_sealed, read_record

WORK_FOLDER = ".fields"


def field_work_paths(work_dir: str | Path, key: str) -> tuple[Path, Path]:
    """Per-field result files (``key``: :func:`imaging.io.discover.field_key`): cells table and
    summary JSON."""
    # not Path.with_suffix: a plate named "PJNK.01" would lose ".01_A01_s1" and every field of
    # the plate would share one file
    # Parquet, not CSV: only this tool reads them, and a field's cells are written 8 times
    # faster (imaging.io.writers.write_parquet)
    return Path(work_dir) / f"{key}.cells.parquet", Path(work_dir) / f"{key}.json"


def read_field_cells(cells_path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A field's stored cells table (:func:`field_work_paths`), all columns or ``columns``."""
    return pd.read_parquet(cells_path, columns=columns, engine="pyarrow")


def field_position(plate: str, row) -> tuple:
    """(plate, well, site, timepoint) of a row of a fields table (timepoint None outside a run of
    every time point, whose tables have no timepoint column)."""
    timepoint = getattr(row, "timepoint", None)
    return plate, row.well, int(row.site), None if timepoint is None else int(timepoint)


def row_key(plate: str, row) -> str:
    """The per-field file key of a row of a fields table."""
    return field_key(*field_position(plate, row))


def position_columns(table: pd.DataFrame) -> list[str]:
    """A table's columns that place a row on the plate, in order (timepoint only in a time series)."""
    return [c for c in ("plate", "well", "row", "column", "site", "timepoint") if c in table.columns]


def clashing_output_column(columns, pipeline: Pipeline) -> str | None:
    """The first of ``columns`` (a plate map's) that a table of ``pipeline`` computes itself
    (None if none does): both would be written under one name, and the join fails or the
    plate map's values replace measured ones."""
    call_names = [c.name for c in pipeline.calls]
    names = set(RESERVED_COLUMNS) | set(summary_columns(pipeline.cell_columns(), call_names)) | set(call_names)
    names |= set(pipeline.cell_columns())
    prefixes = ("saturated_fraction_", "sabgal_", *(f"{s.column_prefix}_" for s in pipeline.measure.intensity))
    return next((c for c in columns if c in names or str(c).startswith(prefixes)), None)


def cells_file_seal(cells_path: Path) -> dict:
    """Size and checksum of a stored per-field cells table (kept in the field's JSON)."""
    return {f"cells_{key}": value for key, value in file_seal(cells_path).items()}


def cells_file_intact(cells_path: Path, summary: dict) -> bool:
    """Whether a stored cells table is still the one its JSON was written with (a file damaged
    or edited after the fact is not reused)."""
    seal = {key: summary.get(f"cells_{key}") for key in ("bytes", "sha256")}
    return "cells_sha256" in summary and file_sealed(cells_path, seal)


def fields_table(summaries: list[dict], pipeline: Pipeline, curation: Curation) -> pd.DataFrame:
    """One plate's field summaries with QC decisions, curation and ``used_in_wells``."""
    fields = pd.DataFrame(summaries).drop(
        columns=["fingerprint", "reused", "worker_peak_rss_mb", "cells_bytes", "cells_sha256"], errors="ignore"
    )
    order = [c for c in ("row", "column", "timepoint", "site") if c in fields.columns]
    fields = fields.sort_values(order, kind="stable").reset_index(drop=True)
    qc = pipeline.qc
    decisions = decide_field_qc(
        fields,
        channel_kinds={n: s.kind for n, s in pipeline.channels.items()},
        max_relative_blur=qc.max_relative_blur,
        max_saturated_fraction=qc.max_saturated_fraction,
        max_saturated_fraction_brightfield=qc.max_saturated_fraction_brightfield,
        min_cells=qc.min_cells,
    )
    fields = pd.concat([fields, decisions], axis=1)
    notes = []
    for row in fields.itertuples(index=False):
        note = []
        if (row.plate, row.well) in curation.excluded_wells:
            note.append(f"well excluded: {curation.excluded_wells[row.plate, row.well]}")
        position = field_position(row.plate, row)
        if position in curation.excluded_fields:
            note.append(f"field excluded: {curation.excluded_fields[position]}")
        notes.append("; ".join(note))
    fields["curation"] = notes
    fields["used_in_wells"] = (fields["qc_pass"] | (not qc.exclude_failed)) & (fields["curation"] == "")
    return fields


def call_values(fields: pd.DataFrame, work_dir: Path, column: str) -> np.ndarray:
    """Every value of ``column`` over the cells of the fields used in wells."""
    values = []
    for row in fields.loc[fields["used_in_wells"]].itertuples(index=False):
        cells_path, _ = field_work_paths(work_dir, row_key(row.plate, row))
        values.append(read_field_cells(cells_path, [column])[column].to_numpy(dtype=float))
    return np.concatenate(values) if values else np.zeros(0)


def plate_thresholds(fields: pd.DataFrame, work_dir: Path, pipeline: Pipeline) -> dict[str, Threshold]:
    """Each call's threshold, from the cells of the plate's used fields."""
    return {
        call.name: resolve_threshold(call_values(fields, work_dir, call.column), call.threshold)
        for call in pipeline.calls
    }


def plate_reporter_gate(fields: pd.DataFrame, work_dir: Path, pipeline: Pipeline) -> Threshold | None:
    """The reporter gate's threshold from the cells of the plate's used fields (None: no gate)."""
    gate = pipeline.qc.reporter_gate
    if gate is None:
        return None
    prefix = gate_channel_prefix(pipeline)
    level = f"{prefix}_residual_background"
    used = fields.loc[fields["used_in_wells"], level] if prefix and level in fields.columns else pd.Series(dtype=float)
    background = float(used.median()) if used.notna().any() else 0.0
    return reporter_gate_threshold(call_values(fields, work_dir, gate.column), gate.threshold, background=background)


def gate_channel_prefix(pipeline: Pipeline) -> str | None:
    """The intensity prefix whose column the reporter gate reads (None for a morphology column)."""
    column = pipeline.qc.reporter_gate.column
    prefixes = [
        spec.column_prefix for spec in pipeline.measure.intensity if column.startswith(spec.column_prefix + "_")
    ]
    return max(prefixes, key=len) if prefixes else None


def _with_annotations(table: pd.DataFrame, annotations: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Plate-map columns right after the well position columns."""
    return join_annotations(table, annotations, key="well", columns=columns, after=position_columns(table))


def _apply_call_overrides(cells: pd.DataFrame, curation: Curation, position: tuple) -> None:
    cells["curated"] = False
    for (*field, label, call), value in curation.calls.items():
        if tuple(field) == position and call in cells.columns:
            rows = cells["label"] == label
            cells.loc[rows, call] = value
            cells.loc[rows, "curated"] = True


def readout_cells(cells: pd.DataFrame, pipeline: Pipeline) -> pd.DataFrame:
    """The cells a field's or well's readouts use: with ``qc.exclude_border_cells``, not those
    touching the image edge (only partly imaged: their areas and intensities are cut); with
    ``qc.reporter_gate``, not those that do not express the reporter."""
    keep = pd.Series(True, index=cells.index)
    if pipeline.qc.exclude_border_cells and "touches_border" in cells.columns:
        keep &= ~cells["touches_border"].fillna(False).astype(bool)
    if "reporter_expressed" in cells.columns:
        keep &= cells["reporter_expressed"].fillna(True).astype(bool)
    return cells if keep.all() else cells[keep]


def write_plate_tables(
    plate: str,
    fields: pd.DataFrame,
    *,
    pipeline: Pipeline,
    annotations: pd.DataFrame,
    annotation_columns: list[str],
    work_dir: Path,
    thresholds: dict[str, Threshold],
    curation: Curation,
    out_dir: Path,
    gate: Threshold | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``cells.csv`` (streamed one well at a time), ``fields.csv`` and ``wells.csv``.

    ``annotations`` holds the plate map's columns indexed by well; ``gate`` is the reporter
    gate's threshold (None: no gate).
    """
    cell_columns = pipeline.cell_columns()
    call_names = [c.name for c in pipeline.calls]
    mixture = {"thresholds": thresholds, "call_columns": {c.name: c.column for c in pipeline.calls}}
    field_summaries, well_rows = [], []
    table_format = pipeline.output.format
    for suffix in {"csv", "parquet"} - set(TABLE_FORMATS[table_format]):
        (out_dir / f"cells.{suffix}").unlink(missing_ok=True)  # a previous run's, now stale
    gate_columns = ["reporter_expressed"] if gate is not None else []
    series = "timepoint" in fields.columns
    empty = [
        "plate",
        "well",
        "site",
        *(["timepoint"] if series else []),
        *annotation_columns,
        "field_used_in_wells",
        *cell_columns,
        *call_names,
        *gate_columns,
        "curated",
    ]
    with StreamedTable(out_dir / "cells", table_format=table_format, empty=empty) as cells_out:
        # a well's readouts pool its sites; in a time series, per time point
        for group, well_fields in fields.groupby(["well", "timepoint"] if series else "well", sort=False):
            well = group[0] if series else group
            used_cells, n_used_cells = [], 0
            for field in well_fields.itertuples(index=False):
                position = field_position(plate, field)
                cells_path, _ = field_work_paths(work_dir, field_key(*position))
                cells = read_field_cells(cells_path).reindex(columns=cell_columns)
                for call in pipeline.calls:
                    cells[call.name] = apply_call(cells[call.column], thresholds[call.name])
                if gate is not None:
                    cells["reporter_expressed"] = reporter_expressed(cells[pipeline.qc.reporter_gate.column], gate)
                _apply_call_overrides(cells, curation, position)
                measured = readout_cells(cells, pipeline)
                field_summaries.append(summarize_cells(measured, cell_columns, call_names, **mixture))
                if field.used_in_wells:
                    used_cells.append(measured)
                    n_used_cells += len(cells)
                keys = {"plate": plate, "well": well, "site": field.site}
                keys |= {"timepoint": field.timepoint} if series else {}
                keys |= {c: annotations.at[well, c] for c in annotation_columns}
                cells.insert(0, "field_used_in_wells", field.used_in_wells)
                for position, (name, value) in enumerate(keys.items()):
                    cells.insert(position, name, value)
                cells_out.write(cells)
            pooled = pd.concat(used_cells, ignore_index=True) if used_cells else pd.DataFrame(columns=cell_columns)
            well_rows.append(
                {
                    "well": well,
                    **({"timepoint": group[1]} if series else {}),
                    "n_fields": len(well_fields),
                    "n_fields_used": int(well_fields["used_in_wells"].sum()),
                    "n_fields_failed_qc": int((~well_fields["qc_pass"]).sum()),
                    "curation": "; ".join(sorted({n for n in well_fields["curation"] if n})),
                    **summarize_cells(pooled, cell_columns, call_names, **mixture, n_cells=n_used_cells),
                }
            )
    per_field = pd.DataFrame(field_summaries, columns=summary_columns(cell_columns, call_names)).drop(columns="n_cells")
    fields_out = _with_annotations(
        pd.concat([fields.reset_index(drop=True), per_field], axis=1), annotations, annotation_columns
    )
    # one row per well (per well and time point in a time series), in the fields' order
    wells = fields[["well", "row", "column"]].drop_duplicates("well").merge(pd.DataFrame(well_rows), on="well")
    wells.insert(0, "plate", plate)
    wells = _with_annotations(wells, annotations, annotation_columns)
    small_format = "both" if table_format != "csv" else "csv"  # fields.csv, wells.csv are read back
    write_table(fields_out, out_dir / "fields", table_format=small_format)
    write_table(wells, out_dir / "wells", table_format=small_format)
    return fields_out, wells


def plate_record(
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    thresholds: dict[str, Threshold],
    stain: tuple | None,
    pipeline: Pipeline,
    *,
    gate: Threshold | None = None,
    illumination: dict | None = None,
) -> dict:
    """The run record's entry for one plate."""
    failed = fields[~fields["qc_pass"]]
    curated = fields[fields["curation"] != ""]
    return {
        "n_fields": int(len(fields)),
        "n_wells": int(wells["well"].nunique()),  # a time series has a row per well and time point
        **({"n_timepoints": int(wells["timepoint"].nunique())} if "timepoint" in wells.columns else {}),
        "n_cells": int(fields["n_cells"].sum()),
        "n_cells_in_wells": int(wells["n_cells"].sum()),
        "thresholds": {name: dataclasses.asdict(t) for name, t in thresholds.items()},
        "xgal_vector": None if not stain or stain[0] is None else {"vector": list(stain[0]), "source": stain[1]},
        "reporter_gate": None if gate is None else dataclasses.asdict(gate),
        "illumination": illumination,
        "qc": {
            "rules": pipeline.qc.model_dump(mode="json"),
            "n_failed": int(len(failed)),
            "failed_fields_excluded_from_wells": bool(pipeline.qc.exclude_failed),
            "failed_fields": [{**_field_entry(r), "reasons": r.qc_reasons} for r in failed.itertuples(index=False)],
        },
        "curated_fields": [{**_field_entry(r), "curation": r.curation} for r in curated.itertuples(index=False)],
    }


def _field_entry(row) -> dict:
    """A field as the run record names it: well, site (and timepoint in a time series)."""
    _, well, site, timepoint = field_position("", row)
    return {"well": well, "site": site} | ({} if timepoint is None else {"timepoint": timepoint})


def assemble_plate(
    plate: str,
    summaries: list[dict],
    *,
    pipeline: Pipeline,
    annotations: pd.DataFrame,
    annotation_columns: list[str],
    out_dir: Path,
    curation: Curation,
    stain: tuple | None = None,
    illumination: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """QC, thresholds, calls and curation for one plate; writes its three tables.

    ``illumination`` is the plate's illumination record (kept as it is in the plate's
    run-record entry). Returns the fields and wells tables and the plate's run-record entry.
    """
    plate_dir = out_dir / plate
    work_dir = plate_dir / WORK_FOLDER
    fields = fields_table(summaries, pipeline, curation)
    thresholds = plate_thresholds(fields, work_dir, pipeline)
    gate = plate_reporter_gate(fields, work_dir, pipeline)
    fields_out, wells_out = write_plate_tables(
        plate,
        fields,
        pipeline=pipeline,
        annotations=annotations,
        annotation_columns=annotation_columns,
        work_dir=work_dir,
        thresholds=thresholds,
        curation=curation,
        out_dir=plate_dir,
        gate=gate,
    )
    return (
        fields_out,
        wells_out,
        plate_record(fields_out, wells_out, thresholds, stain, pipeline, gate=gate, illumination=illumination),
    )


def curation_record(curation: Curation) -> dict:
    """The run record's account of curation: every decision, and what is in force."""
    return {
        "file": curation_log.CURATION_FILE,
        "n_decisions": int(len(curation.log)),
        "decisions": curation.log.to_dict(orient="records"),
        "excluded_wells": [{"plate": p, "well": w, "note": n} for (p, w), n in curation.excluded_wells.items()],
        "excluded_fields": [
            {"plate": p, "well": w, "site": s, **({} if t is None else {"timepoint": t}), "note": n}
            for (p, w, s, t), n in curation.excluded_fields.items()
        ],
        "n_call_overrides": len(curation.calls),
    }


def read_plate_csv(path: str | Path, *, text_columns=(), **options) -> pd.DataFrame:
    """A plate's cells, fields or wells CSV as written: plate and well names (and
    ``text_columns``, e.g. the plate map's) as text, so plate ``9987`` stays the name it is."""
    return pd.read_csv(path, dtype={c: str for c in ("plate", "well", *text_columns)}, **options)


CHUNK_ROWS = 200_000


def cells_table_chunks(plate_dir: str | Path, *, text_columns=()) -> Iterator[pd.DataFrame]:
    """A plate's cells table in chunks of at most CHUNK_ROWS rows (memory stays bounded), from
    ``cells.parquet`` when the run wrote one, else ``cells.csv`` (``text_columns``, e.g. the
    plate map's, read as text from the CSV, as Parquet keeps them)."""
    plate_dir = Path(plate_dir)
    if (plate_dir / "cells.parquet").is_file():
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(plate_dir / "cells.parquet").iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
        return
    yield from read_plate_csv(plate_dir / "cells.csv", chunksize=CHUNK_ROWS, text_columns=text_columns)


def read_cells_table(plate_dir: str | Path) -> pd.DataFrame:
    """A plate's whole cells table (:func:`cells_table_chunks`)."""
    return pd.concat(list(cells_table_chunks(plate_dir)), ignore_index=True)


def rebuild_tables(out_dir: str | Path) -> dict:
    """Rebuild every plate's tables of a finished run from its per-field results, applying
    ``curation.csv``; updates ``run.json``. Returns the updated record.

    Raises
    ------
    InputError
        Not a run folder, or the per-field results (``<plate>/.fields``) are gone.
    """
    out_dir = Path(out_dir)
    read_record(out_dir)  # a folder that is not a run is refused before anything is locked or written
    with claimed(out_dir):
        return _rebuild_claimed(out_dir)


def _rebuild_claimed(out_dir: Path) -> dict:
    record_path = out_dir / "run.json"
    record, pipeline = read_record(out_dir)
    annotation_columns = record.get("annotation_columns", [])
    curation = curation_log.load(out_dir)
    for plate, plate_entry in record["plates"].items():
        plate_dir = out_dir / plate
        fields = read_plate_csv(plate_dir / "fields.csv")
        summaries = []
        for row in fields.itertuples(index=False):
            cells_path, summary_path = field_work_paths(plate_dir / WORK_FOLDER, row_key(plate, row))
            if not summary_path.is_file():
                raise InputError(
                    f"per-field results of plate {plate} are missing ({summary_path.name})",
                    path=plate_dir / WORK_FOLDER,
                    fix="re-run `imaging run` into this folder (completed fields are reused)",
                )
            summary = json.loads(summary_path.read_text())
            if not cells_file_intact(cells_path, summary):
                raise InputError(
                    f"the stored cells of field {field_name(*field_position(plate, row))} were changed "
                    "or damaged after the run",
                    path=cells_path,
                    fix="re-run `imaging run` into this folder: that field is measured again",
                )
            summaries.append(summary)
        wells = read_plate_csv(plate_dir / "wells.csv", text_columns=annotation_columns)
        # one row per well (a time series has one per well and time point; the map is per well)
        annotations = wells.drop_duplicates("well").set_index("well")[annotation_columns]
        stain = plate_entry.get("xgal_vector")
        _, _, record["plates"][plate] = assemble_plate(
            plate,
            summaries,
            pipeline=pipeline,
            annotations=annotations,
            annotation_columns=annotation_columns,
            out_dir=out_dir,
            curation=curation,
            stain=(stain["vector"], stain["source"]) if stain else None,
            illumination=plate_entry.get("illumination"),
        )
    record["curation"] = curation_record(curation)
    record["tables_rebuilt"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(record, record_path)
    return record
