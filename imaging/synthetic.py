"""Deterministic synthetic plates with ground truth, for the demo and the tests.

A plate is laid out as genotype x biological replicate in rows and treatments in
columns; every well gets ``sites`` fields. Each field is rendered from a known cell
layout, so the truth is exact: nuclei labels, which cells are SA-beta-gal positive, and
each cell's nuclear and cytoplasmic pJNK.

Rendering (deliberately independent of the analysis code):

- nuclei: ellipses of random size and orientation placed so that some touch; DAPI
  brightness varies per nucleus and has texture, optics blur (sigma 1 px), multiplicative
  vignetting (uneven illumination), an additive background and Poisson-like noise;
- brightfield: a tinted white light with vignetting, faint grey absorbance of cell bodies,
  and for positive cells a granular blue-green X-gal deposit in the cytoplasm, composed by
  Beer-Lambert from an X-gal OD vector that is *not* the analysis default;
- pJNK: nuclear and cytoplasmic levels per cell (well mean x per-cell log-normal
  scatter), same optics, vignetting and noise;
- one chosen field per plate can be defocused (Gaussian blur) to exercise QC.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import draw, segmentation

from imaging.io.wells import format_well
from imaging.io.writers import write_csv

GENOTYPES = ("sgNT", "MAP2K7")
TREATMENTS = ("DMSO", "TAM", "PALBO", "TAM+PALBO")
# Planted biology: senescence rises with treatment; the knockout blunts the combination.
SABGAL_TRUE_FRACTION = {
    "sgNT": {"DMSO": 0.05, "TAM": 0.20, "PALBO": 0.45, "TAM+PALBO": 0.70},
    "MAP2K7": {"DMSO": 0.05, "TAM": 0.15, "PALBO": 0.35, "TAM+PALBO": 0.35},
}
# Nuclear pJNK (background-subtracted grey levels): drugs activate JNK; MAP2K7 loss blunts it.
PJNK_TRUE_NUCLEAR = {
    "sgNT": {"DMSO": 300.0, "TAM": 600.0, "PALBO": 450.0, "TAM+PALBO": 900.0},
    "MAP2K7": {"DMSO": 250.0, "TAM": 330.0, "PALBO": 290.0, "TAM+PALBO": 380.0},
}
TRUE_XGAL_VECTOR = (0.80, 0.56, 0.22)  # differs from the analysis default on purpose
# Drugs slow proliferation: fewer cells per field (relative density).
TREATMENT_DENSITY = {"DMSO": 1.0, "TAM": 0.85, "PALBO": 0.7, "TAM+PALBO": 0.55}


@dataclasses.dataclass(frozen=True)
class FieldLayout:
    """Known truth of one rendered field."""

    nuclei: np.ndarray  # int32 labels
    cells: np.ndarray  # int32 labels, same ids


def place_nuclei(
    shape: tuple[int, int], *, radius: float, density: float, rng: np.random.Generator, touching: float = 0.3
) -> np.ndarray:
    """Label image of elliptical nuclei; ``density`` is the fraction of area covered.

    Centres are placed at random with a minimum spacing; a fraction ``touching`` of
    nuclei may sit closer, so that they touch their neighbour.
    """
    labels = np.zeros(shape, dtype=np.int32)
    target = int(density * shape[0] * shape[1] / (np.pi * radius**2))
    centres: list[tuple[float, float, float]] = []
    attempts = 0
    while len(centres) < target and attempts < target * 200:
        attempts += 1
        r = radius * rng.uniform(0.8, 1.2)
        c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        spacing = 1.7 if rng.random() < touching else 2.3
        if any((c[0] - p[0]) ** 2 + (c[1] - p[1]) ** 2 < (spacing * (r + p[2]) / 2) ** 2 for p in centres):
            continue
        centres.append((c[0], c[1], r))
        elongation = rng.uniform(1.0, 1.35)
        rr, cc = draw.ellipse(c[0], c[1], r * elongation, r / elongation, shape=shape, rotation=rng.uniform(0, np.pi))
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = len(centres)
    return labels


def derive_cell_truth(nuclei: np.ndarray, *, radius: float, rng: np.random.Generator) -> np.ndarray:
    """True cell bodies: nuclei grown by ~1.1 radii with a ragged outline."""
    grown = segmentation.expand_labels(nuclei, distance=1.3 * radius)
    ragged = ndi.gaussian_filter(rng.normal(size=nuclei.shape), radius / 2)
    distance = ndi.distance_transform_edt(nuclei == 0)
    keep = distance <= radius * (1.1 + 0.6 * ragged / (ragged.std() + 1e-9) * 0.3)
    return np.where((grown > 0) & (keep | (nuclei > 0)), grown, 0).astype(np.int32)


def vignetting(shape: tuple[int, int], *, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative illumination field: 1 at a random bright spot, falling to 1 - strength."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    centre = rng.uniform(0.3, 0.7, size=2) * np.array(shape)
    distance = np.hypot(rows - centre[0], cols - centre[1]) / np.hypot(*shape)
    return 1.0 - strength * (distance / distance.max()) ** 2


def _noisy(expected: np.ndarray, rng: np.random.Generator, *, gain: float, read_noise: float) -> np.ndarray:
    """Shot noise (Poisson in photo-electrons, via its Gaussian limit) plus read noise."""
    shot = rng.normal(size=expected.shape) * np.sqrt(np.maximum(expected, 0) * gain)
    return expected + shot + rng.normal(scale=read_noise, size=expected.shape)


def _per_label(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Image that holds ``values[k - 1]`` on label ``k`` and 0 on background."""
    lookup = np.concatenate([[0.0], values])
    return lookup[labels]


def render_dapi(
    nuclei: np.ndarray, *, rng: np.random.Generator, illumination: np.ndarray, blur: float = 0.0
) -> np.ndarray:
    """uint16 DAPI image of ``nuclei``."""
    n = int(nuclei.max())
    brightness = rng.lognormal(np.log(1500), 0.25, size=n)
    texture = 1 + 0.15 * ndi.gaussian_filter(rng.normal(size=nuclei.shape), 1.5) / 0.2
    signal = _per_label(brightness, nuclei) * texture
    signal = ndi.gaussian_filter(signal, 1.0 + blur)
    expected = 120 + signal * illumination
    return np.clip(_noisy(expected, rng, gain=1.0, read_noise=6), 0, 65535).astype(np.uint16)


def render_brightfield(
    nuclei: np.ndarray,
    cells: np.ndarray,
    positive: np.ndarray,
    *,
    rng: np.random.Generator,
    illumination: np.ndarray,
    blur: float = 0.0,
) -> np.ndarray:
    """uint8 RGB brightfield of SA-beta-gal staining; ``positive[k - 1]`` for cell ``k``."""
    n = int(cells.max())
    cytoplasm = (cells > 0) & (nuclei == 0)
    granules = np.clip(ndi.gaussian_filter(rng.normal(size=cells.shape), 1.2) / 0.13, -1, None) + 1.2
    amount = rng.lognormal(np.log(0.2), 0.3, size=n) * positive + rng.uniform(0, 0.02, size=n)
    xgal = _per_label(amount, cells) * granules * (cytoplasm + 0.3 * (nuclei > 0))
    neutral = 0.035 * (cells > 0) + 0.03 * (nuclei > 0)
    od = xgal[..., None] * np.asarray(TRUE_XGAL_VECTOR) + neutral[..., None] * np.ones(3) / np.sqrt(3)
    od = ndi.gaussian_filter(od, (1.0 + blur, 1.0 + blur, 0))
    white = np.array([228.0, 232.0, 236.0]) * illumination[..., None]
    expected = white * 10 ** (-od)
    return np.clip(np.round(_noisy(expected, rng, gain=0.05, read_noise=1.5)), 0, 255).astype(np.uint8)


def render_pjnk(
    nuclei: np.ndarray,
    cells: np.ndarray,
    nuclear: np.ndarray,
    cytoplasmic: np.ndarray,
    *,
    rng: np.random.Generator,
    illumination: np.ndarray,
    blur: float = 0.0,
) -> np.ndarray:
    """uint16 pJNK image with per-cell nuclear and cytoplasmic levels."""
    cytoplasm = np.where(nuclei > 0, 0, cells)
    signal = _per_label(nuclear, nuclei) + _per_label(cytoplasmic, cytoplasm)
    signal = ndi.gaussian_filter(signal, 1.0 + blur)
    expected = 200 + signal * illumination
    return np.clip(_noisy(expected, rng, gain=1.0, read_noise=8), 0, 65535).astype(np.uint16)


def plate_layout(
    genotypes=GENOTYPES, treatments=TREATMENTS, replicates: int = 2, replicate: int | None = None
) -> pd.DataFrame:
    """Plate map: rows = genotype x ``replicates`` rows, columns = treatments.

    Each row of a genotype is a biological replicate (1, 2, ...), unless ``replicate`` is
    given: then the whole plate is that one replicate and its rows are technical wells.
    """
    rows = []
    for g, genotype in enumerate(genotypes):
        for r in range(replicates):
            row = g * replicates + r + 1
            for c, treatment in enumerate(treatments, start=1):
                rows.append(
                    {
                        "well": format_well(row, c),
                        "cell_line": "MCF7",
                        "genotype": genotype,
                        "treatment": treatment,
                        "replicate": replicate if replicate is not None else r + 1,
                    }
                )
    return pd.DataFrame(rows)


def _write_tiff(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, compression="zlib", photometric="rgb" if image.ndim == 3 else "minisblack")


def make_plate(
    out_dir: str | Path,
    *,
    assay: str,
    plate: str | None = None,
    size: int = 256,
    sites: int = 2,
    radius: float = 8.0,
    density: float = 0.22,
    replicates: int = 2,
    illumination_strength: float = 0.35,
    defocus: tuple[str, int] | None = ("B03", 1),
    defocus_sigma: float = 4.0,
    replicate: int | None = None,
    biological_cv: float = 0.0,
    seed: int = 0,
) -> dict[str, Path]:
    """Render a synthetic plate with ImageXpress naming, its plate map and its truth.

    Parameters
    ----------
    out_dir : path
        Receives ``images/`` (the plate folder), ``platemap.csv``, ``truth_cells.csv``
        (one row per true cell), ``truth_wells.csv`` and ``truth/`` (nuclei labels).
    assay : {'sabgal', 'pjnk'}
        ``sabgal``: w1 brightfield RGB, w2 DAPI. ``pjnk``: w1 DAPI, w2 pJNK.
    defocus : (well, site) or None
        Field rendered out of focus.
    replicate : int, optional
        Make the whole plate one biological replicate (see :func:`plate_layout`).
    biological_cv : float
        Replicate-to-replicate variation: every planted level of the plate is multiplied
        by one log-normal factor with this coefficient of variation.

    Returns
    -------
    dict
        Paths of ``images``, ``platemap``, ``truth_cells``, ``truth_wells``.
    """
    if assay not in ("sabgal", "pjnk"):
        raise ValueError("assay must be 'sabgal' or 'pjnk'")
    out_dir = Path(out_dir)
    plate = plate or assay.upper() + "01"
    rng = np.random.default_rng(seed)
    layout = plate_layout(replicates=replicates, replicate=replicate)
    day_factor = float(rng.lognormal(0.0, biological_cv)) if biological_cv else 1.0
    truth_rows = []
    for well in layout.itertuples(index=False):
        for site in range(1, sites + 1):
            field_density = density * TREATMENT_DENSITY.get(well.treatment, 1.0) * rng.uniform(0.85, 1.15)
            nuclei = place_nuclei((size, size), radius=radius, density=field_density, rng=rng)
            cells = derive_cell_truth(nuclei, radius=radius, rng=rng)
            n = int(nuclei.max())
            illumination = vignetting((size, size), strength=illumination_strength, rng=rng)
            blur = defocus_sigma if defocus == (well.well, site) else 0.0
            stem = out_dir / "images" / f"{plate}_{well.well}_s{site}"
            dapi = render_dapi(nuclei, rng=rng, illumination=illumination, blur=blur)
            cell_truth = {"well": well.well, "site": site, "label": np.arange(1, n + 1), "defocused": blur > 0}
            if assay == "sabgal":
                positive = rng.random(n) < min(1.0, day_factor * SABGAL_TRUE_FRACTION[well.genotype][well.treatment])
                rgb = render_brightfield(nuclei, cells, positive, rng=rng, illumination=illumination, blur=blur)
                _write_tiff(Path(f"{stem}_w1.tif"), rgb)
                _write_tiff(Path(f"{stem}_w2.tif"), dapi)
                cell_truth["sabgal_positive"] = positive
            else:
                level = day_factor * PJNK_TRUE_NUCLEAR[well.genotype][well.treatment]
                nuclear = level * rng.lognormal(0, 0.25, size=n)
                cytoplasmic = 0.35 * level * rng.lognormal(0, 0.25, size=n)
                pjnk = render_pjnk(nuclei, cells, nuclear, cytoplasmic, rng=rng, illumination=illumination, blur=blur)
                _write_tiff(Path(f"{stem}_w1.tif"), dapi)
                _write_tiff(Path(f"{stem}_w2.tif"), pjnk)
                cell_truth["pjnk_nuclear"] = nuclear
                cell_truth["pjnk_cytoplasmic"] = cytoplasmic
            truth_rows.append(pd.DataFrame(cell_truth))
            _write_tiff(out_dir / "truth" / f"{plate}_{well.well}_s{site}_nuclei.tif", nuclei.astype(np.uint16))
    truth_cells = pd.concat(truth_rows, ignore_index=True)
    truth_cells.insert(0, "plate", plate)
    write_csv(layout, out_dir / "platemap.csv")
    write_csv(truth_cells, out_dir / "truth_cells.csv")
    write_csv(truth_wells(truth_cells, assay), out_dir / "truth_wells.csv")
    return {
        "images": out_dir / "images",
        "platemap": out_dir / "platemap.csv",
        "truth_cells": out_dir / "truth_cells.csv",
        "truth_wells": out_dir / "truth_wells.csv",
    }


def truth_wells(truth_cells: pd.DataFrame, assay: str, *, exclude_defocused: bool = True) -> pd.DataFrame:
    """Per-well truth: cell count and, per assay, percent positive or mean nuclear pJNK.

    Defocused fields are left out by default, as the pipeline's QC leaves them out.
    """
    cells = truth_cells[~truth_cells["defocused"]] if exclude_defocused else truth_cells
    grouped = cells.groupby(["plate", "well"], sort=True)
    table = grouped.size().rename("true_n_cells").reset_index()
    if assay == "sabgal":
        table["true_sabgal_positive_pct"] = grouped["sabgal_positive"].mean().to_numpy() * 100
    else:
        table["true_pjnk_nuclear_mean"] = grouped["pjnk_nuclear"].mean().to_numpy()
    return table


def make_sample_images(root: str | Path) -> None:
    """(Re)generate the synthetic plates shipped in ``sample_images/``."""
    root = Path(root)
    make_plate(root / "sabgal_plate", assay="sabgal", seed=0)
    make_plate(root / "pjnk_plate", assay="pjnk", seed=1)


if __name__ == "__main__":  # python -m imaging.synthetic sample_images
    import sys

    make_sample_images(sys.argv[1] if len(sys.argv) > 1 else "sample_images")
