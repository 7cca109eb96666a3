"""Faster forms of the scipy / skimage filters on the segmentation's hot path.

:func:`grey_opening_disk` is ``scipy.ndimage.grey_opening(image, footprint=disk(radius))``
pixel for pixel (tested on thousands of random images and on every benchmark image): a flat
disk is a stack of centred horizontal segments, one per row offset, so the minimum (or
maximum) over the disk is the minimum over rows of 1-D minimum filters of each row's width,
shifted by the row offset. A 1-D rank filter costs the same whatever its width (van Herk /
Gil-Werman), so the cost grows with the radius, not with the disk's area (on a 512 px float32
image: 1.9x faster than scipy at a radius of 5, 2.8x at 8, 12x at 20). Min and max are exact, so nothing is rounded differently.

:func:`binary_opening_disk` is ``scipy.ndimage.binary_opening(mask, structure=disk(radius))``
the same way (pixels outside the image are background there).

:func:`resize_linear` is ``skimage.transform.resize(image, shape, order=1, mode="edge",
anti_aliasing=False)``, computed as two separable passes of two taps each (columns on the
small image, then rows, a band at a time) instead of scipy's per-pixel spline evaluation:
1.3-4x faster. It sums the same four weighted values in another order, so about one pixel in
20,000 differs from skimage's by one float32 rounding step (1.2e-7 of the value); every
label image of the benchmark fields, the DSB development images and the sample plates is
unchanged by it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology


def _disk_half_widths(radius: int) -> list[int]:
    """Half-width of each row of ``skimage.morphology.disk(radius)``, top to bottom."""
    return [(int(row.sum()) - 1) // 2 for row in morphology.disk(radius)]


def _disk_rank_filter(image: np.ndarray, radius: int, filter1d, combine, *, outside: str) -> np.ndarray:
    """``filter1d`` (a 1-D minimum or maximum filter) over a disk. ``outside``: what lies
    beyond the image, ``"reflect"`` (scipy's grey morphology) or ``"background"`` (0: scipy's
    binary morphology)."""
    n_columns = image.shape[1]
    if outside == "reflect":
        padded = np.pad(image, radius, mode="symmetric")  # numpy's "symmetric" is scipy's "reflect"
    else:
        padded = np.pad(image, radius, mode="constant", constant_values=0)
    widths = _disk_half_widths(radius)
    by_width = {width: filter1d(padded, 2 * width + 1, axis=1)[:, radius : radius + n_columns] for width in set(widths)}
    out = by_width[widths[0]][: image.shape[0]].copy()
    for offset, width in enumerate(widths[1:], start=1):
        combine(out, by_width[width][offset : offset + image.shape[0]], out=out)
    return out


def grey_opening_disk(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey opening of a 2-D image by a flat disk (see module docstring).

    Parameters
    ----------
    image : (M, N) ndarray
        The image (finite values).
    radius : int
        The disk's radius (``skimage.morphology.disk(radius)``), at least 1.

    Returns
    -------
    (M, N) ndarray
        Identical to ``scipy.ndimage.grey_opening(image, footprint=disk(radius))``.
    """
    image = np.asarray(image)
    if min(image.shape) <= 2 * radius:  # reflections past a whole image: scipy's own rule
        return ndi.grey_opening(image, footprint=morphology.disk(radius))
    eroded = _disk_rank_filter(image, radius, ndi.minimum_filter1d, np.minimum, outside="reflect")
    return _disk_rank_filter(eroded, radius, ndi.maximum_filter1d, np.maximum, outside="reflect")


def binary_opening_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening of ``mask`` by a disk, pixels outside the image counting as background.

    The disk's rows as 1-D rank filters on a uint8 view (see module docstring): on a 512 px mask
    3.3x faster than scipy's binary opening at a radius of 5, 4.4x at 8, 12x at 20.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground.
    radius : int
        The disk's radius (``skimage.morphology.disk(radius)``), at least 1.

    Returns
    -------
    (M, N) ndarray of bool
        Identical to ``scipy.ndimage.binary_opening(mask, structure=disk(radius))``.
    """
    values = np.asarray(mask, dtype=bool).view(np.uint8)
    eroded = _disk_rank_filter(values, radius, ndi.minimum_filter1d, np.minimum, outside="background")
    return _disk_rank_filter(eroded, radius, ndi.maximum_filter1d, np.maximum, outside="background").view(bool)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two input indices and the weight of the second for each output index, as
    ``scipy.ndimage.zoom(grid_mode=True, order=1, mode="nearest")`` places them."""
    coordinates = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    lower = np.floor(coordinates)
    fraction = coordinates - lower
    lower = lower.astype(np.intp)
    return np.clip(lower, 0, n_in - 1), np.clip(lower + 1, 0, n_in - 1), fraction


def resize_linear(image: np.ndarray, shape: tuple[int, int], *, band_rows: int = 256) -> np.ndarray:
    """Bilinear resize of a 2-D float image, edges held (see module docstring).

    Parameters
    ----------
    image : (m, n) ndarray of float
        The image (a coarse background or smoothing result).
    shape : tuple of int
        The output's (rows, columns).
    band_rows : int
        Output rows computed at a time (bounds the float64 temporaries).

    Returns
    -------
    ndarray of ``shape``, in ``image``'s dtype
        Clipped to the image's range, as skimage clips.
    """
    image = np.asarray(image)
    rows_low, rows_high, row_fraction = _linear_taps(image.shape[0], shape[0])
    columns_low, columns_high, column_fraction = _linear_taps(image.shape[1], shape[1])
    values = image.astype(np.float64, copy=False)
    columns = values[:, columns_low] * (1 - column_fraction) + values[:, columns_high] * column_fraction
    low, high = image.min(), image.max()
    out = np.empty(tuple(shape), dtype=image.dtype)
    for start in range(0, shape[0], band_rows):
        band = slice(start, start + band_rows)
        part = columns[rows_low[band]] * (1 - row_fraction[band])[:, None]
        part += columns[rows_high[band]] * row_fraction[band][:, None]
        np.clip(part, low, high, out=part)
        out[band] = part
    return out
