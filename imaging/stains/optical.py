"""Brightfield stains: optical density (Beer-Lambert) and colour deconvolution.

Light through a stained sample is attenuated exponentially in the amount of dye, so the
optical density ``OD = -log10(I / I0)`` of each RGB channel is linear in dye amount; ``I0``
is the white reference, the light reaching the camera where there is no sample. Each dye
has a characteristic OD direction in RGB (its *stain vector*). With up to three vectors,
the OD of each pixel is unmixed into per-stain amounts by inverting the stain matrix
(Ruifrok & Johnston, Anal Quant Cytol Histol 23:291, 2001).

Default vectors (unit length, OD in R, G, B):

``xgal``
    The blue-green indigo precipitate of X-gal (SA-beta-gal) absorbs mostly red light,
    some green and little blue. Default: Landini's Alcian-blue vector (0.875, 0.458,
    0.158), a blue-green dye with a matching absorption profile (colour deconvolution
    plugin for ImageJ). Measure your own with ``stain_vector: estimate``.
``neutral``
    Grey absorbance (equal in R, G, B): unstained cell material, debris, edges.
``hematoxylin``, ``eosin``, ``dab``
    Ruifrok & Johnston's vectors, as used by scikit-image and QuPath.
"""

from __future__ import annotations

import numpy as np

STAIN_VECTORS: dict[str, tuple[float, float, float]] = {
    "xgal": (0.874622, 0.457711, 0.158256),
    "neutral": (0.57735, 0.57735, 0.57735),
    "hematoxylin": (0.65, 0.70, 0.29),
    "eosin": (0.07, 0.99, 0.11),
    "dab": (0.27, 0.57, 0.78),
}

MIN_INTENSITY = 1.0  # avoids log(0) in fully dark pixels


def unit(vector) -> np.ndarray:
    """``vector`` scaled to unit length.

    Parameters
    ----------
    vector : array_like of float
        A stain vector (any length > 0).

    Returns
    -------
    ndarray of float

    Raises
    ------
    ValueError
        For a zero vector.
    """
    vector = np.asarray(vector, dtype=float)
    norm = np.linalg.norm(vector)
    if norm == 0:
        raise ValueError("a stain vector cannot be zero")
    return vector / norm


def optical_density(rgb: np.ndarray, white: np.ndarray | float) -> np.ndarray:
    """Per-channel optical density ``-log10(I / I0)`` of an RGB image.

    Pixels brighter than the reference get a small negative OD (noise), which is kept so that
    means over background stay unbiased.

    Parameters
    ----------
    rgb : (..., 3) ndarray
        Intensities (any scale; dark pixels floored at a small positive value).
    white : float or ndarray
        The white reference ``I0``: a scalar, one value per channel (3,), or a per-pixel
        surface (M, N, 3).

    Returns
    -------
    (..., 3) ndarray of float64
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb must hold 3 colour channels last, got shape {rgb.shape}")
    white = np.asarray(white)
    if white.ndim and white.shape not in ((3,), rgb.shape):
        raise ValueError(f"white shape {white.shape} fits neither one colour (3,) nor the image {rgb.shape}")
    rgb = np.asarray(rgb, dtype=np.float64)
    white = np.maximum(np.asarray(white, dtype=np.float64), MIN_INTENSITY)
    return -np.log10(np.maximum(rgb, MIN_INTENSITY) / white)


def stain_matrix(vectors) -> np.ndarray:
    """3 x 3 matrix whose rows are unit stain vectors, completed to three rows.

    With two vectors the third is their cross product (the residual channel); with one,
    two orthogonal complements are added.

    Parameters
    ----------
    vectors : sequence of array_like
        One to three stain OD directions.

    Returns
    -------
    (3, 3) ndarray of float

    Raises
    ------
    ValueError
        With no vector or more than three.
    """
    rows = [unit(v) for v in vectors]
    if not 1 <= len(rows) <= 3:
        raise ValueError("give one to three stain vectors")
    if len(rows) == 1:
        helper = np.array([0.0, 0.0, 1.0]) if abs(rows[0][2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        rows.append(unit(np.cross(rows[0], helper)))
    if len(rows) == 2:
        rows.append(unit(np.cross(rows[0], rows[1])))
    matrix = np.vstack(rows)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise ValueError("stain vectors are (nearly) parallel and cannot be unmixed")
    return matrix


def unmix(od: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Per-stain amounts (..., 3) from OD (..., 3) and a stain matrix (rows = stains).

    Solves ``od = amounts @ matrix`` for every pixel.

    Parameters
    ----------
    od : (..., 3) ndarray
        Optical densities (:func:`optical_density`).
    matrix : (3, 3) ndarray
        :func:`stain_matrix`.

    Returns
    -------
    (..., 3) ndarray
        Amounts, one per matrix row.
    """
    return od @ np.linalg.inv(matrix)


def estimate_stain_vectors(
    od_pixels: np.ndarray, *, min_od: float = 0.15, angle_percentile: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two stain vectors from the OD of stained pixels (Macenko et al., ISBI 2009).

    The OD vectors of pixels with total OD above ``min_od`` are projected on the plane of
    their two main directions; the directions at the ``angle_percentile`` and
    ``100 - angle_percentile`` percentiles of angle in that plane are the two stains.

    Parameters
    ----------
    od_pixels : (P, 3) ndarray
        Optical densities of candidate pixels.
    min_od : float
        Least total OD of a pixel used.
    angle_percentile : float
        Percentile of angle (from each end) taken as a stain's direction: robust to outliers.

    Returns
    -------
    first, second : (3,) ndarrays
        Unit vectors with non-negative components, in no particular order.

    Raises
    ------
    ValueError
        Fewer than 100 pixels above ``min_od``.
    """
    od_pixels = np.asarray(od_pixels, dtype=float).reshape(-1, 3)
    stained = od_pixels[np.linalg.norm(od_pixels, axis=1) > min_od]
    if len(stained) < 100:
        raise ValueError(f"only {len(stained)} stained pixels (OD > {min_od}); need at least 100")
    _, _, components = np.linalg.svd(stained, full_matrices=False)
    plane = components[:2]
    plane[0] *= np.sign(plane[0].sum()) or 1.0  # first direction along positive OD
    projected = stained @ plane.T
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [angle_percentile, 100 - angle_percentile])
    vectors = []
    for angle in (low, high):
        vector = np.cos(angle) * plane[0] + np.sin(angle) * plane[1]
        vector = np.clip(vector * (np.sign(vector.sum()) or 1.0), 0, None)
        vectors.append(unit(vector))
    return vectors[0], vectors[1]


def angle_between(first, second) -> float:
    """Angle between two vectors, in degrees.

    Parameters
    ----------
    first, second : array_like of float
        Two non-zero vectors of the same length.

    Returns
    -------
    float
        In [0, 180].
    """
    cosine = float(np.clip(np.dot(unit(first), unit(second)), -1.0, 1.0))
    return float(np.degrees(np.arccos(cosine)))
