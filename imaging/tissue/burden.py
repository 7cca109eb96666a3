"""Metastatic burden: lesions on a low-resolution overview of a whole section.

A lesion rule gives a signal image (a stain's optical density after colour
deconvolution, or one channel's intensity), smoothed at a chosen scale; pixels of tissue
above the threshold form lesions, holes filled, pieces smaller than the minimum area
dropped. Per section: lesion count, each lesion's area, total lesion area and its
percentage of the tissue area.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import morphology

from imaging import arrays
from imaging.features.morphology import label_moments
from imaging.label_stats import label_means
from imaging.stains.vectors import stain_channel

CHANNELS = {"red": 0, "green": 1, "blue": 2}
LESION_COLUMNS = ["lesion", "centroid_row_um", "centroid_col_um", "area_um2", "mean_signal"]


def lesion_signal(overview: np.ndarray, source: str, *, vectors: dict | None = None, white=None) -> np.ndarray:
    """The image the lesion rule thresholds (float, larger = more lesion-like).

    Parameters
    ----------
    overview : (M, N, 3) or (M, N) ndarray
        A section's overview.
    source : str
        ``"red"``, ``"green"``, ``"blue"`` (that channel), ``"intensity"`` (the mean of the
        channels) or a stain name (its amount, unmixed with ``vectors``).
    vectors : dict of str to (3,) ndarray, optional
        Stain vectors, for a stain ``source``.
    white : float or ndarray, optional
        White reference, for a stain ``source``.

    Returns
    -------
    (M, N) ndarray of float32
    """
    if source in CHANNELS:
        return np.asarray(overview[..., CHANNELS[source]] if overview.ndim == 3 else overview, dtype=np.float32)
    if source == "intensity":
        return np.asarray(overview.mean(axis=-1) if overview.ndim == 3 else overview, dtype=np.float32)
    return stain_channel(overview, vectors, source, white=white)


def smooth_signal(signal: np.ndarray, *, smoothing_um: float, pixel_size_um: float) -> np.ndarray:
    """The lesion signal smoothed with a Gaussian of ``smoothing_um``.

    Parameters
    ----------
    signal : (M, N) ndarray
        :func:`lesion_signal`.
    smoothing_um : float
        The Gaussian's SD in um (0: no smoothing).
    pixel_size_um : float
        The signal's pixel size.

    Returns
    -------
    (M, N) ndarray
    """
    sigma = smoothing_um / pixel_size_um
    return ndi.gaussian_filter(signal, sigma) if sigma > 0 else signal


def detect_lesions(
    signal: np.ndarray,
    tissue: np.ndarray,
    *,
    threshold: float,
    pixel_size_um: float,
    min_area_um2: float,
    fill_holes: bool = True,
) -> np.ndarray:
    """Lesion labels: tissue above ``threshold``, holes filled, small pieces dropped.

    Parameters
    ----------
    signal : (M, N) ndarray
        :func:`lesion_signal` of an overview (smoothed).
    tissue : (M, N) bool ndarray
        Where lesions may be.
    threshold : float
        Signal above which a pixel is lesion (fixed, or the run's ``auto`` threshold).
    pixel_size_um : float
        Of the overview.
    min_area_um2 : float
        Smaller pieces are dropped.
    fill_holes : bool
        Fill holes inside lesions (necrotic or pale centres).

    Returns
    -------
    (M, N) int32 ndarray
        Lesion labels 1..n.
    """
    mask = (signal > threshold) & tissue
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    min_pixels = int(min_area_um2 / pixel_size_um**2)
    if min_pixels > 0:
        mask = morphology.remove_small_objects(mask, max_size=min_pixels)
    labels, _ = ndi.label(mask)
    return labels.astype(np.int32)


def lesion_table(labels: np.ndarray, signal: np.ndarray, *, pixel_size_um: float) -> pd.DataFrame:
    """One row per lesion: centre and area in micrometres, mean signal.

    Parameters
    ----------
    labels : (M, N) int ndarray
        :func:`detect_lesions`.
    signal : (M, N) ndarray
        The signal the lesions were found on.
    pixel_size_um : float
        Of the overview.

    Returns
    -------
    DataFrame
        :data:`LESION_COLUMNS`.
    """
    arrays.check_same_shape(signal, labels, names=("signal", "labels"))
    n = int(labels.max())
    if n == 0:
        return pd.DataFrame(columns=LESION_COLUMNS)
    ids = np.arange(1, n + 1)
    moments = label_moments(labels)
    centres = np.stack([moments["row"][ids], moments["col"][ids]], axis=1)
    areas = moments["area"][ids] * pixel_size_um**2
    return pd.DataFrame(
        {
            "lesion": ids,
            "centroid_row_um": centres[:, 0] * pixel_size_um,
            "centroid_col_um": centres[:, 1] * pixel_size_um,
            "area_um2": areas,
            "mean_signal": label_means(signal, labels, ids)[0],
        }
    )


def section_summary(lesions: pd.DataFrame, tissue_area_um2: float) -> dict:
    """Lesion count, total and largest area, and percent of tissue.

    Parameters
    ----------
    lesions : pandas.DataFrame
        :func:`lesion_table` of one section.
    tissue_area_um2 : float
        The section's tissue area.

    Returns
    -------
    dict
        ``n_lesions``, ``lesion_area_mm2``, ``largest_lesion_mm2``, ``tissue_area_mm2``,
        ``lesion_percent_of_tissue`` (NaN without tissue).
    """
    total = float(lesions["area_um2"].sum()) if len(lesions) else 0.0
    return {
        "n_lesions": int(len(lesions)),
        "lesion_area_mm2": total / 1e6,
        "largest_lesion_mm2": float(lesions["area_um2"].max()) / 1e6 if len(lesions) else 0.0,
        "tissue_area_mm2": tissue_area_um2 / 1e6,
        "lesion_percent_of_tissue": 100 * total / tissue_area_um2 if tissue_area_um2 > 0 else np.nan,
    }
