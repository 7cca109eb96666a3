"""Per-cell morphology: identity, position, areas and nucleus shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage import measure

MORPHOLOGY_COLUMNS = ["label", "centroid_row", "centroid_col", "touches_border", "nucleus_area_px",
                      "cell_area_px", "nucleus_eccentricity", "nucleus_solidity"]


def touching_border(labels: np.ndarray) -> np.ndarray:
    """Sorted ids of the labels that touch the image border."""
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return np.unique(edge[edge > 0])


def measure_morphology(nuclei: np.ndarray, cells: np.ndarray, *,
                       pixel_size_um: float | None = None) -> pd.DataFrame:
    """One row per nucleus: label, centroid, border contact, areas and nucleus shape.

    Areas are in pixels (``*_area_px``) and, when ``pixel_size_um`` is given, in square
    micrometres (``*_area_um2``). A cell whose label is absent from ``cells`` has cell
    area 0.
    """
    if nuclei.max() == 0:
        columns = MORPHOLOGY_COLUMNS + (["nucleus_area_um2", "cell_area_um2"] if pixel_size_um else [])
        return pd.DataFrame(columns=columns)
    props = measure.regionprops_table(nuclei, properties=("label", "centroid", "area",
                                                          "eccentricity", "solidity"))
    labels = props["label"].astype(np.int64)
    cell_areas = np.bincount(cells.ravel(), minlength=int(labels.max()) + 1)
    table = pd.DataFrame({
        "label": labels,
        "centroid_row": props["centroid-0"],
        "centroid_col": props["centroid-1"],
        "touches_border": np.isin(labels, touching_border(cells)),
        "nucleus_area_px": props["area"].astype(np.int64),
        "cell_area_px": cell_areas[labels].astype(np.int64),
        "nucleus_eccentricity": props["eccentricity"],
        "nucleus_solidity": props["solidity"],
    })
    if pixel_size_um:
        pixel_area = float(pixel_size_um) ** 2
        table["nucleus_area_um2"] = table["nucleus_area_px"] * pixel_area
        table["cell_area_um2"] = table["cell_area_px"] * pixel_area
    return table
