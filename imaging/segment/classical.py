"""Classical nuclei segmentation that adapts to the image's scale (no weights, no tuning).

Every length below is a multiple of the typical nucleus radius ``r``, which is estimated
from the image itself (:mod:`imaging.segment.scale`), so one setting serves 10x to 63x:

1. Normalise intensities by robust percentiles and smooth lightly (sigma ``r/12``, at least
   one pixel). ``r`` is the inscribed radius of a global Otsu mask, corrected for confluent
   fields, where that mask is one sheet of nuclei (:func:`_settle_radius`).
2. Flatten uneven background: subtract a grey opening of radius ``4 r`` (rolling-ball-like),
   which removes illumination gradients and out-of-focus glow but keeps nuclei.
3. Foreground: pixels above half the Otsu threshold of the flattened image *and* above
   their own neighbourhood mean (Gaussian, sigma ``r``). The global half-Otsu admits dim
   nuclei next to bright ones; the local rule cuts the dark gaps between touching nuclei
   and the glow around bright ones. Holes that fit inside one nucleus (area up to
   ``pi r^2``) are filled, larger ones are background enclosed by nuclei; specks are opened
   away.
4. Split touching nuclei: one marker per peak of the smoothed distance transform, peaks at
   least ``0.4 r`` apart, then a watershed on the distance transform inside the mask.
5. Drop objects smaller than 10 % of a disk of radius ``r``.
6. Let each nucleus grow (up to ``r/2``) to where its intensity falls to 40 % of its own
   peak, so that dim nuclei beside bright ones keep their full extent.
7. Undo splits that no concavity supports: two touching objects are merged when their
   union's outline has no notch deeper than ``r/4`` (two disks of radius ``r`` whose waist is
   wider than 3/4 of their width). Distance-transform peaks also split elongated or
   irregular single nuclei; a true contact between two nuclei leaves a notch.
8. Drop objects no brighter than noise: a mean contrast under 2 standard deviations of
   the pixel noise (an empty well or a blank field gives no nuclei, not hundreds of
   noise specks).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
from scipy import ndimage as ndi

from imaging import arrays
from imaging.distance import distance_to_background, expand_labels
from imaging.filters import (
    binary_opening_disk,
    downscale_mean,
    gaussian,
    grey_opening_disk,
    resize_linear,
    threshold_otsu,
)
from imaging.label_stats import (
    keep_labels,
    label_boxes,
    label_counts,
    label_counts_and_sums,
    label_maxima,
    label_peaks,
)
from imaging.segment.scale import component_radii, estimate_radius, typical_radius

log = logging.getLogger(__name__)

# Holes in the foreground up to this fraction of a typical nucleus's area are filled.
HOLE_AREA_FRACTION = 1.0

# Confluent fields (see _settle_radius): the mask's radius is "settled" within SETTLED_RATIO
# (below) and SHEET_RATIO (above) of the radius it was made at; a mask with a component over
# SHEET_AREA nuclei in area may be a sheet, which "breaks" when the mask made at
# radius / RADIUS_STEP has a radius under BREAK_RATIO of it. At most MAX_RADIUS_PASSES
# passes; the result is adopted only under CONFLUENT_FRACTION of the first estimate.
MAX_RADIUS_PASSES = 10
SETTLED_RATIO = 0.95
SHEET_RATIO = 1.0
SHEET_AREA = 10.0
RADIUS_STEP = 1.25
BREAK_RATIO = 0.7
CONFLUENT_FRACTION = 0.7

# An object must stand this many pixel-noise standard deviations above the flattened
# background, on average over its pixels. Objects segmented out of pure noise (Gaussian or
# Poisson, 64-512 px fields) measure at most 1.3; the faintest real nuclei on the
# benchmark images (a noisy stardist sample) 4.0.
MIN_CONTRAST_NOISE = 2.0


def normalize_intensity(image: np.ndarray, *, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Float32 image scaled so the ``low`` and ``high`` percentiles map to 0 and 1.

    Parameters
    ----------
    image : (M, N) ndarray
        Any numeric image.
    low, high : float
        The percentiles mapped to 0 and 1.

    Returns
    -------
    (M, N) ndarray of float32
    """
    image = np.asarray(image, dtype=np.float32)
    lo, hi = _intensity_limits(image, low=low, high=high)
    return (image - lo) / (hi - lo)


def _intensity_limits(image: np.ndarray, *, low: float = 0.5, high: float = 99.8) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles that :func:`normalize_intensity` maps to 0 and 1."""
    image = np.asarray(image)
    if image.dtype.kind in "ub" and image.dtype.itemsize <= 2:
        from imaging.kernels import count_values  # numba's import is paid on first use only

        # unsigned images histogrammed by one compiled pass: np.bincount first copies the image
        # to intp (2.3 against 8.0 ms on a 2048 px uint16 field)
        counts = count_values(np.ascontiguousarray(image), 0) if image.dtype.kind == "u" else np.bincount(image.ravel())
        lo, hi = _percentiles_of_counts(counts, [low, high])
    else:
        lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [low, high])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _percentiles_of_counts(counts: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """``np.percentile(values.astype(np.float32), percentiles)`` of the integers 0..len(counts)-1
    taken ``counts`` times each, the same numbers, from the counts (no sort of the pixels).

    numpy's linear method: the virtual index ``(n - 1) q / 100`` in float64, the values at its
    floor and the next index, interpolated by its fractional part. The two values come from the
    cumulative counts; the interpolation is numpy's own (``np.quantile`` of those two values at
    that fraction: its virtual index ``1 x fraction`` is the fraction exactly)."""
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    virtual = (total - 1) * np.true_divide(np.asarray(percentiles, dtype=np.float64), 100)
    previous = np.clip(np.floor(virtual).astype(np.intp), 0, total - 1)
    following = np.minimum(previous + 1, total - 1)
    at = np.searchsorted(cumulative, np.concatenate([previous, following]), side="right").astype(np.float32)
    fraction = virtual - previous
    return np.array(
        [
            np.quantile(np.array([a, b], np.float32), np.array([f]))[0]
            for a, b, f in zip(at[: len(previous)], at[len(previous) :], fraction)
        ]
    )


def pixel_noise(image: np.ndarray) -> float:
    """Standard deviation of independent pixel noise in ``image``, in its own units.

    From the differences between horizontal neighbours (noise adds in them, the smooth
    signal cancels), with their median absolute deviation so that nuclear edges and
    gradients do not count; an integer image is never credited with less than its quantisation noise
    (1/sqrt(12) of a grey level). Noise correlated between neighbours (binned-up or
    smoothed images) is underestimated, which errs towards keeping objects.

    Parameters
    ----------
    image : (M, N) ndarray
        Raw pixels.

    Returns
    -------
    float
    """
    image = np.asarray(image)
    sigma = 0.0
    if image.shape[0] > 0 and image.shape[1] > 1:
        if image.dtype.kind in "ub" and image.dtype.itemsize <= 2:
            spread = _integer_difference_mad(image)
        else:
            differences = np.diff(image.astype(np.float32), axis=1).ravel()
            spread = float(np.median(np.abs(differences - np.median(differences))))
        sigma = 1.4826 * spread / np.sqrt(2.0)
    if image.dtype.kind in "iub":
        sigma = max(sigma, 1.0 / np.sqrt(12.0))
    return sigma


def _median_of_counts(counts: np.ndarray) -> float:
    """Median of the integers 0..len(counts)-1 taken ``counts`` times each (numpy's median:
    the mean of the two middle values of an even count)."""
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    low = int(np.searchsorted(cumulative, (total - 1) // 2, side="right"))
    high = int(np.searchsorted(cumulative, total // 2, side="right"))
    return (low + high) / 2


def _integer_difference_mad(image: np.ndarray) -> float:
    """``median(|d - median(d)|)`` of the horizontal differences ``d`` of an 8- or 16-bit
    image, from counts of its integer differences: the same number numpy's float32 median
    gives (every value involved is a multiple of 1/4 under 2^18, exact in float32). The
    differences are counted in one compiled pass over the pixels
    (:func:`imaging.kernels.horizontal_difference_counts`); the deviations' counts follow from
    theirs, bin by bin (a count, not two partial sorts of 4 million values)."""
    from imaging.kernels import horizontal_difference_counts  # numba's import is paid on first use only

    offset = 1 << (8 * image.dtype.itemsize)  # differences lie in (-offset, offset)
    counts = horizontal_difference_counts(np.ascontiguousarray(image), offset)
    centre = _median_of_counts(counts) - offset
    # |d - centre| is a multiple of 1/2: count twice it, an integer, for every difference d
    differences = np.flatnonzero(counts)
    deviations = np.abs(2 * (differences - offset) - int(2 * centre))
    return _median_of_counts(np.bincount(deviations, weights=counts[differences]).astype(np.int64)) / 2


def drop_faint(
    labels: np.ndarray, flattened: np.ndarray, *, noise: float, min_contrast: float = MIN_CONTRAST_NOISE
) -> np.ndarray:
    """Remove objects whose mean contrast over the flattened background is under
    ``min_contrast`` times the pixel ``noise`` (same units as ``flattened``).

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Objects.
    flattened : (M, N) ndarray
        The background-flattened image the objects were found on.
    noise : float
        Pixel noise SD in ``flattened``'s units (:func:`pixel_noise`).
    min_contrast : float
        Least mean contrast, in noise SDs.

    Returns
    -------
    (M, N) ndarray of int
        The objects kept, renumbered 1..n (``labels`` itself when nothing is dropped).
    """
    arrays.check_same_shape(flattened, labels, names=("flattened", "labels"))
    n_objects = int(labels.max())
    if n_objects == 0 or noise <= 0:
        return labels
    areas, sums = label_counts_and_sums(labels, flattened, size=n_objects + 1)
    contrast = sums / np.maximum(areas, 1)
    faint = contrast < min_contrast * noise
    faint[0] = False
    if not faint.any():
        return labels
    return keep_labels(labels, (areas > 0) & ~faint)


def smooth_background(image: np.ndarray, *, radius: float) -> np.ndarray:
    """Smooth background under bright objects narrower than ``radius`` px.

    A grey opening with a disk of ``radius`` (computed on a block-averaged copy for
    speed), smoothed and resized back, and never above the image itself.

    Parameters
    ----------
    image : (M, N) ndarray
        An image of bright objects on a slowly varying background.
    radius : float
        Objects narrower than this (px) are removed.

    Returns
    -------
    (M, N) ndarray of float32
    """
    image = np.asarray(image, dtype=np.float32)
    factor = max(1, int(radius // 8))
    small = downscale_mean(image, factor) if factor > 1 else image
    disk_radius = max(1, int(round(radius / factor)))
    opened = grey_opening_disk(small, disk_radius)
    opened = gaussian(opened, disk_radius / 2)
    if factor > 1:
        opened = resize_linear(opened, image.shape)
    return np.minimum(opened.astype(np.float32), image)


def smooth_large_scale(image: np.ndarray, sigma: float, *, threads: int = 1) -> np.ndarray:
    """Gaussian smoothing with a wide ``sigma``, computed on a block-averaged copy (the
    result varies slowly, so little is lost and a 2048 px field takes a tenth the time).

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    sigma : float
        The Gaussian's SD (px, at full resolution).
    threads : int
        Threads for a full-resolution Gaussian (:mod:`imaging.tiles`).

    Returns
    -------
    (M, N) ndarray of float
    """
    factor = max(1, int(sigma // 3))
    if factor == 1:
        return gaussian(image, sigma, threads=threads)
    small = downscale_mean(image, factor)
    smoothed = gaussian(small, sigma / factor)
    return resize_linear(smoothed, image.shape, dtype=image.dtype)


def fill_small_holes(mask: np.ndarray, *, max_area: float) -> np.ndarray:
    """``mask`` with its holes (background regions not touching the image border) of at
    most ``max_area`` pixels filled.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground.
    max_area : float
        Largest hole filled (px).

    Returns
    -------
    (M, N) ndarray of bool
    """
    from imaging.kernels import fill_holes_up_to  # numba's import is paid on first use only

    # runs and union-find (6 ms on a 2048 px field, against 38 ms for scipy's labelling of ~mask)
    return fill_holes_up_to(np.ascontiguousarray(mask, dtype=bool), float(max_area))


@dataclasses.dataclass(frozen=True, eq=False)
class MaskGeometry:
    """A foreground mask with its 4-connected components and distance transform, each found
    when first asked for and then kept: the scale estimate, the sheet test and the split all
    use them (one labelling and one distance transform per mask, not three and two)."""

    mask: np.ndarray
    threads: int = 1  # for the split's filters (:func:`_split_geometry`)

    @functools.cached_property
    def _labelled(self) -> tuple[np.ndarray, int]:
        return ndi.label(self.mask)

    @property
    def components(self) -> np.ndarray:
        return self._labelled[0]

    @property
    def n_components(self) -> int:
        return int(self._labelled[1])

    @functools.cached_property
    def distance(self) -> np.ndarray:
        return distance_to_background(self.mask)

    def distance_float32(self) -> np.ndarray:
        """The distance map rounded to float32: from the float64 one when it was made already,
        else made directly (the float64 map of a 2048 px field is 32 MB the split never needs)."""
        if "distance" in vars(self):
            return self.distance.astype(np.float32)
        return distance_to_background(self.mask, dtype=np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Foreground:
    """Steps 1-3 of the module docstring at one nucleus radius: the background-flattened image,
    its Otsu level (None for a flat image) and its foreground mask's geometry."""

    flattened: np.ndarray
    otsu_level: float | None
    geometry: MaskGeometry


def _foreground_mask(
    flattened: np.ndarray,
    *,
    radius: float,
    otsu_level: float,
    global_fraction: float = 0.5,
    local_sigma_fraction: float = 1.0,
    threads: int = 1,
) -> np.ndarray:
    """Nuclei foreground of a background-flattened image of Otsu level ``otsu_level``
    (see module docstring, step 3)."""
    global_level = global_fraction * otsu_level
    local_mean = smooth_large_scale(flattened, local_sigma_fraction * radius, threads=threads)
    mask = (flattened > global_level) & (flattened > local_mean)
    # Fill holes that fit inside one nucleus (dark nucleoli); a bigger one is background
    # enclosed by nuclei (the rims between nuclei of a confluent sheet).
    mask = fill_small_holes(mask, max_area=HOLE_AREA_FRACTION * np.pi * radius**2)
    return binary_opening_disk(mask, max(1, int(radius / 4)))


def split_touching(
    mask: np.ndarray, *, radius: float, min_distance_fraction: float = 0.4, threads: int = 1
) -> np.ndarray:
    """Label ``mask``, splitting touching nuclei of typical radius ``radius`` px.

    Markers are the peaks of the distance transform (smoothed with sigma ``radius/6``)
    that lie at least ``min_distance_fraction * radius`` apart; a watershed of the
    distance transform from those markers assigns every mask pixel to one nucleus.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Nuclei foreground.
    radius : float
        Typical nucleus radius (px).
    min_distance_fraction : float
        Least distance between two nucleus centres, in radii.
    threads : int
        Threads for the image-wide filters (:mod:`imaging.tiles`); the labels do not depend on it.

    Returns
    -------
    (M, N) ndarray of int32
        Nucleus labels 1..n.
    """
    return _split_geometry(
        MaskGeometry(np.asarray(mask, dtype=bool), threads=threads),
        radius=radius,
        min_distance_fraction=min_distance_fraction,
    )


def _split_geometry(geometry: MaskGeometry, *, radius: float, min_distance_fraction: float) -> np.ndarray:
    """:func:`split_touching` of ``geometry.mask``, with its components and distance transform
    (and the geometry's threads for the smoothing)."""
    mask, components, n_components = geometry.mask, geometry.components, geometry.n_components
    if n_components == 0:
        return np.zeros(mask.shape, dtype=np.int32)
    # float32: the smoothed distance only ranks pixels (peaks, flooding order); half the memory
    # traffic of float64, and the labels of every benchmark field and DSB image are unchanged
    distance = gaussian(geometry.distance_float32(), max(0.5, radius / 6), threads=geometry.threads)
    boxes = label_boxes(components, n_components)  # shared by the peaks and the flooding
    peaks = label_peaks(distance, components, min_distance=max(1, int(min_distance_fraction * radius)), boxes=boxes)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component without a peak (flat or tiny) still becomes one object.
    unmarked = np.setdiff1d(np.arange(1, n_components + 1), components[tuple(peaks.T)])
    if unmarked.size:
        extra = np.isin(components, unmarked)
        markers[extra] = components[extra] + len(peaks)
    surface = np.negative(distance, out=distance)  # flooded from the centres; the distance is not needed again
    return watershed_by_component(surface, markers, components, n_components, boxes=boxes)


def watershed_by_component(
    surface: np.ndarray,
    markers: np.ndarray,
    components: np.ndarray,
    n_components: int,
    *,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """``segmentation.watershed(surface, markers, mask=components > 0)``, component by component.

    A masked watershed never floods from one connected component into another, so each can
    be flooded alone: a component holding one marker is that marker's object outright (most
    nuclei: 192 of 2,452 components of a dense 2048 px field held two or more in issue 15's
    profile), and the others are flooded on their own bounding box by one compiled loop
    (:func:`imaging.kernels.flood_components`: skimage's flooding step for step, without its
    set-up per crop; 0.015 s against 0.075 s for skimage on each crop). Within a component the
    flooding order (by value, then by the order pixels were queued in) is the one on the whole
    image; only markers of exactly equal value, which skimage's heap orders by its own layout,
    can be taken in another order than a whole-image call takes them.

    Parameters
    ----------
    surface : (M, N) ndarray
        The surface flooded (a negated distance transform).
    markers : (M, N) ndarray of int
        Marker labels, inside the components.
    components : (M, N) ndarray of int
        Connected components of the mask, 1..``n_components``.
    n_components : int
        Their number.
    boxes : (n_components, 4) ndarray of int64, optional
        ``label_boxes(components)``, when the caller has it.

    Returns
    -------
    (M, N) ndarray of int32
        skimage's masked watershed of each component's crop.
    """
    from imaging.kernels import flood_components, look_up  # numba's import is paid on first use only

    components = np.ascontiguousarray(components)
    marked = markers > 0
    owners = components[marked]
    first_marker = np.zeros(n_components + 1, dtype=np.int32)
    markers_per_component = np.bincount(owners, minlength=n_components + 1)
    first_marker[owners] = markers[marked]  # the only marker where there is one
    single = markers_per_component == 1
    single[0] = False
    out = look_up(np.where(single, first_marker, 0).astype(np.int32), components)  # each single-marker component
    flood_components(
        np.ascontiguousarray(surface),
        np.ascontiguousarray(markers),
        components,
        label_boxes(components, n_components) if boxes is None else boxes,
        markers_per_component[1:] >= 2,
        out,
    )
    return out


def grow_to_own_contrast(
    labels: np.ndarray,
    flattened: np.ndarray,
    *,
    radius: float,
    fraction: float = 0.4,
    reach_fraction: float = 0.5,
    floor_fraction: float = 0.25,
    otsu_level: float | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Let each nucleus grow to where its intensity falls to ``fraction`` of its own peak.

    The foreground rule of the shared threshold is the same for all nuclei, so a dim
    nucleus beside bright ones keeps only its core. Here each object grows (at most
    ``reach_fraction * radius`` px) over pixels brighter than ``fraction`` of its own peak
    and ``floor_fraction`` of the Otsu level: every boundary sits at the same relative
    contrast, whatever the nucleus's brightness.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Nuclei.
    flattened : (M, N) ndarray
        The background-flattened image they were found on.
    radius : float
        Typical nucleus radius (px).
    fraction : float
        Share of its own peak a nucleus grows over.
    reach_fraction : float
        Most growth, in radii.
    floor_fraction : float
        Share of the Otsu level below which no nucleus grows.
    otsu_level : float, optional
        ``threshold_otsu(flattened)``, when the caller has it.
    threads : int
        Threads for the growth (:func:`imaging.distance.expand_labels`).

    Returns
    -------
    (M, N) ndarray of int
        The grown nuclei (same ids).
    """
    arrays.check_same_shape(flattened, labels, names=("flattened", "labels"))
    n_objects = int(labels.max())
    if n_objects == 0:
        return labels
    peaks = np.zeros(n_objects + 1)
    peaks[1:] = label_maxima(flattened, labels, n_objects)
    # Touching nuclei already share a boundary, so growth only enters background: each
    # pixel within reach goes to its nearest nucleus (expand_labels), if bright enough.
    grown = expand_labels(labels, distance=reach_fraction * radius, threads=threads)
    otsu_level = threshold_otsu(flattened) if otsu_level is None else otsu_level
    from imaging.kernels import drop_dim_growth  # numba's import is paid on first use only

    # each grown pixel (the nuclei themselves stay) must pass both tests, in one compiled pass;
    # the floor is compared in the image's dtype, as numpy compares an array with a Python float
    flattened = np.ascontiguousarray(flattened)
    floor = flattened.dtype.type(floor_fraction * otsu_level)
    out = np.ascontiguousarray(grown, dtype=np.int32)  # expand_labels made a new array: changed in place
    return drop_dim_growth(np.ascontiguousarray(labels), out, flattened, floor, fraction * peaks)


def _touching_pairs(labels: np.ndarray) -> np.ndarray:
    """(K, 2) array of the label pairs ``(a, b)``, ``a < b``, that share an edge (4-connected)."""
    from imaging.kernels import touching_pair_codes  # numba's import is paid on first use only

    n = int(labels.max()) + 1
    unique = np.unique(touching_pair_codes(np.ascontiguousarray(labels), n))
    return np.stack(np.divmod(unique, n), axis=1)


def concavity_depth(mask: np.ndarray) -> float:
    """Depth in pixels of the deepest notch in ``mask``'s outline: the largest distance,
    inside the convex hull, from the hull's edge to a hull pixel outside the mask.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        One object (or the union of two).

    Returns
    -------
    float
        0 for a convex shape; about ``r - w`` for two disks of radius ``r`` joined by a waist
        of half-width ``w``.
    """
    from imaging.kernels import convex_hull_mask  # numba's import is paid on first use only

    mask = np.pad(np.asarray(mask, dtype=bool), 1)
    hull = convex_hull_mask(mask)
    notch = hull & ~mask
    if not notch.any():
        return 0.0
    return float(distance_to_background(hull)[notch].max())


def merge_unsupported_splits(labels: np.ndarray, *, radius: float, max_depth_fraction: float = 0.25) -> np.ndarray:
    """Merge touching objects whose union has no notch deeper than
    ``max_depth_fraction * radius`` (see module docstring, step 7).

    Merging is greedy, shallowest union first, each object at most once per pass, and
    repeated until no pair qualifies (a nucleus cut in three is rebuilt in two passes).

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Split nuclei.
    radius : float
        Typical nucleus radius (px).
    max_depth_fraction : float
        Deepest notch (in radii) a union may have and still be merged.

    Returns
    -------
    (M, N) ndarray of int
        Labels renumbered 1..n.
    """
    labels = labels.copy()
    max_depth = max_depth_fraction * radius
    rejected: set[tuple[int, int]] = set()  # pairs too deep; valid while neither changes
    while True:
        boxes = label_boxes(labels)
        candidates = []
        for a, b in _touching_pairs(labels):
            if (a, b) in rejected:
                continue
            starts, stops = np.minimum(boxes[a - 1], boxes[b - 1]), np.maximum(boxes[a - 1], boxes[b - 1])
            box = slice(int(starts[0]), int(stops[1])), slice(int(starts[2]), int(stops[3]))  # the joint box
            crop = labels[box]
            depth = concavity_depth((crop == a) | (crop == b))
            if depth <= max_depth:
                candidates.append((depth, a, b, box))
            else:
                rejected.add((a, b))
        merged: set[int] = set()
        for _, a, b, box in sorted(candidates, key=lambda candidate: candidate[:3]):
            if a in merged or b in merged:
                continue
            crop = labels[box]  # a view: both objects lie wholly inside their joint box
            crop[crop == b] = a
            merged.update((a, b))
        if not merged:
            break
        rejected = {pair for pair in rejected if not merged.intersection(pair)}
    # the last pass merged nothing, so its boxes say which ids are left (no count of every pixel)
    present = np.concatenate([[False], boxes[:, 0] >= 0])
    return keep_labels(labels, present)


def remove_small(labels: np.ndarray, min_area: float) -> np.ndarray:
    """Drop objects smaller than ``min_area`` pixels and renumber 1..n.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Objects.
    min_area : float
        Least area kept (px).

    Returns
    -------
    (M, N) ndarray of int
    """
    areas = label_counts(labels)
    return keep_labels(labels, (areas > 0) & (areas >= min_area))


def _rough_radius(smoothed: np.ndarray) -> float:
    """Nucleus radius from an Otsu mask of the image after removing any background that
    varies more slowly than a quarter of the image (a grey opening is exact on ramps).

    Fields over 1024 px a side are measured at half resolution (the estimate only sets
    scales, to within a pixel or so)."""
    factor = 2 if min(smoothed.shape) > 1024 else 1
    if factor > 1:
        smoothed = downscale_mean(smoothed, factor)
    flattened = smoothed - smooth_background(smoothed, radius=min(smoothed.shape) / 4)
    if np.ptp(flattened) <= 0:
        return estimate_radius(np.zeros(smoothed.shape, dtype=bool))
    return factor * estimate_radius(flattened > threshold_otsu(flattened))


def _foreground_at(
    normalized: np.ndarray,
    lightly_smoothed: np.ndarray,
    *,
    radius: float,
    flatten_background: bool = True,
    threads: int = 1,
) -> Foreground:
    """Steps 1-3 of the module docstring at nucleus radius ``radius``: the smoothed,
    background-flattened image and its foreground mask."""
    sigma = max(1.0, radius / 12)
    smoothed = lightly_smoothed if sigma == 1.0 else gaussian(normalized, sigma, threads=threads)
    flattened = smoothed - smooth_background(smoothed, radius=4 * radius) if flatten_background else smoothed
    if np.ptp(flattened) <= 0:
        return Foreground(flattened, None, MaskGeometry(np.zeros(flattened.shape, dtype=bool), threads))
    otsu_level = threshold_otsu(flattened)
    mask = _foreground_mask(flattened, radius=radius, otsu_level=otsu_level, threads=threads)
    return Foreground(flattened, otsu_level, MaskGeometry(mask, threads))


def _mask_radius(geometry: MaskGeometry) -> float:
    """:func:`estimate_radius` of the mask, on every other pixel for fields over 1024 px a
    side (the estimate only sets scales, to within a pixel or so)."""
    if min(geometry.mask.shape) > 1024:
        return 2 * estimate_radius(geometry.mask[::2, ::2])
    return typical_radius(component_radii(geometry.components, geometry.n_components, geometry.distance))


def _largest_area(geometry: MaskGeometry) -> int:
    """Pixels in the largest connected component of the mask (0 when empty)."""
    if geometry.n_components == 0:
        return 0
    return int(label_counts(geometry.components)[1:].max())


def _settle_radius(
    normalized: np.ndarray,
    lightly_smoothed: np.ndarray,
    radius: float,
    foreground: Foreground,
    *,
    flatten_background: bool = True,
    threads: int = 1,
) -> tuple[float, Foreground]:
    """Correct the rough radius of a confluent field.

    The rough estimate is the inscribed radius of a global Otsu mask. In a confluent field
    that mask is a sheet of touching nuclei, and its inscribed radius is the sheet's. The
    local-contrast foreground mask made at a candidate radius ``s`` tells which:

    - its objects are narrower than ``s``: it broke a sheet along the dimmer rims between
      nuclei; ``s`` follows the mask's radius until that changes by under 5 %;
    - its objects are wider than ``s`` and one covers over ten nuclei (a sheet that
      survived, or nuclei bigger than ``s`` in a clump): if the mask made at a slightly
      smaller ``s`` breaks them up, they were a sheet and ``s`` steps down; otherwise
      they are nuclei and ``s`` stays.

    In ordinary fields the mask's radius stays within ~20 % of the estimate (a fixed
    point), so the first estimate is kept unless the settled one is under
    ``CONFLUENT_FRACTION`` of it. Returns the radius kept and its :class:`Foreground`.
    """

    def foreground_at(candidate: float) -> Foreground:
        return _foreground_at(
            normalized, lightly_smoothed, radius=candidate, flatten_background=flatten_background, threads=threads
        )

    settled, settled_foreground = radius, foreground
    for _ in range(MAX_RADIUS_PASSES):
        objects_radius = _mask_radius(settled_foreground.geometry)
        if objects_radius < SETTLED_RATIO * settled:
            settled = objects_radius
            settled_foreground = foreground_at(settled)
        elif (
            objects_radius > SHEET_RATIO * settled
            and _largest_area(settled_foreground.geometry) > SHEET_AREA * np.pi * settled**2
        ):
            probe = settled / RADIUS_STEP
            probe_foreground = foreground_at(probe)
            if _mask_radius(probe_foreground.geometry) >= BREAK_RATIO * objects_radius:
                break
            settled, settled_foreground = probe, probe_foreground
        else:
            break
    if settled < CONFLUENT_FRACTION * radius:
        log.debug("confluent field: nucleus radius %.1f px instead of %.1f px", settled, radius)
        return settled, settled_foreground
    return radius, foreground


def _radius_and_foreground(
    image: np.ndarray,
    *,
    radius: float | None = None,
    flatten_background: bool = True,
    limits: tuple[float, float] | None = None,
    threads: int = 1,
) -> tuple[float, Foreground]:
    """Steps 1-3 of the module docstring: the nucleus radius (``radius`` if given, else
    estimated and settled) and the :class:`Foreground` at that radius. ``limits``: the
    image's :func:`_intensity_limits`, when the caller has them already."""
    lo, hi = _intensity_limits(image) if limits is None else limits
    normalized = np.array(image, dtype=np.float32)  # normalize_intensity with the limits known, in place
    normalized -= lo
    normalized /= hi - lo
    lightly_smoothed = gaussian(normalized, 1.0, threads=threads)
    estimated = radius is None
    radius = float(_rough_radius(lightly_smoothed) if estimated else radius)
    foreground = _foreground_at(
        normalized, lightly_smoothed, radius=radius, flatten_background=flatten_background, threads=threads
    )
    if estimated:
        radius, foreground = _settle_radius(
            normalized, lightly_smoothed, radius, foreground, flatten_background=flatten_background, threads=threads
        )
    return radius, foreground


def estimate_nucleus_radius(image: np.ndarray) -> float:
    """The typical nucleus radius (px) the classical backend finds in ``image``; other
    backends use it so that all agree on scale.

    Parameters
    ----------
    image : (M, N) ndarray
        A nuclear stain.

    Returns
    -------
    float
    """
    return _radius_and_foreground(image)[0]


def segment_nuclei_classical(
    image: np.ndarray,
    *,
    radius: float | None = None,
    flatten_background: bool = True,
    min_distance_fraction: float = 0.4,
    min_area_fraction: float = 0.1,
    threads: int = 1,
) -> tuple[np.ndarray, dict]:
    """Segment nuclei in a 2-D fluorescence image.

    Parameters
    ----------
    image : (M, N) ndarray
        Nuclear stain (DAPI, Hoechst): bright nuclei on a dark background.
    radius : float, optional
        Typical nucleus radius in pixels; estimated from the image when None.
    flatten_background : bool
        Subtract a smooth background first (uneven illumination, glow).
    min_distance_fraction : float
        Closest two nucleus centres may be, as a fraction of the radius.
    min_area_fraction : float
        Objects smaller than this fraction of a disk of the typical radius are dropped.
    threads : int
        Threads for the image-wide filters, distance transforms and growth (:mod:`imaging.tiles`);
        the labels are the same for any number.

    Returns
    -------
    labels : (M, N) ndarray of int32
        Nuclei numbered 1..n; 0 is background.
    info : dict
        ``radius_px``: the typical nucleus radius used.
    """
    limits = _intensity_limits(image)  # found once: normalisation and the noise scale both use them
    radius, foreground = _radius_and_foreground(
        image, radius=radius, flatten_background=flatten_background, limits=limits, threads=threads
    )
    flattened, otsu_level = foreground.flattened, foreground.otsu_level
    labels = _split_geometry(foreground.geometry, radius=radius, min_distance_fraction=min_distance_fraction)
    del foreground  # its mask, components and distance map (about 50 MB at 2048 px) are done with
    labels = remove_small(labels, min_area_fraction * np.pi * radius**2)
    labels = grow_to_own_contrast(labels, flattened, radius=radius, otsu_level=otsu_level, threads=threads)
    labels = merge_unsupported_splits(labels, radius=radius)
    lo, hi = limits
    labels = drop_faint(labels, flattened, noise=pixel_noise(image) / (hi - lo))
    return labels, {"radius_px": radius}
