"""Run a tissue pipeline over sections or cores: plan, analyse images, tables, record.

1. :func:`plan_tissue` checks everything first: pipeline, image files (headers and
   truncation), pixel size where areas are needed, and the sample sheet.
2. With ``lesions.threshold: auto``, a first pass samples the lesion signal of every
   image's tissue and derives one threshold for the run (see :func:`lesion_threshold`).
3. :func:`analyse_image` (in worker processes) reads each image tile by tile: tissue mask
   on an overview, IHC cell scoring at full resolution (cells streamed to a per-image
   file), lesions on an overview; it writes an overlay thumbnail.
4. Tables: ``cells.csv``, ``regions.csv`` (IHC per image), ``lesions.csv``,
   ``sections.csv`` (burden per image), ``samples.csv`` (per animal or patient), then
   ``comparisons.csv``, ``run.json`` and ``report.html``.
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
from scipy import ndimage as ndi

from imaging import curation as curation_log
from imaging.config import TissuePipeline, load_pipeline
from imaging.errors import InputError
from imaging.features.thresholds import fit_two_gaussians, mixture_boundary
from imaging.io.readers import check_image_file
from imaging.io.run_folder import check_same_assay, claimed
from imaging.io.writers import StreamedTable, atomic_path, write_csv, write_json
from imaging.record import content_fingerprint, file_seal, file_sealed, file_sha256, read_record, software_versions
from imaging.runner import collect
from imaging.stains.vectors import choose_vectors, default_vectors, estimate_vectors
from imaging.stains.white import white_point
from imaging.tissue.burden import (
    LESION_COLUMNS,
    detect_lesions,
    lesion_signal,
    lesion_table,
    section_summary,
    smooth_signal,
)
from imaging.tissue.ihc import CELL_COLUMNS, score_cells, summarize_scores
from imaging.tissue.mask import tissue_mask
from imaging.tissue.review import (
    CLASS_COLOURS,
    Crop,
    GeoJSONWriter,
    cell_features,
    nucleus_outlines,
    outlined,
    tile_crop,
)
from imaging.tissue.slide import Slide

log = logging.getLogger(__name__)

TISSUE_SUFFIXES = (".tif", ".tiff", ".svs", ".png", ".jpg", ".jpeg")
WORK_FOLDER = ".images"
DETECTIONS_FOLDER = "detections"  # QuPath GeoJSON of the scored cells, one file per image
SIGNAL_SAMPLE = 20000
MIN_LESION_SEPARATION = 2.0  # Ashman's D between lesion and normal tissue signal


@dataclasses.dataclass(frozen=True)
class TissuePlan:
    pipeline: TissuePipeline
    pipeline_path: Path | None
    input_dir: Path
    images: tuple[Path, ...]
    sheet: pd.DataFrame  # image (stem) + sample-sheet columns, one row per image
    sheet_path: Path | None
    unmatched_sheet_rows: tuple[str, ...]

    @property
    def annotation_columns(self) -> list[str]:
        return [c for c in self.sheet.columns if c != "image"]


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Sample sheet: an ``image`` column (file name or stem) and annotations (``sample``,
    ``group``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("sample sheet not found", path=path, fix="check the --samples argument")
    try:
        sheet = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as CSV ({exc})", path=path, fix="save it as comma-separated UTF-8") from None
    sheet.columns = [str(c).strip().lower().replace(" ", "_") for c in sheet.columns]
    if "image" not in sheet.columns:
        raise InputError(
            f"has no 'image' column (columns: {', '.join(sheet.columns)})",
            path=path,
            fix="add a column 'image' with each file's name",
        )
    sheet["image"] = [
        Path(v.strip()).stem if Path(v.strip()).suffix.lower() in TISSUE_SUFFIXES + (".ome",) else v.strip()
        for v in sheet["image"]
    ]
    sheet["image"] = [v[:-4] if v.endswith(".ome") else v for v in sheet["image"]]
    duplicated = sheet["image"][sheet["image"].duplicated()]
    if not duplicated.empty:
        raise InputError(f"image {duplicated.iloc[0]!r} is listed twice", path=path, fix="keep one row per image")
    return sheet


def image_stem(path: Path) -> str:
    stem = path.stem
    return stem[:-4] if stem.endswith(".ome") else stem


def plan_tissue(
    pipeline: TissuePipeline | str | Path, input_dir: str | Path, *, samples: str | Path | None = None
) -> TissuePlan:
    """Check a tissue run's inputs (see module docstring, step 1)."""
    pipeline_path = None
    if not isinstance(pipeline, TissuePipeline):
        pipeline_path = Path(pipeline)
        pipeline = load_pipeline(pipeline_path)
        if not isinstance(pipeline, TissuePipeline):
            raise InputError("is a plate pipeline", path=pipeline_path, fix="give a pipeline with mode: tissue")
    input_dir = Path(input_dir)
    if input_dir.is_file():
        images = [input_dir]
    elif input_dir.is_dir():
        images = sorted(
            p
            for p in input_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in TISSUE_SUFFIXES and not p.name.startswith(".")
        )
    else:
        raise InputError("no such file or folder", path=input_dir, fix="check the INPUT argument")
    if not images:
        raise InputError(
            "no tissue images (.tif, .tiff, .svs, .png, .jpg) found",
            path=input_dir,
            fix="point INPUT at the folder of sections or cores",
        )
    stems = [image_stem(p) for p in images]
    if len(set(stems)) != len(stems):
        raise InputError("two images share a name", path=input_dir, fix="give every image a distinct file name")
    for path in images:
        check_image_file(path)
        check_tissue_image(path, pipeline)
    if samples is not None:
        sheet = read_sample_sheet(samples)
        missing = sorted(set(stems) - set(sheet["image"]))
        if missing:
            raise InputError(
                f"the sample sheet does not list image(s) {', '.join(missing[:10])}",
                path=samples,
                fix="add a row for every image",
            )
        unmatched = tuple(sorted(set(sheet["image"]) - set(stems)))
        sheet = sheet[sheet["image"].isin(stems)]
        sheet = sheet.set_index("image").loc[stems].reset_index()
    else:
        sheet, unmatched = pd.DataFrame({"image": stems}), ()
    settings = pipeline.comparison
    if settings.control_group is not None and samples is not None:
        if settings.group_column not in sheet.columns:
            raise InputError(
                f"has no {settings.group_column!r} column for comparison.control_group",
                path=samples,
                fix="add the column or change comparison.group_column",
            )
        if settings.control_group not in set(sheet[settings.group_column]):
            raise InputError(
                f"no image has {settings.group_column} {settings.control_group!r}",
                path=samples,
                fix="correct comparison.control_group in the pipeline or the sheet",
            )
    return TissuePlan(
        pipeline=pipeline,
        pipeline_path=pipeline_path,
        input_dir=input_dir,
        images=tuple(images),
        sheet=sheet,
        sheet_path=Path(samples) if samples else None,
        unmatched_sheet_rows=unmatched,
    )


PIXEL_SIZE_TOLERANCE = 0.05  # relative disagreement between the pipeline's and the file's pixel size


def check_tissue_image(path: Path, pipeline: TissuePipeline) -> None:
    """What can be known about one image before any work: RGB where cells are scored, a
    pixel size where lesion areas need one and that agrees with the file's, tissue present."""
    with Slide(path) as slide:
        recorded = slide.pixel_size_um
        if pipeline.cells is not None and not slide.is_rgb:
            raise InputError(
                f"IHC cell scoring needs an RGB brightfield image; this one has shape "
                f"{slide.shapes[0]} without 3 colour channels",
                path=path,
                fix="export the section as RGB, or remove 'cells' from the pipeline",
            )
        given = pipeline.pixel_size_um
        if given and recorded and abs(recorded - given) > PIXEL_SIZE_TOLERANCE * recorded:
            raise InputError(
                f"the pipeline's pixel_size_um {given:g} contradicts the file's {recorded:g} um/pixel",
                path=path,
                fix="remove pixel_size_um from the pipeline (the file's value is used) or correct it",
            )
        if pipeline.lesions is not None and not (given or recorded):
            raise InputError(
                "the pixel size is unknown and lesion areas need it", path=path, fix="set pixel_size_um in the pipeline"
            )
        # the overview is read again by the analysis; from a pyramid level that costs little, and
        # a blank image must be refused before anything is written
        # no minimum piece size here: a field of pale stroma with scattered nuclei is not blank
        _, _, stained = _overview_and_tissue(
            slide, pipeline, _working_scale(slide, pipeline).overview_um, physical=False
        )
        if not stained.any():
            raise InputError(
                "no tissue found (the image is blank glass or too faint to tell from it)",
                path=path,
                fix="remove the image from the input folder, or check it is the stained section",
            )


# ---- per image ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageTask:
    path: str
    pipeline: TissuePipeline
    out_dir: str
    lesion_threshold: float | None = None
    sample_only: bool = False  # first pass: return a sample of the lesion signal


def _overview_and_tissue(slide: Slide, pipeline: TissuePipeline, resolution_um: float, *, physical: bool = True):
    """Overview, its pixel size, and the tissue mask (no minimum area without a real pixel size)."""
    overview, size = slide.overview(resolution_um)
    tissue = tissue_mask(
        overview,
        pixel_size_um=size,
        min_area_um2=pipeline.tissue.min_area_um2 if physical else 0,
        brightfield=slide.is_rgb,
    )
    return overview, size, tissue


def _stain_vectors(pipeline: TissuePipeline, overview, tissue, white) -> tuple[dict, str]:
    names = pipeline.stains.names
    setting = pipeline.stains.vectors
    if setting == "default":
        return default_vectors(names), "default"
    if setting == "estimate":
        return estimate_vectors(overview, tissue, names, white=white)
    if setting == "auto":
        return choose_vectors(overview, tissue, names, white=white)
    vectors = default_vectors(names) | {k: np.asarray(v, float) / np.linalg.norm(v) for k, v in setting.items()}
    return vectors, "pipeline"


def _lesion_inputs(slide: Slide, pipeline: TissuePipeline, vectors, white):
    rule = pipeline.lesions
    overview, size, tissue = _overview_and_tissue(slide, pipeline, rule.resolution_um)
    signal = lesion_signal(overview, rule.source, vectors=vectors, white=white)
    return smooth_signal(signal, smoothing_um=rule.smoothing_um, pixel_size_um=size), tissue, size, overview


MIN_OVERVIEW_PX = 256


@dataclasses.dataclass(frozen=True)
class WorkingScale:
    pixel_size_um: float | None  # the real one (pipeline, else file), None when unknown
    nominal_um: float  # what lengths are converted with: the real one, or 1 (work in pixels)
    overview_um: float  # pixel size of the overview the tissue is found on


def _working_scale(slide: Slide, pipeline: TissuePipeline) -> WorkingScale:
    """Pixel sizes for one image. Without a real pixel size the work is in pixels (areas not
    in um; ``slide.pixel_size_um`` is set to 1) and the overview is at most 1024 px a side."""
    pixel_size = pipeline.pixel_size_um or slide.pixel_size_um
    if pixel_size:
        # a small field (a core crop) keeps at least MIN_OVERVIEW_PX on its short side
        finest_needed = min(pipeline.tissue.resolution_um, min(slide.shape) * pixel_size / MIN_OVERVIEW_PX)
        return WorkingScale(pixel_size, pixel_size, max(finest_needed, pixel_size))
    slide.pixel_size_um = 1.0
    return WorkingScale(None, 1.0, float(max(1, int(np.ceil(max(slide.shape) / 1024)))))


# What an image's analysis reads of the pipeline: names and comparisons are applied to the
# stored results afterwards, so changing them reuses every image (as FIELD_SETTINGS for plates).
IMAGE_SETTINGS = ("pixel_size_um", "stains", "tissue", "cells", "lesions")


def image_fingerprint(task: ImageTask) -> str:
    """Everything an image's result depends on: its bytes, the pipeline's image settings, the
    run-wide lesion threshold and the software version (:func:`imaging.record.content_fingerprint`)."""
    from imaging import __version__

    return content_fingerprint(
        {
            "version": __version__,
            "image": file_sha256(task.path),
            "pipeline": task.pipeline.model_dump(mode="json", include=set(IMAGE_SETTINGS)),
            "lesion_threshold": task.lesion_threshold,
        }
    )


def image_outputs(pipeline: TissuePipeline, out_dir: Path, stem: str) -> dict[str, Path]:
    """The files an image's analysis writes that its tables and report are built from."""
    outputs = {"overlay": out_dir / "plots" / f"{stem}_overlay.png"}
    if pipeline.cells is not None:
        outputs |= {
            "cells": out_dir / WORK_FOLDER / f"{stem}.cells.csv",
            "detections": out_dir / DETECTIONS_FOLDER / f"{stem}.geojson",
        }
    if pipeline.lesions is not None:
        outputs["lesions"] = out_dir / WORK_FOLDER / f"{stem}.lesions.csv"
    return outputs


def stored_image_summary(task: ImageTask, fingerprint: str) -> dict | None:
    """A complete stored result of the image with this fingerprint (None if there is none, or
    if one of its files was changed or damaged after it was written)."""
    out_dir, stem = Path(task.out_dir), image_stem(Path(task.path))
    path = out_dir / WORK_FOLDER / f"{stem}.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if summary.get("fingerprint") != fingerprint:
        return None
    seals = summary.get("outputs", {})
    for name, output in image_outputs(task.pipeline, out_dir, stem).items():
        if not file_sealed(output, seals.get(name)):
            log.warning("%s was changed or damaged after it was written: %s is analysed again", output, stem)
            return None
    return summary


def analyse_image(task: ImageTask) -> dict:
    """One image, or its stored result when nothing it depends on changed (a resumed run):
    the summary JSON is written last, so its presence marks the image complete."""
    if task.sample_only:
        return _analyse_image(task)
    fingerprint = image_fingerprint(task)
    stored = stored_image_summary(task, fingerprint)
    if stored is not None:
        return stored | {"reused": True}
    summary = _analyse_image(task)
    out_dir, stem = Path(task.out_dir), image_stem(Path(task.path))
    outputs = image_outputs(task.pipeline, out_dir, stem)
    summary |= {"fingerprint": fingerprint, "outputs": {name: file_seal(p) for name, p in outputs.items()}}
    write_json(summary, out_dir / WORK_FOLDER / f"{stem}.json")
    return summary | {"reused": False}


def _analyse_image(task: ImageTask) -> dict:
    """One image: tissue, stains, IHC cells and/or lesions (see module docstring)."""
    pipeline, path = task.pipeline, Path(task.path)
    out_dir = Path(task.out_dir)
    with Slide(path, pixel_size_um=pipeline.pixel_size_um) as slide:
        scale = _working_scale(slide, pipeline)
        pixel_size, nominal = scale.pixel_size_um, scale.nominal_um
        overview, overview_size, tissue = _overview_and_tissue(
            slide, pipeline, scale.overview_um, physical=bool(pixel_size)
        )
        white = white_point(overview) if slide.is_rgb else None
        vectors, vector_source = _stain_vectors(pipeline, overview, tissue, white) if slide.is_rgb else ({}, "n/a")
        if task.sample_only:
            signal, lesion_tissue, _, _ = _lesion_inputs(slide, pipeline, vectors, white)
            values = signal[lesion_tissue]
            rng = np.random.default_rng(0)
            return {
                "image": image_stem(path),
                "sample": rng.choice(values, min(SIGNAL_SAMPLE, values.size), replace=False) if values.size else values,
            }
        tissue_area_um2 = float(tissue.sum()) * overview_size**2
        summary = {
            "image": image_stem(path),
            "path": str(path),
            "pixel_size_um": pixel_size,
            "shape": list(slide.shape),
            "pyramid_levels": len(slide.shapes),
            "stain_vectors": {k: [float(x) for x in v] for k, v in vectors.items()},
            "stain_vector_source": vector_source,
            "white": None if white is None else [float(x) for x in white],
        }
        overlay_cells = None
        if pipeline.cells is not None:
            if not slide.is_rgb:
                raise InputError(
                    "IHC cell scoring needs an RGB brightfield image",
                    path=path,
                    fix="export the section as RGB, or remove 'cells' from the pipeline",
                )
            # tiles are chosen on any stain (no minimum piece: pale stroma may leave only the
            # nuclei above the mask's threshold); the tissue area keeps the minimum piece size
            stained = tissue_mask(overview, pixel_size_um=overview_size, min_area_um2=0, brightfield=True)
            scored = _score_image(
                slide, pipeline, vectors, white, stained, overview_size, nominal, pixel_size, out_dir, image_stem(path)
            )
            overlay_cells = scored["overlay"]
            area_mm2 = tissue_area_um2 / 1e6 if pixel_size else None
            summary["ihc"] = summarize_scores(scored["classes"], area_mm2)
            summary["nucleus_detection"] = scored["radius"]
        lesion_labels = None
        if pipeline.lesions is not None:
            signal, lesion_tissue, size, _ = _lesion_inputs(slide, pipeline, vectors, white)
            threshold = (
                task.lesion_threshold if task.lesion_threshold is not None else float(pipeline.lesions.threshold)
            )
            lesion_labels = detect_lesions(
                signal,
                lesion_tissue,
                threshold=threshold,
                pixel_size_um=size,
                min_area_um2=pipeline.lesions.min_area_um2,
                fill_holes=pipeline.lesions.fill_holes,
            )
            lesions = lesion_table(lesion_labels, signal, pixel_size_um=size)
            write_csv(lesions, out_dir / WORK_FOLDER / f"{image_stem(path)}.lesions.csv")
            summary["burden"] = section_summary(lesions, float(lesion_tissue.sum()) * size**2) | {
                "lesion_threshold": threshold
            }
            lesion_labels = (lesion_labels, size)
        summary["tissue_area_mm2"] = tissue_area_um2 / 1e6 if pixel_size else None
        _write_overlay(
            overview,
            overview_size,
            tissue,
            overlay_cells,
            lesion_labels,
            out_dir / "plots" / f"{image_stem(path)}_overlay.png",
        )
    return summary


def _score_image(
    slide: Slide,
    pipeline: TissuePipeline,
    vectors,
    white,
    tissue,
    overview_size,
    nominal_size,
    pixel_size,
    out_dir: Path,
    stem: str,
) -> dict:
    """IHC scoring tile by tile. Cells are streamed to ``.images/<stem>.cells.csv`` and, as
    QuPath detections, to ``detections/<stem>.geojson``; the few densest tiles give the
    report's full-resolution crops. Returns the classes, the cell positions and classes for
    the overview (overview pixels) and the nucleus scale used."""
    spec = pipeline.cells
    fixed_radius = None if spec.nucleus_diameter_um is None else spec.nucleus_diameter_um / nominal_size / 2
    expansion = spec.cell_expansion_um / nominal_size
    margin = int(max(16, 4 * (fixed_radius or 16) + expansion))
    scale = overview_size / nominal_size  # full-resolution pixels per overview pixel
    # The stain mask only decides which tiles hold tissue (generously: dilated); every cell
    # found in a tile's core counts, so a crop of tissue is scored whole, as an annotator
    # would count it.
    tissue = ndi.binary_dilation(tissue, iterations=3)
    classes, overlay, radii, crops, detections = [], [], [], [], []
    work = out_dir / WORK_FOLDER
    with (
        StreamedTable(work / f"{stem}.cells", empty=["image", *CELL_COLUMNS]) as cells_table,
        atomic_path(out_dir / DETECTIONS_FOLDER / f"{stem}.geojson") as geo_temporary,
        open(geo_temporary, "w") as geo_handle,
    ):
        geojson = GeoJSONWriter(geo_handle)
        for tile in slide.tiles(spec.tile_px, margin):
            rows = slice(int(tile.row / scale), int(np.ceil((tile.row + tile.height) / scale)))
            cols = slice(int(tile.col / scale), int(np.ceil((tile.col + tile.width) / scale)))
            if not tissue[rows, cols].any():
                continue
            rgb = slide.read_region(tile.read_row, tile.read_col, tile.read_height, tile.read_width)
            keep = np.zeros(rgb.shape[:2], bool)  # the tile's core: each cell belongs to one tile
            keep[tile.margin_top : tile.margin_top + tile.height, tile.margin_left : tile.margin_left + tile.width] = (
                True
            )
            cells, nuclei, _, info = score_cells(
                rgb,
                vectors=vectors,
                white=white,
                thresholds=spec.thresholds,
                compartment=spec.compartment,
                nucleus_radius_px=fixed_radius,
                pixel_size_um=pixel_size,
                expansion_px=expansion,
                detection=spec.detection,
                keep=keep,
                max_elongation=spec.max_nucleus_elongation,
            )
            radii.append(info["radius_px"])
            detections.append(info["detection"])
            if cells.empty:
                continue
            outlines = nucleus_outlines(nuclei, cells["label"])
            geojson.write(cell_features(cells, outlines, offset=(tile.read_row, tile.read_col)))
            crops = _keep_densest(
                crops,
                tile_crop(
                    rgb,
                    nuclei,
                    cells,
                    core=(tile.margin_top, tile.margin_left, tile.height, tile.width),
                    offset=(tile.read_row, tile.read_col),
                ),
            )
            cells["centroid_row"] += tile.read_row
            cells["centroid_col"] += tile.read_col
            cells = cells.drop(columns="label")
            cells.insert(0, "image", stem)
            cells_table.write(cells)
            classes.append(cells.loc[cells["counted"], "dab_class"].to_numpy(np.int8))  # summaries: counted cells
            overlay.append(
                np.column_stack(
                    [cells[["centroid_row", "centroid_col"]].to_numpy() / scale, cells["dab_class"].to_numpy()]
                )
            )
        geojson.close()
    for index, crop in enumerate(crops):
        _write_crop(crop, out_dir / "plots" / f"{stem}_cells_{index + 1}.png")
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int8)
    overlay = np.concatenate(overlay) if overlay else np.zeros((0, 3))
    radius = {
        "median_px": float(np.median(radii)) if radii else None,
        "source": "pipeline"
        if fixed_radius is not None
        else "estimated per tile" + (" (limited by the pixel size)" if pixel_size else ""),
    }
    radius["detection"] = sorted(set(detections))
    return {"classes": classes, "overlay": overlay, "radius": radius}


REPORT_CROPS = 3


def _keep_densest(crops: list[Crop], candidate: Crop) -> list[Crop]:
    """The :data:`REPORT_CROPS` crops with the most cells so far (memory: three crops)."""
    return sorted([*crops, candidate], key=lambda crop: -crop.n_cells)[:REPORT_CROPS]


def _write_crop(crop: Crop, path: Path) -> None:
    from matplotlib.figure import Figure

    from imaging.report.plots import save_png

    image = outlined(crop)
    height, width = image.shape[:2]
    figure = Figure(figsize=(width / 100, height / 100))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.imshow(image, interpolation="nearest")
    axes.set_axis_off()
    save_png(figure, path, dpi=100)


def _write_overlay(overview, overview_size, tissue, cells, lesions, path: Path) -> None:
    """Thumbnail: the overview with the tissue outline (green), lesion outlines (yellow)
    and every scored cell as a dot in its class colour (blue 0, yellow 1+, orange 2+, red 3+)."""
    from matplotlib.figure import Figure

    from imaging.report.plots import save_png

    step = max(1, int(np.ceil(max(overview.shape[:2]) / 800)))  # a thumbnail needs no more than 800 px
    image = np.asarray(overview[::step, ::step])
    image = np.clip(image * (255.0 / max(float(image.max()), 1.0)), 0, 255).astype(np.uint8)
    tissue = tissue[::step, ::step]
    overview_size = overview_size * step
    height, width = image.shape[:2]
    figure = Figure(figsize=(6, 6 * height / max(width, 1)))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    if tissue.any() and not tissue.all():
        axes.contour(tissue, levels=[0.5], colors=["#2ca02c"], linewidths=0.8)
    if lesions is not None and lesions[0].max() > 0:
        labels, size = lesions
        thin = max(1, int(np.ceil(max(labels.shape) / 800)))
        mask = labels[::thin, ::thin] > 0
        scale = size * thin / overview_size  # lesion-mask pixels -> thumbnail pixels
        rows, cols = np.arange(mask.shape[0]) * scale, np.arange(mask.shape[1]) * scale
        axes.contour(cols, rows, mask, levels=[0.5], colors=["yellow"], linewidths=1.2)
    if cells is not None and len(cells):
        shown = cells[:: max(1, len(cells) // 20000)]
        colours = np.asarray(CLASS_COLOURS, float)[shown[:, 2].astype(int)] / 255
        size = float(np.clip(4000 / max(len(shown), 1), 1.5, 12))
        axes.scatter(shown[:, 1] / step, shown[:, 0] / step, s=size, c=colours, linewidths=0)
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.set_axis_off()
    save_png(figure, path, dpi=100)


# ---- the run -----------------------------------------------------------------------------------
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


def _annotate(table: pd.DataFrame, sheet: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in sheet.columns if c != "image"]
    if not columns or table.empty:
        return table.reindex(columns=["image", *columns, *[c for c in table.columns if c != "image"]])
    merged = table.merge(sheet, on="image", how="left")
    return merged[["image", *columns, *[c for c in table.columns if c != "image"]]]


def _concatenate(parts: list[Path], out_path: Path, columns: list[str]) -> None:
    """Stream per-image tables into one CSV (atomically: :class:`imaging.io.writers.StreamedTable`)."""
    with StreamedTable(out_path.with_suffix(""), table_format="csv", empty=columns) as table:
        for part in parts:
            for chunk in pd.read_csv(part, chunksize=200000):
                table.write(chunk)


def sample_table(
    pipeline: TissuePipeline, sheet: pd.DataFrame, regions: pd.DataFrame, sections: pd.DataFrame
) -> pd.DataFrame:
    """Per animal / patient: sections pooled (lesion areas and tissue summed; IHC classes
    pooled by cell counts). ``sheet``: image + sample-sheet columns (:class:`TissuePlan`)."""
    key = pipeline.comparison.sample_column
    annotations = [c for c in sheet.columns if c not in ("image", key)]
    frames = []
    base = sheet.assign(**{key: sheet[key] if key in sheet else sheet["image"]})
    if not sections.empty:
        joined = sections.merge(base[["image", key]], on="image", suffixes=("", "_sheet"))
        grouped = joined.groupby(key, sort=True)
        frame = grouped.agg(
            n_sections=("image", "size"),
            n_lesions=("n_lesions", "sum"),
            lesion_area_mm2=("lesion_area_mm2", "sum"),
            tissue_area_mm2=("tissue_area_mm2", "sum"),
        )
        frame["lesion_percent_of_tissue"] = 100 * frame["lesion_area_mm2"] / frame["tissue_area_mm2"]
        frames.append(frame)
    if not regions.empty:
        joined = regions.merge(base[["image", key]], on="image", suffixes=("", "_sheet"))
        grouped = joined.groupby(key, sort=True)
        sums = grouped[["n_cells", "n_0", "n_1plus", "n_2plus", "n_3plus", "tissue_area_mm2"]].sum()
        frame = pd.DataFrame(index=sums.index)
        frame["n_regions"] = grouped.size()
        frame["n_cells"] = sums["n_cells"]
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["percent_positive"] = 100 * (sums["n_1plus"] + sums["n_2plus"] + sums["n_3plus"]) / sums["n_cells"]
            frame["h_score"] = 100 * (sums["n_1plus"] + 2 * sums["n_2plus"] + 3 * sums["n_3plus"]) / sums["n_cells"]
            frame["positive_cells_per_mm2"] = (sums["n_1plus"] + sums["n_2plus"] + sums["n_3plus"]) / sums[
                "tissue_area_mm2"
            ].replace(0, np.nan)
        frames.append(frame.rename(columns={"n_cells": "n_cells_scored"}))
    table = pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame(columns=[key])
    sheet_annotations = base.drop_duplicates(key).set_index(key)[annotations] if annotations else None
    if sheet_annotations is not None:
        table = table.merge(sheet_annotations, left_on=key, right_index=True, how="left")
        table = table[[key, *annotations, *[c for c in table.columns if c not in [key, *annotations]]]]
    return table


def compare_samples(pipeline: TissuePipeline, samples: pd.DataFrame) -> pd.DataFrame:
    """Each group against the control group, per readout, with samples as the unit (the
    samples of one run, or of several runs pooled by ``imaging report``)."""
    from imaging.stats import COMPARISON_COLUMNS, compare_groups, with_significance

    settings = pipeline.comparison
    group = settings.group_column
    if settings.control_group is None or group not in samples.columns:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    readouts = [
        c
        for c in (
            "lesion_percent_of_tissue",
            "n_lesions",
            "lesion_area_mm2",
            "h_score",
            "percent_positive",
            "positive_cells_per_mm2",
        )
        if c in samples.columns
    ]
    method = "mann-whitney" if settings.test == "mann-whitney" else "welch"
    rows = []
    for readout in readouts:
        values = samples[[group, readout]].dropna()
        reference = values.loc[values[group] == settings.control_group, readout].to_numpy(float)
        for name in [g for g in dict.fromkeys(values[group]) if g != settings.control_group]:
            test = values.loc[values[group] == name, readout].to_numpy(float)
            rows.append(
                {
                    "comparison": "group_vs_control",
                    "readout": readout,
                    "cell_line": "",
                    "genotype": name,
                    "treatment": "",
                    "reference": settings.control_group,
                    "unit": settings.sample_column,
                }
                | compare_groups(test, reference, method=method)
            )
    return with_significance(pd.DataFrame(rows, columns=COMPARISON_COLUMNS)).reindex(columns=COMPARISON_COLUMNS)


def assemble_tissue(
    pipeline: TissuePipeline, sheet: pd.DataFrame, summaries: list[dict], out_dir: Path, curation
) -> None:
    """The run's tables from its per-image results (``summaries``, sorted by image), leaving
    out the images a reviewer excluded (``curation.csv``): cells, regions, lesions, sections,
    samples and comparisons. A run and a rebuild after curation both come here."""
    summaries = [s for s in summaries if s["image"] not in curation.excluded_images]
    sheet = sheet[~sheet["image"].isin(list(curation.excluded_images))]
    work = out_dir / WORK_FOLDER
    regions = pd.DataFrame([{"image": s["image"], **s["ihc"]} for s in summaries if "ihc" in s])
    sections = pd.DataFrame(
        [
            {"image": s["image"], **{k: v for k, v in s["burden"].items() if k != "lesion_threshold"}}
            for s in summaries
            if "burden" in s
        ]
    )
    if pipeline.cells is not None:
        _concatenate(
            [work / f"{s['image']}.cells.csv" for s in summaries], out_dir / "cells.csv", ["image", *CELL_COLUMNS]
        )
        write_csv(_annotate(regions, sheet), out_dir / "regions.csv")
    if pipeline.lesions is not None:
        lesion_parts = []
        for s in summaries:
            part = pd.read_csv(work / f"{s['image']}.lesions.csv")
            part.insert(0, "image", s["image"])
            lesion_parts.append(part)
        lesions = pd.concat(lesion_parts, ignore_index=True) if lesion_parts else pd.DataFrame(columns=LESION_COLUMNS)
        lesions["area_mm2"] = lesions["area_um2"] / 1e6
        write_csv(_annotate(lesions, sheet), out_dir / "lesions.csv")
        write_csv(_annotate(sections, sheet), out_dir / "sections.csv")
    per_sample = sample_table(pipeline, sheet, regions, sections)
    write_csv(per_sample, out_dir / "samples.csv")
    write_csv(compare_samples(pipeline, per_sample), out_dir / "comparisons.csv")


def tissue_curation_record(curation) -> dict:
    """The run record's account of a tissue run's curation: every decision, the images excluded."""
    return {
        "file": curation_log.CURATION_FILE,
        "n_decisions": int(len(curation.log)),
        "decisions": curation.log.to_dict(orient="records"),
        "excluded_images": [{"image": i, "note": n} for i, n in sorted(curation.excluded_images.items())],
    }


def rebuild_tissue_tables(out_dir: str | Path) -> dict:
    """Rebuild a finished tissue run's tables from its per-image results, applying
    ``curation.csv`` (``imaging report``); updates ``run.json``. Returns the record."""
    out_dir = Path(out_dir)
    record, pipeline = read_record(out_dir)
    if record.get("mode") != "tissue":
        raise InputError("is not a tissue run", path=out_dir, fix="give the --out folder of a tissue `imaging run`")
    if "sheet" not in record:  # a run of an earlier version: its tables stand as written
        if curation_log.load(out_dir).excluded_images:
            raise InputError(
                "was run by an earlier version, whose run.json lacks the sample sheet a rebuild needs",
                path=out_dir,
                fix="re-run `imaging run` into this folder (analysed images are reused)",
            )
        record.setdefault("curation", {"excluded_images": []})
        return record
    with claimed(out_dir):
        curation = curation_log.load(out_dir)
        sheet = pd.DataFrame(record["sheet"], dtype=str)
        assemble_tissue(pipeline, sheet, sorted(record["images"], key=lambda s: s["image"]), out_dir, curation)
        record["curation"] = tissue_curation_record(curation)
        record["tables_rebuilt"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_json(record, out_dir / "run.json")
    return record


def execute_tissue(
    plan: TissuePlan,
    out_dir: str | Path,
    *,
    workers: int = 1,
    on_image: Callable[[dict], None] | None = None,
    command: list[str] | None = None,
    scheduler: str | None = None,
) -> dict:
    """Analyse every image of ``plan`` and write the tables, record and report (holding the
    output folder: :func:`imaging.io.run_folder.claimed`). Images analysed by a previous run
    into ``out_dir`` with the same fingerprint are reused. ``scheduler``: Dask, as for plates
    (:func:`imaging.runner.run_tasks`); workers write into ``out_dir``, so a remote cluster
    needs it on a file system they share."""
    out_dir = Path(out_dir)
    check_same_assay(out_dir, plan.pipeline.model_dump(mode="json"))
    with claimed(out_dir, command=command):
        return _execute_tissue_claimed(
            plan, out_dir, workers=workers, on_image=on_image, command=command, scheduler=scheduler
        )


def _execute_tissue_claimed(plan: TissuePlan, out_dir: Path, *, workers, on_image, command, scheduler) -> dict:
    started = dt.datetime.now(dt.timezone.utc)
    pipeline = plan.pipeline
    threshold_record = None
    lesion_value = None
    if pipeline.lesions is not None and pipeline.lesions.threshold == "auto":
        tasks = [ImageTask(str(p), pipeline, str(out_dir), sample_only=True) for p in plan.images]
        samples = collect(analyse_image, tasks, workers=workers, scheduler=scheduler)
        threshold_record = lesion_threshold([s["sample"] for s in samples])
        lesion_value = threshold_record["value"]
    elif pipeline.lesions is not None:
        threshold_record = {"value": float(pipeline.lesions.threshold), "method": "fixed"}
    tasks = [ImageTask(str(p), pipeline, str(out_dir), lesion_threshold=lesion_value) for p in plan.images]
    summaries = collect(analyse_image, tasks, workers=workers, on_result=on_image, scheduler=scheduler)
    summaries.sort(key=lambda s: s["image"])
    n_reused = sum(bool(s.pop("reused", False)) for s in summaries)
    curation = curation_log.load(out_dir)  # decisions of a previous review of this folder still apply
    assemble_tissue(pipeline, plan.sheet, summaries, out_dir, curation)
    record = {
        "mode": "tissue",
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
            "n_images": len(plan.images),
            "samples": str(plan.sheet_path) if plan.sheet_path else None,
            "samples_sha256": file_sha256(plan.sheet_path),
        },
        "sample_sheet_rows_without_images": list(plan.unmatched_sheet_rows),
        "lesion_threshold": threshold_record,
        "images": summaries,
        "sheet": plan.sheet.to_dict(orient="records"),  # image + sample-sheet columns: rebuilds read it
        "curation": tissue_curation_record(curation),
        "images_reused_from_previous_run": n_reused,
        "options": {"workers": workers, "scheduler": scheduler},
    }
    write_json(record, out_dir / "run.json")
    from imaging.report.tissue import build_tissue_report

    build_tissue_report(out_dir)
    return record
