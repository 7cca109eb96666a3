"""IHC positive-cell scoring against expert point truth: imaging's tissue run beside a naive
scikit-image script, on the same real tiles in the same run.

Data: ``images/<id>.png`` with ``truth/<id>_nuclei.csv`` (``class``, ``centroid_row``,
``centroid_col``) under ``--data``; default: the six DeepLIIF Ki67 development tiles in
``../shared/data/ihc_dev_deepliif`` (Apache-2.0 + Commons Clause: benchmark with them, do not
ship them). Any folder laid out the same way, or with point CSVs (``row, col, class``), works.

imaging: ``imaging run pipelines/ihc_hscore.yaml <images> --out <tmp>`` (through the library),
scored with ``imaging evaluate`` (:mod:`imaging.evaluate_points`). Naive: ``skimage.color.rgb2hed``,
Otsu on haematoxylin + DAB, distance-transform watershed, a fixed DAB cut at 0.2 OD.
Both are matched to the truth within the same radius (``--radius``, default 12 px).
``--crop 256`` cuts each tile into crops of that size, each scored as an image of its own, with
the points inside it: tiles cut from a slide's tumour area, crowded and without glass, with
fewer nuclei to take the scale from.

    python benchmarks/ihc.py [--data DIR] [--radius 12] [--crop PX]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import color, feature, filters, io, segmentation

from imaging.evaluate_points import misregistered_images, read_point_truth, run_cells, score_points
from imaging.tissue.assay import execute_tissue
from imaging.tissue.plan import plan_tissue

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ihc_dev_deepliif"
# rgb2hed's units are natural-log OD over ln(1e-6): 0.2 OD (log10) is 0.2 * ln(10) / ln(1e6)
NAIVE_DAB_CUT = 0.2 * np.log(10) / np.log(1e6)


def naive_cells(rgb: np.ndarray) -> pd.DataFrame:
    """The 20-line script a user would write first."""
    hed = color.rgb2hed(rgb[..., :3])
    nuclear = np.clip(hed[..., 0], 0, None) + np.clip(hed[..., 2], 0, None)
    mask = nuclear > filters.threshold_otsu(nuclear)
    mask = ndi.binary_fill_holes(mask)
    distance = ndi.distance_transform_edt(mask)
    peaks = feature.peak_local_max(distance, min_distance=7, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    ids = np.arange(1, labels.max() + 1)
    if ids.size == 0:
        return pd.DataFrame(columns=["row", "col", "positive"])
    centres = np.asarray(ndi.center_of_mass(mask, labels, ids)).reshape(-1, 2)
    dab = np.asarray(ndi.mean(hed[..., 2], labels, ids))
    return pd.DataFrame({"row": centres[:, 0], "col": centres[:, 1], "positive": dab > NAIVE_DAB_CUT})


def truth_table(data: Path) -> pd.DataFrame:
    return read_point_truth(data / "truth" if (data / "truth").is_dir() else data / "points.csv")


def cropped(images: list[Path], truth: pd.DataFrame, size: int, folder: Path) -> tuple[list[Path], pd.DataFrame]:
    """Each image cut into ``size`` px crops (``<stem>_<row>_<col>.png`` in ``folder``), and
    the truth points inside each crop, in its coordinates."""
    crops, points = [], []
    for path in images:
        rgb = io.imread(path)[..., :3]
        true = truth[truth["image"] == path.stem]
        for row in range(0, rgb.shape[0] - size + 1, size):
            for col in range(0, rgb.shape[1] - size + 1, size):
                name = f"{path.stem}_{row}_{col}"
                io.imsave(folder / f"{name}.png", rgb[row : row + size, col : col + size], check_contrast=False)
                crops.append(folder / f"{name}.png")
                inside = true["row"].between(row, row + size, inclusive="left") & true["col"].between(
                    col, col + size, inclusive="left"
                )
                points.append(true[inside].assign(image=name, row=true["row"] - row, col=true["col"] - col))
    return crops, pd.concat(points, ignore_index=True)


def reregistered(table: pd.DataFrame, cells: pd.DataFrame, truth: pd.DataFrame, *, radius: float) -> pd.DataFrame:
    """The imaging rows again, with the truth of images whose points sit shifted against the
    cells (:func:`imaging.evaluate_points.misregistered_images`: on the dev set Bladder1 and
    Lung1, whose truth panel is offset 6-7 px) moved by that offset; the others as they are.
    It shows what the shift costs, not a score to quote on its own."""
    imaging = table[table["method"] == "imaging"]
    shifts = misregistered_images(imaging).set_index("image")
    rows = []
    for _, row in imaging.iterrows():
        image = row["image"]
        if image not in shifts.index:
            rows.append(row.to_dict() | {"method": "imaging, truth re-registered"})
            continue
        true = truth[truth["image"] == image]
        moved = true.assign(
            row=true["row"] + shifts.loc[image, "offset_row_px"], col=true["col"] + shifts.loc[image, "offset_col_px"]
        )
        scores = score_points(cells[cells["image"] == image], moved, radius=radius)
        rows.append({"image": image, "method": "imaging, truth re-registered"} | scores)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--radius", type=float, default=12.0, help="match radius in px")
    parser.add_argument("--crop", type=int, help="score crops of this size (px) of each tile as images")
    args = parser.parse_args()
    images = sorted((args.data / "images").glob("*.png"))
    truth = truth_table(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = args.data / "images", Path(tmp) / "out"
        if args.crop:
            folder = Path(tmp) / "crops"
            folder.mkdir()
            images, truth = cropped(images, truth, args.crop, folder)
        started = time.perf_counter()
        execute_tissue(plan_tissue(ROOT / "pipelines" / "ihc_hscore.yaml", folder), out, workers=1)
        imaging_seconds = (time.perf_counter() - started) / len(images)
        cells, _ = run_cells(out)  # the cells the scores count
        naive_inputs = {path.stem: io.imread(path) for path in images}
    naive_seconds = 0.0
    for path in images:
        stem = path.stem
        true = truth[truth["image"] == stem]
        started = time.perf_counter()
        naive = naive_cells(naive_inputs[stem])
        naive_seconds += (time.perf_counter() - started) / len(images)
        for method, predicted in (("imaging", cells[cells["image"] == stem]), ("naive", naive)):
            scores = score_points(predicted, true, radius=args.radius)
            rows.append({"image": stem, "method": method} | scores)
    table = pd.DataFrame(rows)
    table = pd.concat([table, reregistered(table, cells, truth, radius=args.radius)], ignore_index=True)
    shown = [
        "image",
        "method",
        "n_true",
        "n_pred",
        "index_true",
        "index_pred",
        "index_error",
        "detection_recall",
        "positive_f1",
        "negative_f1",
        "class_f1",
        "offset_row_px",
        "offset_col_px",
    ]
    pd.set_option("display.width", 200)
    print(table.sort_values("image", kind="stable")[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    summary = table.groupby("method", sort=False).agg(
        mean_abs_index_error=("index_error", lambda v: v.abs().mean()),
        max_abs_index_error=("index_error", lambda v: v.abs().max()),
        mean_class_f1=("class_f1", "mean"),
        mean_detection_f1=("detection_f1", "mean"),
        mean_detection_recall=("detection_recall", "mean"),
    )
    summary["s_per_tile"] = [imaging_seconds, naive_seconds, np.nan]
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    crops = f"; {args.crop} px crops of each tile scored as images" if args.crop else ""
    print(f"\nmatch radius {args.radius:g} px; imaging time is the whole run (tissue, stains, report) per tile{crops}")


if __name__ == "__main__":
    main()
