"""One image (core, section, slide) as a unit of a tissue run, analysed on a worker.

:func:`analyse_image` reads the image tile by tile: tissue mask on an overview, stains
(white point, vectors), IHC cell scoring at full resolution (cells streamed to
``.images/<image>.cells.csv`` and, as QuPath detections, to ``detections/<image>.geojson``),
lesions on an overview, and an overlay thumbnail; its summary, with the image's fingerprint
and the seals of its files, is written last (``.images/<image>.json``), so a resumed run
reuses it when nothing it depends on changed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from imaging.config import TissuePipeline
from imaging.errors import InputError
from imaging.io.writers import StreamedTable, atomic_path, write_csv, write_json
from imaging.run.record import content_fingerprint, file_seal, file_sealed, file_sha256
from imaging.stains.vectors import choose_vectors, default_vectors, estimate_vectors
from imaging.stains.white import white_point
from imaging.tissue.burden import (
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

WORK_FOLDER = ".images"
DETECTIONS_FOLDER = "detections"  # QuPath GeoJSON of the scored cells, one file per image
SIGNAL_SAMPLE = 20000


def image_stem(path: Path) -> str:
    """An image's name in the run's tables and files: the file name without its suffix(es)."""
    stem = path.stem
    return stem[:-4] if stem.endswith(".ome") else stem


@dataclasses.dataclass(frozen=True)
class ImageTask:
    path: str
    pipeline: TissuePipeline
    out_dir: str
    lesion_threshold: float | None = None
    sample_only: bool = False  # first pass: return a sample of the lesion signal


def overview_and_tissue(slide: Slide, pipeline: TissuePipeline, resolution_um: float, *, physical: bool = True):
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
    overview, size, tissue = overview_and_tissue(slide, pipeline, rule.resolution_um)
    signal = lesion_signal(overview, rule.source, vectors=vectors, white=white)
    return smooth_signal(signal, smoothing_um=rule.smoothing_um, pixel_size_um=size), tissue, size, overview


MIN_OVERVIEW_PX = 256


@dataclasses.dataclass(frozen=True)
class WorkingScale:
    pixel_size_um: float | None  # the real one (pipeline, else file), None when unknown
    nominal_um: float  # what lengths are converted with: the real one, or 1 (work in pixels)
    overview_um: float  # pixel size of the overview the tissue is found on


def working_scale(slide: Slide, pipeline: TissuePipeline) -> WorkingScale:
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
    run-wide lesion threshold and the software version (:func:`imaging.run.record.content_fingerprint`)."""
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
        scale = working_scale(slide, pipeline)
        pixel_size, nominal = scale.pixel_size_um, scale.nominal_um
        overview, overview_size, tissue = overview_and_tissue(
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
