"""Score a tissue run's cells against point annotations (positive / negative nuclei).

Expert IHC truth usually comes as points: one click per nucleus with its class. Truth is
read from

- a CSV with an ``image`` column (file name or stem), a position (``row`` and ``col``,
  ``centroid_row`` and ``centroid_col``, or ``x`` and ``y`` with x = column) and a ``class``
  column (``positive`` / ``negative``, also ``pos`` / ``neg``, ``1`` / ``0``, QuPath's
  ``Positive``, ``Negative``, ``1+``, ``2+``, ``3+``);
- a folder of such CSVs without ``image`` column, or of QuPath GeoJSON exports, one file per
  image named after it (``<image>.csv``, ``<image>.geojson``; a ``_points`` or ``_nuclei``
  suffix is allowed). GeoJSON features give their Point (or a polygon's centroid) and their
  classification as QuPath writes it (``name``; a derived class's ``names``, such as
  ``["Tumor", "Positive"]``; or a plain string).

A derived class (``Tumor: Positive``, ``Stroma: 1+``) is scored by its last part, the intensity.
Points of QuPath's ``Ignore*`` class and of this tool's own ``Spindle (not counted)`` (a run's
detections exported and reviewed in QuPath) are left out, as spindle cells are left out of the
predictions; so are polygon *annotations* of any other class (a tumour or stroma region drawn
in the same export, not a nucleus). Any other class name is an error, so that a typo never
drops a point silently.

Predictions are the run's ``cells.csv`` (``centroid_row``, ``centroid_col``, ``positive``): the
cells its scores count (``counted``; spindle nuclei left out by ``cells.max_nucleus_elongation``
are not predictions of tumour cells).
Within each image, predictions and truth points are paired one to one by the Hungarian
algorithm, a pair only when closer than ``radius`` px. Detection scores ignore the class;
class-aware scores count a pair only when the classes agree (each class matched on its
own, so a detection cannot be credited for a point of the other class). The Ki67 (or any
positive) index error is predicted minus true percent positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from imaging.errors import InputError
from imaging.tissue.review import NOT_COUNTED

POINT_COLUMNS = ["image", "row", "col", "positive"]
POINT_SCORE_COLUMNS = [
    "image",
    "n_true",
    "n_pred",
    "n_true_positive",
    "n_pred_positive",
    "n_matched",
    "detection_precision",
    "detection_recall",
    "detection_f1",
    "positive_f1",
    "negative_f1",
    "class_precision",
    "class_recall",
    "class_f1",
    "index_true",
    "index_pred",
    "index_error",
    "offset_row_px",
    "offset_col_px",
    "radius_px",
]
# A median offset of the matched pairs beyond this share of the match radius is a shift of the
# annotations, not scatter of the clicks: on the DeepLIIF tiles clean truth reads 0.5-1.4 px
# (radius 12), two tiles whose truth panel is misregistered 6.4 and 7.1 px.
MISREGISTERED_SHARE_OF_RADIUS = 1 / 3
MIN_PAIRS_FOR_OFFSET = 10
POSITIVE_NAMES = {"positive", "pos", "1", "true", "yes", "+", "1+", "2+", "3+", "p"}
NEGATIVE_NAMES = {"negative", "neg", "0", "false", "no", "-", "n", "0+"}
# Classes that mark a point as not scored (see module docstring).
NOT_SCORED_NAMES = {"ignore*", "ignore", NOT_COUNTED.lower()}
TRUTH_SUFFIXES = ("", "_points", "_nuclei", "_truth")


def intensity_name(name) -> str:
    """The part of a class name that says the intensity, lower case: the last part of a derived
    class (``Tumor: Positive`` -> ``positive``), the whole name otherwise.

    Parameters
    ----------
    name : object
        A class name as read (str, number or missing).

    Returns
    -------
    str
    """
    return str(name).rsplit(":", 1)[-1].strip().lower()


def scored_points(values, *, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Which points are scored, and which of those are positive, from the class names of an
    annotation file (see module docstring).

    Parameters
    ----------
    values : array_like
        Class names (case and surrounding spaces ignored).
    source : Path
        The annotation file, for the message.

    Returns
    -------
    scored : ndarray of bool
        False for the classes that are not scored (:data:`NOT_SCORED_NAMES`).
    positive : ndarray of bool

    Raises
    ------
    InputError
        Naming the file and the unknown class names.
    """
    names = pd.Series(values).map(intensity_name)
    unknown = sorted(set(names) - POSITIVE_NAMES - NEGATIVE_NAMES - NOT_SCORED_NAMES)
    if unknown:
        raise InputError(
            f"unknown class name(s) {', '.join(map(repr, unknown[:5]))}",
            path=source,
            fix="use positive / negative (or 1 / 0, QuPath's Positive, Negative, 1+, 2+, 3+, or Ignore* to leave a point out)",
        )
    return (~names.isin(NOT_SCORED_NAMES)).to_numpy(), names.isin(POSITIVE_NAMES).to_numpy()


def _positions(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    columns = {c.lower().strip(): c for c in frame.columns}
    for row_name, col_name in (("row", "col"), ("centroid_row", "centroid_col"), ("y", "x")):
        if row_name in columns and col_name in columns:
            break
    else:
        raise InputError(
            f"no point position columns (columns: {', '.join(map(str, frame.columns))})",
            path=source,
            fix="name them row and col (or x and y, x being the column)",
        )
    if "class" not in columns:
        raise InputError("no 'class' column", path=source, fix="add a class column: positive or negative")
    scored, positive = scored_points(frame[columns["class"]], source=source)
    table = pd.DataFrame(
        {
            "row": pd.to_numeric(frame[columns[row_name]], errors="coerce"),
            "col": pd.to_numeric(frame[columns[col_name]], errors="coerce"),
            "positive": positive,
        }
    )
    if table[["row", "col"]].isna().any().any():
        raise InputError(
            "a point position is empty or not a number", path=source, fix="give every point its row and col"
        )
    if "image" in columns:
        table.insert(0, "image", [_stem(v) for v in frame[columns["image"]].astype(str)])
    return table[scored].reset_index(drop=True)


def _stem(name: str) -> str:
    path = Path(name.strip())
    stem = path.stem if path.suffix else path.name
    return stem[:-4] if stem.endswith(".ome") else stem


def read_geojson_points(path: Path) -> pd.DataFrame:
    """Points and classes of a QuPath GeoJSON export (Point, MultiPoint or polygon centroids).

    Parameters
    ----------
    path : Path
        The export.

    Returns
    -------
    pandas.DataFrame
        ``row``, ``col``, ``positive``.

    Raises
    ------
    InputError
        When the file is not GeoJSON or holds no points.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"is not valid GeoJSON ({exc})", path=path, fix="export the annotations again from QuPath"
        ) from None
    features = data.get("features", []) if isinstance(data, dict) else data
    rows = []
    for feature in features if isinstance(features, list) else []:
        if not isinstance(feature, dict):
            continue
        geometry = feature.get("geometry") or {}
        properties = feature.get("properties") or {}
        name = class_name(properties.get("classification"))
        kind, coordinates = geometry.get("type"), geometry.get("coordinates")
        if kind == "Point":
            points = [coordinates]
        elif kind == "MultiPoint":
            points = coordinates
        elif kind == "Polygon" and coordinates:
            if (
                properties.get("objectType") == "annotation"
                and intensity_name(name) not in POSITIVE_NAMES | NEGATIVE_NAMES
            ):
                continue  # a region drawn around tissue (Tumor, Stroma, Ignore*), not a nucleus
            points = [np.asarray(coordinates[0], float).mean(axis=0)]
        else:
            continue
        rows.extend({"x": p[0], "y": p[1], "class": name} for p in points)
    if not rows:
        raise InputError(
            "holds no point or polygon features",
            path=path,
            fix="export the annotated points (with their classification) from QuPath",
        )
    return _positions(pd.DataFrame(rows), path)


def class_name(classification) -> str:
    """A GeoJSON feature's class name, whichever way QuPath wrote it: ``{"name": "Positive"}``,
    a derived class ``{"names": ["Tumor", "Positive"]}`` (QuPath 0.4 and later; read as
    ``Tumor: Positive``), a plain string, or none (``''``).

    Parameters
    ----------
    classification : dict, str or None
        ``properties.classification`` of the feature.

    Returns
    -------
    str
    """
    if isinstance(classification, dict):
        names = classification.get("names")
        if isinstance(names, list) and names:
            return ": ".join(str(n) for n in names)
        classification = classification.get("name")
    return "" if classification is None else str(classification)


def read_point_truth(path: str | Path) -> pd.DataFrame:
    """Truth points of every annotated image (:data:`POINT_COLUMNS`).

    Parameters
    ----------
    path : str or Path
        A CSV with an ``image`` column, a GeoJSON export, or a folder of per-image files.

    Returns
    -------
    pandas.DataFrame
        ``image``, ``row``, ``col``, ``positive``.

    Raises
    ------
    InputError
        When the path is missing, holds no annotations, or a file cannot be read.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".geojson", ".json"):
            table = read_geojson_points(path)
            table.insert(0, "image", _stem(path.name))
            return table
        table = _positions(_read_csv(path), path)
        if "image" not in table.columns:
            table.insert(0, "image", _strip_suffix(_stem(path.name)))
        return table
    if not path.is_dir():
        raise InputError("no such file or folder", path=path, fix="give the annotation CSV, GeoJSON or their folder")
    frames = []
    for file in sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".geojson", ".json")):
        table = read_point_truth(file)
        table["image"] = table["image"].map(_strip_suffix)
        frames.append(table)
    if not frames:
        raise InputError("holds no .csv or .geojson annotations", path=path, fix="give a folder of point annotations")
    return pd.concat(frames, ignore_index=True)[POINT_COLUMNS]


def _strip_suffix(stem: str) -> str:
    for suffix in TRUTH_SUFFIXES[1:]:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as CSV ({exc})", path=path, fix="save it as comma-separated UTF-8") from None


def match_points(predicted: np.ndarray, true: np.ndarray, *, radius: float) -> np.ndarray:
    """One-to-one pairs ``(i_predicted, j_true)`` (K, 2) closer than ``radius``, with the
    smallest total distance (Hungarian algorithm).

    Parameters
    ----------
    predicted, true : (P, 2) array_like of float
        (row, col) positions.
    radius : float
        Largest distance of a pair (px).

    Returns
    -------
    (K, 2) ndarray of int
        Indices into ``predicted`` and ``true``.
    """
    predicted = np.asarray(predicted, float).reshape(-1, 2)
    true = np.asarray(true, float).reshape(-1, 2)
    if len(predicted) == 0 or len(true) == 0:
        return np.zeros((0, 2), int)
    distance = np.sqrt(((predicted[:, None, :] - true[None, :, :]) ** 2).sum(-1))
    cost = np.where(distance <= radius, distance, radius * 1e6)
    rows, cols = linear_sum_assignment(cost)
    close = distance[rows, cols] <= radius
    return np.stack([rows[close], cols[close]], axis=1)


def _f1(matched: int, n_predicted: int, n_true: int) -> float:
    return 2 * matched / (n_predicted + n_true) if n_predicted + n_true else np.nan


def score_points(predicted: pd.DataFrame, true: pd.DataFrame, *, radius: float) -> dict:
    """Scores of one image (:data:`POINT_SCORE_COLUMNS` without ``image``).

    Parameters
    ----------
    predicted, true : DataFrame
        Points with ``row``, ``col`` and ``positive`` columns.
    radius : float
        Largest distance (px) of a matched pair.

    Returns
    -------
    dict
        Counts (``n_matched``: the pairs, class ignored); detection precision, recall and
        F1 (class ignored); per-class and class-aware F1 (each class matched on its own); true
        and predicted index (percent positive) and their difference; the median offset
        (predicted minus true, px) of the matched pairs, which reveals annotations shifted
        against the image (:func:`misregistered_images`).
    """
    p_xy, t_xy = predicted[["row", "col"]].to_numpy(float), true[["row", "col"]].to_numpy(float)
    p_pos, t_pos = predicted["positive"].to_numpy(bool), true["positive"].to_numpy(bool)
    pairs = match_points(p_xy, t_xy, radius=radius)
    detected = len(pairs)
    offset = np.median(p_xy[pairs[:, 0]] - t_xy[pairs[:, 1]], axis=0) if detected else np.full(2, np.nan)
    per_class = {
        flag: len(match_points(p_xy[p_pos == flag], t_xy[t_pos == flag], radius=radius)) for flag in (True, False)
    }
    class_matched = per_class[True] + per_class[False]
    n_p, n_t = len(p_xy), len(t_xy)
    index_true = 100 * t_pos.mean() if n_t else np.nan
    index_pred = 100 * p_pos.mean() if n_p else np.nan
    return {
        "n_true": n_t,
        "n_pred": n_p,
        "n_true_positive": int(t_pos.sum()),
        "n_pred_positive": int(p_pos.sum()),
        "n_matched": detected,
        "detection_precision": detected / n_p if n_p else np.nan,
        "detection_recall": detected / n_t if n_t else np.nan,
        "detection_f1": _f1(detected, n_p, n_t),
        "positive_f1": _f1(per_class[True], int(p_pos.sum()), int(t_pos.sum())),
        "negative_f1": _f1(per_class[False], int((~p_pos).sum()), int((~t_pos).sum())),
        "class_precision": class_matched / n_p if n_p else np.nan,
        "class_recall": class_matched / n_t if n_t else np.nan,
        "class_f1": _f1(class_matched, n_p, n_t),
        "index_true": index_true,
        "index_pred": index_pred,
        "index_error": index_pred - index_true,
        "offset_row_px": float(offset[0]),
        "offset_col_px": float(offset[1]),
        "radius_px": float(radius),
    }


def default_radius(cells: pd.DataFrame) -> float:
    """Match radius: the median area-equivalent radius of the predicted nuclei (a detection
    within one nucleus radius of the click is on that nucleus); 10 px without cells.

    Parameters
    ----------
    cells : pandas.DataFrame
        The run's cells, with ``nucleus_area_px``.

    Returns
    -------
    float
    """
    areas = pd.to_numeric(cells.get("nucleus_area_px", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(np.sqrt(areas.median() / np.pi)) if len(areas) else 10.0


def run_cells(run_dir: str | Path) -> tuple[pd.DataFrame, set[str]]:
    """Predicted points of a tissue run folder (:data:`POINT_COLUMNS` plus nucleus area) and
    the names of the images the run analysed (an image without cells has no row).

    Parameters
    ----------
    run_dir : str or Path
        A tissue run's ``--out`` folder.

    Returns
    -------
    cells : pandas.DataFrame
    images : set of str

    Raises
    ------
    InputError
        When the folder has no ``cells.csv`` or it lacks a needed column.
    """
    run_dir = Path(run_dir)
    path = run_dir / "cells.csv"
    if not path.is_file():
        raise InputError("has no cells.csv", path=run_dir, fix="give the --out folder of an IHC tissue run")
    cells = pd.read_csv(path, dtype={"image": str})
    missing = {"image", "centroid_row", "centroid_col", "positive"} - set(cells.columns)
    if missing:
        raise InputError(
            f"cells.csv lacks column(s) {', '.join(sorted(missing))}",
            path=path,
            fix="give the cells.csv of an IHC tissue run",
        )
    try:
        analysed = {str(image["image"]) for image in json.loads((run_dir / "run.json").read_text())["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            "has no readable run.json", path=run_dir, fix="give the --out folder of a finished IHC tissue run"
        ) from None
    if "counted" in cells.columns:
        cells = cells[cells["counted"].astype(str).str.lower().isin(["true", "1"])]
    positive = cells["positive"].astype(str).str.lower().isin(["true", "1"])
    table = pd.DataFrame(
        {
            "image": cells["image"].astype(str),
            "row": cells["centroid_row"],
            "col": cells["centroid_col"],
            "positive": positive.to_numpy(),
            "nucleus_area_px": cells.get("nucleus_area_px", np.nan),
        }
    )
    return table, analysed


def evaluate_points(run_dir: str | Path, truth: str | Path, *, radius: float | None = None) -> pd.DataFrame:
    """Per-image scores of a tissue run's cells against point annotations.

    Parameters
    ----------
    run_dir : str or Path
        A tissue run folder (its counted cells are the predictions).
    truth : str or Path
        A point CSV or a folder of per-image CSV / QuPath GeoJSON files (module docstring).
    radius : float, optional
        Match radius in px; the predicted nuclei's median radius when None.

    Returns
    -------
    DataFrame
        One row per annotated image (:data:`POINT_SCORE_COLUMNS`).
    """
    predicted, analysed = run_cells(run_dir)
    true = read_point_truth(truth)
    images = sorted(set(true["image"]))
    not_run = [image for image in images if image not in analysed]
    if not_run:
        raise InputError(
            f"annotated image(s) {', '.join(not_run[:5])} are not in the run "
            f"(it analysed {', '.join(sorted(analysed)[:5])})",
            path=truth,
            fix="name annotations after the images (file name or stem), or run those images",
        )
    radius = default_radius(predicted) if radius is None else float(radius)
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(
            f"match radius must be a positive number of pixels, got {radius}", path=truth, fix="give --radius in pixels"
        )
    rows = [
        {"image": image}
        | score_points(predicted[predicted["image"] == image], true[true["image"] == image], radius=radius)
        for image in images
    ]
    return pd.DataFrame(rows, columns=POINT_SCORE_COLUMNS)


def misregistered_images(table: pd.DataFrame) -> pd.DataFrame:
    """The images whose annotations sit shifted against the detections: a median offset of at
    least :data:`MIN_PAIRS_FOR_OFFSET` matched pairs beyond
    :data:`MISREGISTERED_SHARE_OF_RADIUS` of the match radius (an export's crop origin or
    downsample, a truth mask drawn on another panel). Their scores understate the detections.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-image scores (:data:`POINT_SCORE_COLUMNS`).

    Returns
    -------
    DataFrame
        Those rows' ``image``, ``offset_row_px`` and ``offset_col_px``.
    """
    shift = np.hypot(table["offset_row_px"], table["offset_col_px"])
    flagged = (table["n_matched"] >= MIN_PAIRS_FOR_OFFSET) & (
        shift > MISREGISTERED_SHARE_OF_RADIUS * table["radius_px"]
    )
    return table.loc[flagged, ["image", "offset_row_px", "offset_col_px"]].reset_index(drop=True)


def summarize_points(table: pd.DataFrame) -> dict:
    """Means over images and the largest index error.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-image scores (:data:`POINT_SCORE_COLUMNS`).

    Returns
    -------
    dict
        ``images``, ``mean_abs_index_error``, ``max_abs_index_error``, ``mean_class_f1``,
        ``mean_detection_f1``, ``mean_detection_recall``, ``n_true``, ``n_pred``.
    """
    return {
        "images": int(len(table)),
        "mean_abs_index_error": float(table["index_error"].abs().mean()),
        "max_abs_index_error": float(table["index_error"].abs().max()),
        "mean_class_f1": float(table["class_f1"].mean()),
        "mean_detection_f1": float(table["detection_f1"].mean()),
        "mean_detection_recall": float(table["detection_recall"].mean()),
        "n_true": int(table["n_true"].sum()),
        "n_pred": int(table["n_pred"].sum()),
    }
