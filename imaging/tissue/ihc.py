"""IHC positive-cell scoring (QuPath-style) and its per-region summaries.

Per tile: nuclei are found on the nuclear optical density of the colour deconvolution
(haematoxylin + DAB for nuclear stains, haematoxylin alone for cytoplasmic and membranous
ones; :mod:`imaging.tissue.nuclei`), cells are nuclei grown by a fixed reach, and each
cell's mean DAB optical density in the chosen compartment sets its intensity class: 0
(below the first threshold), 1+, 2+, 3+. Compartments: ``nucleus`` (its half-maximum core,
see :func:`nucleus_cores`: Ki67, nuclear pJNK, ER), ``cytoplasm`` (cell minus nucleus),
``membrane`` (the cell's outer band, :func:`membrane_ring`: MHCII, HER2) and ``cell``.
QuPath's positive cell detection uses the same three thresholds (0.2, 0.4, 0.6 on the
nucleus DAB OD mean by default).

Region summaries:

- percent positive: cells of class 1+ or more;
- H-score: ``1 x %1+ + 2 x %2+ + 3 x %3+`` (0-300);
- Allred score: proportion score (0: none, 1: < 1 %, 2: 1-10 %, 3: 10-33 %, 4: 33-66 %,
  5: > 66 % positive) plus intensity score (1-3: the average class of the positive cells,
  rounded; 0 without positive cells), 0-8;
- positive cells (and all cells) per mm^2 of tissue.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import segmentation

from imaging import arrays
from imaging.distance import expand_labels
from imaging.features.morphology import ellipse_axes, label_moments
from imaging.label_stats import label_means
from imaging.stains.vectors import stain_amounts
from imaging.tissue.nuclei import detect_nuclei, detection_cap, detection_channel, nucleus_scale

CELL_COLUMNS = [
    "centroid_row",
    "centroid_col",
    "nucleus_area_px",
    "nucleus_elongation",
    "hematoxylin_od_mean",
    "dab_od_mean",
    "dab_class",
    "positive",
    "counted",
]
CLASS_NAMES = ("Negative", "1+", "2+", "3+")  # QuPath's names for the intensity classes
COMPARTMENTS = ("nucleus", "cytoplasm", "cell", "membrane")


def intensity_class(values, thresholds) -> np.ndarray:
    """0, 1, 2 or 3 for values below the first threshold, between, ..., above the third.

    Parameters
    ----------
    values : array_like of float
        DAB OD per cell.
    thresholds : sequence of 3 float
        The 1+, 2+ and 3+ cut-offs, ascending.

    Returns
    -------
    ndarray of int
        A value equal to a threshold takes the higher class.
    """
    return np.searchsorted(np.asarray(thresholds, dtype=float), np.asarray(values, dtype=float), side="right")


def nucleus_cores(nuclei: np.ndarray, nuclear_od: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Each nucleus reduced to its pixels above ``fraction`` of its own peak nuclear OD
    (95th percentile): the stained body, without the blurred rim that segmentation adds
    and that would dilute a nuclear mean.

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels.
    nuclear_od : (M, N) ndarray
        The detection channel.
    fraction : float
        Share of its peak a core pixel has at least.

    Returns
    -------
    (M, N) ndarray of int
        Cores, same ids; a nucleus with no pixel above keeps its pixels.
    """
    arrays.check_same_shape(nuclear_od, nuclei, names=("nuclear_od", "nuclei"))
    n = int(nuclei.max())
    if n == 0:
        return nuclei
    peaks = np.zeros(n + 1)
    peaks[1:] = ndi.labeled_comprehension(
        nuclear_od, nuclei, np.arange(1, n + 1), lambda v: np.percentile(v, 95), float, 0.0
    )
    core = np.where(nuclear_od >= fraction * peaks[nuclei], nuclei, 0)
    return with_fallback(core, nuclei)  # a nucleus whose core vanished (flat, noisy) keeps its area


def with_fallback(compartment: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``compartment`` labels, where each label of ``fallback`` that has no pixel there takes
    its ``fallback`` pixels: every cell keeps a compartment to be measured over.

    Parameters
    ----------
    compartment : (M, N) ndarray of int
        A compartment's labels.
    fallback : (M, N) ndarray of int
        The labels to fall back on (cells or nuclei).

    Returns
    -------
    (M, N) ndarray of int
    """
    missing = np.setdiff1d(np.unique(fallback), np.unique(compartment))
    missing = missing[missing > 0]
    if missing.size:
        keep = np.isin(fallback, missing)
        compartment = compartment.copy()
        compartment[keep] = fallback[keep]
    return compartment


def membrane_ring(cells: np.ndarray, nuclei: np.ndarray, *, width_px: float) -> np.ndarray:
    """Each cell's outer band, ``width_px`` wide, outside its nucleus: where a membranous
    stain (MHCII on antigen-presenting cells, HER2) sits. Cells that end at their nucleus
    (no cytoplasm in reach) keep their cell pixels, so every cell has a compartment.

    Parameters
    ----------
    cells : (M, N) ndarray of int
        Cell labels.
    nuclei : (M, N) ndarray of int
        Nucleus labels (same ids).
    width_px : float
        The band's width.

    Returns
    -------
    (M, N) ndarray of int
    """
    arrays.check_same_shape(nuclei, cells, names=("nuclei", "cells"))
    edge = segmentation.find_boundaries(cells, mode="inner") & (cells > 0)
    band = ndi.distance_transform_edt(~edge) <= width_px
    return with_fallback(np.where(band & (nuclei == 0), cells, 0), cells)


def compartment_labels(
    nuclei: np.ndarray, cells: np.ndarray, compartment: str, *, nuclear_od: np.ndarray, membrane_px: float
) -> np.ndarray:
    """The pixels over which each cell's DAB is averaged for its call.

    Parameters
    ----------
    nuclei : (M, N) ndarray of int
        Nucleus labels.
    cells : (M, N) ndarray of int
        Cell labels (same ids).
    compartment : {"nucleus", "cytoplasm", "membrane", "cell"}
        Nucleus cores (:func:`nucleus_cores`), the cell without its nucleus, the membrane ring
        (:func:`membrane_ring`) or the whole cell.
    nuclear_od : (M, N) ndarray
        The detection channel, for nucleus cores.
    membrane_px : float
        The membrane ring's width.

    Returns
    -------
    (M, N) ndarray of int
        Every cell has pixels (a cell without the compartment falls back on its cell or nucleus).

    Raises
    ------
    ValueError
        For an unknown compartment.
    """
    if compartment == "nucleus":
        return nucleus_cores(nuclei, nuclear_od)
    if compartment == "cytoplasm":  # a cell without cytoplasm in reach is measured over its nucleus
        return with_fallback(np.where(nuclei > 0, 0, cells), cells)
    if compartment == "membrane":
        return membrane_ring(cells, nuclei, width_px=membrane_px)
    if compartment == "cell":
        return cells
    raise ValueError(f"unknown compartment {compartment!r}; use one of {', '.join(COMPARTMENTS)}")


def detects_with_dab(compartment: str, detection: str = "auto") -> bool:
    """Whether nuclei are to be detected on haematoxylin + DAB (nuclear stains) or on
    haematoxylin alone (cytoplasmic and membranous stains, where DAB outlines cells).

    Parameters
    ----------
    compartment : str
        The compartment scored.
    detection : {"auto", "nuclear_od", "hematoxylin"}
        The pipeline's choice; ``auto`` follows the compartment.

    Returns
    -------
    bool
    """
    if detection == "auto":
        return compartment == "nucleus"
    return detection == "nuclear_od"


def detection_image(
    hematoxylin: np.ndarray,
    dab: np.ndarray,
    *,
    compartment: str,
    detection: str,
    radius_px: float | None,
    pixel_size_um: float | None,
) -> tuple[np.ndarray, float, dict]:
    """The channel nuclei are found on, the nucleus scale, and what was chosen and why.

    Parameters
    ----------
    hematoxylin, dab : (M, N) ndarray
        Stain amounts of the tile.
    compartment : str
        The compartment scored (:func:`detects_with_dab`).
    detection : str
        The pipeline's detection channel setting.
    radius_px : float or None
        The nucleus radius, or None to take it from the pixel size and the image
        (:func:`imaging.tissue.nuclei.nucleus_scale`).
    pixel_size_um : float or None
        The image's pixel size.

    Returns
    -------
    channel : (M, N) ndarray of float32
    radius : float
        Nucleus radius (px).
    info : dict
        ``radius_px``, ``radius_source`` and ``detection``, for the record.
    """
    with_dab = detects_with_dab(compartment, detection)
    channel = detection_channel(hematoxylin, dab, include_dab=with_dab)
    if radius_px is None:
        radius, source = nucleus_scale(channel, pixel_size_um=pixel_size_um)
    else:
        radius, source = float(radius_px), "pipeline"
    return (
        channel,
        radius,
        {"radius_px": radius, "radius_source": source, "detection": "nuclear_od" if with_dab else "hematoxylin"},
    )


@dataclasses.dataclass(frozen=True, eq=False)
class FoundNuclei:
    """A tile's nuclei and the stain amounts they were found on (:func:`find_nuclei`)."""

    hematoxylin: np.ndarray
    dab: np.ndarray
    nuclear_od: np.ndarray  # the detection channel
    nuclei: np.ndarray  # int32 labels 1..n
    info: dict  # radius_px, radius_source, detection


def find_nuclei(
    rgb: np.ndarray,
    *,
    vectors: dict,
    white,
    compartment: str = "nucleus",
    detection: str = "auto",
    nucleus_radius_px: float | None = None,
    pixel_size_um: float | None = None,
) -> FoundNuclei:
    """The nuclei of one RGB tile: stain amounts, detection channel, scale and labels, the
    first half of :func:`score_cells` (which takes its parameters' meanings).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        The tile.
    vectors : dict
        ``hematoxylin`` and ``dab`` unit OD vectors.
    white : (3,) array
        Glass brightness per channel.
    compartment : str
        The compartment scored (it chooses the detection channel with ``detection``).
    detection : {'auto', 'nuclear_od', 'hematoxylin'}
        Channel the nuclei are found on (:func:`detects_with_dab`).
    nucleus_radius_px : float, optional
        Typical nucleus radius; estimated from the tile when None.
    pixel_size_um : float, optional
        Bounds an estimated nucleus scale.

    Returns
    -------
    FoundNuclei
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"IHC scoring needs an (M, N, 3) RGB tile, got shape {rgb.shape}")
    amounts = stain_amounts(rgb, vectors, white=white)
    hematoxylin, dab = amounts["hematoxylin"], amounts["dab"]
    nuclear_od, radius, info = detection_image(
        hematoxylin,
        dab,
        compartment=compartment,
        detection=detection,
        radius_px=nucleus_radius_px,
        pixel_size_um=pixel_size_um,
    )
    nuclei = detect_nuclei(nuclear_od, radius=radius, cap=detection_cap(hematoxylin, radius=radius))
    return FoundNuclei(hematoxylin, dab, nuclear_od, nuclei, info)


def score_cells(
    rgb: np.ndarray,
    *,
    vectors: dict,
    white,
    thresholds,
    compartment: str = "nucleus",
    nucleus_radius_px: float | None = None,
    pixel_size_um: float | None = None,
    expansion_px: float = 6.0,
    detection: str = "auto",
    keep: np.ndarray | None = None,
    max_elongation: float | None = None,
    found: FoundNuclei | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """Score the cells of one RGB tile (see module docstring).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray
        The tile (core and margin).
    vectors : dict
        ``hematoxylin`` and ``dab`` unit OD vectors.
    white : (3,) array
        Glass brightness per channel.
    thresholds : three floats
        DAB OD limits of 1+, 2+, 3+.
    compartment : {'nucleus', 'cytoplasm', 'cell', 'membrane'}
        Where each cell's DAB is measured for its call.
    nucleus_radius_px : float, optional
        Typical nucleus radius; estimated from the tile when None
        (:func:`imaging.tissue.nuclei.nucleus_scale`, bounded by ``pixel_size_um``).
    pixel_size_um : float, optional
        The image's pixel size: bounds an estimated nucleus scale.
    expansion_px : float
        Farthest a cell reaches beyond its nucleus (px).
    detection : {'auto', 'nuclear_od', 'hematoxylin'}
        Channel the nuclei are found on (:func:`detects_with_dab`).
    keep : (M, N) bool ndarray, optional
        Cells whose nucleus centre falls outside are dropped (tissue, tile core).
    max_elongation : float, optional
        Nuclei more elongated (major / minor axis) are spindle cells: ``counted`` False.
    found : FoundNuclei, optional
        :func:`find_nuclei` of this ``rgb`` with these ``vectors``, ``white``, scale and
        detection channel, when the caller has it (it is not found again).

    Returns
    -------
    cells : DataFrame
        One row per cell (:data:`CELL_COLUMNS`, plus ``label``).
    nuclei, cell_labels : (M, N) int32 ndarrays
    info : dict
        ``radius_px`` and ``radius_source`` of the nucleus scale used, and the
        ``detection`` channel (:func:`detection_image`).
    """
    if found is None:
        found = find_nuclei(
            rgb,
            vectors=vectors,
            white=white,
            compartment=compartment,
            detection=detection,
            nucleus_radius_px=nucleus_radius_px,
            pixel_size_um=pixel_size_um,
        )
    if keep is not None and np.shape(keep) != found.nuclei.shape:
        raise ValueError(f"keep mask shape {np.shape(keep)} differs from the tile's {found.nuclei.shape}")
    hematoxylin, dab, nuclear_od, nuclei = found.hematoxylin, found.dab, found.nuclear_od, found.nuclei
    info = found.info
    cells = expand_labels(nuclei, distance=expansion_px).astype(np.int32)
    n = int(nuclei.max())
    if n == 0:
        return pd.DataFrame(columns=["label", *CELL_COLUMNS]), nuclei, cells, info
    ids = np.arange(1, n + 1)
    moments = label_moments(nuclei)
    centroids = np.stack([moments["row"][ids], moments["col"][ids]], axis=1)
    _, major, minor = ellipse_axes(moments["mu20"][ids], moments["mu02"][ids], moments["mu11"][ids])
    measured = compartment_labels(
        nuclei, cells, compartment, nuclear_od=nuclear_od, membrane_px=max(1.0, expansion_px / 2)
    )  # the outer half of the reach
    dab_mean = label_means(dab, measured, ids)[0]
    classes = intensity_class(dab_mean, thresholds)
    table = pd.DataFrame(
        {
            "label": ids,
            "centroid_row": centroids[:, 0],
            "centroid_col": centroids[:, 1],
            "nucleus_area_px": moments["area"][ids].astype(np.int64),
            "nucleus_elongation": major / np.maximum(minor, 1e-9),  # major / minor axis of the fitted ellipse
            "hematoxylin_od_mean": label_means(hematoxylin, nuclei, ids)[0],
            "dab_od_mean": dab_mean,
            "dab_class": classes,
            "positive": classes >= 1,
        }
    )
    table["counted"] = True if max_elongation is None else table["nucleus_elongation"] <= max_elongation
    if keep is not None:
        rows = np.clip(np.round(table["centroid_row"]).astype(int), 0, keep.shape[0] - 1)
        cols = np.clip(np.round(table["centroid_col"]).astype(int), 0, keep.shape[1] - 1)
        table = table[keep[rows, cols]].reset_index(drop=True)
    return table, nuclei, cells, info


def allred_proportion(percent_positive: float) -> int:
    """Allred proportion score (0-5) from percent positive cells.

    Parameters
    ----------
    percent_positive : float
        0 to 100.

    Returns
    -------
    int
        0 (none), 1 (up to 1 %), 2 (up to 10 %), 3 (up to a third), 4 (up to two thirds), 5 (more).
    """
    if not np.isfinite(percent_positive) or percent_positive <= 0:
        return 0
    return int(np.searchsorted([1, 10, 100 / 3, 200 / 3], percent_positive, side="left") + 1)


def summarize_scores(classes, tissue_area_mm2: float | None) -> dict:
    """Counts, percent positive, H-score, Allred and densities of a set of scored cells.

    Parameters
    ----------
    classes : array_like of int
        The cells' intensity classes (0-3).
    tissue_area_mm2 : float or None
        The area they were found in, for densities.

    Returns
    -------
    dict
        ``n_cells``, ``n_0`` ... ``n_3plus``, ``percent_positive``, ``h_score`` (0-300),
        ``allred_proportion``, ``allred_intensity``, ``allred_score``, ``tissue_area_mm2``,
        ``cells_per_mm2``, ``positive_cells_per_mm2`` (NaN where undefined).
    """
    classes = np.asarray(classes, dtype=int)
    n = int(classes.size)
    counts = np.bincount(classes, minlength=4)[:4]
    percents = 100 * counts / n if n else np.full(4, np.nan)
    positive = int(counts[1:].sum())
    percent_positive = 100 * positive / n if n else np.nan
    intensity = int(np.round(classes[classes >= 1].mean())) if positive else 0
    proportion = allred_proportion(percent_positive)
    area = tissue_area_mm2 if tissue_area_mm2 and tissue_area_mm2 > 0 else np.nan
    return {
        "n_cells": n,
        "n_0": int(counts[0]),
        "n_1plus": int(counts[1]),
        "n_2plus": int(counts[2]),
        "n_3plus": int(counts[3]),
        "percent_positive": percent_positive,
        "h_score": float(percents[1] + 2 * percents[2] + 3 * percents[3]) if n else np.nan,
        "allred_proportion": proportion,
        "allred_intensity": intensity,
        "allred_score": proportion + intensity if positive else 0,
        "tissue_area_mm2": tissue_area_mm2 if tissue_area_mm2 else np.nan,
        "cells_per_mm2": n / area,
        "positive_cells_per_mm2": positive / area,
    }
