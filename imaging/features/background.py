"""Smooth background surfaces from the pixels known to be background.

Used twice: the fluorescence background under cells (subtracted before measuring), and
the brightfield white reference (the light reaching the camera where there is no cell).
Both vary across a field with uneven illumination, so both are estimated as a surface:
a robust statistic of the background pixels in each tile of a coarse grid, tiles without
background filled from a quadratic fit to the others, then interpolated bilinearly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from imaging import arrays

MIN_TILE_FRACTION = 0.05  # a tile needs this share of background pixels to be measured


def median(values: np.ndarray, *, overwrite_input: bool = False):
    """``np.median`` of a 1-D array, the same value bit for bit, in one partition.

    numpy partitions an array of even size at both middle ranks at once, and its
    introselect takes about five times as long for two ranks as for one (18 against 3.7 ms
    on 1.6 million float64 values here). Partitioned at the upper middle rank alone, the
    lower middle value is the largest of the part below it. The two are then averaged by
    ``np.mean``, as numpy does, so integer input gives its float64 median and NaN anywhere
    gives NaN.

    Parameters
    ----------
    values : (K,) ndarray
        Samples (integers or floats).
    overwrite_input : bool
        ``values`` may be reordered in place (no copy); the result does not depend on
        their order.

    Returns
    -------
    numpy scalar
        What ``np.median(values)`` returns; NaN for no samples (without numpy's warning).
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"median takes a 1-D array, not shape {values.shape}")
    n = values.size
    if n == 0:
        return np.float64("nan")
    part = values if overwrite_input else values.copy()
    middle = n // 2
    part.partition(middle)
    if part.dtype.kind == "f" and np.isnan(part[middle:].max()):  # NaN sorts last: in this part if anywhere
        return part.dtype.type("nan")
    if n % 2:
        return np.mean(part[middle : middle + 1])
    pair = np.array([part[:middle].max(), part[middle]], dtype=part.dtype)
    return np.mean(pair)


def percentile(values: np.ndarray, q: float):
    """``np.percentile(values, q)`` (numpy's linear method, ``q`` a Python number), the same
    value bit for bit, in one partition.

    numpy partitions at four ranks (the first and last, for NaN, and the two around the
    virtual index ``(n - 1) q / 100``): 9.2 against 1.5 ms on a 1024 px float32 image here.
    Partitioned at the upper rank alone, the lower value is the largest of the part below it;
    the two are interpolated by numpy's own rule (``a + (b - a) g``, from ``b`` when
    ``g >= 0.5``) in the array's dtype.

    Parameters
    ----------
    values : ndarray
        Samples (any shape; floats or integers).
    q : float
        Percentile in [0, 100].

    Returns
    -------
    numpy scalar
        What ``np.percentile(values, q)`` returns; NaN when any sample is NaN.
    """
    values = np.asarray(values)
    if values.size == 0 or not 0 <= q <= 100:
        return np.percentile(values, q)  # numpy's own error for these
    part = values.ravel().copy()
    if part.dtype.kind != "f":
        part = part.astype(np.float64)  # as numpy interpolates integers
    n = part.size
    virtual = (n - 1) * np.true_divide(q, 100)
    lower = int(np.floor(virtual))
    upper = min(lower + 1, n - 1)
    gamma = float(virtual - lower)
    part.partition(upper)
    if np.isnan(part[upper:].max()):  # NaN sorts last: in this part if anywhere
        return part.dtype.type("nan")
    a = part[:upper].max() if upper > lower else part[upper]
    b = part[upper]
    difference = b - a
    return b - difference * (1 - gamma) if gamma >= 0.5 else a + difference * gamma


def _tile_edges(length: int, n_tiles: int) -> np.ndarray:
    return np.linspace(0, length, n_tiles + 1).round().astype(int)


def tile_statistic(image: np.ndarray, mask: np.ndarray, *, grid: int = 8, statistic: str = "median") -> np.ndarray:
    """Statistic of ``image[mask]`` in each tile of a ``grid`` x ``grid`` layout.

    Parameters
    ----------
    image : (M, N) ndarray
        Intensities.
    mask : (M, N) ndarray of bool
        The pixels that count (known background).
    grid : int
        Tiles per side.
    statistic : {"median", "mean"}
        What is taken of each tile's pixels.

    Returns
    -------
    (grid, grid) ndarray of float64
        One value per tile; NaN where a tile has too few mask pixels.
    """
    arrays.check_same_shape(image, mask, names=("image", "mask"))
    rows, cols = _tile_edges(image.shape[0], grid), _tile_edges(image.shape[1], grid)
    reducer = {"median": lambda tile: median(tile, overwrite_input=True), "mean": np.mean}[statistic]
    # numpy's median of integers is their float64 median exactly (the middle value, or the
    # float64 mean of the two middle ones), and partitioning 2-byte pixels is quicker than
    # partitioning their float64 copies; a mean is summed as float64 either way, not in the
    # same order, so it takes the copy
    exact_as_read = statistic == "median" and image.dtype.kind in "iu"
    values = np.full((grid, grid), np.nan)
    for i in range(grid):
        for j in range(grid):
            tile_mask = mask[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            if tile_mask.size and tile_mask.mean() >= MIN_TILE_FRACTION:
                tile = image[rows[i] : rows[i + 1], cols[j] : cols[j + 1]][tile_mask]
                values[i, j] = reducer(tile if exact_as_read else tile.astype(np.float64, copy=False))
    return values


def fill_from_nearest(values: np.ndarray) -> np.ndarray:
    """Replace NaN entries by the nearest finite entry (all-NaN input stays NaN).

    Parameters
    ----------
    values : ndarray of float
        A grid of tile values.

    Returns
    -------
    ndarray of float
        ``values`` with every NaN filled (the input itself when none is, or all are).
    """
    missing = np.isnan(values)
    if not missing.any() or missing.all():
        return values
    _, (ri, ci) = ndi.distance_transform_edt(missing, return_indices=True)
    return values[ri, ci]


def fill_from_polynomial(values: np.ndarray) -> np.ndarray:
    """Replace NaN tiles by a least-squares quadratic surface through the finite tiles.

    Illumination falls off smoothly (vignetting is close to quadratic), so a quadratic
    bridges tiles without background (a confluent patch) better than copying the nearest
    tile. With fewer than 6 finite tiles a plane is fitted; with fewer than 3, the
    nearest tile is copied.

    Parameters
    ----------
    values : (R, C) ndarray of float
        A grid of tile values, NaN where a tile had no background.

    Returns
    -------
    (R, C) ndarray of float
        ``values`` with the NaN tiles filled.
    """
    missing = np.isnan(values)
    if not missing.any() or missing.all():
        return values
    rows, cols = np.mgrid[0 : values.shape[0], 0 : values.shape[1]].astype(float)
    terms = [np.ones_like(rows), rows, cols, rows**2, rows * cols, cols**2]
    known = ~missing
    n_terms = 6 if known.sum() >= 6 else 3 if known.sum() >= 3 else 0
    if n_terms == 0:
        return fill_from_nearest(values)
    design = np.stack([t[known] for t in terms[:n_terms]], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, values[known], rcond=None)
    predicted = sum(c * t for c, t in zip(coefficients, terms[:n_terms]))
    return np.where(missing, predicted, values)


def _linear_weights(positions: np.ndarray, n: int) -> np.ndarray:
    """(len(positions), n) matrix of linear-interpolation weights at fractional grid indices."""
    low = np.clip(np.floor(positions).astype(int), 0, n - 1)
    high = np.minimum(low + 1, n - 1)
    fraction = positions - low
    weights = np.zeros((len(positions), n))
    rows = np.arange(len(positions))
    np.add.at(weights, (rows, low), 1 - fraction)
    np.add.at(weights, (rows, high), fraction)
    return weights


def interpolate_grid(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of tile-centre values to a full image of ``shape``.

    Bilinear interpolation is separable: ``W_rows @ values @ W_cols.T`` with each row of the
    weight matrices holding two weights. This equals ``map_coordinates(order=1)`` at every
    pixel (to rounding) and takes a twentieth of its time on a 2048 x 2048 field (0.02 s, not
    0.42): the surface varies over hundreds of pixels, so it never needed per-pixel coordinate
    lookups.

    Parameters
    ----------
    values : (R, C) ndarray of float
        Values at the centres of an R x C grid of tiles covering the image.
    shape : tuple of int
        The image's (rows, columns).

    Returns
    -------
    ndarray of float64, of ``shape``
        The surface (edge values held constant beyond the outermost tile centres).
    """
    grid_r, grid_c = values.shape
    centres_r = (np.arange(grid_r) + 0.5) * shape[0] / grid_r - 0.5
    centres_c = (np.arange(grid_c) + 0.5) * shape[1] / grid_c - 0.5
    rr = np.interp(np.arange(shape[0]), centres_r, np.arange(grid_r))
    cc = np.interp(np.arange(shape[1]), centres_c, np.arange(grid_c))
    return _linear_weights(rr, grid_r) @ np.asarray(values, dtype=np.float64) @ _linear_weights(cc, grid_c).T


def background_surface(
    image: np.ndarray, background: np.ndarray, *, grid: int = 8, min_pixels: int = 50
) -> np.ndarray | float:
    """Smooth estimate of ``image`` where ``background`` is True, for every pixel.

    Parameters
    ----------
    image : (M, N) ndarray
        One channel.
    background : (M, N) bool ndarray
        Pixels known to be background (no cell).
    grid : int
        Tiles per side; the surface can follow variation slower than a tile.
    min_pixels : int
        Below this many background pixels, a constant (the median) is returned; with
        none at all, the image's 1st percentile.

    Returns
    -------
    surface : (M, N) float ndarray, or float
    """
    image = np.asarray(image)  # as read: only the background pixels taken are made float64
    n_background = int(np.count_nonzero(background))
    if n_background == 0:
        return float(np.percentile(image.astype(np.float64), 1))
    if n_background < min_pixels or min(image.shape) < 4 * grid:
        return float(median(image[background].astype(np.float64), overwrite_input=True))
    tiles = fill_from_polynomial(tile_statistic(image, background, grid=grid))
    if np.isnan(tiles).all():
        return float(median(image[background].astype(np.float64), overwrite_input=True))
    return interpolate_grid(tiles, image.shape)


def robust_level_and_sd(values: np.ndarray, *, overwrite_input: bool = False) -> tuple[float, float]:
    """Median of ``values`` and the standard deviation estimated from their median absolute
    deviation (Gaussian-consistent), found together (the deviation needs the median).

    Parameters
    ----------
    values : array_like
        Samples.
    overwrite_input : bool
        A float64 ``values`` the caller no longer needs may be reordered in place (no copy of
        the samples; the results do not depend on their order).

    Returns
    -------
    median, sd : float
        NaN for no samples.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    level = median(values.ravel(), overwrite_input=overwrite_input)
    deviations = values - level  # one temporary, made absolute and partitioned in place
    np.abs(deviations, out=deviations)
    return float(level), float(1.4826 * median(deviations.ravel(), overwrite_input=True))


def robust_sd(values: np.ndarray) -> float:
    """The ``sd`` of :func:`robust_level_and_sd` alone.

    Parameters
    ----------
    values : array_like
        The samples whose spread is wanted (any shape).

    Returns
    -------
    float
        1.4826 times the median absolute deviation; NaN for no samples.
    """
    return robust_level_and_sd(values)[1]
