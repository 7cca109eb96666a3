"""Run one field: read channels, segment, measure. Nothing here but sequencing.

:func:`measure_field` is the pure core (arrays in, tables out) shared by the batch run,
the CLI and the napari plugin, so an interactive review and a batch run compute the same
numbers. :func:`process_field` adds file reading and writes one field's results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from imaging.config import Pipeline
from imaging.errors import InputError
from imaging.features.illumination import Flatfield, correct_channels
from imaging.features.intensity import background_mask, compartments_of, measure_compartments
from imaging.features.morphology import measure_morphology
from imaging.features.qc import edge_blur_px, saturated_fraction
from imaging.features.sabgal import STAIN_VECTORS, measure_sabgal
from imaging.io import files
from imaging.io.containers import container_digest, read_planes
from imaging.io.discover import Field
from imaging.io.readers import pixel_size_from_tiff, read_channel
from imaging.run.record import content_digest, content_fingerprint
from imaging.segment import derive_cells, segment_nuclei

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FieldMeasurement:
    """What one field yields: per-cell table, field summary and the label images."""

    cells: pd.DataFrame
    summary: dict
    nuclei: np.ndarray
    cell_labels: np.ndarray


def nucleus_radius_setting(pipeline: Pipeline, pixel_size_um: float | None) -> float | None:
    """Typical nucleus radius in px fixed by the pipeline, or None to estimate it."""
    seg = pipeline.segmentation
    if seg.nucleus_diameter_px:
        return seg.nucleus_diameter_px / 2
    if seg.nucleus_diameter_um:
        if not pixel_size_um:
            raise InputError(
                "segmentation.nucleus_diameter_um needs the pixel size",
                fix="set pixel_size_um in the pipeline, or give nucleus_diameter_px",
            )
        return seg.nucleus_diameter_um / pixel_size_um / 2
    return None


def expansion_distance(pipeline: Pipeline, radius_px: float, pixel_size_um: float | None) -> float:
    """How far cells reach beyond their nucleus, in px."""
    cells = pipeline.cells
    if cells.max_expansion_px is not None:
        return float(cells.max_expansion_px)
    if cells.max_expansion_um is not None:
        if not pixel_size_um:
            raise InputError(
                "cells.max_expansion_um needs the pixel size",
                fix="set pixel_size_um in the pipeline, or give cells.max_expansion_px",
            )
        return cells.max_expansion_um / pixel_size_um
    return cells.expansion_factor * radius_px


def segmentation_options(pipeline: Pipeline, pixel_size_um: float | None) -> dict:
    """Keyword options for :func:`imaging.segment.segment_nuclei` from the pipeline."""
    seg = pipeline.segmentation
    radius = nucleus_radius_setting(pipeline, pixel_size_um)
    if seg.method == "classical":
        return {
            "method": "classical",
            "radius": radius,
            "flatten_background": seg.flatten_background,
            "min_distance_fraction": seg.min_distance_fraction,
            "min_area_fraction": seg.min_area_fraction,
        }
    return {
        "method": "cellpose",
        "model": seg.model,
        "diameter": None if radius is None else 2 * radius,
        "flow_threshold": seg.flow_threshold,
        "cellprob_threshold": seg.cellprob_threshold,
        "gpu": seg.gpu,
    }


def measure_field(
    images: dict[str, np.ndarray],
    pipeline: Pipeline,
    *,
    pixel_size_um: float | None = None,
    xgal_vector=None,
    illumination: dict[str, Flatfield] | None = None,
    threads: int = 1,
) -> FieldMeasurement:
    """Segment and measure one field.

    Parameters
    ----------
    images : dict of str to ndarray
        Channel name -> image as read (2-D for fluorescence, (M, N, 3) for brightfield).
    pipeline : Pipeline
    pixel_size_um : float, optional
        Physical pixel size; adds ``*_um2`` areas.
    xgal_vector : sequence of 3 floats, optional
        X-gal stain vector for SA-beta-gal (plate estimate or explicit); default vector
        when None.
    illumination : dict of str to Flatfield, optional
        Flat-fields of the channels to correct. Saturation is measured on the images as
        read; segmentation, focus and intensities see the corrected images.
    threads : int
        Threads for the field's image-wide steps (segmentation, cells, focus; see
        :mod:`imaging.tiles`). The numbers do not depend on it.

    Returns
    -------
    FieldMeasurement
        ``cells`` (one row per cell, columns of :meth:`Pipeline.cell_columns`),
        ``summary`` (field-level numbers: counts, QC measures, background levels).
    """
    saturation = {f"saturated_fraction_{name}": saturated_fraction(image) for name, image in images.items()}
    images = correct_channels(images, illumination)
    with ThreadPoolExecutor(max_workers=threads) if threads > 1 else contextlib.nullcontext() as side:
        # With threads to spare, the steps that do not depend on the segmentation run beside it
        # (the focus measure), and the channels' intensities beside each other: the compiled
        # kernels and numpy's large operations release Python's lock. The same numbers.
        focus = side.submit(edge_blur_px, images[pipeline.focus_channel]) if threads > 1 else None
        nuclei_image = images[pipeline.segmentation.channel]
        nuclei, seg_info = segment_nuclei(
            nuclei_image, threads=threads, **segmentation_options(pipeline, pixel_size_um)
        )
        radius = float(seg_info["radius_px"])
        cytoplasm = images.get(pipeline.cells.cytoplasm_channel) if pipeline.cells.cytoplasm_channel else None
        cell_labels = derive_cells(
            nuclei,
            method=pipeline.cells.method,
            cytoplasm=cytoplasm,
            radius=radius,
            distance=expansion_distance(pipeline, radius, pixel_size_um),
            threads=threads,
        )
        margin = max(3.0, radius / 2)
        cell_free = background_mask(cell_labels, margin=margin)
        compartments = compartments_of(nuclei, cell_labels)  # the ids found once, for morphology and intensities
        table = measure_morphology(nuclei, cell_labels, pixel_size_um=pixel_size_um, compartments=compartments)
        summary: dict = {
            "n_cells": int(len(table)),
            "nucleus_radius_px": radius,
            "focus_blur_px": (
                focus.result() if focus is not None else edge_blur_px(images[pipeline.focus_channel], threads=threads)
            ),
            **saturation,
        }
        compartments.ids  # made here, before threads share it  # noqa: B018

        def intensities(spec):
            return measure_compartments(
                images[spec.channel],
                nuclei,
                cell_labels,
                prefix=spec.column_prefix,
                background=spec.background,
                cell_free=cell_free,
                compartments=compartments,
            )

        specs = pipeline.measure.intensity
        parts = (
            list(side.map(intensities, specs)) if threads > 1 and len(specs) > 1 else [intensities(s) for s in specs]
        )
    for part, info in parts:  # merged in the pipeline's order whichever finished first
        table = table.merge(part, on="label", how="left")
        summary |= info
    if pipeline.measure.sabgal:
        spec = pipeline.measure.sabgal
        vector = STAIN_VECTORS["xgal"] if xgal_vector is None else xgal_vector
        part, info = measure_sabgal(
            images[spec.channel],
            nuclei,
            cell_labels,
            stain_vector=vector,
            pixel_threshold=spec.stained_pixel_od,
            cell_free=cell_free,
        )
        table = table.merge(part, on="label", how="left")
        summary |= info
    table = table.reindex(columns=pipeline.cell_columns())
    return FieldMeasurement(cells=table, summary=summary, nuclei=nuclei, cell_labels=cell_labels)


def load_field_images(field: Field, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """Read every pipeline channel of ``field`` (from its files, or its container's planes);
    InputError if their shapes disagree."""
    if field.plane is not None:
        images = read_planes(field.plane, pipeline)
    else:
        images = {
            name: read_channel(field.paths[name], kind=pipeline.channels[name].kind) for name in pipeline.channels
        }
    shapes = {name: image.shape[:2] for name, image in images.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{files.name(field.paths[n])} {s}" for n, s in shapes.items())
        raise InputError(
            f"the channels of plate {field.plate}, well {field.well}, site {field.site} differ in size: {listed}",
            path=files.name(field.paths[pipeline.segmentation.channel]),
            fix="export every channel of a field at the same size",
        )
    return images


def field_pixel_size(field: Field, pipeline: Pipeline) -> float | None:
    """Pixel size: the pipeline's, else the nuclei image's TIFF metadata, else None."""
    if pipeline.pixel_size_um:
        return pipeline.pixel_size_um
    if field.plane is not None:
        return field.plane.pixel_size_um
    if field.pixel_size_um is not None:  # the instrument's index: TIFF resolution tags can be the camera's
        return field.pixel_size_um
    return pixel_size_from_tiff(field.paths[pipeline.segmentation.channel])


# What a field's measurement depends on. QC limits, calls, comparisons, output and names are
# applied to the stored per-field results afterwards: changing them reuses every field.
FIELD_SETTINGS = ("channels", "pixel_size_um", "illumination", "segmentation", "cells", "measure")


def field_settings(pipeline: Pipeline) -> dict:
    """The part of ``pipeline`` that :func:`measure_field` reads (see FIELD_SETTINGS)."""
    return pipeline.model_dump(mode="json", include=set(FIELD_SETTINGS)) | {"focus_channel": pipeline.focus_channel}


def field_fingerprint(
    field: Field, pipeline: Pipeline, xgal_vector, illumination: dict[str, Flatfield] | None = None
) -> str:
    """Content hash of everything a field's result depends on: the channel files' bytes (or
    the container's, with the plane), the pipeline's field settings (:func:`field_settings`),
    the segmentation model file and the plate-level stain vector and flat-fields."""
    from imaging import __version__

    model = None
    if pipeline.segmentation.method == "cellpose":
        from imaging.segment.cellpose_backend import describe_model

        model = describe_model(pipeline.segmentation.model)["model_sha256"]
    payload = {
        "version": __version__,
        "pipeline": field_settings(pipeline),
        "segmentation_model_sha256": model,
        "files": (
            {name: content_digest(path) for name, path in sorted(field.paths.items())}
            if field.plane is None
            else {"container": container_digest(field.plane), "plane": dataclasses.asdict(field.plane) | {"path": None}}
        ),
        "field_pixel_size_um": field.pixel_size_um,
        "xgal_vector": None if xgal_vector is None else [round(float(v), 12) for v in xgal_vector],
        "illumination": {name: flat.sha256 for name, flat in sorted((illumination or {}).items())},
    }
    return content_fingerprint(payload)
