"""IHC scoring under other stains, scanners and magnifications: the DeepLIIF development tiles
re-rendered.

Each tile is unmixed with the default haematoxylin/DAB vectors and mixed again with another
haematoxylin hue (more purple, bluer), a darker haematoxylin (x2; and x1.3 with its hue turned 15 degrees towards DAB
within the plane of the default vectors, where the residual test of ``vectors: auto`` cannot
see it), a weaker or stronger DAB (x0.6, x1.5), or a darker scan
(all optical densities x1.4) or a paler one (x0.7: a thin section, a light counterstain; a
scanner's display gamma of 1.4 or 0.7 does the same to every optical density); or resampled to
another magnification (x0.5: a 40x tile as a 20x scan would give it; x1.5), the expert points
and the match radius scaled with it; or given a scanner's artefacts: tinted glass (a white
balance off by a yellow or a blue cast), JPEG compression at quality 60, a focus blur
(Gaussian, SD 1.5 px) or sensor noise (SD 8 grey levels); or stained anew: a diffuse 0.4 OD of
DAB added to every annotated nucleus (an ER-like stain, every expert point then positive), which
``vectors: auto``'s leak check must not take for a haematoxylin leaking into DAB.
``pipelines/ihc_hscore.yaml`` (no pixel size: the nucleus scale is estimated per tile) then
scores every variant and the cells are matched to the same expert points (12 px at 1x). One row per variant, all from one run:
mean and largest |Ki67 index error|, class-aware F1, detection recall and the per-tile errors.
The variants are made here, so they test robustness, not accuracy on another lab's slides.

Usage: ``python benchmarks/ihc_stain_variants.py [--zoom 0.35 0.25]`` (needs
``../shared/data/ihc_dev_deepliif``; ``--zoom``: only resampled rows, at those factors)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ihc import DEFAULT_DATA, ROOT, truth_table  # noqa: E402  (the IHC benchmark's data and truth)

from imaging.evaluate_points import run_cells, score_points  # noqa: E402
from imaging.stains.optical import STAIN_VECTORS  # noqa: E402
from imaging.tissue.assay import execute_tissue  # noqa: E402
from imaging.tissue.plan import plan_tissue  # noqa: E402


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, float)
    return vector / np.linalg.norm(vector)


H, D = unit(STAIN_VECTORS["hematoxylin"]), unit(STAIN_VECTORS["dab"])
R = unit(np.cross(H, D))
M = np.stack([H, D, R])  # rows: stain OD vectors (the third completes the basis)


def transform(rgb, *, h_new=None, h_scale=1.0, dab_scale=1.0, gamma=1.0, added_dab=None) -> np.ndarray:
    """``rgb`` unmixed with the default vectors and mixed again with the changes (``added_dab``:
    an (M, N) amount of DAB added)."""
    rgb = rgb[..., :3].astype(float)
    white = np.percentile(rgb.reshape(-1, 3), 99, axis=0)
    od = -np.log10(np.clip(rgb, 1, None) / white)
    amounts = od.reshape(-1, 3) @ np.linalg.inv(M)
    amounts[:, 0] *= h_scale
    amounts[:, 1] *= dab_scale
    if added_dab is not None:
        amounts[:, 1] += added_dab.ravel()
    M2 = np.stack([unit(h_new) if h_new is not None else H, D, R])
    od2 = (amounts @ M2).reshape(od.shape) * gamma
    return np.clip(white * 10 ** (-od2), 0, 255).astype(np.uint8)


VARIANTS = {
    "original": {},
    "purple haematoxylin": {"h_new": (0.55, 0.76, 0.35)},
    "bluer haematoxylin": {"h_new": (0.75, 0.60, 0.28)},
    "dark haematoxylin x2": {"h_scale": 2.0},
    "haem. to DAB 15deg x1.3": {"h_new": (0.50, 0.70, 0.51), "h_scale": 1.3},
    "weak DAB x0.6": {"dab_scale": 0.6},
    "strong DAB x1.5": {"dab_scale": 1.5},
    "dark scan x1.4": {"gamma": 1.4},
    "pale scan x0.7": {"gamma": 0.7},
    "magnification x0.5": {"zoom": 0.5},
    "magnification x1.5": {"zoom": 1.5},
    "yellow glass": {"tint": (1.0, 0.95, 0.82)},
    "blue glass": {"tint": (0.88, 0.95, 1.0)},
    "JPEG quality 60": {"jpeg_quality": 60},
    "focus blur SD 1.5 px": {"blur": 1.5},
    "sensor noise SD 8": {"noise": 8.0},
    "every nucleus weakly positive": {"diffuse_dab": 0.4},
}


def artefacts(rgb: np.ndarray, *, tint=None, jpeg_quality=None, blur=None, noise=None) -> np.ndarray:
    """``rgb`` with a scanner's artefacts: a colour cast, JPEG compression, defocus or noise."""
    from scipy import ndimage as ndi

    out = rgb[..., :3].astype(float)
    if tint is not None:
        out = out * np.asarray(tint)
    if blur is not None:
        out = ndi.gaussian_filter(out, (blur, blur, 0))
    if noise is not None:
        out = out + np.random.default_rng(0).normal(0, noise, out.shape)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        out = iio.imread(iio.imwrite("<bytes>", out, extension=".jpg", quality=jpeg_quality))
    return out


def rescaled(rgb: np.ndarray, zoom: float) -> np.ndarray:
    """The tile resampled by ``zoom`` (area-averaged when shrinking, as a scanner would)."""
    from skimage.transform import rescale

    out = rescale(rgb[..., :3] / 255.0, zoom, channel_axis=-1, anti_aliasing=zoom < 1, order=1)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def diffuse_dab(stem: str, level: float) -> np.ndarray:
    """A diffuse nuclear DAB of ``level`` OD in every annotated nucleus of ``stem`` (its truth
    mask, edges softened as a lens would): an ER-like stain, whatever a nucleus's haematoxylin."""
    from scipy import ndimage as ndi

    inside = tifffile.imread(DEFAULT_DATA / "truth" / f"{stem}_labels.tif") > 0
    return level * ndi.gaussian_filter(inside.astype(float), 1.5)


def render(rgb: np.ndarray, kw: dict, stem: str) -> np.ndarray:
    kw = dict(kw)
    if "diffuse_dab" in kw:
        kw["added_dab"] = diffuse_dab(stem, kw.pop("diffuse_dab"))
    zoom = kw.pop("zoom", 1.0)
    scanner = {key: kw.pop(key) for key in ("tint", "jpeg_quality", "blur", "noise") if key in kw}
    if scanner:
        return artefacts(rgb, **scanner)
    rgb = transform(rgb, **kw) if kw else rgb[..., :3]
    return rescaled(rgb, zoom) if zoom != 1.0 else rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--zoom",
        type=float,
        nargs="+",
        help="only resampled rows, at these factors (e.g. 0.35 0.25: 14x and 10x scans)",
    )
    args = parser.parse_args()
    variants = {f"magnification x{z:g}": {"zoom": z} for z in args.zoom} if args.zoom else VARIANTS
    truth = truth_table(DEFAULT_DATA)
    for name, kw in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / "images"
            images.mkdir()
            for path in sorted((DEFAULT_DATA / "images").glob("*.png")):
                iio.imwrite(images / path.name, render(iio.imread(path), kw, path.stem))
            out = Path(tmp) / "out"
            execute_tissue(plan_tissue(ROOT / "pipelines" / "ihc_hscore.yaml", images), out, workers=2)
            cells, _ = run_cells(out)
        zoom = kw.get("zoom", 1.0)
        scaled = truth.assign(row=truth["row"] * zoom, col=truth["col"] * zoom)
        if "diffuse_dab" in kw:  # every annotated nucleus is now positive
            scaled = scaled.assign(positive=True)
        rows = [
            score_points(cells[cells["image"] == s], scaled[scaled["image"] == s], radius=12.0 * zoom)
            for s in sorted(truth["image"].unique())
        ]
        table = pd.DataFrame(rows)
        print(
            f"{name:22s} mean|err| {table['index_error'].abs().mean():5.1f} "
            f"max {table['index_error'].abs().max():5.1f} classF1 {table['class_f1'].mean():.3f} "
            f"recall {table['detection_recall'].mean():.3f} {[round(v, 1) for v in table['index_error']]}"
        )


if __name__ == "__main__":
    main()
