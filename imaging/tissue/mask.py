"""Tissue mask on a low-resolution overview: where is there tissue, not glass?

Brightfield: glass is bright and colourless. Pixels within 10 % of the brightest and with
almost no chroma are glass candidates; when there are enough of them (2 % of the image),
their median colour is the white point, and tissue is where the largest per-channel
optical density against it exceeds 0.05 (89 % transmission: any stain or counterstain,
pale stroma included), and so are the gaps narrower than 20 um between such pixels (a
closing): the cytoplasm of a palely counterstained tumour may lie under 0.05 (0.02-0.04 on
real Ki67 tiles) while its nuclei, 10-25 um apart, lie above it, and a pathologist outlines
the tissue the cells are in, not the nuclei.
An image without glass (a crop inside tissue, a TMA core filling the field) is tissue
throughout. Fluorescence: tissue is brighter than the background (Otsu). In both cases
holes are filled and pieces under the minimum area dropped (at most 5 % of the image, so a
small field keeps its tissue).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology

from imaging.distance import distance_to_background
from imaging.stains.white import white_point

TISSUE_OD = 0.05
# Two nucleus diameters: the spacing of nuclei in a cellular tumour. A tear or a gap between
# tissue pieces narrower than this is counted as tissue.
TISSUE_GAP_UM = 20.0
GLASS_BRIGHTNESS = 0.9  # of the 99.5th percentile of brightness
GLASS_CHROMA = 0.02  # (max - min) / mean of R, G, B: white-balanced glass is grey
MIN_GLASS_FRACTION = 0.02
MAX_MIN_AREA_FRACTION = 0.05


def glass_pixels(rgb: np.ndarray) -> np.ndarray:
    """Bright, colourless pixels: candidate glass.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        An overview of the slide.

    Returns
    -------
    (M, N) ndarray of bool
    """
    brightness = rgb.mean(axis=-1, dtype=np.float32)
    chroma = (rgb.max(axis=-1).astype(np.float32) - rgb.min(axis=-1)) / np.maximum(brightness, 1e-6)
    return (brightness >= GLASS_BRIGHTNESS * np.percentile(brightness, 99.5)) & (chroma < GLASS_CHROMA)


def max_optical_density(rgb: np.ndarray, white: np.ndarray) -> np.ndarray:
    """The largest per-channel optical density (float32), one channel at a time.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        An overview of the slide.
    white : (3,) array_like
        The white point.

    Returns
    -------
    (M, N) ndarray of float32
    """
    result = np.zeros(rgb.shape[:2], np.float32)
    for channel in range(rgb.shape[-1]):
        od = -np.log10(np.maximum(rgb[..., channel].astype(np.float32), 1.0) / max(float(white[channel]), 1.0))
        np.maximum(result, od, out=result)
    return result


def close_gaps(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """``mask`` with the gaps narrower than ``2 * radius_px`` filled (a closing by a disk).

    By thresholds of Euclidean distance transforms
    (:func:`imaging.distance.distance_to_background`, as skimage's ``isotropic_closing``:
    the cost does not grow with the radius), on the mask padded by reflection: the image
    border is not a gap, so tissue running off the image keeps its pixels (skimage's erosion
    of a mask that the dilation filled wholly dropped a corner). A radius under one pixel
    leaves the mask as it is.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Pixels that are tissue by their optical density.
    radius_px : float
        Half the widest gap filled, in pixels of ``mask``.

    Returns
    -------
    (M, N) ndarray of bool
    """
    if radius_px < 1 or not mask.any():
        return mask
    pad = int(np.ceil(radius_px)) + 1
    padded = np.pad(mask, pad, mode="reflect")
    dilated = distance_to_background(~padded) <= radius_px
    if dilated.all():  # no background left to erode from
        return np.ones_like(mask)
    return (distance_to_background(dilated) > radius_px)[pad:-pad, pad:-pad]


def tissue_mask(
    overview: np.ndarray, *, pixel_size_um: float, min_area_um2: float, brightfield: bool = True
) -> np.ndarray:
    """Boolean tissue mask of an overview image (see module docstring).

    Parameters
    ----------
    overview : (M, N, 3) or (M, N) ndarray
        The image at overview resolution.
    pixel_size_um : float
        Of the overview (pixels when the image records none).
    min_area_um2 : float
        Smaller tissue pieces are dropped (0: keep every piece).
    brightfield : bool
        Glass is bright (brightfield); False for dark-field or fluorescence.

    Returns
    -------
    (M, N) bool ndarray
    """
    image = np.asarray(overview)
    if brightfield:
        if glass_pixels(image).mean() < MIN_GLASS_FRACTION:
            return np.ones(image.shape[:2], dtype=bool)
        mask = ndi.gaussian_filter(max_optical_density(image, white_point(image)), 1.0) > TISSUE_OD
        mask = close_gaps(mask, TISSUE_GAP_UM / 2 / pixel_size_um)
    else:
        signal = ndi.gaussian_filter(image, 1.0)
        mask = signal > filters.threshold_otsu(signal) if np.ptp(signal) > 0 else np.zeros(signal.shape, bool)
    mask = ndi.binary_fill_holes(mask)
    # A small field (a core crop, a tile at 40x) may be smaller than the minimum piece of a
    # whole slide: a piece never needs to be larger than MAX_MIN_AREA_FRACTION of the image.
    min_pixels = int(min(min_area_um2 / pixel_size_um**2, MAX_MIN_AREA_FRACTION * mask.size))
    return morphology.remove_small_objects(mask, max_size=min_pixels) if min_pixels > 0 else mask
