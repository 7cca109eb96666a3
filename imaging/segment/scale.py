"""Estimate the typical nucleus size of an image from the image itself.

The estimate is the median, over the connected components of a rough foreground mask,
of each component's largest inscribed radius (the maximum of its distance transform).
A clump of touching nuclei has an inscribed radius close to that of one nucleus, so the
estimate holds in dense fields where component areas would not.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from imaging.distance import distance_to_background
from imaging.label_stats import label_counts, label_maxima

MIN_RADIUS_PX = 1.5
MIN_MEASURED_AREA = 9  # px: smaller components are not measured (noise specks)


def component_sizes(components: np.ndarray, n_components: int, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each component's largest inscribed radius (px) and area (px).

    Parameters
    ----------
    components : (M, N) ndarray of int
        Connected components of a mask, 1..``n_components``.
    n_components : int
        Their number.
    distance : (M, N) ndarray of float
        The mask's distance to background (:func:`imaging.distance.distance_to_background`).

    Returns
    -------
    radii : (n_components,) ndarray of float
    areas : (n_components,) ndarray of int
    """
    if n_components == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    areas = label_counts(components, minlength=n_components + 1)[1:]
    return label_maxima(distance, components, n_components), areas


def component_radii(
    components: np.ndarray, n_components: int, distance: np.ndarray, *, min_area: int = MIN_MEASURED_AREA
) -> np.ndarray:
    """Largest inscribed radius (px) of each component of ``components`` with at least
    ``min_area`` pixels: :func:`component_sizes`, filtered.

    Parameters
    ----------
    components, n_components, distance
        As in :func:`component_sizes`.
    min_area : int
        Components smaller than this (px) are not measured.

    Returns
    -------
    ndarray of float
        One radius per component measured (its largest distance to the background).
    """
    radii, areas = component_sizes(components, n_components, distance)
    return radii[areas >= min_area]


def inscribed_radii(mask: np.ndarray, *, min_area: int = MIN_MEASURED_AREA) -> np.ndarray:
    """:func:`component_radii` of the 4-connected components of ``mask``, labelled and
    distance-transformed here.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        A rough foreground.
    min_area : int
        As in :func:`component_radii`.

    Returns
    -------
    ndarray of float
        One inscribed radius (px) per component measured.
    """
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros(0)
    return component_radii(labels, n, distance_to_background(mask), min_area=min_area)


def typical_radius(radii: np.ndarray, *, default: float = 8.0) -> float:
    """The typical nucleus radius (px) among components' inscribed radii ``radii``
    (:func:`inscribed_radii`); ``default`` when there are none.

    Parameters
    ----------
    radii : ndarray of float
        Inscribed radii of a mask's components.
    default : float
        Returned for no radii.

    Returns
    -------
    float
    """
    if radii.size == 0:
        return float(default)
    # Weight components by their inscribed radius: tiny debris then counts less than
    # nuclei, without a size cut-off that would presume the scale being estimated.
    order = np.argsort(radii)
    cumulative = np.cumsum(radii[order])
    median = radii[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    return float(max(median, MIN_RADIUS_PX))


def estimate_radius(mask: np.ndarray, *, default: float = 8.0) -> float:
    """Typical nucleus radius in pixels from a rough foreground mask.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        A rough foreground.
    default : float
        Returned when the mask has no component big enough to measure.

    Returns
    -------
    float
        The radius (px).
    """
    return typical_radius(inscribed_radii(mask), default=default)
