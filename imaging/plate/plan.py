"""Plan a plate run: every check before anything is written.

:func:`plan_run` checks the pipeline, file naming, that every field has every channel, that
the plate map describes every imaged well, that every image file's header is readable and
complete, and that the channels of a field agree in shape. The run itself is
:func:`imaging.plate.assay.execute` (the run engine driving the plate assay): fields are
measured in parallel, each result stored under ``OUT/<plate>/.fields/`` with its content
fingerprint (a re-run reuses results whose fingerprint matches), then per-plate tables
(:mod:`imaging.plate.tables`) and ``OUT/run.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from imaging.config import Pipeline, load_pipeline
from imaging.errors import InputError
from imaging.features.illumination import Flatfield, flatfield_from_files
from imaging.io import files
from imaging.io.discover import Field
from imaging.io.names import check_folder_name
from imaging.io.platemap import annotate_wells, read_platemap
from imaging.io.readers import check_field_image, read_channel
from imaging.io.sources import find_fields
from imaging.plate.calibrate import ILLUMINATION_FEW_FIELDS
from imaging.plate.tables import (
    clashing_output_column,
)

log = logging.getLogger(__name__)


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


def plan_run(
    pipeline: Pipeline | str | Path,
    input_dir: str | Path,
    *,
    platemap: str | Path | None = None,
    pattern: str | None = None,
    scene_map: str | Path | None = None,
    check_files: bool = True,
) -> RunPlan:
    """Check a run's inputs and list its fields (see module docstring); writes nothing.

    Parameters
    ----------
    pipeline : Pipeline, str or Path
        The validated pipeline, or its YAML file.
    input_dir : str or Path
        Folder of images (plain files or instrument containers), or an fsspec URL.
    platemap : str or Path, optional
        Plate-map CSV (plate, well and annotation columns).
    pattern : str, optional
        File-name regex, overriding the pipeline's naming.
    scene_map : str or Path, optional
        CSV mapping container scenes to wells and sites.
    check_files : bool
        Read every image header (truncation, shape, channels); False only for tools that
        check later.

    Returns
    -------
    RunPlan
        The fields, their annotations and what the record needs.

    Raises
    ------
    InputError
        For anything a user can fix, naming the file and the fix.
    """
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
