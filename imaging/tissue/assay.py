"""The tissue assay as the run engine drives it (:mod:`imaging.run.engine`).

1. :func:`imaging.tissue.plan.plan_tissue` checks everything first.
2. Calibration: with ``lesions.threshold: auto``, a first pass samples the lesion signal of
   every image's tissue and derives one threshold for the run (:func:`lesion_threshold`).
3. Units: images, analysed on workers (:func:`imaging.tissue.image.analyse_image`), each
   reused when its fingerprint matches the stored one.
4. Tables (:mod:`imaging.tissue.tables`), ``run.json`` and ``report.html``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imaging.config import TissuePipeline
from imaging.features.thresholds import fit_two_gaussians, mixture_boundary
from imaging.run.engine import Assembled, RunOptions, run_assay
from imaging.run.record import file_sha256
from imaging.run.workers import collect
from imaging.tissue.image import (
    ImageTask,
    TilePartTask,
    analyse_image,
    compute_unit,
    image_fingerprint,
    image_stem,
    stored_image_summary,
    tile_count,
    tiles_per_part,
)
from imaging.tissue.plan import TissuePlan
from imaging.tissue.tables import assemble_tissue, tissue_curation_record

MIN_LESION_SEPARATION = 2.0  # Ashman's D between lesion and normal tissue signal


def lesion_threshold(samples: list[np.ndarray]) -> dict:
    """One lesion threshold for the run from pooled tissue-pixel samples.

    A two-Gaussian mixture separates lesion from normal tissue; the threshold is midway
    between the two component means: on a smoothed image that is where a lesion's edge
    lies (half its contrast), so lesion areas come out unbiased. When the two components
    are not clearly separated (Ashman's D < 2), there is no lesion population in the run:
    the threshold is then infinite (no lesions) and the record says why.
    """
    values = np.concatenate([s for s in samples if len(s)]) if samples else np.zeros(0)
    if values.size < 100:
        return {"value": float("inf"), "method": "undefined", "reason": "too little tissue"}
    from skimage.filters import threshold_otsu

    try:
        fit = fit_two_gaussians(values, start=float(threshold_otsu(values)))
    except ValueError as exc:
        return {"value": float("inf"), "method": "undefined", "reason": str(exc)}
    (m1, m2), (s1, s2) = fit["means"], fit["sds"]
    separation = float(np.sqrt(2) * abs(m2 - m1) / np.sqrt(s1**2 + s2**2))
    boundary = mixture_boundary(fit)  # exists only when the two populations overlap as expected
    detail = {
        "means": [float(m1), float(m2)],
        "sds": [float(s1), float(s2)],
        "weights": [float(w) for w in fit["weights"]],
        "ashman_d": separation,
        "n_pixels": int(values.size),
    }
    if boundary is None or separation < MIN_LESION_SEPARATION:
        return {
            "value": float("inf"),
            "method": "none found",
            "reason": f"no separate lesion population (Ashman's D {separation:.2f} < {MIN_LESION_SEPARATION})",
        } | detail
    return {"value": float((m1 + m2) / 2), "method": "mixture midpoint"} | detail


@dataclasses.dataclass(frozen=True)
class TissueCalibration:
    """Run-wide quantities of a set of sections: the lesion threshold (value and record), and
    the images to be scored in parts (path -> (image fingerprint, number of parts))."""

    lesion_value: float | None = None
    lesion_record: dict | None = None
    parts: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TissueAssay:
    """Images (cores, sections, slides) as units of the run engine (:mod:`imaging.run.engine`).

    Each image is analysed on a worker, which also writes the image's files (its cells can be
    millions of rows, streamed tile by tile) and, last, its summary with its fingerprint
    (:func:`analyse_image`); storing a result in this process only keeps its summary. An
    image of more tiles than a part holds (``tiles_per_part``; default
    :func:`imaging.tissue.image.tiles_per_part`) is scored in parts of contiguous tiles, each
    its own unit (:func:`imaging.tissue.image.score_part`), and then assembled by a finishing
    unit into the same files.
    """

    plan: TissuePlan
    tiles_per_part: int | None = None
    compute = staticmethod(compute_unit)

    @property
    def pipeline(self) -> TissuePipeline:
        return self.plan.pipeline

    @property
    def pipeline_path(self):
        return self.plan.pipeline_path

    def calibrate(self, out_dir: Path, options: RunOptions) -> TissueCalibration:
        lesions = self.pipeline.lesions
        value, record = None, None
        if lesions is not None and lesions.threshold != "auto":
            value, record = float(lesions.threshold), {"value": float(lesions.threshold), "method": "fixed"}
        elif lesions is not None:
            tasks = [ImageTask(str(p), self.pipeline, str(out_dir), sample_only=True) for p in self.plan.images]
            samples = collect(analyse_image, tasks, workers=options.workers, scheduler=options.scheduler)
            record = lesion_threshold([s["sample"] for s in samples])
            value = record["value"]
        return TissueCalibration(value, record, self._parts(out_dir, value))

    def _parts(self, out_dir: Path, lesion_value: float | None) -> dict[str, tuple[str, int]]:
        """The images scored in parts: tiled files of more tiles than a part, not complete."""
        if self.pipeline.cells is None:
            return {}
        tile_px = self.pipeline.cells.tile_px
        per_part = self.tiles_per_part or tiles_per_part(tile_px)
        parts = {}
        for path in self.plan.images:
            n_parts = -(-tile_count(path, tile_px) // per_part)
            if n_parts < 2:
                continue
            task = ImageTask(str(path), self.pipeline, str(out_dir), lesion_threshold=lesion_value)
            fingerprint = image_fingerprint(task)
            if stored_image_summary(task, fingerprint) is None:
                parts[str(path)] = (fingerprint, n_parts)
        return parts

    def _image_task(self, path, out_dir: Path, calibration: TissueCalibration, **extra) -> ImageTask:
        return ImageTask(str(path), self.pipeline, str(out_dir), lesion_threshold=calibration.lesion_value, **extra)

    def units(self, out_dir: Path, calibration: TissueCalibration) -> list:
        tasks = []
        for path in self.plan.images:
            if str(path) not in calibration.parts:
                tasks.append(self._image_task(path, out_dir, calibration))
                continue
            fingerprint, n_parts = calibration.parts[str(path)]
            image = self._image_task(path, out_dir, calibration, fingerprint=fingerprint, parts=n_parts)
            per_part = self.tiles_per_part or tiles_per_part(self.pipeline.cells.tile_px)
            tasks += [TilePartTask(image, k, k * per_part, (k + 1) * per_part) for k in range(n_parts)]
        return tasks

    def finishing_units(self, out_dir: Path, calibration: TissueCalibration) -> list:
        return [
            self._image_task(path, out_dir, calibration, fingerprint=fingerprint, parts=n_parts)
            for path, (fingerprint, n_parts) in calibration.parts.items()
        ]

    def unit_key(self, task) -> str:
        if isinstance(task, TilePartTask):
            return f"image-{image_stem(Path(task.image.path))}-part{task.index}"
        return f"image-{image_stem(Path(task.path))}"

    def store(self, result: dict, out_dir: Path, stored: list[dict], n_units: int) -> dict:
        return result

    def assemble(self, summaries: list[dict], out_dir: Path, curation, calibration: TissueCalibration) -> Assembled:
        plan = self.plan
        parts = [s for s in summaries if "part" in s]
        summaries = sorted((s for s in summaries if "part" not in s), key=lambda s: s["image"])
        n_reused = sum(bool(s.pop("reused", False)) for s in summaries)
        assemble_tissue(self.pipeline, plan.sheet, summaries, out_dir, curation)
        record = {
            "mode": "tissue",
            "inputs": {
                "input_dir": str(plan.input_dir),
                "n_images": len(plan.images),
                "samples": str(plan.sheet_path) if plan.sheet_path else None,
                "samples_sha256": file_sha256(plan.sheet_path),
            },
            "sample_sheet_rows_without_images": list(plan.unmatched_sheet_rows),
            "lesion_threshold": calibration.lesion_record,
            "images": summaries,
            "sheet": plan.sheet.to_dict(orient="records"),  # image + sample-sheet columns: rebuilds read it
            "curation": tissue_curation_record(curation),
            "images_reused_from_previous_run": n_reused,
            "image_parts": {
                "n_images": len(calibration.parts),
                "n_parts": len(parts),
                "reused_from_previous_run": sum(bool(s["reused"]) for s in parts),
            },
        }
        return Assembled(record=record)

    def options(self, options: RunOptions) -> dict:
        return {"workers": options.workers, "scheduler": options.scheduler}

    def finish(self, out_dir: Path, options: RunOptions) -> None:
        if options.report:
            from imaging.report.tissue import build_tissue_report

            build_tissue_report(out_dir)


def execute_tissue(
    plan: TissuePlan,
    out_dir: str | Path,
    *,
    workers: int = 1,
    on_image: Callable[[dict], None] | None = None,
    command: list[str] | None = None,
    scheduler: str | None = None,
) -> dict:
    """Analyse every image of ``plan`` and write the tables, record and report, through the
    run engine (:func:`imaging.run.engine.run_assay`: the output folder held, curation read,
    images analysed by a previous run into ``out_dir`` with the same fingerprint reused).

    Parameters
    ----------
    plan : TissuePlan
        From :func:`imaging.tissue.plan.plan_tissue`.
    out_dir : str or Path
        The run folder.
    workers : int
        Local processes (1: this process), or Dask workers with ``scheduler='local'``.
    on_image : callable, optional
        Called with each stored unit's summary (an image, or a part of one: ``part`` key).
    command : list of str, optional
        The command line, recorded in ``run.json``.
    scheduler : str, optional
        Dask, as for plates (:func:`imaging.run.workers.run_tasks`); workers write into
        ``out_dir``, so a remote cluster needs it on a file system they share.

    Returns
    -------
    dict
        The run record (``run.json``).
    """
    outcome = run_assay(
        TissueAssay(plan),
        out_dir,
        RunOptions(workers=workers, scheduler=scheduler, command=command),
        on_unit=on_image,
    )
    return outcome.record
