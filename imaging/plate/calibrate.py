"""Run-wide quantities of a plate, computed before its fields: the X-gal vector and the flat-fields."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imaging.config import Pipeline
from imaging.features.illumination import Flatfield, FlatfieldEstimator
from imaging.features.sabgal import STAIN_VECTORS, estimate_xgal_vector, stained_od_sample
from imaging.io.discover import Field
from imaging.io.writers import write_float_image
from imaging.plate.measure import field_pixel_size, load_field_images, measure_field

if TYPE_CHECKING:
    from imaging.plate.plan import RunPlan

log = logging.getLogger(__name__)

STAIN_SAMPLE_FIELDS = 8
ILLUMINATION_SAMPLE_FIELDS = 96  # fields spread over the plate for an illumination estimate
ILLUMINATION_FEW_FIELDS = 10  # below this the estimate follows where the cells happen to lie


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
