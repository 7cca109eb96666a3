"""The plate assay as the run engine drives it (:mod:`imaging.run.engine`).

Plan (:func:`imaging.plate.plan.plan_run`) -> calibrate per plate (X-gal vector and
flat-fields: :mod:`imaging.plate.calibrate`) -> fields on workers
(:func:`imaging.plate.fields.compute_field`: fingerprint first; a stored result with the same
fingerprint is reused) -> each result stored in this process
(:func:`imaging.plate.fields.persist_field`) -> per-plate tables
(:func:`imaging.plate.tables.assemble_plate`) -> ``run.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from imaging.io.run_folder import disk_error
from imaging.plate.calibrate import plate_illumination, plate_xgal_vector, store_illumination
from imaging.plate.fields import FieldTask, bytes_still_needed, compute_field, persist_field, stored_fingerprint
from imaging.plate.plan import RunPlan, field_shape, segmentation_model
from imaging.plate.tables import assemble_plate, curation_record
from imaging.run.engine import Assembled, RunOptions, run_assay
from imaging.run.record import file_sha256


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced (for the CLI's closing summary)."""

    out_dir: Path
    record: dict
    wells: dict[str, pd.DataFrame]
    fields: dict[str, pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class PlateCalibration:
    """Per plate: the X-gal vector with its source, and the flat-fields with their record entry."""

    stain: dict[str, tuple]
    illumination: dict[str, tuple]


@dataclasses.dataclass(frozen=True)
class PlateAssay:
    """Fields of one or more plates (see module docstring)."""

    plan: RunPlan
    save_labels: bool = True
    threads: int = 1  # per field (imaging.tiles); the numbers do not depend on it
    compute = staticmethod(compute_field)

    @property
    def pipeline(self):
        return self.plan.pipeline

    @property
    def pipeline_path(self):
        return self.plan.pipeline_path

    def calibrate(self, out_dir: Path, options: RunOptions) -> PlateCalibration:
        plan = self.plan
        return PlateCalibration(
            stain={plate: plate_xgal_vector(plan, plate) for plate in plan.plates},
            illumination={
                plate: plate_illumination(
                    plan.pipeline, [f for f in plan.fields if f.plate == plate], files=plan.illumination_files
                )
                for plate in plan.plates
            },
        )

    def units(self, out_dir: Path, calibration: PlateCalibration) -> list[FieldTask]:
        pipeline = self.pipeline
        return [
            FieldTask(
                field=f,
                pipeline=pipeline,
                xgal_vector=calibration.stain[f.plate][0],
                save_labels=self.save_labels,
                threads=self.threads,
                illumination=calibration.illumination[f.plate][0],
                previous_fingerprint=stored_fingerprint(out_dir, f, pipeline, save_labels=self.save_labels),
            )
            for f in self.plan.fields
        ]

    def finishing_units(self, out_dir: Path, calibration: PlateCalibration) -> list:
        return []  # a field is whole: tables are assembled from the stored fields

    def unit_key(self, task: FieldTask) -> str:
        return f"field-{task.field.key}"

    def store(self, result: dict, out_dir: Path, stored: list[dict], n_units: int) -> dict:
        field = next(f for f in self.plan.fields if f.key == result["key"])
        try:
            return persist_field(result, out_dir, field, self.pipeline)
        except OSError as exc:
            raise disk_error(exc, needed_bytes=bytes_still_needed(stored, n_units)) or exc from None

    def assemble(self, summaries: list[dict], out_dir: Path, curation, calibration: PlateCalibration) -> Assembled:
        plan, pipeline = self.plan, self.pipeline
        wells_out, fields_out, plates_record = {}, {}, {}
        for plate in plan.plates:
            annotations = plan.annotations[plan.annotations["plate"] == plate].set_index("well")
            flats, entry = calibration.illumination[plate]
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
                stain=calibration.stain[plate],
                illumination=entry,
            )
        record = {
            "inputs": plan_inputs(plan),
            "platemap_wells_without_images": list(plan.unimaged_wells),
            "acquired_wells_without_images": list(plan.acquired_without_images),
            "annotation_columns": plan.annotation_columns,
            "curation": curation_record(curation),
            "segmentation_model": segmentation_model(pipeline),
            "worker_peak_rss_mb": max((s.get("worker_peak_rss_mb") or 0 for s in summaries), default=0) or None,
            "fields_reused_from_previous_run": sum(1 for s in summaries if s.get("reused")),
            "plates": plates_record,
        }
        return Assembled(record=record, tables={"wells": wells_out, "fields": fields_out})

    def options(self, options: RunOptions) -> dict:
        return {
            "workers": options.workers,
            "threads_per_field": self.threads,
            "save_labels": self.save_labels,
            "scheduler": options.scheduler,
        }

    def finish(self, out_dir: Path, options: RunOptions) -> None:
        if options.report:
            from imaging.report import build_report

            build_report([out_dir])


def plan_inputs(plan: RunPlan) -> dict:
    """The ``inputs`` entry of a plate run's record."""
    return {
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
    }


def execute(
    plan: RunPlan,
    out_dir: str | Path,
    *,
    workers: int = 1,
    threads: int = 1,
    save_labels: bool = True,
    on_field: Callable[[dict], None] | None = None,
    command: list[str] | None = None,
    scheduler: str | None = None,
    report: bool = False,
) -> RunResult:
    """Process every field of ``plan`` and write the per-plate tables and ``run.json``.

    Workers only compute; this process stores each field as it arrives, so an interrupted
    run keeps every finished field, and a run into the same folder reuses it.

    Parameters
    ----------
    plan : RunPlan
        From :func:`imaging.plate.plan.plan_run` (every check already made).
    out_dir : str or Path
        The run folder.
    workers : int
        Local processes (1: this process), or Dask workers with ``scheduler='local'``.
    threads : int
        Threads each worker uses for one field's image-wide steps (the numbers do not
        depend on it; ``workers`` x ``threads`` should not exceed the CPUs).
    save_labels : bool
        Write each field's nucleus and cell label images (``output.labels`` format).
    on_field : callable, optional
        Called with each field's summary as it is stored (progress).
    command : list of str, optional
        The command line, recorded in ``run.json``.
    scheduler : str, optional
        None: local processes; ``'local'``: a Dask LocalCluster; else the address of a
        running Dask scheduler (``tcp://host:8786``).
    report : bool
        Also build the report (comparisons, plate QC, plots, ``report.html``), as
        ``imaging run`` does; ``imaging report`` builds it later otherwise.

    Returns
    -------
    RunResult
        The folder, the record, and per plate its ``wells`` and ``fields`` tables.
    """
    outcome = run_assay(
        PlateAssay(plan, save_labels=save_labels, threads=threads),
        out_dir,
        RunOptions(workers=workers, scheduler=scheduler, command=command, report=report),
        on_unit=on_field,
    )
    return RunResult(
        out_dir=outcome.out_dir,
        record=outcome.record,
        wells=outcome.tables["wells"],
        fields=outcome.tables["fields"],
    )
