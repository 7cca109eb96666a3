"""Field quality control: focus, saturation, and plate-relative decisions.

Focus is measured as the blur width of the image's strongest edges, in pixels. For an
edge blurred by a Gaussian of width ``b``, the peak gradient after smoothing with width
``s`` is proportional to ``1 / sqrt(b^2 + s^2)``; the ratio of peak gradients at two
smoothing widths therefore gives ``b`` independently of brightness and of how many cells
the field holds. An out-of-focus field has a much larger ``b`` than its plate's typical
field, which is how :func:`focus_outliers` flags it without a per-plate setting.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

FINE_SIGMA = 1.0
COARSE_SIGMA = 4.0
MAX_BLUR_PX = 50.0
FOCUS_CROP_PX = 1024  # focus is measured on the central square of larger fields
EDGE_PERCENTILE = 99.5
# Integer maxima of common camera bit depths: a pixel at one of these is clipped.
SATURATION_LEVELS = (255, 1023, 4095, 16383, 65535)


def _central_crop(image: np.ndarray, size: int) -> np.ndarray:
    top = max(0, (image.shape[0] - size) // 2)
    left = max(0, (image.shape[1] - size) // 2)
    return image[top:top + size, left:left + size]


def edge_blur_px(image: np.ndarray) -> float:
    """Estimated Gaussian blur width (px) of the strongest edges of a 2-D image.

    Returns 0 for edges sharper than can be resolved and ``MAX_BLUR_PX`` for an image
    without edges (blank or uniformly blurred beyond measure).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:  # colour: the mean over channels carries the edges
        image = image.mean(axis=-1)
    image = _central_crop(image, FOCUS_CROP_PX)
    spread = float(np.ptp(image))
    if spread == 0:
        return MAX_BLUR_PX
    image = (image - image.min()) / spread
    fine = np.percentile(ndi.gaussian_gradient_magnitude(image, FINE_SIGMA), EDGE_PERCENTILE)
    coarse = np.percentile(ndi.gaussian_gradient_magnitude(image, COARSE_SIGMA), EDGE_PERCENTILE)
    if coarse <= 0:
        return MAX_BLUR_PX
    ratio_sq = (fine / coarse) ** 2
    if ratio_sq <= 1.0:
        return MAX_BLUR_PX
    blur_sq = (COARSE_SIGMA**2 - ratio_sq * FINE_SIGMA**2) / (ratio_sq - 1.0)
    return float(min(MAX_BLUR_PX, np.sqrt(max(blur_sq, 0.0))))


def saturated_fraction(image: np.ndarray) -> float:
    """Fraction of pixels clipped at the sensor's maximum.

    Integer images: pixels at the image maximum when that maximum is a full-scale value
    (255, 1023, 4095, 16383, 65535). RGB images count a pixel when any channel clips.
    Float images: pixels at 1.0 when the image maximum is 1.0 (normalised data).
    """
    image = np.asarray(image)
    peak = image.max()
    is_full_scale = (peak in SATURATION_LEVELS) if image.dtype.kind in "iu" else (peak == 1.0)
    if not is_full_scale:
        return 0.0
    clipped = image >= peak
    if image.ndim == 3:
        clipped = clipped.any(axis=-1)
    return float(clipped.mean())


def focus_outliers(blur_px: np.ndarray, *, max_relative_blur: float = 1.5,
                   mad_multiplier: float = 5.0) -> np.ndarray:
    """True for fields blurred well beyond their plate's typical field.

    A field is flagged when its blur width exceeds the plate median by more than a factor
    ``max_relative_blur`` *and* is an outlier (more than ``mad_multiplier`` robust SDs of
    log blur above the median), so that a uniformly soft plate is not flagged wholesale
    and a sharp plate's small scatter is not either.
    """
    blur = np.asarray(blur_px, dtype=float)
    if blur.size == 0:
        return np.zeros(0, dtype=bool)
    log_blur = np.log(np.maximum(blur, 0.25))  # 0.25 px: below this, blur is not resolved
    median = np.median(log_blur)
    spread = 1.4826 * np.median(np.abs(log_blur - median))
    margin = max(np.log(max_relative_blur), mad_multiplier * spread)
    return log_blur > median + margin


def decide_field_qc(fields, *, channel_kinds: dict[str, str], max_relative_blur: float,
                    max_saturated_fraction: float, max_saturated_fraction_brightfield: float,
                    min_cells: int):
    """Pass/fail and reasons for each field of one plate.

    Parameters
    ----------
    fields : DataFrame
        One row per field with ``focus_blur_px``, ``n_cells`` and
        ``saturated_fraction_<channel>`` columns.
    channel_kinds : dict
        Channel name -> 'fluorescence' or 'brightfield' (which saturation limit applies).

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
    for i in np.flatnonzero(blurred):
        reasons[i].append(f"out of focus (edge blur {fields['focus_blur_px'].iloc[i]:.1f} px, "
                          f"plate median {median_blur:.1f} px)")
    for channel, kind in channel_kinds.items():
        limit = max_saturated_fraction_brightfield if kind == "brightfield" else max_saturated_fraction
        values = fields[f"saturated_fraction_{channel}"].to_numpy()
        for i in np.flatnonzero(values > limit):
            reasons[i].append(f"{channel} saturated ({100 * values[i]:.1f}% of pixels > {100 * limit:g}%)")
    for i in np.flatnonzero(fields["n_cells"].to_numpy() < min_cells):
        reasons[i].append(f"too few cells ({fields['n_cells'].iloc[i]} < {min_cells})")
    return pd.DataFrame({"qc_pass": [not r for r in reasons], "qc_reasons": ["; ".join(r) for r in reasons]},
                        index=fields.index)
