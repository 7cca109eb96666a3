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
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from imaging.config import TissuePipeline
from imaging.errors import InputError
from imaging.io.writers import StreamedTable, atomic_path, write_csv, write_json
from imaging.run.record import content_digest, content_fingerprint, file_seal, file_sealed
from imaging.stains.vectors import (
    choose_vectors,
    corrected_for_leak,
    default_vectors,
    estimate_vectors,
    haematoxylin_leak,
)
from imaging.stains.white import white_point
from imaging.tissue.burden import (
    detect_lesions,
    lesion_signal,
    lesion_table,
    section_summary,
    smooth_signal,
)
from imaging.tissue.ihc import CELL_COLUMNS, FoundNuclei, find_nuclei, score_cells, summarize_scores
from imaging.tissue.mask import tissue_mask
from imaging.tissue.review import (
    CLASS_COLOURS,
    Crop,
    GeoJSONWriter,
    cell_features,
    nucleus_outlines,
    outlined,
    serialised,
    tile_crop,
)
from imaging.tissue.slide import TILED_SUFFIXES, Slide

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
    fingerprint: str | None = None  # computed on the worker when None (:func:`image_fingerprint`)
    parts: int = 0  # > 0: the image's cells were scored in this many parts (:func:`score_part`)


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
        slide.pixel_size_um = pixel_size  # the pipeline's, where the file records none (or agrees)
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
            "image": content_digest(task.path),
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
    the summary JSON is written last, so its presence marks the image complete. An image
    scored in parts (``task.parts``) is assembled from its parts' stored results, which are
    removed once the image is complete."""
    if task.sample_only:
        return _analyse_image(task)
    fingerprint = task.fingerprint or image_fingerprint(task)
    stored = stored_image_summary(task, fingerprint)
    if stored is not None:
        return stored | {"reused": True}
    summary = _analyse_image(task)
    out_dir, stem = Path(task.out_dir), image_stem(Path(task.path))
    outputs = image_outputs(task.pipeline, out_dir, stem)
    summary |= {"fingerprint": fingerprint, "outputs": {name: file_seal(p) for name, p in outputs.items()}}
    write_json(summary, out_dir / WORK_FOLDER / f"{stem}.json")
    # its parts (this run's, or an interrupted run's with other settings) are no longer needed
    shutil.rmtree(parts_folder(out_dir, stem), ignore_errors=True)
    return summary | {"reused": False}


@dataclasses.dataclass(frozen=True)
class ImageContext:
    """What every tile of an image is scored with, from the image's overview (the same
    whichever worker computes it: a part of an image recomputes it)."""

    scale: WorkingScale
    overview: np.ndarray
    overview_size: float
    tissue: np.ndarray
    white: np.ndarray | None
    vectors: dict
    vector_source: str
    # The leak check's nuclei of an image that is one tile, found with the vectors kept: the
    # scoring pass finds the same nuclei in the same pixels, so it takes these (half the
    # detection of a core or a tile cut from a slide).
    one_tile_nuclei: FoundNuclei | None = None

    @property
    def stained(self) -> np.ndarray:
        """Tiles are chosen on any stain (no minimum piece: pale stroma may leave only the
        nuclei above the mask's threshold); the tissue area keeps the minimum piece size."""
        return tissue_mask(self.overview, pixel_size_um=self.overview_size, min_area_um2=0, brightfield=True)


def image_context(slide: Slide, pipeline: TissuePipeline) -> ImageContext:
    """Pixel sizes, overview, tissue mask, white point and stain vectors of one image."""
    scale = working_scale(slide, pipeline)
    overview, overview_size, tissue = overview_and_tissue(
        slide, pipeline, scale.overview_um, physical=bool(scale.pixel_size_um)
    )
    white = white_point(overview) if slide.is_rgb else None
    vectors, vector_source = _stain_vectors(pipeline, overview, tissue, white) if slide.is_rgb else ({}, "n/a")
    context = ImageContext(scale, overview, overview_size, tissue, white, vectors, vector_source)
    if slide.is_rgb and pipeline.stains.vectors == "auto" and pipeline.cells is not None:
        context = checked_for_leak(slide, pipeline, context)
    return context


def overview_window(tile, overview_scale: float) -> tuple[slice, slice]:
    """The overview pixels over a full-resolution tile (``overview_scale`` full-resolution
    pixels per overview pixel)."""
    rows = slice(int(tile.row / overview_scale), int(np.ceil((tile.row + tile.height) / overview_scale)))
    cols = slice(int(tile.col / overview_scale), int(np.ceil((tile.col + tile.width) / overview_scale)))
    return rows, cols


def tile_scoring(spec, context: ImageContext) -> dict:
    """The :func:`~imaging.tissue.ihc.score_cells` arguments that every tile of an image shares
    (sizes in nominal full-resolution pixels)."""
    nominal = context.scale.nominal_um
    return {
        "vectors": context.vectors,
        "white": context.white,
        "thresholds": spec.thresholds,
        "nucleus_radius_px": None if spec.nucleus_diameter_um is None else spec.nucleus_diameter_um / nominal / 2,
        "pixel_size_um": context.scale.pixel_size_um,
        "expansion_px": spec.cell_expansion_um / nominal,
    }


def checked_for_leak(slide: Slide, pipeline: TissuePipeline, context: ImageContext) -> ImageContext:
    """``vectors: auto``'s second check, on nuclei: the tile with the most stained tissue is
    scored with the chosen vectors, and where even its least brown nuclei measure DAB
    (:func:`imaging.stains.vectors.haematoxylin_leak`) and the median nucleus about as much, the
    haematoxylin is turned to explain it (:func:`~imaging.stains.vectors.corrected_for_leak`).
    The measured leak is recorded either way."""
    spec = pipeline.cells
    scale = context.overview_size / context.scale.nominal_um
    tiles = list(slide.tiles(spec.tile_px))
    counts = [int(context.stained[overview_window(tile, scale)].sum()) for tile in tiles]
    tile = tiles[int(np.argmax(counts))]
    rgb = slide.read_region(tile.row, tile.col, tile.height, tile.width)
    shared = tile_scoring(spec, context)
    found = find_nuclei(
        rgb,
        vectors=shared["vectors"],
        white=shared["white"],
        compartment=spec.compartment,  # the channel scoring finds nuclei on
        detection=spec.detection,
        nucleus_radius_px=shared["nucleus_radius_px"],
        pixel_size_um=shared["pixel_size_um"],
    )
    # the leak shows in the nuclei, whatever the stain's compartment
    cells, _, _, _ = score_cells(rgb, **shared, compartment="nucleus", found=found)
    reading = haematoxylin_leak(cells["hematoxylin_od_mean"], cells["dab_od_mean"]) if len(cells) else None
    vectors, note = corrected_for_leak(context.vectors, reading)
    kept = vectors is context.vectors and len(tiles) == 1
    return dataclasses.replace(
        context,
        vectors=vectors,
        vector_source=f"{context.vector_source}; {note}",
        one_tile_nuclei=found if kept else None,
    )


def _analyse_image(task: ImageTask) -> dict:
    """One image: tissue, stains, IHC cells and/or lesions (see module docstring)."""
    pipeline, path = task.pipeline, Path(task.path)
    out_dir = Path(task.out_dir)
    with Slide(path, pixel_size_um=pipeline.pixel_size_um) as slide:
        context = image_context(slide, pipeline)
        pixel_size = context.scale.pixel_size_um
        vectors, white = context.vectors, context.white
        if task.sample_only:
            signal, lesion_tissue, _, _ = _lesion_inputs(slide, pipeline, vectors, white)
            values = signal[lesion_tissue]
            rng = np.random.default_rng(0)
            return {
                "image": image_stem(path),
                "sample": rng.choice(values, min(SIGNAL_SAMPLE, values.size), replace=False) if values.size else values,
            }
        tissue_area_um2 = float(context.tissue.sum()) * context.overview_size**2
        summary = {
            "image": image_stem(path),
            "path": str(path),
            "pixel_size_um": pixel_size,
            "shape": list(slide.shape),
            "pyramid_levels": len(slide.shapes),
            "stain_vectors": {k: [float(x) for x in v] for k, v in vectors.items()},
            "stain_vector_source": context.vector_source,
            "white": None if white is None else [float(x) for x in white],
        }
        overlay_cells = None
        if pipeline.cells is not None:
            check_rgb_for_cells(slide, path)
            scored = _score_image(slide, pipeline, context, out_dir, image_stem(path), parts=task.parts)
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
            context.overview,
            context.overview_size,
            context.tissue,
            overlay_cells,
            lesion_labels,
            out_dir / "plots" / f"{image_stem(path)}_overlay.png",
        )
    return summary


def check_rgb_for_cells(slide: Slide, path: Path) -> None:
    if not slide.is_rgb:
        raise InputError(
            "IHC cell scoring needs an RGB brightfield image",
            path=path,
            fix="export the section as RGB, or remove 'cells' from the pipeline",
        )


# ---- IHC tiles -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TileScore:
    """One scored tile: its cells (image coordinates), their QuPath features (serialised), the
    nucleus scale and detection channel used, and its report crop (None without cells)."""

    cells: pd.DataFrame
    features: list[str]
    radius_px: float
    detection: str
    crop: Crop | None


def scored_tiles(
    slide: Slide, pipeline: TissuePipeline, context: ImageContext, stem: str, tiles: range | None = None
) -> Iterator[TileScore]:
    """Each tile holding tissue (of ``tiles``, indices in the raster order of
    :meth:`Slide.tiles`; all when None), scored: one tile in memory at a time."""
    spec = pipeline.cells
    shared = tile_scoring(spec, context)
    margin = int(max(16, 4 * (shared["nucleus_radius_px"] or 16) + shared["expansion_px"]))
    scale = context.overview_size / context.scale.nominal_um  # full-resolution pixels per overview pixel
    # The stain mask only decides which tiles hold tissue (generously: dilated); every cell
    # found in a tile's core counts, so a crop of tissue is scored whole, as an annotator
    # would count it.
    tissue = ndi.binary_dilation(context.stained, iterations=3)
    for index, tile in enumerate(slide.tiles(spec.tile_px, margin)):
        if tiles is not None and index not in tiles:
            continue
        if not tissue[overview_window(tile, scale)].any():
            continue
        rgb = slide.read_region(tile.read_row, tile.read_col, tile.read_height, tile.read_width)
        keep = np.zeros(rgb.shape[:2], bool)  # the tile's core: each cell belongs to one tile
        keep[tile.margin_top : tile.margin_top + tile.height, tile.margin_left : tile.margin_left + tile.width] = True
        found = context.one_tile_nuclei  # the whole image, as the leak check read it
        cells, nuclei, _, info = score_cells(
            rgb,
            **shared,
            compartment=spec.compartment,
            detection=spec.detection,
            keep=keep,
            max_elongation=spec.max_nucleus_elongation,
            found=found if found is not None and found.nuclei.shape == rgb.shape[:2] else None,
        )
        if cells.empty:
            yield TileScore(cells, [], info["radius_px"], info["detection"], None)
            continue
        outlines = nucleus_outlines(nuclei, cells["label"])
        features = [serialised(f) for f in cell_features(cells, outlines, offset=(tile.read_row, tile.read_col))]
        crop = tile_crop(
            rgb,
            nuclei,
            cells,
            core=(tile.margin_top, tile.margin_left, tile.height, tile.width),
            offset=(tile.read_row, tile.read_col),
        )
        cells["centroid_row"] += tile.read_row
        cells["centroid_col"] += tile.read_col
        cells = cells.drop(columns="label")
        cells.insert(0, "image", stem)
        yield TileScore(cells, features, info["radius_px"], info["detection"], crop)


class ScoreTally:
    """What the tiles of an image add up to besides the streamed cells: the counted cells'
    classes, the cells for the overlay (overview pixels), the nucleus scales and detection
    channels used, and the report crops (the densest :data:`REPORT_CROPS`)."""

    def __init__(self, overview_scale: float):
        self.overview_scale = overview_scale
        self.classes, self.overlay, self.radii, self.detections, self.crops = [], [], [], [], []

    def add_cells(self, cells: pd.DataFrame) -> None:
        if cells.empty:
            return
        self.classes.append(cells.loc[cells["counted"], "dab_class"].to_numpy(np.int8))  # summaries: counted cells
        self.overlay.append(
            np.column_stack(
                [
                    cells[["centroid_row", "centroid_col"]].to_numpy() / self.overview_scale,
                    cells["dab_class"].to_numpy(),
                ]
            )
        )

    def add_crop(self, crop: Crop | None) -> None:
        if crop is not None:
            self.crops = _keep_densest(self.crops, crop)


def _score_image(
    slide: Slide, pipeline: TissuePipeline, context: ImageContext, out_dir: Path, stem: str, *, parts: int
) -> dict:
    """IHC scoring tile by tile, or (``parts`` > 0) the stored parts of an image scored in
    parts, in tile order. Cells are streamed to ``.images/<stem>.cells.csv`` and, as QuPath
    detections, to ``detections/<stem>.geojson``; the few densest tiles give the report's
    full-resolution crops. Returns the classes, the cell positions and classes for the
    overview (overview pixels) and the nucleus scale used."""
    spec = pipeline.cells
    tally = ScoreTally(context.overview_size / context.scale.nominal_um)
    with (
        StreamedTable(out_dir / WORK_FOLDER / f"{stem}.cells", empty=["image", *CELL_COLUMNS]) as cells_table,
        atomic_path(out_dir / DETECTIONS_FOLDER / f"{stem}.geojson") as geo_temporary,
        open(geo_temporary, "w") as geo_handle,
    ):
        geojson = GeoJSONWriter(geo_handle)
        if parts:
            for index in range(parts):
                part = read_part(out_dir, stem, index)
                if not part.cells.empty:
                    cells_table.write(part.cells)
                geojson.write_serialised(part.features)
                tally.add_cells(part.cells)
                tally.radii += part.radii
                tally.detections += part.detections
                for crop in part.crops:
                    tally.add_crop(crop)
        else:
            for scored in scored_tiles(slide, pipeline, context, stem):
                tally.radii.append(scored.radius_px)
                tally.detections.append(scored.detection)
                if scored.cells.empty:
                    continue
                geojson.write_serialised(scored.features)
                tally.add_crop(scored.crop)
                cells_table.write(scored.cells)
                tally.add_cells(scored.cells)
        geojson.close()
    for index, crop in enumerate(tally.crops):
        _write_crop(crop, out_dir / "plots" / f"{stem}_cells_{index + 1}.png")
    fixed = spec.nucleus_diameter_um is not None
    radius = {
        "median_px": float(np.median(tally.radii)) if tally.radii else None,
        "source": "pipeline"
        if fixed
        else "estimated per tile" + (" (limited by the pixel size)" if context.scale.pixel_size_um else ""),
    }
    radius["detection"] = sorted(set(tally.detections))
    classes = np.concatenate(tally.classes) if tally.classes else np.zeros(0, np.int8)
    overlay = np.concatenate(tally.overlay) if tally.overlay else np.zeros((0, 3))
    return {"classes": classes, "overlay": overlay, "radius": radius}


REPORT_CROPS = 3


def _keep_densest(crops: list[Crop], candidate: Crop) -> list[Crop]:
    """The :data:`REPORT_CROPS` crops with the most cells so far (memory: three crops)."""
    return sorted([*crops, candidate], key=lambda crop: -crop.n_cells)[:REPORT_CROPS]


# ---- an image scored in parts --------------------------------------------------------------------
# A whole section is thousands of tiles: scored as parts of contiguous tiles, each a unit of the
# run on its own worker (resumed by its own fingerprint), then assembled in tile order into the
# same files a single unit writes (the same bytes: tests/tissue/test_tissue_parts.py).
PART_PIXELS = 16 * 2048 * 2048  # tile pixels per part: about a minute of scoring


def tiles_per_part(tile_px: int) -> int:
    return max(1, PART_PIXELS // (tile_px * tile_px))


def tile_count(path: str | Path, tile_px: int) -> int:
    """Tiles of ``tile_px`` covering a TIFF-like image (from its header); 1 for other files,
    which are read whole anyway."""
    if Path(path).suffix.lower() not in TILED_SUFFIXES:
        return 1
    with Slide(path) as slide:
        rows, cols = slide.shape
    return -(-rows // tile_px) * -(-cols // tile_px)


@dataclasses.dataclass(frozen=True)
class TilePartTask:
    """Tiles ``start`` to ``stop`` (raster order) of ``image``, the ``index``-th part."""

    image: ImageTask
    index: int
    start: int
    stop: int

    @property
    def fingerprint(self) -> str:
        return content_fingerprint({"image": self.image.fingerprint, "tiles": [self.start, self.stop]})


@dataclasses.dataclass(frozen=True)
class StoredPart:
    cells: pd.DataFrame
    features: list[str]
    radii: list[float]
    detections: list[str]
    crops: list[Crop]


def parts_folder(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / WORK_FOLDER / f"{stem}.parts"


def _part_paths(out_dir: Path, stem: str, index: int) -> dict[str, Path]:
    base = parts_folder(out_dir, stem) / f"part{index:05d}"
    return {
        "cells": base.with_name(base.name + ".cells.parquet"),
        "features": base.with_name(base.name + ".features.jsonl"),
        "crops": base.with_name(base.name + ".crops.npz"),
        "summary": base.with_name(base.name + ".json"),
    }


def _stored_part(task: TilePartTask) -> dict | None:
    paths = _part_paths(Path(task.image.out_dir), image_stem(Path(task.image.path)), task.index)
    try:
        summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if summary.get("fingerprint") != task.fingerprint:
        return None
    if not all(file_sealed(paths[name], summary["outputs"].get(name)) for name in ("cells", "features", "crops")):
        return None
    return summary


def score_part(task: TilePartTask) -> dict:
    """Score one part of an image (on a worker) into ``.images/<image>.parts/``, the part's
    summary last; a stored part with the same fingerprint is reused."""
    image, stem = task.image, image_stem(Path(task.image.path))
    identity = {"image": stem, "part": task.index}
    if _stored_part(task) is not None:
        return identity | {"reused": True}
    paths = _part_paths(Path(image.out_dir), stem, task.index)
    radii, detections, crops = [], [], []
    with Slide(Path(image.path), pixel_size_um=image.pipeline.pixel_size_um) as slide:
        check_rgb_for_cells(slide, Path(image.path))
        context = image_context(slide, image.pipeline)
        with (
            StreamedTable(
                paths["cells"].with_suffix(""), table_format="parquet", empty=["image", *CELL_COLUMNS]
            ) as table,
            atomic_path(paths["features"]) as features_temporary,
            open(features_temporary, "w") as features,
        ):
            for scored in scored_tiles(slide, image.pipeline, context, stem, range(task.start, task.stop)):
                radii.append(scored.radius_px)
                detections.append(scored.detection)
                if scored.cells.empty:
                    continue
                table.write(scored.cells)
                features.writelines(line + "\n" for line in scored.features)
                if scored.crop is not None:
                    crops = _keep_densest(crops, scored.crop)
    with atomic_path(paths["crops"]) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **_crop_arrays(crops))
    summary = {
        "fingerprint": task.fingerprint,
        "radii": radii,
        "detections": detections,
        "outputs": {name: file_seal(paths[name]) for name in ("cells", "features", "crops")},
    }
    write_json(summary, paths["summary"])
    return identity | {"reused": False}


def read_part(out_dir: Path, stem: str, index: int) -> StoredPart:
    """A stored part (:func:`score_part`) as the image's assembly reads it."""
    paths = _part_paths(out_dir, stem, index)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    cells = pd.read_parquet(paths["cells"])
    features = paths["features"].read_text(encoding="utf-8").splitlines()
    with np.load(paths["crops"], allow_pickle=False) as arrays:
        crops = _crops_from_arrays(arrays)
    return StoredPart(cells, features, list(summary["radii"]), list(summary["detections"]), crops)


def _crop_arrays(crops: list[Crop]) -> dict[str, np.ndarray]:
    arrays = {}
    for index, crop in enumerate(crops):
        labels = np.fromiter(crop.classes.keys(), np.int64, len(crop.classes))
        arrays |= {
            f"crop{index}_rgb": crop.rgb,
            f"crop{index}_nuclei": crop.nuclei,
            f"crop{index}_labels": labels,
            f"crop{index}_classes": np.asarray([crop.classes[int(v)] for v in labels], np.int64),
            f"crop{index}_position": np.asarray([crop.n_cells, crop.row, crop.col], np.int64),
        }
    return arrays


def _crops_from_arrays(arrays) -> list[Crop]:
    crops = []
    for index in range(REPORT_CROPS):
        if f"crop{index}_rgb" not in arrays:
            break
        n_cells, row, col = (int(v) for v in arrays[f"crop{index}_position"])
        labels, classes = arrays[f"crop{index}_labels"], arrays[f"crop{index}_classes"]
        crops.append(
            Crop(
                n_cells=n_cells,
                row=row,
                col=col,
                rgb=arrays[f"crop{index}_rgb"],
                nuclei=arrays[f"crop{index}_nuclei"],
                classes={int(label): int(klass) for label, klass in zip(labels, classes)},
            )
        )
    return crops


def compute_unit(task: ImageTask | TilePartTask) -> dict:
    """The tissue assay's work on a worker: a part of an image, or an image."""
    return score_part(task) if isinstance(task, TilePartTask) else analyse_image(task)


def _write_crop(crop: Crop, path: Path) -> None:
    """The crop's pixels, nuclei outlined, as an RGB PNG of the same size: written directly
    (drawn through a matplotlib figure it took 0.09 s a crop and gained a white margin)."""
    from PIL import Image  # Pillow: scikit-image's and matplotlib's image library

    with atomic_path(path) as temporary:
        Image.fromarray(outlined(crop)).save(temporary, format="PNG")


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
