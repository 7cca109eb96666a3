"""A tissue run as viewer layers (Qt-free; the napari reader returns these as they are).

Per image of the run: the section (every pyramid level, read lazily through tifffile's zarr
view, so a whole slide opens at once and napari fetches the tiles it shows), the nuclei filled
in their class colour (a labels layer drawn from ``detections/<image>.geojson``, the file
QuPath imports, with its class and measurements as features; images up to
:data:`MAX_LABELLED_PIXELS`, and up to :data:`RUN_LABELLED_PIXELS` in all), the scored cells
as points in their class colour with their ``cells.csv`` row as features, and the lesions as
points sized to their area with their ``lesions.csv`` row as features. Every layer's metadata
names the run folder (:func:`imaging.io.run_folder.layer_source`), so the Tissue curation dock
opened after the reader finds the run.

A layer is napari's ``(data, kwargs, kind)`` tuple. Coordinates are full-resolution pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from imaging.errors import InputError
from imaging.io.run_folder import layer_source
from imaging.tissue.ihc import CLASS_NAMES
from imaging.tissue.review import CLASS_COLOURS, NOT_COUNTED, NOT_COUNTED_COLOUR

LayerData = tuple  # (data, kwargs, kind)


def section_levels(path: Path) -> tuple[list, bool]:
    """The image's levels, finest first, as arrays (rows, columns[, 3]) and whether it is RGB.

    TIFF levels stay on disk (zarr views on an open file); other formats are read whole.
    Levels whose channels are not last (planar RGB) are read into memory from the coarsest
    such level only when no other level exists.

    Parameters
    ----------
    path : Path
        The section's image file.

    Returns
    -------
    levels : list of array-like
    rgb : bool
    """
    import tifffile

    from imaging.io.readers import read_raw

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff", ".svs", ".btf", ".tf8"):
        image = np.asarray(read_raw(path))
        if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
            image = np.moveaxis(image, 0, -1)
        return [image[..., :3] if image.ndim == 3 else image], image.ndim == 3
    import zarr

    tif = tifffile.TiffFile(path)  # left open: the zarr views read from it while the layer lives
    series = tif.series[0]
    levels = [zarr.open(tif.aszarr(series=0, level=i), mode="r") for i in range(len(series.levels))]
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    if levels[0].ndim == 3 and not rgb:  # planar (3, rows, columns): napari needs channels last
        smallest = np.moveaxis(np.asarray(levels[-1]), 0, -1)
        return [smallest], True
    return levels, rgb


def _record(run_dir: Path) -> dict:
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        raise InputError(
            "has no readable run.json", path=run_dir, fix="open the --out folder of a finished run"
        ) from None
    if record.get("mode") != "tissue":
        raise InputError("is not a tissue run", path=run_dir, fix="open plate runs with the plate browser")
    return record


def _rows_of(path: Path, image: str) -> pd.DataFrame:
    """The rows of a run table that belong to ``image``, read in chunks (tables of whole
    sections can hold millions of cells)."""
    if not path.is_file():
        return pd.DataFrame()
    parts = [chunk[chunk["image"] == image] for chunk in pd.read_csv(path, dtype={"image": str}, chunksize=500000)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def cell_points(cells: pd.DataFrame, *, name: str) -> LayerData:
    """Cells as points at their nucleus centre, coloured by intensity class (grey: spindle
    nuclei, not counted).

    Parameters
    ----------
    cells : pandas.DataFrame
        An image's rows of ``cells.csv``.
    name : str
        The layer's name.

    Returns
    -------
    (data, kwargs, kind)
        A points layer, the rows as its features.
    """
    counted = cells["counted"].to_numpy(bool) if "counted" in cells.columns else np.ones(len(cells), bool)
    names = np.where(counted, np.asarray(CLASS_NAMES)[cells["dab_class"].to_numpy(int)], NOT_COUNTED)
    colours = np.c_[display_colours(names), np.ones(len(cells))]
    faces = colours * [1, 1, 1, 0.25]  # the nucleus stays visible through its marker
    size = 2 * np.sqrt(np.median(cells["nucleus_area_px"]) / np.pi) if len(cells) else 10.0
    kwargs = {
        "name": name,
        "features": cells.reset_index(drop=True),
        "face_color": faces,
        "border_color": colours,
        "border_width": 0.15,
        "size": float(size),
    }
    return cells[["centroid_row", "centroid_col"]].to_numpy(float), kwargs, "points"


# Nuclei are drawn from their outlines into a label image of the whole section, held in
# memory, so images up to this many pixels get one (32 MB as uint16), and a run's images until
# their label images reach RUN_LABELLED_PIXELS together (256 MB: a tissue microarray of
# hundreds of cores stays bounded); larger sections and the images after show points, and their
# detections go to QuPath. (A shapes layer of the same outlines took napari 20 s for the 816
# nuclei of six 512 px tiles.)
MAX_LABELLED_PIXELS = 4096 * 4096
RUN_LABELLED_PIXELS = 8 * MAX_LABELLED_PIXELS


def display_colours(names) -> np.ndarray:
    """Cells' colours by their class name, those of the report and the GeoJSON.

    Parameters
    ----------
    names : sequence of str
        Class names (:data:`~imaging.tissue.ihc.CLASS_NAMES`, or
        :data:`~imaging.tissue.review.NOT_COUNTED` for spindle nuclei).

    Returns
    -------
    (N, 3) ndarray of float
        RGB in 0-1.
    """
    palette = dict(zip(CLASS_NAMES, CLASS_COLOURS)) | {NOT_COUNTED: NOT_COUNTED_COLOUR}
    return np.asarray([palette[n] for n in names], float).reshape(-1, 3) / 255


def nucleus_labels(detections: Path, shape: tuple[int, int], *, name: str) -> LayerData:
    """The nuclei of ``detections`` (a run's QuPath GeoJSON) as a label image, each nucleus
    filled in its class colour (grey: spindle nuclei, not counted).

    Parameters
    ----------
    detections : Path
        ``detections/<image>.geojson`` of a tissue run.
    shape : (int, int)
        The image's full-resolution (rows, columns).
    name : str
        The layer's name.

    Returns
    -------
    (data, kwargs, kind)
        A labels layer: nucleus ``k`` (1-based, in the file's order, which is ``cells.csv``'s)
        drawn as label ``k``; its ``class`` and measurements as features (``index``: the label).
    """
    from skimage.draw import polygon

    features = json.loads(detections.read_text(encoding="utf-8"))["features"]
    labels = np.zeros(shape, np.uint16 if len(features) < 2**16 else np.int32)
    for index, feature in enumerate(features, start=1):
        ring = np.asarray(feature["geometry"]["coordinates"][0], float)
        rows, cols = polygon(ring[:, 1], ring[:, 0], shape=shape)
        labels[rows, cols] = index
    names = [f["properties"]["classification"]["name"] for f in features]
    colours = {index: (*rgb, 1.0) for index, rgb in enumerate(display_colours(names).tolist(), start=1)}
    table = pd.DataFrame([f["properties"].get("measurements", {}) for f in features])
    table.insert(0, "class", names)
    table.insert(0, "index", np.arange(1, len(features) + 1))
    kwargs = {"name": name, "features": table, "colormap": {None: (0, 0, 0, 0), **colours}, "opacity": 0.45}
    return labels, kwargs, "labels"


def lesion_points(lesions: pd.DataFrame, *, pixel_size_um: float, name: str) -> LayerData:
    """Lesions as points at their centre, sized to the diameter of a disk of their area.

    Parameters
    ----------
    lesions : pandas.DataFrame
        An image's rows of ``lesions.csv``.
    pixel_size_um : float
        The image's pixel size (lesion positions are in um).
    name : str
        The layer's name.

    Returns
    -------
    (data, kwargs, kind)
        A points layer, the rows as its features.
    """
    centres = lesions[["centroid_row_um", "centroid_col_um"]].to_numpy(float) / pixel_size_um
    sizes = 2 * np.sqrt(lesions["area_um2"].to_numpy(float) / np.pi) / pixel_size_um
    kwargs = {
        "name": name,
        "features": lesions.reset_index(drop=True),
        "size": sizes,
        "face_color": "transparent",
        "border_color": "yellow",
        "border_width": 0.05,
    }
    return centres, kwargs, "points"


def tissue_run_layers(run_dir: str | Path) -> list[LayerData]:
    """Layers of every image of a tissue run (see module docstring).

    Parameters
    ----------
    run_dir : str or Path
        A tissue run's ``--out`` folder.

    Returns
    -------
    list of (data, kwargs, kind)

    Raises
    ------
    InputError
        When the folder holds no tissue run, or an image is no longer where the run read it.
    """
    run_dir = Path(run_dir)
    record = _record(run_dir)
    layers = []
    labelled_left = RUN_LABELLED_PIXELS
    for image in record["images"]:
        name, path = image["image"], Path(image["path"])
        if not path.is_file():
            raise InputError(
                f"the image of {name!r} is no longer at {path}",
                path=run_dir,
                fix="put the image back where the run read it",
            )
        levels, rgb = section_levels(path)
        section = (
            levels if len(levels) > 1 else levels[0],
            {"name": name, "rgb": rgb, "multiscale": len(levels) > 1},
            "image",
        )
        image_layers = [section]
        cells = _rows_of(run_dir / "cells.csv", name)
        detections = run_dir / "detections" / f"{name}.geojson"
        full = tuple(levels[0].shape[:2])
        pixels = full[0] * full[1]
        if not cells.empty and detections.is_file() and pixels <= min(MAX_LABELLED_PIXELS, labelled_left):
            image_layers.append(nucleus_labels(detections, full, name=f"{name} nuclei"))
            labelled_left -= pixels
        if not cells.empty:
            image_layers.append(cell_points(cells, name=f"{name} cells"))
        lesions = _rows_of(run_dir / "lesions.csv", name)
        if not lesions.empty and image.get("pixel_size_um"):
            pixel_size = float(image["pixel_size_um"])
            image_layers.append(lesion_points(lesions, pixel_size_um=pixel_size, name=f"{name} lesions"))
        for _data, kwargs, _kind in image_layers:
            kwargs["metadata"] = layer_source(run_dir, kind="tissue", image=name)
        layers.extend(image_layers)
    return layers
