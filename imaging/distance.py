"""Euclidean distance to the nearest background pixel: the one home of that rule.

Identical to ``scipy.ndimage.distance_transform_edt(mask)`` (tested pixel for pixel), and 4-5
times faster on a 2048 px field (0.13 s, not 0.62): scipy computes the whole feature
transform (the nearest background pixel's coordinates) even when only distances are
wanted; the ``edt`` package computes squared distances directly. Those are integers, held
exactly in its float32 output up to 2^24 (distances up to 4096 px), so their float64 square
root equals scipy's. Small arrays (scipy is faster there), arrays with a side over 4096 px and
masks without background (scipy's own convention) go to scipy.
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
