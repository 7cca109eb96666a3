"""Nuclei in brightfield IHC: haematoxylin-only and DAB-positive nuclei alike.

Detection runs on the *nuclear optical density* of the colour deconvolution: haematoxylin
plus DAB (both clipped at 0), so that a pale blue negative nucleus and a dark brown positive
one are both nuclei (QuPath's "optical density sum" in spirit; for cytoplasmic and
membranous stains the detection uses haematoxylin alone, see :func:`detection_channel`).

1. Smooth lightly (sigma ``r/12``, at least half a pixel: :func:`light_smoothing_sigma`)
   and cap the nuclear OD at :data:`NUCLEAR_OD_CAP`: above it a pixel is nuclear material
   whatever its darkness, so dark DAB nuclei do not set the threshold that pale negative
   nuclei (0.1-0.3 OD) have to pass. Under a dark counterstain the cap rises above the
   stroma (:func:`detection_cap`).
2. Flatten uneven background (a grey opening of radius ``2 r``: stroma, cytoplasmic
   background stain, uneven illumination) and keep pixels above :data:`OTSU_FRACTION` of the
   flattened image's Otsu level *and* darker than their surroundings
   (:func:`darker_than_surroundings`: the uncapped nuclear OD above the geometric mean of
   its neighbourhood, sigma :data:`LOCAL_CONTRAST_SIGMA` ``r``), which cuts the pale gaps
   between touching nuclei in a clump. Holes that fit in one nucleus (vesicular nuclei
   with pale centres) are filled; specks are opened away.
   Where dark nuclei are many, that Otsu level sits above the palest negatives, so a second
   pass looks at the tile without the nuclei found (:func:`pale_nuclei`): its own Otsu level,
   and only round, solid, nucleus-sized objects, so stroma and spindles stay out.
3. Touching nuclei are split and over-split single nuclei merged again with the fluorescence
   backend's tools (:mod:`imaging.segment.classical`: distance-peak watershed, growth to each
   nucleus's own contrast, notch-based merging), all at the nucleus scale ``r``.

The scale ``r`` (a typical nucleus radius in pixels) is estimated from the image itself
(:func:`estimate_radius_px`, on the nuclear OD capped where the tile's own stain levels say:
:func:`scale_estimate_cap`), so tiles at 20x and 40x need no setting; a known pixel size
keeps it within the sizes nuclei have, and ``nucleus_diameter_um`` in the pipeline fixes it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import median_abs_deviation
from skimage import measure

from imaging.distance import distance_to_background
from imaging.filters import binary_opening_disk, gaussian, threshold_otsu
from imaging.segment import classical
from imaging.segment.scale import MIN_MEASURED_AREA, component_sizes, estimate_radius, typical_radius

# Nuclear OD (haematoxylin + DAB) at which a pixel counts as fully nuclear: 50 % transmission.
# Negative nuclei measure 0.1-0.3 OD, DAB-positive ones 1-5; without the cap the dark ones
# would set the foreground threshold and the pale ones would vanish.
NUCLEAR_OD_CAP = 0.3
# The scale estimate's cap in a darkly counterstained tile, over the Otsu level of its log OD
# (:func:`scale_estimate_cap`): one doubling of OD above the pale/stained split. On the six
# DeepLIIF tiles restained with 2x haematoxylin the Ki67 index error fell 11.2 -> 8.1 points
# (benchmarks/ihc.py on restained copies), and 4.55 -> 3.58 on the tiles as scanned.
CAP_OVER_LOG_OTSU = 2.0
# Detection's cap in a darkly counterstained tile, over the Otsu level of its log haematoxylin
# (:func:`detection_cap`). Haematoxylin alone, because DAB nuclei would lift the level on a
# highly positive tile; on the DeepLIIF tiles the palest annotated negatives read about 3 times
# that level and the stroma about 1-2 times, so the cap stays above the stroma. Restained with
# 2x haematoxylin the six tiles' Ki67 index error fell 8.0 -> 5.8 points (largest 28.3 -> 16.3;
# benchmarks/ihc_stain_variants.py); as scanned only Bladder1's cap moved (0.34): 3.49 -> 3.51.
# 4x did better on the restained tiles (3.9 / 12.0) but moved the tiles as scanned (3.61).
CAP_OVER_COUNTERSTAIN_OTSU = 3.0
# Foreground: above this fraction of the Otsu level of the flattened nuclear OD.
OTSU_FRACTION = 0.7
# Neighbourhood of the local contrast test, in nucleus radii: wide enough to hold a nucleus
# and the gap beside it, narrow enough that a clump's gaps fall below it (1 r leaves clumps
# of pale nuclei whole: DeepLIIF recall 0.836 at 1 r, 0.871 at 0.5 r).
LOCAL_CONTRAST_SIGMA = 0.5
# Least light smoothing of detection (px); the scale estimate smooths by 1 px.
MIN_SMOOTHING_PX = 0.5
# Below this OD a pixel is glass for the log-ratio test (log of zero is undefined).
OD_FLOOR = 0.01
# Radii (area-equivalent) that nuclei have: a small lymphocyte to a large tumour nucleus.
RADIUS_RANGE_UM = (2.5, 7.0)
# The inscribed radius of a nucleus-shaped (elliptical) object is its minor half-axis; the
# area-equivalent radius of tumour nuclei is about this much larger (DeepLIIF truth: 1.13-1.18).
INSCRIBED_TO_EQUIVALENT = 1.15
MIN_RADIUS_PX, MAX_RADIUS_PX = 3.0, 60.0
# Only round objects set the scale (minor / major axis at least this).
ROUND_AXIS_RATIO = 0.5
MIN_AREA_FRACTION = 0.15  # of a disk of radius r: smaller objects are debris
# The scale estimate is made again at its own scale until it changes by under this share
# (:func:`settled_radius`), at most this many times, and kept where it is this many times the first.
SCALE_SETTLED_CHANGE = 0.05
SCALE_PASSES = 3
SCALE_PULLED_DOWN = 1.1
# The pale-nucleus pass (:func:`pale_nuclei`) takes a lower threshold, so it keeps only what
# looks like a whole nucleus: half a disk of radius r to three (a pair of touching ones, split
# later), round (:data:`ROUND_AXIS_RATIO`) and solid (stroma texture is ragged).
PALE_AREA_FRACTIONS = (0.5, 3.0)
PALE_MIN_SOLIDITY = 0.85
# ... and it must stand out of what lies between the nuclei: its mean flattened OD this many
# robust SDs (MAD) above the median of the rest of the tile without the nucleus-shaped objects.
# Stroma texture that Otsu splits off a unimodal rest stays under 2 (0.3-1.7 on synthetic
# fields); pale nuclei on the DeepLIIF tiles read 2.5-4.5.
PALE_MIN_CONTRAST_SD = 2.0


def detection_channel(hematoxylin: np.ndarray, dab: np.ndarray | None, *, include_dab: bool = True) -> np.ndarray:
    """Nuclear optical density (float32): haematoxylin plus DAB, each clipped at 0.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray
        Haematoxylin amount.
    dab : (M, N) ndarray or None
        DAB amount.
    include_dab : bool
        False gives haematoxylin alone: for cytoplasmic or membranous stains, where DAB
        outlines cells rather than filling nuclei.

    Returns
    -------
    (M, N) ndarray of float32
    """
    hematoxylin = np.asarray(hematoxylin, dtype=np.float32)
    channel = np.clip(hematoxylin, 0, None)
    if include_dab and dab is not None:
        dab = np.asarray(dab, dtype=np.float32)
        if dab.shape != hematoxylin.shape:
            raise ValueError(f"dab shape {dab.shape} differs from hematoxylin shape {hematoxylin.shape}")
        channel = channel + np.clip(dab, 0, None)
    return channel


def light_smoothing_sigma(radius: float) -> float:
    """The light smoothing of detection (px): a twelfth of the nucleus radius, at least
    :data:`MIN_SMOOTHING_PX` (a 20x tile's nuclei, 6-8 px in radius, keep their gaps).

    Parameters
    ----------
    radius : float
        Typical nucleus radius (px).

    Returns
    -------
    float
    """
    return max(MIN_SMOOTHING_PX, radius / 12)


def _smoothed(nuclear_od: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian(np.asarray(nuclear_od, dtype=np.float32), sigma)


def darker_than_surroundings(smoothed_od: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose nuclear OD exceeds the geometric mean of their neighbourhood.

    The test is a ratio (log OD against its Gaussian mean, sigma
    :data:`LOCAL_CONTRAST_SIGMA` ``radius``), so the faint gap between two pale nuclei
    (0.25 against 0.45 OD) is cut as surely as the one between two dark ones; it runs on
    the uncapped OD because the cap that protects the threshold would flatten a clump of
    nuclei above 0.3 OD into one plateau.

    Parameters
    ----------
    smoothed_od : (M, N) ndarray
        :func:`detection_channel` of a tile, lightly smoothed
        (sigma :func:`light_smoothing_sigma`), not capped.
    radius : float
        Typical nucleus radius (px).

    Returns
    -------
    (M, N) ndarray of bool
    """
    log_od = np.log(np.maximum(smoothed_od, OD_FLOOR))
    return log_od > classical.smooth_large_scale(log_od, LOCAL_CONTRAST_SIGMA * radius)


def estimate_radius_px(nuclear_od: np.ndarray) -> float:
    """Typical nucleus radius (px) of a brightfield tile from its nuclear OD.

    The inscribed radii of the round components of an Otsu mask of the nuclear OD capped at
    :func:`scale_estimate_cap`, holes filled (vesicular nuclei are rings), weighted as in
    :func:`imaging.segment.scale.typical_radius`, and converted to an area-equivalent radius.
    Tiles over 1024 px a side are measured at half resolution.

    The first estimate measures every component of 9 px or more, so at a fine pixel size the
    specks of cytoplasm and stroma texture are many and pull it down (a DeepLIIF tile resampled
    x2: 18 px where its nuclei measure 27). The estimate is therefore settled at its own scale
    (:func:`settled_radius`).

    Parameters
    ----------
    nuclear_od : (M, N) ndarray
        :func:`detection_channel` of a tile.

    Returns
    -------
    float
    """
    image = np.asarray(nuclear_od, dtype=np.float32)
    factor = 2 if min(image.shape) > 1024 else 1
    if factor > 1:
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        image = image.reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).mean(axis=(1, 3))
    smoothed = _smoothed(image, 1.0)
    capped = np.minimum(smoothed, scale_estimate_cap(smoothed), out=smoothed)
    if np.ptp(capped) <= 0:
        return float(np.clip(estimate_radius(np.zeros(capped.shape, bool)), MIN_RADIUS_PX, MAX_RADIUS_PX))
    mask = round_components(ndi.binary_fill_holes(capped > threshold_otsu(capped)))
    components, n = ndi.label(mask)
    radii, areas = component_sizes(components, n, distance_to_background(mask))
    radius = factor * INSCRIBED_TO_EQUIVALENT * settled_radius(radii, areas)
    return float(np.clip(radius, MIN_RADIUS_PX, MAX_RADIUS_PX))


def settled_radius(radii: np.ndarray, areas: np.ndarray) -> float:
    """The typical inscribed radius of a mask's components, settled at its own scale.

    The first estimate (:func:`imaging.segment.scale.typical_radius` of the components of
    :data:`~imaging.segment.scale.MIN_MEASURED_AREA` px and more) is made again without the components smaller than
    :data:`MIN_AREA_FRACTION` of a disk of its area-equivalent radius (what detection drops
    as debris), until it changes by under :data:`SCALE_SETTLED_CHANGE` (at most
    :data:`SCALE_PASSES` times), and kept where it is over :data:`SCALE_PULLED_DOWN` times
    the first: the first was pulled down by specks. Ordinary tiles keep their first estimate
    (leaving out their few specks raises it by a few per cent, and the area-equivalent factor
    :data:`INSCRIBED_TO_EQUIVALENT` was measured on it). Where specks outnumber the nuclei so
    far that the first estimate is theirs, the debris limit is theirs too and the estimate
    stays: this corrects an estimate pulled between the two, not one taken over.

    On the six DeepLIIF tiles resampled x2 (tiles 6_2 and 799_2 read 9.4 and 10.6 px per x1
    pixel, where their nuclei measure 13.3 and 12.3) the settled estimate is 13.9 and 12.9;
    as scanned no tile's estimate changes.

    Parameters
    ----------
    radii : (K,) ndarray of float
        Each component's inscribed radius (px).
    areas : (K,) ndarray of int
        Each component's area (px).

    Returns
    -------
    float
        Inscribed radius (px); :func:`~imaging.segment.scale.typical_radius`'s default when
        no component has 9 px.
    """
    radii, areas = np.asarray(radii, dtype=float), np.asarray(areas)
    radius = first = typical_radius(radii[areas >= MIN_MEASURED_AREA])
    for _ in range(SCALE_PASSES):
        equivalent = INSCRIBED_TO_EQUIVALENT * radius
        kept = radii[areas >= MIN_AREA_FRACTION * np.pi * equivalent**2]
        if kept.size == 0:
            break
        settled = typical_radius(kept)
        change = abs(settled - radius) / radius
        radius = settled
        if change < SCALE_SETTLED_CHANGE:
            break
    return radius if radius > SCALE_PULLED_DOWN * first else first


def scale_estimate_cap(smoothed_od: np.ndarray) -> float:
    """The nuclear OD above which :func:`estimate_radius_px` counts a pixel as fully nuclear:
    :data:`NUCLEAR_OD_CAP`, or more where the tile's counterstain is dark.

    With a dark counterstain the cytoplasm and stroma pass 0.3 OD too, the capped image is one
    plateau of tissue, and the scale comes out as the tissue's (60 px where nuclei are 16: a
    real tile restained with twice the haematoxylin lost 124 of 140 nuclei). The Otsu level
    of the log OD parts the pale (glass, stroma, cytoplasm) from the stained (nuclei), whatever
    the stain's strength; :data:`CAP_OVER_LOG_OTSU` times that level lies within the nuclei.
    Never below :data:`NUCLEAR_OD_CAP`, so tiles stained as the defaults assume keep it.

    Parameters
    ----------
    smoothed_od : (M, N) ndarray
        :func:`detection_channel` of a tile, smoothed.

    Returns
    -------
    float
    """
    return cap_over_log_otsu(smoothed_od, CAP_OVER_LOG_OTSU)


def detection_cap(hematoxylin: np.ndarray, *, radius: float) -> float:
    """The nuclear OD above which :func:`detect_nuclei` counts a pixel as fully nuclear:
    :data:`NUCLEAR_OD_CAP`, or more where the counterstain is dark.

    Where stroma and cytoplasm pass 0.3 OD of haematoxylin, the capped image holds them on
    the nuclei's plateau and the foreground threshold takes them in as nuclei (a real tile
    restained with twice the haematoxylin: 174 detections where 78 were found before, most
    of them in stroma). :data:`CAP_OVER_COUNTERSTAIN_OTSU` times the Otsu level of the
    log haematoxylin of the tile's tissue (glass left out) lies above its stroma and at its
    palest nuclei.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray
        Haematoxylin amount of the tile.
    radius : float
        Typical nucleus radius (px): the light smoothing of detection.

    Returns
    -------
    float
    """
    counterstain = _smoothed(np.clip(hematoxylin, 0, None), light_smoothing_sigma(radius))
    # Glass (at the floor) left out: the split is then the tissue's own, stroma against nuclei,
    # however much glass the tile shows.
    return cap_over_log_otsu(counterstain[counterstain > OD_FLOOR], CAP_OVER_COUNTERSTAIN_OTSU)


def cap_over_log_otsu(smoothed_od: np.ndarray, factor: float) -> float:
    """``factor`` times the Otsu level of the log OD (the pale / stained split), never below
    :data:`NUCLEAR_OD_CAP`: the one rule of both caps.

    Parameters
    ----------
    smoothed_od : ndarray
        An optical density, smoothed (an image, or the pixels of one).
    factor : float
        The cap over the split.

    Returns
    -------
    float
    """
    log_od = np.log(np.maximum(smoothed_od, OD_FLOOR))
    if log_od.size == 0 or np.ptp(log_od) <= 0:
        return NUCLEAR_OD_CAP
    return max(NUCLEAR_OD_CAP, factor * float(np.exp(threshold_otsu(log_od))))


def region_axes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area and the moment-equivalent ellipse's major and minor axis lengths of labels 1..n,
    as ``skimage.measure.regionprops`` defines them, from one compiled pass over the labels
    (:func:`imaging.features.morphology.label_moments`; regionprops' inertia tensor per
    region cost 0.8 of the 6.3 s of an IHC run of the six DeepLIIF tiles). Equal to rounding
    (relative 1e-11: moments about the image's origin, not each region's crop); every output
    of the DeepLIIF tiles, their 17 re-stained variants and 24 crops came out the same.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels 1..n (``scipy.ndimage.label``'s).
    n : int
        Their number.

    Returns
    -------
    area, major, minor : (n,) ndarray of float64
    """
    from imaging.features.morphology import ellipse_axes, label_moments

    moments = label_moments(labels)
    ids = slice(1, n + 1)
    _, major, minor = ellipse_axes(moments["mu20"][ids], moments["mu02"][ids], moments["mu11"][ids])
    return moments["area"][ids], major, minor


def solidity_at_least(labels: np.ndarray, candidates: np.ndarray, least: float) -> np.ndarray:
    """Which of labels 1..n (``candidates``, (n,) bool) have a solidity (area over convex
    hull area, regionprops') of at least ``least``; only the candidates' hulls are made.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels 1..n.
    candidates : (n,) ndarray of bool
        The labels to test; the others come back False.
    least : float
        Least solidity.

    Returns
    -------
    (n,) ndarray of bool
    """
    solid = np.zeros(candidates.size + 1, bool)
    if candidates.any():
        tested = np.where(np.concatenate([[False], candidates])[labels], labels, 0)
        props = measure.regionprops_table(tested, properties=("label", "solidity"))
        solid[props["label"]] = props["solidity"] >= least
    return solid[1:]


def round_components(mask: np.ndarray, *, min_axis_ratio: float = ROUND_AXIS_RATIO, min_count: int = 5) -> np.ndarray:
    """``mask`` without its elongated components (minor / major axis under
    ``min_axis_ratio``): spindle-shaped stromal nuclei and fibres would pull the scale of
    tumour nuclei down.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        A rough nuclear mask.
    min_axis_ratio : float
        Least minor / major axis ratio kept.
    min_count : int
        With fewer round components kept, the whole mask is returned.

    Returns
    -------
    (M, N) ndarray of bool
    """
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    _, major, minor = region_axes(labels, n)
    ratio = minor / np.maximum(major, 1e-6)
    round_ids = np.flatnonzero(ratio >= min_axis_ratio) + 1
    if round_ids.size < min_count:
        return mask
    return np.isin(labels, round_ids)


def nucleus_scale(
    nuclear_od: np.ndarray, *, pixel_size_um: float | None = None, radius_um: float | None = None
) -> tuple[float, str]:
    """The nucleus scale for detection and where it came from.

    ``radius_um`` (a pipeline's ``nucleus_diameter_um / 2``) converted with the pixel size
    when both are known. Otherwise the scale is estimated from the image
    (:func:`estimate_radius_px`) and, when the pixel size is known, kept within the radii
    that nuclei have (:data:`RADIUS_RANGE_UM`: lymphocytes to large tumour nuclei), so a
    tile of stroma cannot give a scale no nucleus has.

    Parameters
    ----------
    nuclear_od : (M, N) ndarray
        :func:`detection_channel` of a tile.
    pixel_size_um : float, optional
        The image's pixel size.
    radius_um : float, optional
        The pipeline's nucleus radius.

    Returns
    -------
    radius_px : float
    source : str
        ``'pipeline'``, ``'estimated'`` or ``'estimated, limited by the pixel size'``.
    """
    if radius_um is not None and pixel_size_um:
        return float(radius_um / pixel_size_um), "pipeline"
    estimate = estimate_radius_px(nuclear_od)
    if not pixel_size_um:
        return estimate, "estimated"
    low, high = (limit / pixel_size_um for limit in RADIUS_RANGE_UM)
    limited = float(np.clip(estimate, low, high))
    return limited, "estimated" if limited == estimate else "estimated, limited by the pixel size"


def detect_nuclei(nuclear_od: np.ndarray, *, radius: float, cap: float = NUCLEAR_OD_CAP) -> np.ndarray:
    """Nucleus labels (int32, 1..n) of a brightfield tile (see module docstring).

    Parameters
    ----------
    nuclear_od : (M, N) ndarray
        :func:`detection_channel` of the tile.
    radius : float
        Typical nucleus radius in pixels (:func:`nucleus_scale`).
    cap : float
        Nuclear OD above which a pixel is fully nuclear (:func:`detection_cap` of the
        tile's haematoxylin; :data:`NUCLEAR_OD_CAP` for a counterstain as the defaults assume).

    Returns
    -------
    (M, N) ndarray of int32
        Nuclei 1..n.
    """
    nuclear_od = np.asarray(nuclear_od)
    if nuclear_od.ndim != 2:
        raise ValueError(f"nuclear OD must be 2-D, got shape {nuclear_od.shape}")
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"nucleus radius must be a positive number of pixels, got {radius}")
    smoothed = _smoothed(nuclear_od, light_smoothing_sigma(radius))
    darker = darker_than_surroundings(smoothed, radius)
    capped = np.minimum(smoothed, cap, out=smoothed)  # the uncapped OD is not needed again
    flattened = capped - classical.smooth_background(capped, radius=2 * radius)
    if np.ptp(flattened) <= 0:
        return np.zeros(nuclear_od.shape, np.int32)
    mask = foreground_above(flattened, OTSU_FRACTION * threshold_otsu(flattened), darker, radius=radius)
    mask |= pale_nuclei(flattened, darker, mask, radius=radius)
    labels = classical.split_touching(mask, radius=radius)
    labels = classical.remove_small(labels, MIN_AREA_FRACTION * np.pi * radius**2)
    labels = classical.grow_to_own_contrast(labels, flattened, radius=radius)
    return classical.merge_unsupported_splits(labels, radius=radius)


def foreground_above(flattened: np.ndarray, level: float, allowed: np.ndarray, *, radius: float) -> np.ndarray:
    """Pixels of ``flattened`` above ``level`` where ``allowed``, holes that fit in one nucleus
    filled (vesicular nuclei are rings) and specks opened away: both passes of
    :func:`detect_nuclei`.

    Parameters
    ----------
    flattened : (M, N) ndarray
        The capped, background-flattened nuclear OD.
    level : float
        The pass's threshold.
    allowed : (M, N) ndarray of bool
        Where foreground may be (:func:`darker_than_surroundings`, and for the second pass
        away from the first pass's nuclei).
    radius : float
        Typical nucleus radius (px).

    Returns
    -------
    (M, N) ndarray of bool
    """
    mask = (flattened > level) & allowed
    mask = classical.fill_small_holes(mask, max_area=np.pi * radius**2)
    return binary_opening_disk(mask, max(1, int(radius / 4)))


def pale_nuclei(flattened: np.ndarray, darker: np.ndarray, found: np.ndarray, *, radius: float) -> np.ndarray:
    """Pale nuclei that the first threshold of :func:`detect_nuclei` left out.

    The first Otsu level parts dark (DAB, capped) nuclei from everything else; where they are
    many it lies above the palest haematoxylin-only nuclei, and the negatives vanish (a tile's
    Ki67 index inflates). Away from the nuclei found (half a radius round them), the Otsu level
    of what is left parts pale nuclei from stroma; of the pixels above it and darker than their
    surroundings, only objects shaped like nuclei (:data:`PALE_AREA_FRACTIONS`,
    :data:`ROUND_AXIS_RATIO`, :data:`PALE_MIN_SOLIDITY`) that stand out of the rest
    (:data:`PALE_MIN_CONTRAST_SD`) are kept.

    The rest they must stand out of leaves them out: on a crowded tile cut from a tumour
    (no glass) the pale nuclei may be most of the rest, and its median and MAD were theirs
    (a DeepLIIF tile's 256 px quarter: 3 of 22 nuclei found, Ki67 index 44 % where it is 5 %).

    Parameters
    ----------
    flattened : (M, N) ndarray
        The capped, background-flattened nuclear OD.
    darker : (M, N) ndarray of bool
        :func:`darker_than_surroundings`.
    found : (M, N) ndarray of bool
        The first pass's foreground.
    radius : float
        Typical nucleus radius (px).

    Returns
    -------
    (M, N) ndarray of bool
        The pale nuclei, none of them touching ``found``.
    """
    away = ~ndi.binary_dilation(found, iterations=max(1, int(radius / 2)))
    rest = flattened[away]
    if rest.size == 0 or np.ptp(rest) <= 0:
        return np.zeros(found.shape, bool)
    candidates = foreground_above(flattened, threshold_otsu(rest), darker & away, radius=radius)
    labels, n = ndi.label(candidates)
    if n == 0:
        return candidates
    area, major, minor = region_axes(labels, n)
    disk = np.pi * radius**2
    low, high = PALE_AREA_FRACTIONS
    contrast = ndi.mean(flattened, labels, np.arange(1, n + 1))
    shaped = (area >= low * disk) & (area <= high * disk) & (minor >= ROUND_AXIS_RATIO * major)
    shaped &= solidity_at_least(labels, shaped, PALE_MIN_SOLIDITY)
    nucleus_like = np.concatenate([[False], shaped])[labels]
    reference = flattened[away & ~ndi.binary_dilation(nucleus_like, iterations=max(1, int(radius / 4)))]
    if reference.size == 0:
        reference = rest
    shaped &= contrast > np.median(reference) + PALE_MIN_CONTRAST_SD * median_abs_deviation(reference, scale="normal")
    return np.concatenate([[False], shaped])[labels]
