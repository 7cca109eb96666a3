"""Stain vectors for a tissue run: defaults, or estimated from the image (Macenko)."""

from __future__ import annotations

import numpy as np

from imaging.features.stains import (
    STAIN_VECTORS, angle_between, estimate_stain_vectors, optical_density, stain_matrix, unit, unmix,
)

MIN_STAINED_PIXELS = 500


def default_vectors(names: tuple[str, str]) -> dict[str, np.ndarray]:
    """Ruifrok & Johnston's vectors for the two stains."""
    return {name: unit(STAIN_VECTORS[name]) for name in names}


def white_point(rgb: np.ndarray) -> np.ndarray:
    """Per-channel brightness of the glass: the median colour of bright, colourless pixels
    (see :func:`imaging.tissue.mask.glass_pixels`), or the 99.5th percentile per channel
    when the image holds no glass (a crop inside tissue)."""
    from imaging.tissue.mask import MIN_GLASS_FRACTION, glass_pixels

    glass = glass_pixels(rgb)
    if glass.mean() >= MIN_GLASS_FRACTION:
        return np.median(rgb[glass], axis=0).astype(np.float64)
    return np.array([np.percentile(rgb[..., c], 99.5) for c in range(3)], dtype=np.float64)


def estimate_vectors(rgb: np.ndarray, tissue: np.ndarray, names: tuple[str, str], *,
                     white: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """Stain vectors of the two stains from the tissue pixels (Macenko), matched to the
    default vectors by angle; the defaults (and the reason) when there is too little stain.

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
    """Per-stain amounts (OD units along each unit vector) of an RGB image."""
    names = list(vectors)
    amounts = unmix(optical_density(rgb, white), stain_matrix([vectors[n] for n in names]))
    return {name: amounts[..., i] for i, name in enumerate(names)}


def stain_channel(rgb: np.ndarray, vectors: dict[str, np.ndarray], stain: str, *, white,
                  band_rows: int = 256) -> np.ndarray:
    """One stain's amount (float32) of an RGB image, unmixed a band of rows at a time so
    that a large overview never needs its full-size float64 optical density."""
    names = list(vectors)
    inverse = np.linalg.inv(stain_matrix([vectors[n] for n in names]))[:, names.index(stain)]
    out = np.empty(rgb.shape[:2], np.float32)
    for top in range(0, rgb.shape[0], band_rows):
        od = optical_density(rgb[top:top + band_rows], white)
        out[top:top + band_rows] = od @ inverse
    return out
