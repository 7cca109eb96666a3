"""What a pathologist looks at: scored cells as QuPath GeoJSON and as class-coloured crops.

GeoJSON: one Feature per cell, its nucleus outline as a Polygon in full-resolution pixel
coordinates (x = column, y = row, as QuPath expects), ``objectType: detection``, the
intensity class as QuPath's classification names (``Negative``, ``1+``, ``2+``, ``3+``) and
the measurements of ``cells.csv``. QuPath imports the file with File > Import objects (or by
dropping it on the image), so detections can be reviewed in the tool pathologists use.
The file is written as a stream, tile by tile, so memory stays bounded by one tile.

Crops: the densest window of the few tiles with the most cells, at full resolution, each
nucleus outlined in its class colour (:data:`CLASS_COLOURS`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import IO

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import measure, segmentation

from imaging.tissue.ihc import CLASS_NAMES

CLASS_COLOURS = ((40, 110, 255), (255, 220, 0), (255, 140, 0), (230, 0, 0))  # 0, 1+, 2+, 3+ (RGB)
CROP_PX = 512


def simplified_outlines(rings: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """``skimage.measure.approximate_polygon(ring, tolerance)`` of each ring, bit for bit, about
    fifty times faster: skimage's loop is the largest single cost of an IHC run's outputs (1.1
    of 7.6 s for the six DeepLIIF tiles), some twenty numpy calls per segment. Here every
    ring's segments are split round by round (Douglas-Peucker keeps the same points in any
    order of the segments): numpy computes each round's segment angles as skimage does, and
    one compiled call measures their points (:func:`imaging.kernels.farthest_from_segments`).

    Parameters
    ----------
    rings : list of (K, 2) ndarray
        Contours (rows, columns), as ``skimage.measure.find_contours`` gives them.
    tolerance : float
        Farthest a dropped point may lie from the simplified outline (px).

    Returns
    -------
    list of (L, 2) ndarray of float64
        Each ring's points kept, in order.
    """
    from imaging.kernels import farthest_from_segments  # numba's import is paid on first use only

    if not rings:
        return []
    coords = np.ascontiguousarray(np.concatenate(rings), dtype=np.float64)
    if tolerance <= 0:
        return [np.asarray(r, dtype=np.float64) for r in rings]
    ends = np.cumsum([len(r) for r in rings]) - 1
    starts = ends - np.array([len(r) for r in rings]) + 1
    chain = np.zeros(len(coords), bool)
    chain[starts] = chain[ends] = True
    first, last = starts, ends  # the ring boundaries, for splitting the result
    while starts.size:
        r0, c0, r1, c1 = coords[starts, 0], coords[starts, 1], coords[ends, 0], coords[ends, 1]
        angle = -np.arctan2(r1 - r0, c1 - c0)
        cos, sin = np.cos(angle), np.sin(angle)
        index, farthest = farthest_from_segments(coords, starts, ends, cos, sin, c0 * sin + r0 * cos)
        split = farthest > tolerance
        chain[index[split]] = True
        starts, ends = np.concatenate([starts[split], index[split]]), np.concatenate([index[split], ends[split]])
    return [coords[a : b + 1][chain[a : b + 1]] for a, b in zip(first, last)]


def nucleus_outlines(nuclei: np.ndarray, labels) -> dict[int, list[list[float]]]:
    """Closed outline (list of ``[x, y]`` = ``[col, row]``) of each requested nucleus label."""
    slices = ndi.find_objects(nuclei)
    found = []  # (label, its crop's box, its longest contour)
    for label in labels:
        box = slices[int(label) - 1] if int(label) - 1 < len(slices) else None
        if box is None:
            continue
        crop = np.pad(nuclei[box] == label, 1)
        contours = measure.find_contours(crop.astype(np.uint8), 0.5)
        if contours:
            found.append((int(label), box, max(contours, key=len)))
    outlines = {}
    for (label, box, _), ring in zip(found, simplified_outlines([f[2] for f in found], tolerance=0.5)):
        rows = ring[:, 0] - 1 + box[0].start
        cols = ring[:, 1] - 1 + box[1].start
        points = [[round(float(c), 2), round(float(r), 2)] for r, c in zip(rows, cols)]
        if len(points) >= 4:
            if points[0] != points[-1]:
                points.append(points[0])
            outlines[label] = points
    return outlines


NOT_COUNTED = "Spindle (not counted)"
NOT_COUNTED_COLOUR = (128, 128, 128)  # grey: shown, not scored


def cell_features(cells: pd.DataFrame, outlines: dict[int, list], *, offset: tuple[int, int]) -> list[dict]:
    """QuPath detection Features of scored cells (``label`` column: nucleus label in the
    tile; ``offset``: the tile's (row, col) in the image)."""
    features = []
    measured = [
        c for c in ("nucleus_area_px", "nucleus_elongation", "hematoxylin_od_mean", "dab_od_mean") if c in cells.columns
    ]
    for row in cells.itertuples(index=False):
        ring = outlines.get(int(row.label))
        if ring is None:
            continue
        ring = [[x + offset[1], y + offset[0]] for x, y in ring]
        klass = int(row.dab_class)
        # a spindle nucleus left out of the scores is shown as such, not as a scored class
        counted = bool(getattr(row, "counted", True))
        name, colour = (
            (CLASS_NAMES[klass], list(CLASS_COLOURS[klass])) if counted else (NOT_COUNTED, list(NOT_COUNTED_COLOUR))
        )
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": name, "color": colour},
                    "measurements": {name: float(getattr(row, name)) for name in measured},
                },
            }
        )
    return features


def serialised(feature: dict) -> str:
    """One Feature as the compact JSON line the detections file holds."""
    return json.dumps(feature, separators=(",", ":"))


class GeoJSONWriter:
    """Streams Features into one FeatureCollection (``handle`` opened for text writing)."""

    def __init__(self, handle: IO[str]):
        self.handle = handle
        self.count = 0
        handle.write('{"type": "FeatureCollection", "features": [\n')

    def write(self, features: list[dict]) -> None:
        self.write_serialised([serialised(feature) for feature in features])

    def write_serialised(self, features: list[str]) -> None:
        """Features already serialised by :func:`serialised` (one line each)."""
        for feature in features:
            self.handle.write((",\n" if self.count else "") + feature)
            self.count += 1

    def close(self) -> None:
        self.handle.write("\n]}\n")


@dataclasses.dataclass
class Crop:
    """A full-resolution window of scored cells for the report."""

    n_cells: int
    row: int  # in the image
    col: int
    rgb: np.ndarray
    nuclei: np.ndarray
    classes: dict[int, int]  # nucleus label -> intensity class


def densest_window(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], size: int = CROP_PX) -> tuple[int, int]:
    """Top-left (row, col) of the ``size`` window of ``shape`` holding most of the points."""
    height, width = min(size, shape[0]), min(size, shape[1])
    if len(rows) == 0:
        return 0, 0
    step = max(1, size // 4)
    grid = np.zeros((shape[0] // step + 1, shape[1] // step + 1))
    np.add.at(grid, (np.asarray(rows, int) // step, np.asarray(cols, int) // step), 1)
    span = max(1, size // step)
    # window sums (up to a constant), each at the window's top-left grid cell
    counts = ndi.uniform_filter(grid, size=span, mode="constant", origin=-(span // 2))
    top, left = np.unravel_index(np.argmax(counts), counts.shape)
    return int(min(top * step, shape[0] - height)), int(min(left * step, shape[1] - width))


def tile_crop(
    rgb: np.ndarray,
    nuclei: np.ndarray,
    cells: pd.DataFrame,
    *,
    core: tuple[int, int, int, int],
    offset: tuple[int, int],
) -> Crop:
    """The densest :data:`CROP_PX` window of a tile's core (top, left, height, width in the
    tile) with the cells scored there."""
    top, left, height, width = core
    row0, col0 = densest_window(
        cells["centroid_row"].to_numpy() - top, cells["centroid_col"].to_numpy() - left, (height, width)
    )
    rows = slice(top + row0, top + row0 + min(CROP_PX, height))
    cols = slice(left + col0, left + col0 + min(CROP_PX, width))
    window_nuclei = nuclei[rows, cols]
    scored = dict(zip(cells["label"].astype(int), cells["dab_class"].astype(int)))
    present = [label for label in np.unique(window_nuclei) if label in scored]
    return Crop(
        n_cells=len(present),
        row=offset[0] + rows.start,
        col=offset[1] + cols.start,
        rgb=np.asarray(rgb[rows, cols]).copy(),
        nuclei=window_nuclei.copy(),
        classes={int(label): scored[label] for label in present},
    )


def outlined(crop: Crop) -> np.ndarray:
    """The crop's RGB with each scored nucleus outlined (2 px) in its class colour."""
    image = np.asarray(crop.rgb, dtype=np.uint8).copy()
    lookup = np.full(int(crop.nuclei.max()) + 1, -1, dtype=np.int64)
    for label, klass in crop.classes.items():
        lookup[label] = klass
    klass_map = lookup[crop.nuclei]
    edges = segmentation.find_boundaries(crop.nuclei, mode="inner")
    edges = ndi.binary_dilation(edges, iterations=1) & (crop.nuclei > 0)
    for klass, colour in enumerate(CLASS_COLOURS):
        image[edges & (klass_map == klass)] = colour
    return image
