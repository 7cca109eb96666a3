"""Run a pipeline over plates: plan, process fields, assemble per-plate tables, record.

1. :func:`plan_run` checks everything before anything is written: pipeline, file naming,
   every field has every channel, the plate map describes every imaged well, every image
   file's header is readable and complete, and the channels of a field agree in shape.
2. :func:`execute` processes fields in parallel (:mod:`imaging.runner`). Each field's
   result goes to ``OUT/<plate>/.fields/`` with a content fingerprint; a re-run reuses
   results whose fingerprint matches.
3. Per plate (:mod:`imaging.tables`), field QC is decided relative to the plate, curation
   decisions are applied, thresholds for calls are derived, and ``cells.csv``,
   ``fields.csv`` and ``wells.csv`` are written atomically, streaming one well at a time
   so memory stays bounded.
4. ``OUT/run.json`` records versions, pipeline, inputs, thresholds and QC decisions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from imaging import curation as curation_log
from imaging.config import Pipeline, load_pipeline
from imaging.errors import InputError
from imaging.features.illumination import Flatfield, FlatfieldEstimator, flatfield_from_files
from imaging.features.sabgal import STAIN_VECTORS, estimate_xgal_vector, stained_od_sample
from imaging.io import files
from imaging.io.discover import Field
from imaging.io.names import check_folder_name
from imaging.io.platemap import annotate_wells, read_platemap
from imaging.io.readers import check_field_image, read_channel
from imaging.io.run_folder import check_same_assay, claimed, disk_error, field_label_paths
from imaging.io.sources import find_fields
from imaging.io.writers import write_csv, write_float_image, write_json, write_labels, write_labels_ome_zarr
from imaging.pipeline import field_fingerprint, field_pixel_size, load_field_images, measure_field
from imaging.record import file_sha256, software_versions
from imaging.runner import run_tasks
from imaging.tables import (
    WORK_FOLDER,
    assemble_plate,
    cells_file_intact,
    cells_file_seal,
    clashing_output_column,
    curation_record,
    field_work_paths,
)

log = logging.getLogger(__name__)

STAIN_SAMPLE_FIELDS = 8
ILLUMINATION_SAMPLE_FIELDS = 96  # fields spread over the plate for an illumination estimate
ILLUMINATION_FEW_FIELDS = 10  # below this the estimate follows where the cells happen to lie


# ---- 1. plan -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked."""

    pipeline: Pipeline
    pipeline_path: Path | None
    input_dir: Path | str
    naming: str
    pattern: str | None
    fields: tuple[Field, ...]
    annotations: pd.DataFrame  # plate, well + plate-map columns, one row per imaged well
    platemap_path: Path | None
    unimaged_wells: tuple[dict, ...]
    n_files: int
    illumination_files: dict[str, Flatfield] = dataclasses.field(default_factory=dict)  # method: files, read
    acquired_without_images: tuple[str, ...] = ()  # wells the instrument's .HTD lists without files here
    scene_map_path: Path | None = None  # the CSV placing container scenes (--scene-map)

    @property
    def plates(self) -> list[str]:
        return sorted({f.plate for f in self.fields})

    @property
    def annotation_columns(self) -> list[str]:
        return [c for c in self.annotations.columns if c not in ("plate", "well")]


MIN_FIELD_SIDE_PX = 16  # smaller than a few nuclei: a thumbnail or a broken export, not a field


def _spatial_shape(shape: tuple[int, ...], kind: str, path: str) -> tuple[int, int]:
    """Rows and columns of an image from its header shape; InputError if the kind is wrong
    or the image is too small to hold cells."""
    rows_columns = _rows_columns(shape, kind, path)
    _check_min_side(*rows_columns, path)
    return rows_columns


def _check_min_side(rows: int, columns: int, path) -> None:
    if min(rows, columns) < MIN_FIELD_SIDE_PX:
        raise InputError(
            f"is {rows} x {columns} px, too small for a field of cells (at least {MIN_FIELD_SIDE_PX} px a side)",
            path=path,
            fix="export the full field, not a thumbnail, or leave the file out",
        )


def _rows_columns(shape: tuple[int, ...], kind: str, path: str) -> tuple[int, int]:
    squeezed = list(shape)
    while len(squeezed) > (3 if kind == "brightfield" else 2) and 1 in squeezed:  # leading Z/T/C of size 1
        squeezed.remove(1)
    squeezed = tuple(squeezed)
    if kind == "brightfield":
        if len(squeezed) == 3 and squeezed[-1] in (3, 4):
            return squeezed[0], squeezed[1]
        if len(squeezed) == 3 and squeezed[0] in (3, 4):
            return squeezed[1], squeezed[2]
        raise InputError(
            f"expected an RGB colour image (rows, columns, 3), got shape {shape}",
            path=path,
            fix="export the brightfield channel as RGB, or declare the channel as kind: fluorescence in the pipeline",
        )
    if len(squeezed) == 2:
        return squeezed[0], squeezed[1]
    if len(squeezed) == 3 and squeezed[-1] in (3, 4):  # gray saved as RGB: checked on reading
        return squeezed[0], squeezed[1]
    raise InputError(
        f"expected a 2-D grayscale image, got shape {shape}",
        path=path,
        fix="export one channel, one z-plane and one time point per file",
    )


def _check_scale_fits(pipeline: Pipeline, side_px: int, path) -> None:
    """A nucleus diameter set in the pipeline must fit in the field (1e9 px once ran for minutes
    and gigabytes before failing)."""
    settings = pipeline.segmentation
    diameter_px = settings.nucleus_diameter_px
    if diameter_px is None and settings.nucleus_diameter_um is not None and pipeline.pixel_size_um:
        diameter_px = settings.nucleus_diameter_um / pipeline.pixel_size_um
    if diameter_px is not None and diameter_px > side_px / 2:
        raise InputError(
            f"segmentation.nucleus_diameter is {diameter_px:g} px, more than half the field's "
            f"shorter side ({side_px} px)",
            path=path,
            fix="give the diameter of one nucleus (in px, or in um with pixel_size_um), or leave it out "
            "to have it estimated",
        )


def _check_container_plane(plane, pipeline: Pipeline) -> None:
    """Size checks of a container field, from its metadata (the counterpart of the header checks)."""
    where = f"{plane.path} [scene {plane.scene_name}]"
    if plane.rows * plane.columns > pipeline.max_field_pixels:
        raise InputError(
            f"a plane is {plane.rows} x {plane.columns} px, more than a field may have "
            f"({pipeline.max_field_pixels} per plane)",
            path=where,
            fix="raise max_field_pixels in the pipeline for truly larger fields",
        )
    _check_min_side(plane.rows, plane.columns, where)
    _check_scale_fits(pipeline, min(plane.rows, plane.columns), where)


def check_field_files(field: Field, pipeline: Pipeline) -> None:
    """Header-level checks of one field's files (readable, complete, consistent shapes).

    A colour file given for a fluorescence channel is read here: only its pixels tell a gray
    image saved as RGB (accepted) from a colour one (refused before any field is measured)."""
    if field.plane is not None:  # a container: dims and channels were checked from its metadata
        _check_container_plane(field.plane, pipeline)
        return
    shapes = {}
    for name, path in field.paths.items():
        kind = pipeline.channels[name].kind
        shape, _ = check_field_image(path, max_pixels=pipeline.max_field_pixels)
        shapes[name] = _spatial_shape(shape, kind, path)
        if kind != "brightfield" and len([s for s in shape if s != 1]) == 3:
            read_channel(path, kind=kind)
    _check_scale_fits(pipeline, min(min(s) for s in shapes.values()), next(iter(field.paths.values())))
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{files.name(field.paths[n])} {s}" for n, s in shapes.items())
        raise InputError(
            f"the channels of plate {field.plate}, well {field.well}, site {field.site} differ in size: {listed}",
            path=files.name(next(iter(field.paths.values()))),
            fix="export every channel of a field at the same size",
        )


def read_field_pixels(task: FieldTask) -> None:
    """Decode every channel of a field (``imaging validate --read-pixels``): finds damaged
    compressed strips, which no header shows, before a run."""
    load_field_images(task.field, task.pipeline)


def plan_run(
    pipeline: Pipeline | str | Path,
    input_dir: str | Path,
    *,
    platemap: str | Path | None = None,
    pattern: str | None = None,
    scene_map: str | Path | None = None,
    check_files: bool = True,
) -> RunPlan:
    """Check a run's inputs and list its fields (see module docstring, step 1)."""
    pipeline_path = None
    if not isinstance(pipeline, Pipeline):
        pipeline_path = Path(pipeline)
        pipeline = load_pipeline(pipeline_path)
    input_dir = input_dir if files.is_url(input_dir) else Path(input_dir)
    pattern = pattern or pipeline.naming.pattern
    scene_map = Path(scene_map) if scene_map is not None else None
    found = find_fields(input_dir, pipeline, pattern=pattern, scene_map=scene_map)
    fields, naming = found.fields, found.naming
    for plate in sorted({f.plate for f in fields}):  # plates become folders under --out
        check_folder_name(plate, kind="plate", source=input_dir)
    imaged = pd.DataFrame([{"plate": f.plate, "well": f.well} for f in fields]).drop_duplicates()
    if platemap is not None:
        platemap = Path(platemap)
        annotations, unimaged = annotate_wells(imaged, read_platemap(platemap), source=platemap)
    else:
        annotations, unimaged = imaged.reset_index(drop=True), []
    clash = clashing_output_column([c for c in annotations.columns if c not in ("plate", "well")], pipeline)
    if clash is not None:
        raise InputError(
            f"column {clash!r} is also computed by pipeline {pipeline.name!r}",
            path=platemap,
            fix=f"rename the plate map's column {clash!r} (for example to platemap_{clash})",
        )
    _check_comparison_columns(pipeline, annotations, platemap)
    segmentation_model(pipeline)  # a missing model file is an input error, found before any writing
    if check_files:
        for field in fields:
            check_field_files(field, pipeline)
    _warn_few_fields_for_illumination(pipeline, fields)
    flats = illumination_files(pipeline, pipeline_path.parent if pipeline_path else Path.cwd())
    if check_files and fields:
        for flat in flats.values():
            flat.check_shape(field_shape(fields[0], pipeline))
    return RunPlan(
        pipeline=pipeline,
        pipeline_path=pipeline_path,
        input_dir=input_dir,
        naming=naming,
        pattern=pattern,
        fields=tuple(fields),
        annotations=annotations,
        platemap_path=platemap,
        unimaged_wells=tuple(unimaged),
        n_files=found.n_files,
        acquired_without_images=found.acquired_without_images,
        illumination_files=flats,
        scene_map_path=scene_map,
    )


def _warn_few_fields_for_illumination(pipeline: Pipeline, fields: list[Field]) -> None:
    """``imaging validate`` and ``run`` say before any work when a plate has too few fields
    for an illumination estimate (the run records the same warning)."""
    if pipeline.illumination.method != "estimate":
        return
    counts = pd.Series([f.plate for f in fields]).value_counts()
    for plate, n in counts[counts < ILLUMINATION_FEW_FIELDS].items():
        log.warning(
            "plate %s has %d field(s): an illumination estimate needs at least %d (it would follow where "
            "the cells lie); give flat-field files (illumination.method: files) or set method: none",
            plate,
            n,
            ILLUMINATION_FEW_FIELDS,
        )


def field_shape(field: Field, pipeline: Pipeline) -> tuple[int, int]:
    """Rows and columns of a field, from its container's metadata or its nuclei file's header."""
    if field.plane is not None:
        return field.plane.rows, field.plane.columns
    path = field.paths[pipeline.segmentation.channel]
    return _rows_columns(check_field_image(path, max_pixels=pipeline.max_field_pixels)[0], "fluorescence", path)


def illumination_files(pipeline: Pipeline, base_dir: Path) -> dict[str, Flatfield]:
    """The flat-fields of ``illumination.method: files``, read and checked (paths relative to
    ``base_dir``, the pipeline file's folder); empty for other methods."""
    if pipeline.illumination.method != "files":
        return {}
    return {
        channel: flatfield_from_files(base_dir / spec.flat, None if spec.dark is None else base_dir / spec.dark)
        for channel, spec in pipeline.illumination.files.items()
    }


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
    for column, value, key in (
        (settings.genotype_column, settings.control_genotype, "control_genotype"),
        (settings.treatment_column, settings.vehicle_treatment, "vehicle_treatment"),
    ):
        if value is None:
            continue
        if column not in annotations.columns:
            raise InputError(
                f"has no {column!r} column, which comparison.{key} refers to",
                path=platemap,
                fix=f"add a {column!r} column or change comparison settings in the pipeline",
            )
        present = set(annotations[column].dropna().astype(str))
        if str(value) not in present:
            raise InputError(
                f"no imaged well has {column} {value!r} (comparison.{key}); found "
                f"{', '.join(sorted(present)) or 'none'}",
                path=platemap,
                fix=f"correct comparison.{key} in the pipeline or the plate map",
            )


# ---- 2. execute fields ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FieldTask:
    """One field to measure (picklable: sent to worker processes or Dask workers).

    ``previous_fingerprint`` is the fingerprint of the result already stored for this field
    (None when there is none): a worker that computes the same fingerprint skips the work.
    """

    field: Field
    pipeline: Pipeline
    xgal_vector: tuple[float, float, float] | None
    previous_fingerprint: str | None = None
    save_labels: bool = False
    illumination: dict[str, Flatfield] | None = None


def _label_paths(out_dir: Path, field: Field, pipeline: Pipeline) -> dict[str, tuple[Path, ...]]:
    return field_label_paths(out_dir / field.plate / "labels", field.key, pipeline.output.labels)


def stored_fingerprint(out_dir: Path, field: Field, pipeline: Pipeline, *, save_labels: bool) -> str | None:
    """Fingerprint of a complete stored result of ``field`` (None if there is none)."""
    cells_path, summary_path = field_work_paths(out_dir / field.plate / WORK_FOLDER, field.key)
    if not (cells_path.is_file() and summary_path.is_file()):
        return None
    if save_labels and not all(p.exists() for paths in _label_paths(out_dir, field, pipeline).values() for p in paths):
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if not cells_file_intact(cells_path, summary):
        log.warning("%s was changed or damaged after it was written: the field is measured again", cells_path)
        return None
    return summary.get("fingerprint")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def container_source(field: Field) -> dict:
    """Where a container field's pixels came from (columns of fields.csv; none for plain files)."""
    plane = field.plane
    if plane is None:
        return {}
    z = f"plane {plane.z_plane + 1} of {plane.n_z}" if plane.z_plane is not None else f"{plane.z_rule} of {plane.n_z}"
    return {"source_scene": plane.scene_name, "source_z": z, "source_timepoint": plane.timepoint + 1}


def compute_field(task: FieldTask) -> dict:
    """Measure one field (on a worker; writes nothing). Returns the field's summary and
    cells table, or only ``reused: True`` when the stored result has the same fingerprint."""
    field = task.field
    fingerprint = field_fingerprint(field, task.pipeline, task.xgal_vector, task.illumination)
    identity = {"key": field.key, "fingerprint": fingerprint}
    if fingerprint == task.previous_fingerprint:
        return identity | {"reused": True}
    images = load_field_images(field, task.pipeline)
    pixel_size = field_pixel_size(field, task.pipeline)
    result = measure_field(
        images, task.pipeline, pixel_size_um=pixel_size, xgal_vector=task.xgal_vector, illumination=task.illumination
    )
    summary = {
        "plate": field.plate,
        "well": field.well,
        "row": field.row,
        "column": field.column,
        "site": field.site,
        **({} if field.timepoint is None else {"timepoint": field.timepoint}),
        **container_source(field),
        **result.summary,
        "pixel_size_um": pixel_size,
        "fingerprint": fingerprint,
    }
    return identity | {
        "reused": False,
        "summary": summary,
        "cells": result.cells,
        "labels": (result.nuclei, result.cell_labels) if task.save_labels else None,
        "worker_peak_rss_mb": _peak_rss_mb(),
    }


def persist_field(result: dict, out_dir: Path, field: Field, pipeline: Pipeline) -> dict:
    """Store one computed field under ``OUT/<plate>/.fields`` (the summary JSON last: its
    presence marks the field complete) and return its summary."""
    work_dir = out_dir / field.plate / WORK_FOLDER
    cells_path, summary_path = field_work_paths(work_dir, field.key)
    if result["reused"]:
        return json.loads(summary_path.read_text()) | {"reused": True}
    if result["labels"] is not None:
        images = dict(zip(("nuclei", "cells"), result["labels"]))
        for kind, paths in _label_paths(out_dir, field, pipeline).items():
            for path in paths:
                if path.name.endswith(".ome.zarr"):
                    write_labels_ome_zarr(
                        images[kind], path, name=kind, pixel_size_um=result["summary"].get("pixel_size_um")
                    )
                else:
                    write_labels(images[kind], path)
    write_csv(result["cells"], cells_path)
    summary = result["summary"] | cells_file_seal(cells_path)
    write_json(summary, summary_path)
    return summary | {"reused": False, "worker_peak_rss_mb": result.get("worker_peak_rss_mb")}


def _bytes_still_needed(summaries: list[dict], n_fields: int) -> int | None:
    """Disk the fields not yet stored will take, from those stored in this run (None before any)."""
    stored = [s["cells_bytes"] for s in summaries if s.get("cells_bytes")]
    if not stored:
        return None
    return int(np.mean(stored) * 1.1 * (n_fields - len(summaries)))


def _spread_sample(fields: list[Field], n: int) -> list[Field]:
    """At most ``n`` of ``fields``, spread evenly over them (plate order)."""
    return [fields[i] for i in np.unique(np.linspace(0, len(fields) - 1, n).round().astype(int))] if fields else []


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
    samples = []
    for field in _spread_sample(fields, STAIN_SAMPLE_FIELDS):
        images = load_field_images(field, plan.pipeline)
        measured = measure_field(images, plan.pipeline, pixel_size_um=field_pixel_size(field, plan.pipeline))
        samples.append(stained_od_sample(images[spec.channel], measured.cell_labels))
    vector, source = estimate_xgal_vector(np.concatenate(samples))
    return tuple(float(v) for v in vector), source


def plate_illumination(
    pipeline: Pipeline, fields: list[Field], *, files: dict[str, Flatfield] | None = None
) -> tuple[dict[str, Flatfield] | None, dict | None]:
    """The flat-fields of one plate and their record entry (None, None without correction).

    ``files``: the flat-fields read at planning (method ``files``). For ``estimate``, up to
    ILLUMINATION_SAMPLE_FIELDS fields spread over the plate are read and each corrected
    channel's flat-field estimated from them (:func:`imaging.features.illumination.estimate_flatfield`);
    the same fields give the same estimate, so a resumed run reuses every field."""
    method = pipeline.illumination.method
    if method == "none":
        return None, None
    if method == "files":
        return dict(files or {}), {
            "method": "files",
            "channels": {
                name: {
                    "source": flat.source,
                    "dark": flat.dark is not None,
                    "sha256": flat.sha256,
                    "min": float(flat.flat.min() / flat.flat.mean()),
                    "max": float(flat.flat.max() / flat.flat.mean()),
                }
                for name, flat in (files or {}).items()
            },
        }
    channels = pipeline.illumination.corrected_channels(pipeline.channels)
    sample = _spread_sample(fields, ILLUMINATION_SAMPLE_FIELDS)
    estimators = {name: FlatfieldEstimator() for name in channels}
    for field in sample:  # one field in memory at a time
        images = load_field_images(field, pipeline)
        for name in channels:
            estimators[name].add(images[name])
    flats, entry = {}, {"method": "estimate", "n_fields": len(sample), "channels": {}}
    for name in channels:
        flats[name], info = estimators[name].result()
        entry["channels"][name] = info | {"sha256": flats[name].sha256}
    if len(sample) < ILLUMINATION_FEW_FIELDS:
        entry["warning"] = (
            f"estimated from {len(sample)} field(s); at least {ILLUMINATION_FEW_FIELDS} are needed "
            "for the estimate to follow the lighting rather than where the cells lie"
        )
        log.warning("plate %s: illumination %s", fields[0].plate if fields else "?", entry["warning"])
    return flats, entry


def store_illumination(
    flats: dict[str, Flatfield] | None, entry: dict | None, plate_dir: Path, shape: tuple[int, int]
) -> dict | None:
    """Write each flat-field (mean 1, float32, at the fields' size) and dark-field to
    ``<plate>/illumination/`` for inspection and review; returns the entry with the paths."""
    if not flats:
        return entry
    for name, flat in flats.items():
        path = write_float_image(flat.flat_at(shape), plate_dir / "illumination" / f"{name}_flat.tif")
        entry["channels"][name]["flat_file"] = str(path.relative_to(plate_dir.parent))
        if flat.dark is not None:
            dark_path = write_float_image(flat.dark, plate_dir / "illumination" / f"{name}_dark.tif")
            entry["channels"][name]["dark_file"] = str(dark_path.relative_to(plate_dir.parent))
    return entry


# ---- 4. the whole run ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced (for the CLI's closing summary)."""

    out_dir: Path
    record: dict
    wells: dict[str, pd.DataFrame]
    fields: dict[str, pd.DataFrame]


def execute(
    plan: RunPlan,
    out_dir: str | Path,
    *,
    workers: int = 1,
    save_labels: bool = True,
    on_field: Callable[[dict], None] | None = None,
    command: list[str] | None = None,
    scheduler: str | None = None,
) -> RunResult:
    """Process every field of ``plan`` and write the per-plate tables and ``run.json``.

    ``scheduler``: None runs ``workers`` local processes; ``'local'`` starts a Dask
    LocalCluster of ``workers`` processes; any other value is the address of a running
    Dask scheduler (``tcp://host:8786``). Workers only compute; this process stores each
    field as it arrives, so an interrupted run keeps every finished field.
    """
    out_dir = Path(out_dir)
    check_same_assay(out_dir, plan.pipeline.model_dump(mode="json"))
    with claimed(out_dir, command=command):
        return _execute_claimed(
            plan,
            out_dir,
            workers=workers,
            save_labels=save_labels,
            on_field=on_field,
            command=command,
            scheduler=scheduler,
        )


def _execute_claimed(plan: RunPlan, out_dir: Path, *, workers, save_labels, on_field, command, scheduler) -> RunResult:
    started = dt.datetime.now(dt.timezone.utc)
    pipeline = plan.pipeline
    curation = curation_log.load(out_dir)  # a damaged curation file stops the run before any work
    stain = {plate: plate_xgal_vector(plan, plate) for plate in plan.plates}
    illumination = {
        plate: plate_illumination(pipeline, [f for f in plan.fields if f.plate == plate], files=plan.illumination_files)
        for plate in plan.plates
    }
    tasks = [
        FieldTask(
            field=f,
            pipeline=pipeline,
            xgal_vector=stain[f.plate][0],
            save_labels=save_labels,
            illumination=illumination[f.plate][0],
            previous_fingerprint=stored_fingerprint(out_dir, f, pipeline, save_labels=save_labels),
        )
        for f in plan.fields
    ]
    by_key = {f.key: f for f in plan.fields}
    summaries = []

    def store(result: dict) -> None:  # on this machine, as each field's result arrives
        try:
            summary = persist_field(result, out_dir, by_key[result["key"]], pipeline)
        except OSError as exc:
            raise disk_error(exc, needed_bytes=_bytes_still_needed(summaries, len(tasks))) or exc from None
        summaries.append(summary)
        if on_field is not None:
            on_field(summary)

    run_tasks(
        compute_field,
        tasks,
        workers=workers,
        on_result=store,
        scheduler=scheduler,
        key=lambda task: f"field-{task.field.key}",
    )
    reused = sum(1 for s in summaries if s.get("reused"))

    wells_out, fields_out, plates_record = {}, {}, {}
    for plate in plan.plates:
        annotations = plan.annotations[plan.annotations["plate"] == plate].set_index("well")
        flats, entry = illumination[plate]
        if flats:
            first = next(f for f in plan.fields if f.plate == plate)
            entry = store_illumination(flats, entry, out_dir / plate, field_shape(first, pipeline))
        fields_out[plate], wells_out[plate], plates_record[plate] = assemble_plate(
            plate,
            [s for s in summaries if s["plate"] == plate],
            pipeline=pipeline,
            annotations=annotations,
            annotation_columns=plan.annotation_columns,
            out_dir=out_dir,
            curation=curation,
            stain=stain[plate],
            illumination=entry,
        )
    record = {
        "imaging_version": software_versions()["imaging"],
        "created": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "software": software_versions(),
        "pipeline": {
            "path": str(plan.pipeline_path) if plan.pipeline_path else None,
            "sha256": file_sha256(plan.pipeline_path),
            "config": pipeline.model_dump(mode="json"),
        },
        "inputs": {
            "input_dir": str(plan.input_dir),
            "naming": plan.naming,
            "pattern": plan.pattern,
            "n_files": plan.n_files,
            "n_fields": len(plan.fields),
            "plates": plan.plates,
            "platemap": {
                "path": str(plan.platemap_path) if plan.platemap_path else None,
                "sha256": file_sha256(plan.platemap_path),
            },
            "scene_map": {
                "path": str(plan.scene_map_path.resolve()) if plan.scene_map_path else None,
                "sha256": file_sha256(plan.scene_map_path),
            },
        },
        "platemap_wells_without_images": list(plan.unimaged_wells),
        "acquired_wells_without_images": list(plan.acquired_without_images),
        "annotation_columns": plan.annotation_columns,
        "curation": curation_record(curation),
        "segmentation_model": segmentation_model(pipeline),
        "options": {"workers": workers, "save_labels": save_labels, "scheduler": scheduler},
        "worker_peak_rss_mb": max((s.get("worker_peak_rss_mb") or 0 for s in summaries), default=0) or None,
        "fields_reused_from_previous_run": reused,
        "plates": plates_record,
    }
    write_json(record, out_dir / "run.json")
    return RunResult(out_dir=out_dir, record=record, wells=wells_out, fields=fields_out)
