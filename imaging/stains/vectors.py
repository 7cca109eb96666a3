"""Stain vectors of an image: the defaults, or estimated from the image (Macenko) when the
defaults leave too much of the stained optical density unexplained (``auto``)."""

from __future__ import annotations

import dataclasses

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


# ``vectors: auto`` also checks the counterstain on the nuclei themselves. A haematoxylin whose hue
# is turned towards DAB within the plane of the two vectors leaves no residual for
# :func:`residual_fraction` to see, yet every blue nucleus then measures DAB, and a nuclear stain
# comes out nearly all positive. The least brown tenth of a tile's nuclei is taken as
# haematoxylin only. On the six DeepLIIF tiles their DAB / haematoxylin reads -0.19 to +0.06, and at
# most 0.29 with a more purple or bluer haematoxylin, one twice as dark, or DAB x1.5. With
# haematoxylin turned 15 degrees towards DAB it reads 0.55-0.91, against a true leak of 0.71. So a
# leak is corrected only above this level, and a tile stained as the defaults assume keeps them.
MAX_HAEMATOXYLIN_LEAK = 0.4
# A larger "leak" would mean a haematoxylin turned over 20 degrees towards DAB, more than halfway
# to it (the defaults are 37 degrees apart). That is no counterstain's hue: it is a tile where
# nine nuclei in ten or more are truly positive, and it keeps its vectors.
MAX_PLAUSIBLE_LEAK = 1.2
LEAK_PERCENTILE = 10  # of the nuclei's DAB / haematoxylin: the least brown tenth
# A leak is one hue: every haematoxylin-only nucleus shows the same DAB per unit haematoxylin, so
# the ratio at the median nucleus is close to the least brown tenth's (1.10-1.34 times it on the
# six tiles restained with haematoxylin turned 10-20 degrees towards DAB, where the leak is
# corrected). Real weak staining adds DAB whatever a nucleus's haematoxylin, and the ratio spreads:
# the same tiles with a diffuse DAB of 0.25-0.4 OD in every nucleus (an ER-like stain, 90 % and
# more of nuclei positive) read 1.56-2.04 wherever their tenth passed MAX_HAEMATOXYLIN_LEAK. Above
# this spread the tile is taken as stained nuclei and keeps its vectors. The price: a real leak on
# a tile with more positive nuclei than negative ones is left uncorrected.
MAX_LEAK_SPREAD = 1.45
MIN_LEAK_NUCLEI = 30  # fewer nuclei than this say too little to turn a vector
MIN_LEAK_HEMATOXYLIN = 0.05  # OD: paler nuclei give a ratio of noise
# How a turned haematoxylin is named in ``stain_vector_source`` (the report counts such images).
LEAK_TURNED = "haematoxylin turned"


@dataclasses.dataclass(frozen=True)
class LeakReading:
    """The nuclei's DAB per unit haematoxylin (:func:`haematoxylin_leak`).

    ``leak``: at the least brown tenth (:data:`LEAK_PERCENTILE`); about 0 when the vectors fit,
    whatever share of the nuclei is positive, and positive when haematoxylin shows up as DAB.
    ``median``: at the median nucleus, which tells a leak (one ratio for all) from stained
    nuclei (:data:`MAX_LEAK_SPREAD`)."""

    leak: float
    median: float


def haematoxylin_leak(hematoxylin_means, dab_means) -> LeakReading | None:
    """DAB per unit haematoxylin in the least brown nuclei and the median one, or None when
    there are too few nuclei with haematoxylin to tell (:data:`MIN_LEAK_NUCLEI`).

    Parameters
    ----------
    hematoxylin_means, dab_means : (n,) array_like
        Each nucleus's mean stain amounts, unmixed with the vectors being checked.

    Returns
    -------
    LeakReading or None
    """
    hematoxylin = np.asarray(hematoxylin_means, float)
    dab = np.asarray(dab_means, float)
    if hematoxylin.shape != dab.shape:
        raise ValueError(f"hematoxylin means {hematoxylin.shape} and DAB means {dab.shape} differ in shape")
    stained = np.isfinite(hematoxylin) & np.isfinite(dab) & (hematoxylin > MIN_LEAK_HEMATOXYLIN)
    if stained.sum() < MIN_LEAK_NUCLEI:
        return None
    ratios = dab[stained] / hematoxylin[stained]
    return LeakReading(leak=float(np.percentile(ratios, LEAK_PERCENTILE)), median=float(np.median(ratios)))


def without_leak(vectors: dict[str, np.ndarray], leak: float) -> dict[str, np.ndarray]:
    """``vectors`` with the haematoxylin turned so that it explains ``leak`` DAB per unit.

    A haematoxylin-only nucleus that unmixes as ``(h, leak * h)`` has the OD direction
    ``hematoxylin + leak * dab``: that is the image's haematoxylin.

    Parameters
    ----------
    vectors : dict
        ``hematoxylin`` and ``dab`` unit vectors.
    leak : float
        :func:`haematoxylin_leak` with those vectors.

    Returns
    -------
    dict of str to (3,) ndarray
    """
    turned = unit(vectors["hematoxylin"] + leak * vectors["dab"])
    return vectors | {"hematoxylin": turned}


def corrected_for_leak(
    vectors: dict[str, np.ndarray], reading: LeakReading | None
) -> tuple[dict[str, np.ndarray], str]:
    """The vectors to score with, given the nuclei's :func:`haematoxylin_leak`, and why
    (for ``run.json``).

    Parameters
    ----------
    vectors : dict
        ``hematoxylin`` and ``dab`` unit vectors, the ones the leak was measured with.
    reading : LeakReading or None
        :func:`haematoxylin_leak`.

    Returns
    -------
    vectors : dict of str to (3,) ndarray
        Turned (:func:`without_leak`) only for a leak above :data:`MAX_HAEMATOXYLIN_LEAK`, up to
        :data:`MAX_PLAUSIBLE_LEAK`, that is one ratio for the nuclei (:data:`MAX_LEAK_SPREAD`).
    note : str
    """
    if reading is None:
        return vectors, "too few nuclei to check for a haematoxylin leak"
    leak = reading.leak
    if leak <= MAX_HAEMATOXYLIN_LEAK:
        return vectors, f"nuclei's DAB leak {leak:.2f} <= {MAX_HAEMATOXYLIN_LEAK}"
    if leak > MAX_PLAUSIBLE_LEAK:
        return vectors, f"nuclei's DAB leak {leak:.2f} > {MAX_PLAUSIBLE_LEAK}: taken as nearly all positive, kept"
    spread = reading.median / leak
    if spread > MAX_LEAK_SPREAD:
        return vectors, (
            f"nuclei's DAB leak {leak:.2f}, but the median nucleus reads {spread:.2f} times it "
            f"(> {MAX_LEAK_SPREAD}): taken as stained nuclei, kept"
        )
    return without_leak(vectors, leak), f"{LEAK_TURNED}: nuclei's DAB leak {leak:.2f} > {MAX_HAEMATOXYLIN_LEAK}"
