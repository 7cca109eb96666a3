"""A field as a unit of a plate run: measured on a worker, stored in this process."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from imaging.config import Pipeline
from imaging.features.illumination import Flatfield
from imaging.io.discover import Field
from imaging.io.run_folder import field_label_paths
from imaging.io.writers import write_json, write_labels, write_labels_ome_zarr, write_parquet
from imaging.plate.measure import field_fingerprint, field_pixel_size, load_field_images, measure_field
from imaging.plate.tables import (
    WORK_FOLDER,
    cells_file_intact,
    cells_file_seal,
    field_work_paths,
)

log = logging.getLogger(__name__)


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
    threads: int = 1  # for the field's image-wide steps (imaging.tiles); not in the fingerprint


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
        images,
        task.pipeline,
        pixel_size_um=pixel_size,
        xgal_vector=task.xgal_vector,
        illumination=task.illumination,
        threads=task.threads,
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
    write_parquet(result["cells"], cells_path)
    summary = result["summary"] | cells_file_seal(cells_path)
    write_json(summary, summary_path)
    return summary | {"reused": False, "worker_peak_rss_mb": result.get("worker_peak_rss_mb")}


def bytes_still_needed(summaries: list[dict], n_fields: int) -> int | None:
    """Disk the fields not yet stored will take, from those stored in this run (None before any)."""
    stored = [s["cells_bytes"] for s in summaries if s.get("cells_bytes")]
    if not stored:
        return None
    return int(np.mean(stored) * 1.1 * (n_fields - len(summaries)))


def read_field_pixels(task: FieldTask) -> None:
    """Decode every channel of a field (``imaging validate --read-pixels``): finds damaged
    compressed strips, which no header shows, before a run."""
    load_field_images(task.field, task.pipeline)
