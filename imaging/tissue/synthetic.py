"""Synthetic tissue with ground truth: IHC tiles with known cell classes, and whole
sections with planted lesions written as pyramidal OME-TIFF of any size.

Sections are defined analytically (tissue ellipses, lesion discs, a smooth texture field),
so any region of any pyramid level is rendered directly at its resolution, tile by tile:
a 40,000 x 40,000 px section is written without ever existing in memory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import draw

from imaging.io.writers import atomic_path
from imaging.stains.optical import STAIN_VECTORS, unit

GLASS = np.array([242.0, 240.0, 238.0])
# DAB OD per intensity class (nuclear mean), midway between QuPath's 0.2 / 0.4 / 0.6 limits.
CLASS_DAB_OD = (0.08, 0.30, 0.50, 0.80)


def _rgb_from_od(od: np.ndarray, rng: np.random.Generator, noise: float = 2.0) -> np.ndarray:
    rgb = GLASS * 10 ** (-od) + rng.normal(0, noise, od.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def nucleus_centres(rng, size: int, radius: float, n: int, *, spacing: float, attempts_per_nucleus: int):
    """Yield up to ``n`` random centres at least ``spacing * radius`` apart. A generator, so
    the caller draws its own random numbers between centres (the sequence is deterministic)."""
    accepted: list[tuple[float, float]] = []
    attempts = 0
    while len(accepted) < n and attempts < attempts_per_nucleus * n:
        attempts += 1
        r, c = rng.uniform(radius, size - radius, 2)
        if any((r - pr) ** 2 + (c - pc) ** 2 < (spacing * radius) ** 2 for pr, pc in accepted):
            continue
        accepted.append((r, c))
        yield r, c


def make_ihc_image(
    size: int = 512,
    *,
    n_nuclei: int = 160,
    class_fractions=(0.5, 0.2, 0.15, 0.15),
    nucleus_radius: float = 6.0,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """An H-DAB image of a tissue field with cells of known DAB class.

    DAB sits in the nucleus (nuclear staining, like pJNK), at the OD of the cell's class
    (:data:`CLASS_DAB_OD`) with +-15 % scatter; every nucleus carries haematoxylin; the
    tissue between cells has a faint haematoxylin counterstain.

    Returns
    -------
    rgb : (size, size, 3) uint8
    truth : DataFrame
        ``label``, ``row``, ``col``, ``dab_class``, ``dab_od``, ``positive``.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    rows = []
    for r, c in nucleus_centres(rng, size, nucleus_radius, n_nuclei, spacing=2.4, attempts_per_nucleus=50):
        radius = nucleus_radius * rng.uniform(0.85, 1.15)
        rr, cc = draw.ellipse(r, c, radius * 1.15, radius / 1.15, shape=labels.shape, rotation=rng.uniform(0, np.pi))
        label = len(rows) + 1
        labels[rr, cc] = label
        cls = int(rng.choice(4, p=class_fractions))
        rows.append(
            {
                "label": label,
                "row": r,
                "col": c,
                "dab_class": cls,
                "dab_od": CLASS_DAB_OD[cls] * rng.uniform(0.85, 1.15),
            }
        )
    truth = pd.DataFrame(rows)
    lookup_dab = np.concatenate([[0.0], truth["dab_od"].to_numpy()])
    hematoxylin = 0.45 * (labels > 0) + 0.06 + 0.02 * ndi.gaussian_filter(rng.normal(size=labels.shape), 2)
    dab = lookup_dab[labels]
    od = hematoxylin[..., None] * unit(STAIN_VECTORS["hematoxylin"]) + dab[..., None] * unit(STAIN_VECTORS["dab"])
    od = ndi.gaussian_filter(od, (0.5, 0.5, 0))
    truth["positive"] = truth["dab_class"] >= 1
    return _rgb_from_od(od, rng), truth


def make_ki67_field(
    size: int = 384, *, nucleus_radius: float = 12.0, n_nuclei: int = 70, positive_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """A Ki67-like H-DAB field as real tiles show it: pale negative nuclei (haematoxylin
    0.10-0.18 OD, half of them vesicular: a darker rim round a paler centre) beside dark
    DAB-positive ones (DAB 1-2 OD), on stroma with a faint uneven counterstain.

    Returns ``(rgb, truth)``; truth has ``row``, ``col``, ``positive`` per nucleus.
    """
    rng = np.random.default_rng(seed)
    hematoxylin = 0.03 + 0.015 * ndi.gaussian_filter(rng.normal(size=(size, size)), 3) * 10
    hematoxylin = np.clip(hematoxylin, 0, None)
    dab = np.zeros((size, size))
    rows = []
    for r, c in nucleus_centres(rng, size, nucleus_radius, n_nuclei, spacing=2.3, attempts_per_nucleus=100):
        radius = nucleus_radius * rng.uniform(0.8, 1.2)
        rr, cc = draw.ellipse(r, c, radius * 1.2, radius / 1.2, shape=(size, size), rotation=rng.uniform(0, np.pi))
        positive = bool(rng.random() < positive_fraction)
        if positive:
            dab[rr, cc] = rng.uniform(1.0, 2.0)
            hematoxylin[rr, cc] += 0.1
        else:
            level = rng.uniform(0.10, 0.18)
            distance = np.hypot((rr - r) / (radius * 1.2), (cc - c) / (radius * 1.2))
            vesicular = rng.random() < 0.5
            hematoxylin[rr, cc] += level * (0.5 + 0.7 * distance) if vesicular else level
        rows.append({"row": r, "col": c, "positive": positive})
    od = hematoxylin[..., None] * unit(STAIN_VECTORS["hematoxylin"]) + dab[..., None] * unit(STAIN_VECTORS["dab"])
    od = ndi.gaussian_filter(od, (1.0, 1.0, 0))
    return _rgb_from_od(od, rng), pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class SyntheticSection:
    """An H&E section: tissue ellipses on glass with dense (haematoxylin-rich) lesion discs.

    Geometry is in micrometres: ``tissue`` holds (centre_row, centre_col, half_height,
    half_width) ellipses; ``lesions`` holds (centre_row, centre_col, radius) discs, each
    inside the tissue.
    """

    shape: tuple[int, int]  # full-resolution pixels
    pixel_size_um: float
    tissue: tuple[tuple[float, float, float, float], ...]
    lesions: tuple[tuple[float, float, float], ...]
    seed: int = 0
    texture_um: float = 16.0

    @property
    def lesion_areas_um2(self) -> np.ndarray:
        return np.array([np.pi * r**2 for _, _, r in self.lesions])

    @property
    def tissue_area_um2(self) -> float:
        """Area of the union of the tissue ellipses (ellipses may overlap), on a 4 um grid."""
        step = 4.0
        height, width = self.shape[0] * self.pixel_size_um, self.shape[1] * self.pixel_size_um
        y, x = np.mgrid[step / 2 : height : step, step / 2 : width : step]
        return float(self._in_tissue(y, x).sum() * step**2)

    def _in_tissue(self, y, x):
        inside = np.zeros(np.broadcast(y, x).shape, bool)
        for cy, cx, hy, hx in self.tissue:
            inside |= ((y - cy) / hy) ** 2 + ((x - cx) / hx) ** 2 <= 1
        return inside

    def _in_lesion(self, y, x):
        inside = np.zeros(np.broadcast(y, x).shape, bool)
        for cy, cx, r in self.lesions:
            inside |= (y - cy) ** 2 + (x - cx) ** 2 <= r**2
        return inside

    def _texture_grid(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        rows = int(self.shape[0] * self.pixel_size_um / self.texture_um) + 3
        cols = int(self.shape[1] * self.pixel_size_um / self.texture_um) + 3
        return ndi.gaussian_filter(rng.normal(size=(rows, cols)), 1.0) / 0.28

    def render(
        self, row: int, col: int, height: int, width: int, *, downsample: float = 1.0, texture: np.ndarray | None = None
    ) -> np.ndarray:
        """RGB pixels of a region of the level with this downsample factor."""
        size = self.pixel_size_um * downsample
        y = (np.arange(row, row + height) + 0.5)[:, None] * size
        x = (np.arange(col, col + width) + 0.5)[None, :] * size
        texture = self._texture_grid() if texture is None else texture
        t = ndi.map_coordinates(
            texture, np.broadcast_arrays(y / self.texture_um, x / self.texture_um), order=1, mode="nearest"
        )
        tissue, lesion = self._in_tissue(y, x), self._in_lesion(y, x)
        hematoxylin = tissue * (0.10 + 0.04 * t) + lesion * (0.50 + 0.08 * t)
        eosin = tissue * (0.30 + 0.05 * t) - lesion * 0.1
        od = np.clip(hematoxylin, 0, None)[..., None] * unit(STAIN_VECTORS["hematoxylin"]) + np.clip(eosin, 0, None)[
            ..., None
        ] * unit(STAIN_VECTORS["eosin"])
        rng = np.random.default_rng([self.seed, row, col, int(downsample)])
        return _rgb_from_od(od, rng, noise=1.5)


# Tries at placing lesions at random before random_section gives up (benchmarks/tissue_memory.py's
# 10 mm section with 12 lesions of up to 600 um needs 24; 100,000 tries take about 2 s).
MAX_PLACEMENT_TRIES = 100_000


def random_section(
    shape: tuple[int, int],
    *,
    pixel_size_um: float,
    n_lesions: int = 6,
    seed: int = 0,
    lesion_radius_um: tuple[float, float] = (60.0, 250.0),
) -> SyntheticSection:
    """A section with one or two tissue pieces and ``n_lesions`` non-overlapping lesions.

    Raises ValueError when the lesions do not fit (too many or too large for the tissue):
    they are placed by rejection, which would otherwise try for ever."""
    rng = np.random.default_rng(seed)
    height, width = shape[0] * pixel_size_um, shape[1] * pixel_size_um
    tissue = [(height * 0.5, width * 0.42, height * 0.38, width * 0.3)]
    if rng.random() < 0.5:
        tissue.append((height * 0.55, width * 0.76, height * 0.3, width * 0.17))
    lesions = []
    for _ in range(MAX_PLACEMENT_TRIES):
        if len(lesions) == n_lesions:
            break
        radius = rng.uniform(*lesion_radius_um)
        cy, cx, hy, hx = tissue[int(rng.integers(len(tissue)))]
        angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.75)
        y, x = cy + reach * (hy - radius) * np.sin(angle), cx + reach * (hx - radius) * np.cos(angle)
        inside = all(
            ((y + dy - cy) / hy) ** 2 + ((x + dx - cx) / hx) ** 2 <= 1
            for dy, dx in ((radius, 0), (-radius, 0), (0, radius), (0, -radius))
        )
        apart = all((y - ly) ** 2 + (x - lx) ** 2 > (radius + lr + 60.0) ** 2 for ly, lx, lr in lesions)  # 60 um gaps
        if inside and apart:
            lesions.append((y, x, radius))
    if len(lesions) < n_lesions:
        raise ValueError(
            f"placed {len(lesions)} of {n_lesions} lesions of radius {lesion_radius_um[0]:g}-{lesion_radius_um[1]:g} um "
            f"in a {height:g} x {width:g} um section; ask for fewer or smaller lesions, or a larger section"
        )
    return SyntheticSection(
        shape=shape, pixel_size_um=pixel_size_um, tissue=tuple(tissue), lesions=tuple(lesions), seed=seed
    )


def write_section(section: SyntheticSection, path: str | Path, *, tile: int = 512, levels: int | None = None) -> Path:
    """Write ``section`` as a tiled pyramidal OME-TIFF (levels halve until under 1024 px),
    rendering one tile at a time."""
    path = Path(path)
    texture = section._texture_grid()
    if levels is None:
        levels = 1
        while max(section.shape) / 2**levels >= 1024:
            levels += 1

    def tiles(level: int):
        factor = 2**level
        rows, cols = -(-section.shape[0] // factor), -(-section.shape[1] // factor)
        for row in range(0, rows, tile):
            for col in range(0, cols, tile):
                block = section.render(
                    row, col, min(tile, rows - row), min(tile, cols - col), downsample=factor, texture=texture
                )
                padded = np.full((tile, tile, 3), 255, np.uint8)
                padded[: block.shape[0], : block.shape[1]] = block
                yield padded

    options = dict(tile=(tile, tile), compression="zlib", photometric="rgb", dtype=np.uint8)
    with atomic_path(path) as temporary, tifffile.TiffWriter(temporary, bigtiff=True) as writer:
        writer.write(
            tiles(0),
            shape=(*section.shape, 3),
            subifds=levels - 1,
            metadata={"axes": "YXS", "PhysicalSizeX": section.pixel_size_um, "PhysicalSizeY": section.pixel_size_um},
            **options,
        )
        for level in range(1, levels):
            factor = 2**level
            writer.write(
                tiles(level),
                shape=(-(-section.shape[0] // factor), -(-section.shape[1] // factor), 3),
                subfiletype=1,
                **options,
            )
    return path


def make_tissue_samples(root: str | Path) -> None:
    """(Re)generate ``sample_images/tissue``: two small H&E sections with planted lesions
    (4 um/pixel) and their sample sheet and truth; one synthetic H-DAB core with its
    per-cell truth."""
    root = Path(root)
    sections = root / "sections"
    sections.mkdir(parents=True, exist_ok=True)
    truth, sheet = [], []
    for name, n_lesions, group, seed in (("lung_a", 5, "sgNT", 31), ("lung_b", 1, "MAP2K7", 32)):
        section = random_section(
            (800, 1000), pixel_size_um=4.0, n_lesions=n_lesions, seed=seed, lesion_radius_um=(150.0, 400.0)
        )
        write_section(section, sections / f"{name}.ome.tif", tile=256, levels=1)
        truth.append(
            {
                "image": name,
                "n_lesions": n_lesions,
                "lesion_area_mm2": float(section.lesion_areas_um2.sum() / 1e6),
                "tissue_area_mm2": section.tissue_area_um2 / 1e6,
            }
        )
        sheet.append({"image": f"{name}.ome.tif", "sample": f"mouse_{name[-1]}", "group": group})
    pd.DataFrame(truth).to_csv(root / "sections_truth.csv", index=False)
    pd.DataFrame(sheet).to_csv(root / "sections_samples.csv", index=False)
    cores = root / "ihc"
    cores.mkdir(parents=True, exist_ok=True)
    rgb, cells = make_ihc_image(size=512, n_nuclei=160, seed=5)
    tifffile.imwrite(cores / "core_synthetic.tif", rgb, photometric="rgb", compression="zlib")
    cells.to_csv(root / "ihc_core_truth.csv", index=False)


if __name__ == "__main__":  # python -m imaging.tissue.synthetic sample_images/tissue
    import sys

    make_tissue_samples(sys.argv[1] if len(sys.argv) > 1 else "sample_images/tissue")
