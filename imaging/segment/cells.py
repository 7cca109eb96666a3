"""Whole cells from nuclei seeds.

Cells keep their nucleus's label, so ``cells == k`` and ``nuclei == k`` describe the same
cell. Two ways:

``expand``
    Grow every nucleus by up to ``distance`` pixels without overlapping a neighbour
    (:func:`imaging.distance.expand_labels`, skimage's rule by tiles): a Voronoi split where cells touch.
``watershed``
    Follow a cytoplasm stain: watershed of its gradient from the nuclei, inside the
    stain's foreground, never farther than ``distance`` from the nucleus.
"""

from __future__ import annotations

import numpy as np
from skimage import filters, segmentation

from imaging import arrays
from imaging.distance import distance_to_background, expand_labels
from imaging.filters import gaussian, threshold_otsu
from imaging.segment.classical import normalize_intensity, smooth_background


def expand_nuclei(nuclei: np.ndarray, *, distance: float, threads: int = 1) -> np.ndarray:
    """Cells as nuclei grown by up to ``distance`` px, split between neighbours.

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels.
    distance : float
        Largest growth (px).
    threads : int
        Threads for the growth (:func:`imaging.distance.expand_labels`).

    Returns
    -------
    (M, N) ndarray of int32
        Cell labels, each with its nucleus's id.
    """
    return expand_labels(nuclei, distance=distance, threads=threads).astype(np.int32, copy=False)


def cytoplasm_foreground(cytoplasm: np.ndarray, *, radius: float) -> np.ndarray:
    """Pixels of a cytoplasm stain that belong to cells (Otsu on the flattened image).

    Parameters
    ----------
    cytoplasm : (M, N) ndarray
        The cytoplasm (or whole-cell) stain.
    radius : float
        Typical nucleus radius (px): sets the smoothing and the background scale.

    Returns
    -------
    (M, N) ndarray of bool
        Cell pixels.
    """
    smoothed = gaussian(normalize_intensity(cytoplasm), max(1.0, radius / 6))
    flattened = smoothed - smooth_background(smoothed, radius=8 * radius)
    if np.ptp(flattened) <= 0:
        return np.zeros(cytoplasm.shape, dtype=bool)
    return flattened > threshold_otsu(flattened)


def watershed_cells(nuclei: np.ndarray, cytoplasm: np.ndarray, *, distance: float, radius: float) -> np.ndarray:
    """Cells grown from ``nuclei`` along a cytoplasm stain, at most ``distance`` px out.

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels (the watershed's markers).
    cytoplasm : (M, N) ndarray
        The cytoplasm stain; cells stop where it falls to background.
    distance : float
        Largest reach from a nucleus (px).
    radius : float
        Typical nucleus radius (px).

    Returns
    -------
    (M, N) ndarray of int32
        Cell labels, each with its nucleus's id.

    Raises
    ------
    ValueError
        When the two shapes differ (both named).
    """
    if cytoplasm.shape != nuclei.shape:
        raise ValueError(f"cytoplasm image shape {cytoplasm.shape} differs from nuclei {nuclei.shape}")
    reach = distance_to_background(nuclei == 0) <= distance
    mask = (cytoplasm_foreground(cytoplasm, radius=radius) & reach) | (nuclei > 0)
    smoothed = gaussian(normalize_intensity(cytoplasm), max(1.0, radius / 6))
    gradient = filters.sobel(smoothed)
    cells = segmentation.watershed(gradient, markers=nuclei, mask=mask)
    return cells.astype(np.int32)


def derive_cells(
    nuclei: np.ndarray,
    *,
    method: str,
    distance: float,
    cytoplasm: np.ndarray | None = None,
    radius: float | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Cell labels from nucleus labels (same ids); see the module docstring for methods.

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels, 0 = background.
    method : {'expand', 'watershed'}
        Growth by distance alone, or a watershed along the cytoplasm stain.
    distance : float
        Farthest a cell reaches beyond its nucleus, in pixels.
    cytoplasm : (M, N) ndarray, optional
        Cytoplasm stain; required for ``watershed``.
    radius : float, optional
        Typical nucleus radius (px), scales the watershed's smoothing; default
        ``distance / 2``.
    threads : int
        Threads for the growth by distance (the labels do not depend on it).

    Returns
    -------
    (M, N) ndarray of int32
        Cell labels with their nucleus's ids.

    Raises
    ------
    ValueError
        For an unknown method, ``watershed`` without a cytoplasm image, or shapes that differ.
    """
    nuclei = arrays.check_labels(nuclei, np.shape(nuclei), name="nuclei")
    arrays.check_size(distance, name="distance", allow_zero=True)
    if cytoplasm is not None:
        arrays.check_image(cytoplasm, name="cytoplasm image")
        arrays.check_labels(nuclei, np.shape(cytoplasm), name="nuclei", image_name="cytoplasm image")
    if method == "expand":
        return expand_nuclei(nuclei, distance=distance, threads=threads)
    if method == "watershed":
        if cytoplasm is None:
            raise ValueError("cells method 'watershed' needs a cytoplasm image")
        return watershed_cells(
            nuclei, cytoplasm, distance=distance, radius=radius if radius else max(1.0, distance / 2)
        )
    raise ValueError(f"unknown cells method {method!r}; use 'expand' or 'watershed'")
