"""Per-cell morphology: identity, position, areas and nucleus shape.

Computed from image moments with one ``bincount`` pass per moment, so a field with
thousands of nuclei costs milliseconds rather than a Python loop over objects. The shape
definitions match scikit-image's ``regionprops`` (eccentricity and axis lengths of the
ellipse with the same second moments).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imaging import arrays
from imaging.features.intensity import Compartments, compartments_of
from imaging.label_stats import label_counts, labels_for_kernels

MORPHOLOGY_COLUMNS = [
    "label",
    "centroid_row",
    "centroid_col",
    "touches_border",
    "nucleus_area_px",
    "cell_area_px",
    "nucleus_eccentricity",
    "nucleus_major_axis_px",
    "nucleus_minor_axis_px",
]


def touching_border(labels: np.ndarray) -> np.ndarray:
    """Sorted ids of the labels that touch the image border.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        A label image.

    Returns
    -------
    ndarray
        The ids, ascending.
    """
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return np.unique(edge[edge > 0])


def label_moments(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Area, centroid and central second moments of every label id 1..max (entry 0, the
    background, is not computed: zeros).

    Parameters
    ----------
    labels : (M, N) ndarray of int
        A label image, no value negative.

    Returns
    -------
    dict of str to ndarray of float64
        ``area``, ``row``, ``col`` (centroid), ``mu20``, ``mu02``, ``mu11`` (central moments
        divided by the area), each indexed by label id.
    """
    from imaging.kernels import label_moment_sums  # numba's import is paid on first use only

    labels = labels_for_kernels(labels)
    if labels.ndim == 1:
        labels = labels.reshape(-1, 1)  # a column: rows 0..n-1
    # all six sums in one compiled pass over the label image: np.bincount's additions per
    # label in pixel order, so the same float64 sums as six bincounts of coordinate arrays
    size = int(labels.max(initial=0)) + 1
    area, row_sum, col_sum, rr_sum, cc_sum, rc_sum = label_moment_sums(labels, size)
    safe = np.maximum(area, 1)
    row_mean = row_sum / safe
    col_mean = col_sum / safe
    mu20 = rr_sum / safe - row_mean**2
    mu02 = cc_sum / safe - col_mean**2
    mu11 = rc_sum / safe - row_mean * col_mean
    return {"area": area, "row": row_mean, "col": col_mean, "mu20": mu20, "mu02": mu02, "mu11": mu11}


def ellipse_axes(mu20: np.ndarray, mu02: np.ndarray, mu11: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eccentricity, major and minor axis length of the moment-equivalent ellipses.

    Parameters
    ----------
    mu20, mu02, mu11 : ndarray of float
        Central second moments divided by the area (:func:`label_moments`).

    Returns
    -------
    eccentricity, major, minor : ndarray of float
        As ``skimage.measure.regionprops`` defines them.
    """
    half_sum = (mu20 + mu02) / 2
    root = np.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    large = np.maximum(half_sum + root, 0)
    small = np.maximum(half_sum - root, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        eccentricity = np.where(large > 0, np.sqrt(np.clip(1 - small / large, 0, 1)), 0.0)
    return eccentricity, 4 * np.sqrt(large), 4 * np.sqrt(small)


def measure_morphology(
    nuclei: np.ndarray,
    cells: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    compartments: Compartments | None = None,
) -> pd.DataFrame:
    """One row per nucleus: label, centroid, border contact, areas and nucleus shape.

    Areas are in pixels (``*_area_px``) and, when ``pixel_size_um`` is given, in square
    micrometres (``*_area_um2``). ``touches_border`` is True when the cell reaches the
    image edge (it is then only partly imaged).

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels.
    cells : (M, N) ndarray of int
        Cell labels, each with its nucleus's id.
    pixel_size_um : float, optional
        Pixel size, for the areas in um^2.
    compartments : Compartments, optional
        :func:`imaging.features.intensity.compartments_of` ``nuclei`` and ``cells``, when
        the intensities use them too (else found here).

    Returns
    -------
    pandas.DataFrame
        One row per nucleus id present, ascending.

    Raises
    ------
    ValueError
        When the two shapes differ (both named) or the labels are not integers.
    """
    nuclei = arrays.check_labels(nuclei, np.shape(nuclei), name="nuclei")
    cells = arrays.check_labels(cells, nuclei.shape, name="cells", image_name="nuclei")
    compartments = compartments_of(nuclei, cells) if compartments is None else compartments
    ids = compartments.ids
    columns = MORPHOLOGY_COLUMNS + (["nucleus_area_um2", "cell_area_um2"] if pixel_size_um else [])
    if ids.size == 0:
        return pd.DataFrame(columns=columns)
    moments = label_moments(nuclei)
    eccentricity, major, minor = ellipse_axes(moments["mu20"][ids], moments["mu02"][ids], moments["mu11"][ids])
    cell_areas = label_counts(cells, minlength=int(ids.max()) + 1)
    table = pd.DataFrame(
        {
            "label": ids.astype(np.int64),
            "centroid_row": moments["row"][ids],
            "centroid_col": moments["col"][ids],
            "touches_border": np.isin(ids, touching_border(cells)),
            "nucleus_area_px": moments["area"][ids].astype(np.int64),
            "cell_area_px": cell_areas[ids].astype(np.int64),
            "nucleus_eccentricity": eccentricity,
            "nucleus_major_axis_px": major,
            "nucleus_minor_axis_px": minor,
        }
    )
    if pixel_size_um:
        pixel_area = float(pixel_size_um) ** 2
        table["nucleus_area_um2"] = table["nucleus_area_px"] * pixel_area
        table["cell_area_um2"] = table["cell_area_px"] * pixel_area
    return table
