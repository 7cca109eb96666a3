"""SA-beta-gal (X-gal) quantification from a brightfield RGB image.

1. White reference ``I0``: per-channel smooth surface of the cell-free pixels (pixels more
   than ``margin`` px from any cell), so uneven illumination does not read as stain.
2. Optical density by Beer-Lambert, then colour deconvolution into X-gal and neutral
   (grey) absorbance; the X-gal amount is in OD units along the unit X-gal vector.
3. Per cell: mean X-gal OD (``sabgal_od_mean``), integrated OD (``sabgal_od_integrated``)
   and the fraction of the cell's pixels above a pixel threshold
   (``sabgal_stained_fraction``). The pixel threshold ``auto`` is the cell-free
   background's median X-gal OD plus five robust SDs, at least 0.02 OD.

The positive/negative call is made per plate from these values (see
:mod:`imaging.features.thresholds`), not here, because it needs every cell of the plate.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from imaging import arrays
from imaging.features.background import robust_sd
from imaging.features.intensity import background_mask
from imaging.label_stats import label_means
from imaging.stains.optical import (
    STAIN_VECTORS,
    angle_between,
    estimate_stain_vectors,
    optical_density,
    stain_matrix,
    unmix,
)
from imaging.stains.white import white_reference

log = logging.getLogger(__name__)

SABGAL_COLUMNS = ["label", "sabgal_od_mean", "sabgal_od_integrated", "sabgal_stained_fraction"]
MIN_PIXEL_THRESHOLD_OD = 0.02
# An estimated X-gal vector closer than this to grey is not trusted (too little stain).
MIN_ANGLE_FROM_NEUTRAL_DEG = 10.0


def xgal_amount(
    rgb: np.ndarray, cell_free: np.ndarray, *, stain_vector=STAIN_VECTORS["xgal"]
) -> tuple[np.ndarray, np.ndarray]:
    """X-gal amount per pixel (OD units) and the white reference used (M, N, 3).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        A brightfield field.
    cell_free : (M, N) ndarray of bool
        Cell-free pixels, for the white reference.
    stain_vector : (3,) array_like
        The X-gal OD direction (unit vector).

    Returns
    -------
    amount : (M, N) ndarray of float
        X-gal amount per pixel, unmixed against a neutral (grey) component.
    white : (M, N, 3) ndarray
        The white reference (:func:`imaging.stains.white.white_reference`).
    """
    white = white_reference(rgb, cell_free)
    matrix = stain_matrix([stain_vector, STAIN_VECTORS["neutral"]])
    return unmix(optical_density(rgb, white), matrix)[..., 0], white


def pixel_threshold_from_background(xgal: np.ndarray, cell_free: np.ndarray) -> float:
    """Background median + 5 robust SDs of the X-gal amount, at least 0.02 OD.

    Parameters
    ----------
    xgal : (M, N) ndarray
        X-gal amount per pixel.
    cell_free : (M, N) ndarray of bool
        Cell-free pixels; with fewer than 50 the floor (0.02 OD) is returned.

    Returns
    -------
    float
        The per-pixel amount above which a pixel counts as stained.
    """
    values = xgal[cell_free]
    if values.size < 50:
        return MIN_PIXEL_THRESHOLD_OD
    return float(max(MIN_PIXEL_THRESHOLD_OD, np.median(values) + 5 * robust_sd(values)))


def measure_sabgal(
    rgb: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    *,
    stain_vector=STAIN_VECTORS["xgal"],
    pixel_threshold: float | str = "auto",
    margin: float = 3.0,
    cell_free: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Per-cell X-gal optical density and stained fraction (see module docstring).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        Brightfield image of the SA-beta-gal stain.
    nuclei, cells : (M, N) int ndarrays
        Nucleus and cell labels with shared ids.
    stain_vector : sequence of 3 floats
        X-gal OD direction (R, G, B).
    pixel_threshold : float or 'auto'
        X-gal OD above which a pixel counts as stained.
    margin : float
        Pixels at least this far from any cell are cell-free (white reference).
    cell_free : (M, N) bool ndarray, optional
        Cell-free pixels, if already computed (else from ``cells`` and ``margin``).

    Returns
    -------
    table : DataFrame
        ``label``, ``sabgal_od_mean``, ``sabgal_od_integrated``, ``sabgal_stained_fraction``.
    info : dict
        ``sabgal_white_r/g/b`` (mean white reference), ``sabgal_pixel_threshold_od``,
        ``sabgal_cell_free_fraction``.
    """
    rgb = arrays.check_image(rgb, name="brightfield image", rgb=True)
    nuclei = arrays.check_labels(nuclei, rgb.shape[:2], name="nuclei", image_name="brightfield image")
    cells = arrays.check_labels(cells, rgb.shape[:2], name="cells", image_name="brightfield image")
    if cell_free is None:
        cell_free = background_mask(cells, margin=margin)
    xgal, white = xgal_amount(rgb, cell_free, stain_vector=stain_vector)
    threshold = (
        pixel_threshold_from_background(xgal, cell_free) if pixel_threshold == "auto" else float(pixel_threshold)
    )
    info = {f"sabgal_white_{name}": float(white[..., c].mean()) for c, name in enumerate("rgb")}
    info |= {"sabgal_pixel_threshold_od": threshold, "sabgal_cell_free_fraction": float(cell_free.mean())}
    ids = np.unique(nuclei[nuclei > 0])
    if ids.size == 0:
        return pd.DataFrame(columns=SABGAL_COLUMNS), info
    od_mean, area = label_means(xgal, cells, ids)
    stained_fraction, _ = label_means((xgal > threshold).astype(np.float64), cells, ids)
    table = pd.DataFrame(
        {
            "label": ids.astype(np.int64),
            "sabgal_od_mean": od_mean,
            "sabgal_od_integrated": od_mean * area,
            "sabgal_stained_fraction": stained_fraction,
        }
    )
    return table, info


def stained_od_sample(
    rgb: np.ndarray, cells: np.ndarray, *, margin: float = 3.0, max_pixels: int = 20000, seed: int = 0
) -> np.ndarray:
    """OD vectors (P, 3) of up to ``max_pixels`` in-cell pixels, for stain estimation.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        A brightfield field.
    cells : (M, N) ndarray of int
        Cell labels.
    margin : float
        Distance (px) from every cell of the pixels that give the white reference.
    max_pixels : int
        Most pixels returned (a random sample beyond).
    seed : int
        Seed of that sample (the same pixels every run).

    Returns
    -------
    (P, 3) ndarray of float
    """
    cell_free = background_mask(cells, margin=margin)
    od = optical_density(rgb, white_reference(rgb, cell_free))
    inside = od[cells > 0]
    if len(inside) > max_pixels:
        inside = inside[np.random.default_rng(seed).choice(len(inside), max_pixels, replace=False)]
    return inside


def estimate_xgal_vector(od_pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """X-gal vector from in-cell OD pixels of one or more fields.

    Macenko's method gives two directions; the one farther from grey is X-gal. Falls
    back to the default vector (and says why) when there is too little stain.

    Parameters
    ----------
    od_pixels : (P, 3) ndarray
        OD vectors (:func:`stained_od_sample`), of one field or pooled over a plate.

    Returns
    -------
    vector : (3,) ndarray
    source : str
        ``'estimated'`` or ``'default (<reason>)'``.
    """
    default = np.asarray(STAIN_VECTORS["xgal"])
    try:
        first, second = estimate_stain_vectors(od_pixels)
    except ValueError as exc:
        return default, f"default ({exc})"
    neutral = STAIN_VECTORS["neutral"]
    vector = max((first, second), key=lambda v: angle_between(v, neutral))
    if angle_between(vector, neutral) < MIN_ANGLE_FROM_NEUTRAL_DEG:
        return default, "default (stain too close to grey to estimate)"
    return vector, "estimated"
