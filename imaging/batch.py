"""Run a pipeline over plates: plan, process fields, assemble per-plate tables, record.

1. :func:`plan_run` checks everything before anything is written: pipeline, file naming,
   every field has every channel, the plate map describes every imaged well, every image
   file's header is readable and complete, and the channels of a field agree in shape.
2. :func:`execute` processes fields in parallel (:mod:`imaging.runner`). Each field's
   result goes to ``OUT/<plate>/.fields/`` with a content fingerprint; a re-run reuses
   results whose fingerprint matches.
3. Per plate, field QC is decided relative to the plate, thresholds for calls are
   derived, and ``cells.csv``, ``fields.csv`` and ``wells.csv`` are written atomically,
   streaming one well at a time so memory stays bounded.
4. ``OUT/run.json`` records versions, pipeline, inputs, thresholds and QC decisions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from imaging.config import Pipeline, load_pipeline
from imaging.errors import InputError
from imaging.aggregate import summarize_cells, summary_columns
from imaging.features.qc import decide_field_qc
from imaging.features.sabgal import STAIN_VECTORS, estimate_xgal_vector, stained_od_sample
from imaging.features.thresholds import Threshold, apply_call, resolve_threshold
from imaging.io.discover import Field, discover_images, group_fields
from imaging.io.platemap import annotate_wells, read_platemap
from imaging.io.readers import check_image_file
from imaging.io.writers import atomic_path, write_csv, write_json, write_labels
from imaging.pipeline import (
    FIELD_KEYS, field_fingerprint, field_pixel_size, load_field_images, measure_field,
)
from imaging.runner import run_tasks

log = logging.getLogger(__name__)

WORK_FOLDER = ".fields"
STAIN_SAMPLE_FIELDS = 8


# ---- 1. plan -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked."""

    pipeline: Pipeline
    pipeline_path: Path | None
    input_dir: Path
    naming: str
    pattern: str | None
    fields: tuple[Field, ...]
    annotations: pd.DataFrame  # plate, well + plate-map columns, one row per imaged well
    platemap_path: Path | None
    unimaged_wells: tuple[dict, ...]
    n_files: int

    @property
    def plates(self) -> list[str]:
        return sorted({f.plate for f in self.fields})

    @property
    def annotation_columns(self) -> list[str]:
        return [c for c in self.annotations.columns if c not in ("plate", "well")]


def _spatial_shape(shape: tuple[int, ...], kind: str, path: str) -> tuple[int, int]:
    """Rows and columns of an image from its header shape; InputError if the kind is wrong."""
    squeezed = tuple(s for s in shape if s != 1)
    if kind == "brightfield":
        if len(squeezed) == 3 and squeezed[-1] in (3, 4):
            return squeezed[0], squeezed[1]
        if len(squeezed) == 3 and squeezed[0] in (3, 4):
            return squeezed[1], squeezed[2]
        raise InputError(f"expected an RGB colour image (rows, columns, 3), got shape {shape}", path=path,
                         fix="export the brightfield channel as RGB, or declare the channel as "
                             "kind: fluorescence in the pipeline")
    if len(squeezed) == 2:
        return squeezed[0], squeezed[1]
    if len(squeezed) == 3 and squeezed[-1] in (3, 4):  # gray saved as RGB: checked on reading
        return squeezed[0], squeezed[1]
    raise InputError(f"expected a 2-D grayscale image, got shape {shape}", path=path,
                     fix="export one channel, one z-plane and one time point per file")


def check_field_files(field: Field, pipeline: Pipeline) -> None:
    """Header-level checks of one field's files (readable, complete, consistent shapes)."""
    shapes = {}
    for name, path in field.paths.items():
        shape, _ = check_image_file(path)
        shapes[name] = _spatial_shape(shape, pipeline.channels[name].kind, path)
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{Path(field.paths[n]).name} {s}" for n, s in shapes.items())
        raise InputError(f"the channels of plate {field.plate}, well {field.well}, site {field.site} "
                         f"differ in size: {listed}", path=Path(next(iter(field.paths.values()))).parent,
                         fix="export every channel of a field at the same size")


def plan_run(pipeline: Pipeline | str | Path, input_dir: str | Path, *,
             platemap: str | Path | None = None, pattern: str | None = None,
             check_files: bool = True) -> RunPlan:
    """Check a run's inputs and list its fields (see module docstring, step 1)."""
    pipeline_path = None
    if not isinstance(pipeline, Pipeline):
        pipeline_path = Path(pipeline)
        pipeline = load_pipeline(pipeline_path)
    input_dir = Path(input_dir)
    pattern = pattern or pipeline.naming.pattern
    table, naming = discover_images(input_dir, preset=pipeline.naming.preset, pattern=pattern)
    channel_ids = {name: spec.id for name, spec in pipeline.channels.items()}
    fields = group_fields(table, channel_ids, plane=pipeline.naming.plane, source=str(input_dir))
    imaged = pd.DataFrame([{"plate": f.plate, "well": f.well} for f in fields]).drop_duplicates()
    if platemap is not None:
        platemap = Path(platemap)
        annotations, unimaged = annotate_wells(imaged, read_platemap(platemap), source=platemap)
    else:
        annotations, unimaged = imaged.reset_index(drop=True), []
    _check_comparison_columns(pipeline, annotations, platemap)
    segmentation_model(pipeline)  # a missing model file is an input error, found before any writing
    if check_files:
        for field in fields:
            check_field_files(field, pipeline)
    return RunPlan(pipeline=pipeline, pipeline_path=pipeline_path, input_dir=input_dir, naming=naming,
                   pattern=pattern, fields=tuple(fields), annotations=annotations,
                   platemap_path=platemap, unimaged_wells=tuple(unimaged), n_files=len(table))


def segmentation_model(pipeline: Pipeline) -> dict | None:
    """The segmentation model file of a pipeline (path, checksum), or None when it needs none."""
    if pipeline.segmentation.method != "cellpose":
        return None
    from imaging.segment.cellpose_backend import describe_model

    return describe_model(pipeline.segmentation.model)


def _check_comparison_columns(pipeline: Pipeline, annotations: pd.DataFrame, platemap) -> None:
    """The comparison's control genotype and vehicle must exist in the plate map."""
    if platemap is None:
        return
    settings = pipeline.comparison
    for column, value, key in ((settings.genotype_column, settings.control_genotype, "control_genotype"),
                               (settings.treatment_column, settings.vehicle_treatment, "vehicle_treatment")):
        if value is None:
            continue
        if column not in annotations.columns:
            raise InputError(f"has no {column!r} column, which comparison.{key} refers to", path=platemap,
                             fix=f"add a {column!r} column or change comparison settings in the pipeline")
        present = set(annotations[column].dropna().astype(str))
        if str(value) not in present:
            raise InputError(f"no imaged well has {column} {value!r} (comparison.{key}); found "
                             f"{', '.join(sorted(present)) or 'none'}", path=platemap,
                             fix=f"correct comparison.{key} in the pipeline or the plate map")


# ---- 2. execute fields ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FieldTask:
    """One field to process (picklable: sent to worker processes)."""

    field: Field
    pipeline: Pipeline
    work_dir: str
    labels_dir: str | None
    xgal_vector: tuple[float, float, float] | None


def _work_paths(work_dir: str | Path, field: Field) -> tuple[Path, Path]:
    base = Path(work_dir) / field.key
    return base.with_suffix(".cells.csv"), base.with_suffix(".json")


def _labels_paths(labels_dir: str | Path, field: Field) -> tuple[Path, Path]:
    base = Path(labels_dir) / field.key
    return Path(f"{base}_nuclei.tif"), Path(f"{base}_cells.tif")


def _reusable(task: FieldTask, fingerprint: str) -> dict | None:
    cells_path, summary_path = _work_paths(task.work_dir, task.field)
    if not (cells_path.is_file() and summary_path.is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if summary.get("fingerprint") != fingerprint:
        return None
    if task.labels_dir and not all(p.is_file() for p in _labels_paths(task.labels_dir, task.field)):
        return None
    return summary


def process_field_task(task: FieldTask) -> dict:
    """Measure one field and write its results under the work folder; returns its summary.

    A result already on disk with the same fingerprint is reused (``reused: True``).
    """
    field = task.field
    fingerprint = field_fingerprint(field, task.pipeline, task.xgal_vector)
    previous = _reusable(task, fingerprint)
    if previous is not None:
        return previous | {"reused": True}
    images = load_field_images(field, task.pipeline)
    pixel_size = field_pixel_size(field, task.pipeline)
    result = measure_field(images, task.pipeline, pixel_size_um=pixel_size, xgal_vector=task.xgal_vector)
    if task.labels_dir:
        nuclei_path, cells_path = _labels_paths(task.labels_dir, field)
        write_labels(result.nuclei, nuclei_path)
        write_labels(result.cell_labels, cells_path)
    summary = {"plate": field.plate, "well": field.well, "row": field.row, "column": field.column,
               "site": field.site, **result.summary, "pixel_size_um": pixel_size,
               "fingerprint": fingerprint}
    cells_path, summary_path = _work_paths(task.work_dir, field)
    write_csv(result.cells, cells_path)
    write_json(summary, summary_path)  # written last: its presence marks the field complete
    return summary | {"reused": False}


def plate_xgal_vector(plan: RunPlan, plate: str) -> tuple[tuple[float, float, float] | None, str]:
    """The X-gal stain vector for a plate: explicit, default, or estimated from a sample of
    its fields (spread evenly over the plate)."""
    spec = plan.pipeline.measure.sabgal
    if spec is None:
        return None, "not used"
    if isinstance(spec.stain_vector, tuple):
        return spec.stain_vector, "pipeline"
    if spec.stain_vector == "default":
        return tuple(STAIN_VECTORS["xgal"]), "default"
    fields = [f for f in plan.fields if f.plate == plate]
    picks = [fields[i] for i in np.unique(np.linspace(0, len(fields) - 1, STAIN_SAMPLE_FIELDS).round().astype(int))]
    samples = []
    for field in picks:
        images = load_field_images(field, plan.pipeline)
        measured = measure_field(images, plan.pipeline, pixel_size_um=field_pixel_size(field, plan.pipeline))
        samples.append(stained_od_sample(images[spec.channel], measured.cell_labels))
    vector, source = estimate_xgal_vector(np.concatenate(samples))
    return tuple(float(v) for v in vector), source


# ---- 3. assemble plates --------------------------------------------------------------------
def _plate_fields_table(summaries: list[dict], plan: RunPlan) -> pd.DataFrame:
    fields = pd.DataFrame(summaries).drop(columns=["fingerprint", "reused"], errors="ignore")
    fields = fields.sort_values(["row", "column", "site"], kind="stable").reset_index(drop=True)
    qc = plan.pipeline.qc
    decisions = decide_field_qc(
        fields, channel_kinds={n: s.kind for n, s in plan.pipeline.channels.items()},
        max_relative_blur=qc.max_relative_blur, max_saturated_fraction=qc.max_saturated_fraction,
        max_saturated_fraction_brightfield=qc.max_saturated_fraction_brightfield, min_cells=qc.min_cells)
    fields = pd.concat([fields, decisions], axis=1)
    fields["used_in_wells"] = fields["qc_pass"] | (not qc.exclude_failed)
    return fields


def _call_values(fields: pd.DataFrame, work_dir: Path, column: str) -> np.ndarray:
    values = []
    for key in fields.loc[fields["used_in_wells"], ["plate", "well", "site"]].itertuples(index=False):
        path = work_dir / f"{key.plate}_{key.well}_s{key.site}.cells.csv"
        values.append(pd.read_csv(path, usecols=[column])[column].to_numpy(dtype=float))
    return np.concatenate(values) if values else np.zeros(0)


def _read_field_cells(work_dir: Path, plate: str, well: str, site: int, columns: list[str]) -> pd.DataFrame:
    path = work_dir / f"{plate}_{well}_s{site}.cells.csv"
    table = pd.read_csv(path)
    return table.reindex(columns=columns)


def write_plate_tables(plate: str, fields: pd.DataFrame, plan: RunPlan, work_dir: Path,
                       thresholds: dict[str, Threshold], out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``cells.csv`` (streamed), ``fields.csv`` and ``wells.csv`` of one plate."""
    pipeline = plan.pipeline
    cell_columns = pipeline.cell_columns()
    call_names = [c.name for c in pipeline.calls]
    annotations = plan.annotations[plan.annotations["plate"] == plate].set_index("well")
    annotation_columns = plan.annotation_columns
    field_summaries, well_rows = [], []
    with atomic_path(out_dir / "cells.csv") as temporary, open(temporary, "w", newline="") as handle:
        header = True
        for well, well_fields in fields.groupby("well", sort=False):
            used_cells = []
            for field in well_fields.itertuples(index=False):
                cells = _read_field_cells(work_dir, plate, well, field.site, cell_columns)
                for call in pipeline.calls:
                    cells[call.name] = apply_call(cells[call.column], thresholds[call.name])
                field_summaries.append(summarize_cells(cells, cell_columns, call_names))
                if field.used_in_wells:
                    used_cells.append(cells)
                keys = {"plate": plate, "well": well, "site": field.site}
                keys |= {c: annotations.at[well, c] for c in annotation_columns}
                cells.insert(0, "field_used_in_wells", field.used_in_wells)
                for position, (name, value) in enumerate(keys.items()):
                    cells.insert(position, name, value)
                cells.to_csv(handle, index=False, header=header, lineterminator="\n")
                header = False
            pooled = pd.concat(used_cells, ignore_index=True) if used_cells else pd.DataFrame(columns=cell_columns)
            well_rows.append({"well": well, "n_fields": len(well_fields),
                              "n_fields_used": int(well_fields["used_in_wells"].sum()),
                              "n_fields_failed_qc": int((~well_fields["qc_pass"]).sum()),
                              **summarize_cells(pooled, cell_columns, call_names)})
        if header:  # no field at all: header-only table
            pd.DataFrame(columns=["plate", "well", "site", *annotation_columns, "field_used_in_wells",
                                  *cell_columns, *call_names]).to_csv(handle, index=False, lineterminator="\n")
    summary_cols = summary_columns(cell_columns, call_names)
    per_field = pd.DataFrame(field_summaries, columns=summary_cols).drop(columns="n_cells")
    fields_out = pd.concat([fields.reset_index(drop=True), per_field], axis=1)
    fields_out = _with_annotations(fields_out, annotations, annotation_columns)
    wells = pd.DataFrame(well_rows)
    wells = fields[["well", "row", "column"]].drop_duplicates("well").merge(wells, on="well")
    wells.insert(0, "plate", plate)
    wells = _with_annotations(wells, annotations, annotation_columns)
    write_csv(fields_out, out_dir / "fields.csv")
    write_csv(wells, out_dir / "wells.csv")
    return fields_out, wells


def _with_annotations(table: pd.DataFrame, annotations: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Insert plate-map columns right after the well position columns."""
    if not columns:
        return table
    joined = table.merge(annotations[columns], left_on="well", right_index=True, how="left")
    keys = [c for c in ("plate", "well", "row", "column", "site") if c in table.columns]
    order = keys + columns + [c for c in table.columns if c not in keys]
    return joined[order]


# ---- 4. the whole run ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced (for the CLI's closing summary)."""

    out_dir: Path
    record: dict
    wells: dict[str, pd.DataFrame]
    fields: dict[str, pd.DataFrame]


def _sha256(path: Path | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def software_versions() -> dict:
    """Versions of Python, the platform and the libraries that shape the numbers."""
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("imaging", "numpy", "scipy", "scikit-image", "pandas", "tifffile", "pydantic", "PyYAML"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def execute(plan: RunPlan, out_dir: str | Path, *, workers: int = 1, save_labels: bool = False,
            on_field: Callable[[dict], None] | None = None, command: list[str] | None = None) -> RunResult:
    """Process every field of ``plan`` and write the per-plate tables and ``run.json``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", path=out_dir, fix="choose another --out")
    started = dt.datetime.now(dt.timezone.utc)
    pipeline = plan.pipeline
    stain = {plate: plate_xgal_vector(plan, plate) for plate in plan.plates}
    tasks = [FieldTask(field=f, pipeline=pipeline, work_dir=str(out_dir / f.plate / WORK_FOLDER),
                       labels_dir=str(out_dir / f.plate / "labels") if save_labels else None,
                       xgal_vector=stain[f.plate][0]) for f in plan.fields]
    summaries = run_tasks(process_field_task, tasks, workers=workers, on_result=on_field)
    reused = sum(1 for s in summaries if s.get("reused"))

    fields_by_plate = {plate: _plate_fields_table([s for s in summaries if s["plate"] == plate], plan)
                       for plate in plan.plates}
    thresholds = {plate: {} for plate in plan.plates}
    for call in pipeline.calls:
        for plate in plan.plates:
            work_dir = out_dir / plate / WORK_FOLDER
            thresholds[plate][call.name] = resolve_threshold(
                _call_values(fields_by_plate[plate], work_dir, call.column), call.threshold)

    wells_out, fields_out, plates_record = {}, {}, {}
    for plate in plan.plates:
        fields_out[plate], wells_out[plate] = write_plate_tables(
            plate, fields_by_plate[plate], plan, out_dir / plate / WORK_FOLDER, thresholds[plate], out_dir / plate)
        plates_record[plate] = _plate_record(fields_out[plate], wells_out[plate], thresholds[plate], stain[plate],
                                             pipeline)
    record = {
        "imaging_version": software_versions()["imaging"],
        "created": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "software": software_versions(),
        "pipeline": {"path": str(plan.pipeline_path) if plan.pipeline_path else None,
                     "sha256": _sha256(plan.pipeline_path), "config": pipeline.model_dump(mode="json")},
        "inputs": {"input_dir": str(plan.input_dir), "naming": plan.naming, "pattern": plan.pattern,
                   "n_files": plan.n_files, "n_fields": len(plan.fields), "plates": plan.plates,
                   "platemap": {"path": str(plan.platemap_path) if plan.platemap_path else None,
                                "sha256": _sha256(plan.platemap_path)}},
        "platemap_wells_without_images": list(plan.unimaged_wells),
        "segmentation_model": segmentation_model(pipeline),
        "options": {"workers": workers, "save_labels": save_labels},
        "fields_reused_from_previous_run": reused,
        "plates": plates_record,
    }
    write_json(record, out_dir / "run.json")
    return RunResult(out_dir=out_dir, record=record, wells=wells_out, fields=fields_out)


def _plate_record(fields: pd.DataFrame, wells: pd.DataFrame, thresholds: dict[str, Threshold],
                  stain: tuple, pipeline: Pipeline) -> dict:
    failed = fields[~fields["qc_pass"]]
    return {
        "n_fields": int(len(fields)),
        "n_wells": int(len(wells)),
        "n_cells": int(fields["n_cells"].sum()),
        "n_cells_in_wells": int(wells["n_cells"].sum()),
        "thresholds": {name: dataclasses.asdict(t) for name, t in thresholds.items()},
        "xgal_vector": None if stain[0] is None else {"vector": list(stain[0]), "source": stain[1]},
        "qc": {
            "rules": pipeline.qc.model_dump(mode="json"),
            "n_failed": int(len(failed)),
            "failed_fields_excluded_from_wells": bool(pipeline.qc.exclude_failed),
            "failed_fields": [{"well": r.well, "site": int(r.site), "reasons": r.qc_reasons}
                              for r in failed.itertuples(index=False)],
        },
    }
