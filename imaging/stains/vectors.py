"""Stain vectors of an image: the defaults, or estimated from the image (Macenko) when the
defaults leave too much of the stained optical density unexplained (``auto``)."""

from __future__ import annotations

import numpy as np

from imaging import arrays
from imaging.stains.optical import (
    STAIN_VECTORS,
    angle_between,
    estimate_stain_vectors,
    optical_density,
    stain_matrix,
    unit,
    unmix,
)

MIN_STAINED_PIXELS = 500


def default_vectors(names: tuple[str, str]) -> dict[str, np.ndarray]:
    """Ruifrok & Johnston's vectors for the two stains.

    Parameters
    ----------
    names : tuple of str
        Stain names of :data:`imaging.stains.optical.STAIN_VECTORS` (``("hematoxylin", "dab")``).

    Returns
    -------
    dict of str to (3,) ndarray
        Unit vectors by name, in the order given.
    """
    return {name: unit(STAIN_VECTORS[name]) for name in names}


def estimate_vectors(
    rgb: np.ndarray, tissue: np.ndarray, names: tuple[str, str], *, white: np.ndarray
) -> tuple[dict[str, np.ndarray], str]:
    """Stain vectors of the two stains from the tissue pixels (Macenko), matched to the
    default vectors by angle; the defaults (and the reason) when there is too little stain.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        An overview of the section (or a tile).
    tissue : (M, N) bool ndarray
        Its tissue pixels.
    names : tuple of two str
        The stains (``("hematoxylin", "dab")``).
    white : (3,) ndarray
        The white point.

    Returns
    -------
    vectors : dict
        Stain name -> unit OD vector.
    source : str
        ``'estimated'`` or ``'default (<reason>)'``.
    """
    defaults = default_vectors(names)
    od = optical_density(np.asarray(rgb, dtype=np.float64).reshape(-1, 3), white)[np.asarray(tissue).reshape(-1)]
    try:
        first, second = estimate_stain_vectors(od)
    except ValueError as exc:
        return defaults, f"default ({exc})"
    a, b = names
    straight = angle_between(first, defaults[a]) + angle_between(second, defaults[b])
    crossed = angle_between(second, defaults[a]) + angle_between(first, defaults[b])
    estimated = {a: first, b: second} if straight <= crossed else {a: second, b: first}
    if min(straight, crossed) > 60:
        return defaults, "default (estimated vectors far from any known stain)"
    return estimated, "estimated"


def stain_amounts(rgb: np.ndarray, vectors: dict[str, np.ndarray], *, white) -> dict[str, np.ndarray]:
    """Per-stain amounts (OD units along each unit vector) of an RGB image.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        The image.
    vectors : dict of str to (3,) ndarray
        Stain name -> unit OD vector (two or three stains).
    white : float or (3,) ndarray
        Glass brightness per channel.

    Returns
    -------
    dict of str to (M, N) ndarray
    """
    names = list(vectors)
    amounts = unmix(optical_density(rgb, white), stain_matrix([vectors[n] for n in names]))
    return {name: amounts[..., i] for i, name in enumerate(names)}


def stain_channel(
    rgb: np.ndarray, vectors: dict[str, np.ndarray], stain: str, *, white, band_rows: int = 256
) -> np.ndarray:
    """One stain's amount (float32) of an RGB image, unmixed a band of rows at a time so
    that a large overview never needs its full-size float64 optical density.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        The image.
    vectors : dict of str to (3,) ndarray
        The stains it is unmixed with (two or three).
    stain : str
        Which of them to return.
    white : float or ndarray
        White reference (:func:`imaging.stains.optical.optical_density`).
    band_rows : int
        Rows unmixed at a time (bounds the memory).

    Returns
    -------
    (M, N) ndarray of float32
    """
    rgb = arrays.check_image(rgb, name="rgb", rgb=True)
    names = list(vectors)
    inverse = np.linalg.inv(stain_matrix([vectors[n] for n in names]))[:, names.index(stain)]
    out = np.empty(rgb.shape[:2], np.float32)
    for top in range(0, rgb.shape[0], band_rows):
        od = optical_density(rgb[top : top + band_rows], white)
        out[top : top + band_rows] = od @ inverse
    return out


# "auto" keeps the default vectors unless the part of the stained pixels' optical density
# that they cannot explain (the third, residual channel of the deconvolution) exceeds this
# fraction of the total. On six real Ki67 tiles from one scanner the defaults leave 0.10-0.15.
AUTO_MAX_RESIDUAL = 0.2


def residual_fraction(
    rgb: np.ndarray, vectors: dict[str, np.ndarray], *, white, mask=None, min_od: float = 0.15
) -> float:
    """Mean absolute residual OD over mean OD length, on stained pixels (OD length above
    ``min_od``, within ``mask``): 0 when the vectors explain every stained colour.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        The image.
    vectors : dict of str to (3,) ndarray
        Two stain vectors.
    white : float or ndarray
        White reference.
    mask : (M, N) ndarray of bool, optional
        Where to look (tissue).
    min_od : float
        Least OD length of a pixel that counts as stained.

    Returns
    -------
    float
        0 when too few pixels are stained to tell.
    """
    od = optical_density(np.asarray(rgb).reshape(-1, 3), white)
    if mask is not None:
        od = od[np.asarray(mask).reshape(-1)]
    length = np.linalg.norm(od, axis=1)
    stained = od[length > min_od]
    if len(stained) < MIN_STAINED_PIXELS:
        return 0.0
    names = list(vectors)
    amounts = unmix(stained, stain_matrix([vectors[n] for n in names]))
    return float(np.abs(amounts[:, -1]).mean() / length[length > min_od].mean())


def choose_vectors(
    rgb: np.ndarray, tissue: np.ndarray, names: tuple[str, str], *, white: np.ndarray
) -> tuple[dict[str, np.ndarray], str]:
    """``vectors: auto``: the defaults when they fit the image (residual fraction at most
    :data:`AUTO_MAX_RESIDUAL`), else the Macenko estimate.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        An overview of the image.
    tissue : (M, N) bool ndarray
        Pixels the vectors are fitted on.
    names : tuple of two str
        Stains (``('hematoxylin', 'dab')``).
    white : (3,) ndarray
        Glass brightness per channel.

    Returns
    -------
    vectors : dict of str to (3,) ndarray
    source : str
        Which were chosen and why (recorded in ``run.json``).
    """
    defaults = default_vectors(names)
    residual = residual_fraction(rgb, defaults, white=white, mask=tissue)
    if residual <= AUTO_MAX_RESIDUAL:
        return defaults, f"default (residual {residual:.2f})"
    estimated, source = estimate_vectors(rgb, tissue, names, white=white)
    return estimated, f"{source} (defaults' residual {residual:.2f} > {AUTO_MAX_RESIDUAL})"
