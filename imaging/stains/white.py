"""The white reference of brightfield images: the light reaching the camera where nothing
absorbs, against which optical density is measured.

- :func:`white_point`: one colour per image, the brightest 1 % of its pixels (glass on a
  slide; the palest tissue of a crop): tissue sections and cores.
- :func:`white_reference`: a smooth surface per channel from the cell-free pixels, for
  plate wells lit unevenly (vignetting): SA-beta-gal fields.
"""

from __future__ import annotations

import numpy as np

from imaging import arrays
from imaging.features.background import background_surface, percentile


def white_point(rgb: np.ndarray) -> np.ndarray:
    """Per-channel brightness of the light through the slide where nothing absorbs: the
    median colour of the brightest 1 % of pixels (by mean of R, G, B).

    On a slide with glass that is the glass; on a crop inside tissue it is the palest
    tissue, so stain amounts are measured against it. The colour of those pixels is taken
    as it is: a scanner whose glass looks yellowish is white-balanced by it (a rule that
    kept only grey pixels picked grey nuclei over yellowish glass on real Ki67 tiles).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        A brightfield image.

    Returns
    -------
    (3,) ndarray of float
    """
    rgb = arrays.check_image(rgb, name="rgb", rgb=True)
    rgb = np.asarray(rgb)
    brightness = rgb.mean(axis=-1, dtype=np.float32)
    brightest = brightness >= percentile(brightness, 99)
    return np.median(rgb[brightest], axis=0).astype(np.float64)


def white_reference(rgb: np.ndarray, cell_free: np.ndarray) -> np.ndarray:
    """Per-pixel white reference (M, N, 3) from the cell-free pixels of each channel.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        A brightfield plate field.
    cell_free : (M, N) ndarray of bool
        Pixels with no cell.

    Returns
    -------
    (M, N, 3) ndarray of float64
        A smooth surface per channel
        (:func:`imaging.features.background.background_surface`).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    surfaces = [np.broadcast_to(background_surface(rgb[..., c], cell_free), rgb.shape[:2]) for c in range(3)]
    return np.stack(surfaces, axis=-1)
