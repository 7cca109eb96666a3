"""Field quality control: focus, saturation, and plate-relative decisions.

Focus is measured as the blur width of the image's edges, in pixels. For an edge blurred
by a Gaussian of width ``b``, the peak gradient after smoothing with width ``s`` is
proportional to ``1 / sqrt(b^2 + s^2)``; the ratio of peak gradients at two smoothing
widths, taken on the same edge, therefore gives ``b`` independently of brightness and of
how many cells the field holds. An out-of-focus field has a much larger ``b`` than its plate's typical
field, which is how :func:`focus_outliers` flags it without a per-plate setting.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from imaging import arrays
from imaging.features.background import percentile
from imaging.filters import gaussian_gradient_magnitude
from imaging.label_stats import label_maxima

FINE_SIGMA = 1.0
COARSE_SIGMA = 4.0
MAX_BLUR_PX = 50.0
FOCUS_CROP_PX = 1024  # focus is measured on the central square of larger fields
EDGE_PERCENTILE = 90.0  # edge zones: the top 10 % of coarse-scale gradient
MIN_EDGE_ZONE_PX = 10
# Integer maxima of common camera bit depths: a pixel at one of these is clipped.
SATURATION_LEVELS = (255, 1023, 4095, 16383, 65535)


def _central_crop(image: np.ndarray, size: int) -> np.ndarray:
    top = max(0, (image.shape[0] - size) // 2)
    left = max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def edge_blur_px(image: np.ndarray, *, threads: int = 1) -> float:
    """Estimated Gaussian blur width (px) of the edges of a 2-D (or RGB) image.

    Edge zones are the pixels with the top 10 % of coarse-scale gradient; in each zone
    (roughly one object outline) the peak fine- and coarse-scale gradients give a ratio,
    and the median ratio over zones gives the blur. Taking both peaks on the same edge
    makes the estimate independent of how bright each object is.

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        A field (colour: the mean over channels).
    threads : int
        Threads for the gradient filters (:mod:`imaging.tiles`; the estimate does not depend on it).

    Returns
    -------
    float
        The blur's SD in px: 0 for edges sharper than can be resolved, ``MAX_BLUR_PX`` for an
        image without edges.
    """
    arrays.check_image(image, rgb=np.ndim(image) == 3)
    # cropped before the cast: the float32 copy is of the crop only (a quarter of a 2048 px field)
    image = np.asarray(_central_crop(np.asarray(image), FOCUS_CROP_PX), dtype=np.float32)
    if image.ndim == 3:  # colour: the mean over channels carries the edges
        image = image.mean(axis=-1)
    spread = float(np.ptp(image))
    if spread == 0:
        return MAX_BLUR_PX
    image = (image - image.min()) / spread
    fine = gaussian_gradient_magnitude(image, FINE_SIGMA, threads=threads)
    coarse = gaussian_gradient_magnitude(image, COARSE_SIGMA, threads=threads)
    zones, n_zones = ndi.label(coarse > percentile(coarse, EDGE_PERCENTILE))
    if n_zones == 0:
        return MAX_BLUR_PX
    large = np.bincount(zones.ravel(), minlength=n_zones + 1)[1:] >= MIN_EDGE_ZONE_PX
    if not large.any():
        return MAX_BLUR_PX
    fine_peaks = label_maxima(fine, zones, n_zones)[large]
    coarse_peaks = label_maxima(coarse, zones, n_zones)[large]
    ratio_sq = float(np.median(fine_peaks / np.maximum(coarse_peaks, 1e-12))) ** 2
    if ratio_sq <= 1.0:
        return MAX_BLUR_PX
    blur_sq = (COARSE_SIGMA**2 - ratio_sq * FINE_SIGMA**2) / (ratio_sq - 1.0)
    return float(min(MAX_BLUR_PX, np.sqrt(max(blur_sq, 0.0))))


def saturated_fraction(image: np.ndarray) -> float:
    """Fraction of pixels clipped at the sensor's maximum.

    Integer images: pixels at the image maximum when that maximum is a full-scale value
    (255, 1023, 4095, 16383, 65535). RGB images count a pixel when any channel clips.
    Float images: pixels at 1.0 when the image maximum is 1.0 (normalised data).

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        Raw pixels, before any correction.

    Returns
    -------
    float
        In [0, 1].
    """
    arrays.check_image(image, rgb=np.ndim(image) == 3)
    image = np.asarray(image)
    peak = image.max()
    is_full_scale = (peak in SATURATION_LEVELS) if image.dtype.kind in "iu" else (peak == 1.0)
    if not is_full_scale:
        return 0.0
    clipped = image >= peak
    if image.ndim == 3:
        clipped = clipped.any(axis=-1)
    return float(clipped.mean())


def focus_outliers(blur_px: np.ndarray, *, max_relative_blur: float = 1.3, mad_multiplier: float = 5.0) -> np.ndarray:
    """True for fields blurred well beyond their plate's typical field.

    A field is flagged when its blur width exceeds the plate median by more than a factor
    ``max_relative_blur`` *and* is an outlier (more than ``mad_multiplier`` robust SDs of
    log blur above the median), so that a uniformly soft plate is not flagged wholesale
    and a sharp plate's small scatter is not either.

    Parameters
    ----------
    blur_px : array_like of float
        :func:`edge_blur_px` of every field of a plate.
    max_relative_blur : float
        Least ratio to the plate median that can be flagged.
    mad_multiplier : float
        Least distance above the median, in robust SDs of log blur.

    Returns
    -------
    ndarray of bool
        One flag per field.
    """
    blur = np.asarray(blur_px, dtype=float)
    if blur.size == 0:
        return np.zeros(0, dtype=bool)
    log_blur = np.log(np.maximum(blur, 0.5))  # below half a pixel, blur is not resolved
    median = np.median(log_blur)
    spread = 1.4826 * np.median(np.abs(log_blur - median))
    margin = max(np.log(max_relative_blur), mad_multiplier * spread)
    return log_blur > median + margin


def decide_field_qc(
    fields,
    *,
    channel_kinds: dict[str, str],
    max_relative_blur: float,
    max_saturated_fraction: float,
    max_saturated_fraction_brightfield: float,
    min_cells: int,
):
    """Pass/fail and reasons for each field of one plate.

    Parameters
    ----------
    fields : DataFrame
        One row per field with ``focus_blur_px``, ``n_cells`` and
        ``saturated_fraction_<channel>`` columns.
    channel_kinds : dict
        Channel name -> 'fluorescence' or 'brightfield' (which saturation limit applies).
    max_relative_blur : float
        A field blurred more than this times the plate median (and an outlier) fails
        (:func:`focus_outliers`).
    max_saturated_fraction : float
        Largest fraction of clipped pixels in a fluorescence channel.
    max_saturated_fraction_brightfield : float
        The same for a brightfield channel.
    min_cells : int
        Fewest cells a field may have.

    Returns
    -------
    DataFrame
        ``qc_pass`` (bool) and ``qc_reasons`` (';'-separated, empty when passed), aligned
        with ``fields``.
    """
    import pandas as pd

    reasons: list[list[str]] = [[] for _ in range(len(fields))]
    blurred = focus_outliers(fields["focus_blur_px"].to_numpy(), max_relative_blur=max_relative_blur)
    median_blur = float(np.median(fields["focus_blur_px"])) if len(fields) else float("nan")
    empty = fields["n_cells"].to_numpy() == 0
    for i in np.flatnonzero(empty):  # a blank field has no edges: its blur says nothing about focus
        reasons[i].append("no nuclei found (blank field, or the wrong channel as nuclei?)")
    for i in np.flatnonzero(blurred & ~empty):
        reasons[i].append(
            f"out of focus (edge blur {fields['focus_blur_px'].iloc[i]:.1f} px, plate median {median_blur:.1f} px)"
        )
    for channel, kind in channel_kinds.items():
        limit = max_saturated_fraction_brightfield if kind == "brightfield" else max_saturated_fraction
        values = fields[f"saturated_fraction_{channel}"].to_numpy()
        for i in np.flatnonzero(values > limit):
            reasons[i].append(f"{channel} saturated ({100 * values[i]:.1f}% of pixels > {100 * limit:g}%)")
    for i in np.flatnonzero((fields["n_cells"].to_numpy() < min_cells) & ~empty):
        reasons[i].append(f"too few cells ({fields['n_cells'].iloc[i]} < {min_cells})")
    return pd.DataFrame(
        {"qc_pass": [not r for r in reasons], "qc_reasons": ["; ".join(r) for r in reasons]}, index=fields.index
    )
