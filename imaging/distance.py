"""Euclidean distances on label images: the one home of those rules.

:func:`distance_to_background`: the distance of each foreground pixel to the nearest
background pixel.

Identical to ``scipy.ndimage.distance_transform_edt(mask)`` (tested pixel for pixel), and 4-5
times faster on a 2048 px field (0.13 s, not 0.62): scipy computes the whole feature
transform (the nearest background pixel's coordinates) even when only distances are
wanted; the ``edt`` package computes squared distances directly. Those are integers, held
exactly in its float32 output up to 2^24 (distances up to 4096 px), so their float64 square
root equals scipy's. Small arrays (scipy is faster there), arrays with a side over 4096 px and
masks without background (scipy's own convention) go to scipy.

:func:`expand_labels`: ``skimage.segmentation.expand_labels`` (each background pixel within a
distance of a label takes the nearest label), computed tile by tile. A pixel within
``distance`` of a label has its nearest labelled pixel within ``distance``, so a tile padded by
that much on each side holds it: the feature transform of the padded tile gives the same
nearest pixel as the whole image's. Tiles of 512 px fit the processor's caches where the whole
image's transform does not (1.8x faster on a dense 2048 px field), and tiles with no label in
reach are skipped. Identical to skimage's, ties included (tested on random label images with
many equidistant pixels and tiles down to 4 px; the DSB and benchmark-field labels are unchanged).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EDT_MIN_PIXELS = 256 * 256
EDT_MAX_SIDE = 4096


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Distance of every True pixel of a 2-D ``mask`` to the nearest False pixel (0 on False).

    Parameters
    ----------
    mask : (M, N) array_like of bool
        Foreground pixels.

    Returns
    -------
    (M, N) ndarray of float64
        Identical to ``scipy.ndimage.distance_transform_edt(mask)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.size < EDT_MIN_PIXELS or max(mask.shape) > EDT_MAX_SIDE or mask.all():
        return ndi.distance_transform_edt(mask)
    import edt

    squared = edt.edtsq(np.ascontiguousarray(mask), black_border=False, parallel=1)
    return np.sqrt(squared.astype(np.float64))


EXPAND_TILE = 512


def expand_labels(labels: np.ndarray, distance: float, *, tile: int = EXPAND_TILE) -> np.ndarray:
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

    Returns
    -------
    (M, N) ndarray, ``labels``' dtype
        Identical to ``skimage.segmentation.expand_labels(labels, distance)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expand_labels needs a 2-D label image, got shape {labels.shape}")
    out = np.zeros_like(labels)
    halo = int(np.ceil(distance)) + 1
    n_rows, n_columns = labels.shape
    for row in range(0, n_rows, tile):
        for column in range(0, n_columns, tile):
            top, left = max(row - halo, 0), max(column - halo, 0)
            window = labels[top : min(row + tile + halo, n_rows), left : min(column + tile + halo, n_columns)]
            if not window.any():
                continue
            core = (slice(row - top, row - top + tile), slice(column - left, column - left + tile))
            nearest = ndi.distance_transform_edt(window == 0, return_distances=False, return_indices=True)
            nearest_rows, nearest_columns = nearest[0][core], nearest[1][core]
            # scipy's own distance: float64 squares of the offsets, summed, square-rooted
            offset_rows = nearest_rows - np.arange(core[0].start, core[0].start + nearest_rows.shape[0])[:, None]
            offset_columns = nearest_columns - np.arange(core[1].start, core[1].start + nearest_columns.shape[1])
            reach = np.sqrt(offset_rows.astype(np.float64) ** 2 + offset_columns.astype(np.float64) ** 2)
            grown = window[nearest_rows, nearest_columns]
            grown[reach > distance] = 0
            out[row : row + tile, column : column + tile] = grown
    return out
