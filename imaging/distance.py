"""Euclidean distances on label images: the one home of those rules.

:func:`distance_to_background`: the distance of each foreground pixel to the nearest
background pixel.

Identical to ``scipy.ndimage.distance_transform_edt(mask)`` (tested pixel for pixel): scipy
computes the whole feature transform (the nearest background pixel's coordinates) even when
only distances are wanted; :func:`imaging.kernels.exact_distance_transform` computes the
squared distances, integers, exactly in two compiled passes and takes their float64 square
roots, which are scipy's. Measured on blob masks: 0.003 ms against scipy's 0.020 at 24 px
(the notch tests' crops), 4.0 against 17.8 ms at 512 px, 84 against 485 ms at 2048 px (the
``edt`` package, used here before: 147 ms); rows no deeper than ``NEAR_SEARCH_PX`` (a nucleus
mask's, all of them) are searched directly, so the foreground of a dense 2048 px field takes
34 ms, not 56. A mask without background keeps scipy's own convention (scipy is called).

:func:`expand_labels`: ``skimage.segmentation.expand_labels`` (each background pixel within a
distance of a label takes the nearest label), computed tile by tile by a compiled loop
(:func:`imaging.kernels.nearest_label_within`: two separable passes, each pixel looking at most
``distance`` px along its row and column, where scipy's feature transform behind skimage finds the
nearest labelled pixel of every pixel of the image. On a dense 2048 px field, at the growth
distances of nuclei (4 px) and cells (8 px): 0.044 and 0.062 s, against 0.19 s for scipy's
transform tile by tile and 0.47 s for skimage's whole-image call. A pixel within ``distance`` of a label has its nearest
labelled pixel within ``distance``, so a tile padded by that much on each side holds it, and ties
(equidistant labels) go the way scipy sends them, to the leftmost column, then the uppermost row,
which depends only on the equidistant pixels, all inside the padded tile. Tiles with no label in
reach are skipped and tiles run on threads (:mod:`imaging.tiles`; the loop releases the GIL).
Identical to skimage's, ties included (tested on grids of seeds, random seeds and blobs, every
integer dtype, tiles down to 4 px; the DSB and benchmark-field labels are unchanged).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from imaging.tiles import map_tiles


def distance_to_background(mask: np.ndarray, *, dtype=np.float64) -> np.ndarray:
    """Distance of every True pixel of a 2-D ``mask`` to the nearest False pixel (0 on False).

    Parameters
    ----------
    mask : (M, N) array_like of bool
        Foreground pixels.
    dtype : dtype
        float64 (scipy's values), or float32 (those values rounded once, made without the
        float64 array: half the memory).

    Returns
    -------
    (M, N) ndarray of ``dtype``
        Identical to ``scipy.ndimage.distance_transform_edt(mask).astype(dtype)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"distance_to_background needs a 2-D mask, got shape {mask.shape}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"distance_to_background makes float32 or float64, not {np.dtype(dtype)}")
    if mask.all():  # no background: scipy's own convention is kept
        return ndi.distance_transform_edt(mask).astype(dtype, copy=False)
    from imaging.kernels import exact_distance_transform  # numba's import is paid on first use only

    return exact_distance_transform(np.ascontiguousarray(mask), np.empty(mask.shape, dtype=dtype))


EXPAND_TILE = 512


def _first_square_beyond(distance: float) -> int:
    """The least integer ``q`` with ``sqrt(float64(q)) > distance``: skimage drops a grown pixel
    whose nearest label lies at squared offset ``q`` exactly when ``q`` is at least this (its
    float64 square root is correctly rounded, so it never decreases as ``q`` grows), and
    integer squares are compared faster than float roots are taken."""
    if distance < 0:
        return 0
    top = (int(np.ceil(distance)) + 2) ** 2
    squares = np.arange(top + 1)
    return int(np.argmax(np.sqrt(squares.astype(np.float64)) > distance))


def expand_labels(labels: np.ndarray, distance: float, *, tile: int = EXPAND_TILE, threads: int = 1) -> np.ndarray:
    """Grow each label of a 2-D label image over background up to ``distance`` px, every
    pixel to its nearest label (see module docstring).

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels; 0 is background.
    distance : float
        Farthest a label grows (px, Euclidean).
    tile : int
        Side of the tiles computed one at a time (px).
    threads : int
        Tiles computed at once (:func:`imaging.tiles.map_tiles`).

    Returns
    -------
    (M, N) ndarray, ``labels``' dtype
        Identical to ``skimage.segmentation.expand_labels(labels, distance)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expand_labels needs a 2-D label image, got shape {labels.shape}")

    beyond = _first_square_beyond(distance)
    if beyond == 0:  # a negative distance: skimage keeps no pixel, not even the labels'
        return np.zeros_like(labels)
    from imaging.kernels import nearest_label_within

    def grow(window: np.ndarray, core: tuple[slice, slice]) -> np.ndarray | None:
        if not window.any():
            return None
        return nearest_label_within(np.ascontiguousarray(window), beyond)[core]

    return map_tiles(grow, labels, halo=int(np.ceil(distance)) + 1, dtype=labels.dtype, threads=threads, size=tile)
