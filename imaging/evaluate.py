"""Score predicted label images against annotated ones (the work behind ``imaging evaluate``).

Predictions and truths are instance label images (0 = background). Folders are matched
by file stem; a prediction may carry the ``_nuclei`` suffix that ``imaging segment``
writes (``img7_nuclei.tif`` scores against ``img7.tif``).

A binary mask (one foreground value, several separate blobs; what Fiji's "Convert to
Mask" or a thresholding tool saves) is scored with each connected blob as one object:
nuclei that touch in such a mask count as one, and the table's ``binary_mask`` column
says which images were read so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import measure

from imaging.errors import InputError
from imaging.io.discover import IMAGE_SUFFIXES
from imaging.io.readers import read_raw
from imaging.metrics import match_scores

PREDICTION_SUFFIXES = ("", "_nuclei", "_cells", "_labels", "_masks")
SCORE_COLUMNS = ["image", "n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "ap"]
EVALUATION_COLUMNS = SCORE_COLUMNS + ["binary_mask"]


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise InputError("folder holds no label images", path=path, fix="give a folder of .tif/.png label images")
    raise InputError("no such file or folder", path=path, fix="check the path")


def pair_files(predictions: str | Path, truths: str | Path) -> list[tuple[Path, Path]]:
    """(prediction, truth) pairs: by file stem for folders, as given for two files."""
    predictions, truths = Path(predictions), Path(truths)
    if predictions.is_file() and truths.is_file():
        return [(predictions, truths)]
    by_stem = {p.stem: p for p in _image_files(predictions)}
    pairs, missing = [], []
    for truth in _image_files(truths):
        match = next((by_stem[truth.stem + s] for s in PREDICTION_SUFFIXES if truth.stem + s in by_stem), None)
        if match is None:
            missing.append(truth.name)
        else:
            pairs.append((match, truth))
    if missing:
        raise InputError(
            f"no prediction for {len(missing)} annotated image(s): {listed_names(missing)}",
            path=predictions,
            fix="segment every annotated image (prediction files are matched by name, "
            "optionally with a _nuclei suffix)",
        )
    return pairs


def unscored_predictions(predictions: str | Path, pairs: list[tuple[Path, Path]]) -> list[str]:
    """Names of the prediction files in a folder that no annotated image matched."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        return []
    scored = {prediction for prediction, _ in pairs}
    return [p.name for p in _image_files(predictions) if p not in scored]


def listed_names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def read_labels(path: Path) -> np.ndarray:
    """An instance label image as int64 (RGB-encoded labels are refused)."""
    labels = np.squeeze(read_raw(path))
    if labels.ndim != 2:
        raise InputError(
            f"expected a 2-D label image, got shape {labels.shape}",
            path=path,
            fix="give one instance label image per file",
        )
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise InputError("label image holds non-integer values", path=path, fix="save labels as integers")
    elif labels.dtype.kind not in "iub":
        raise InputError(f"label image has pixel type {labels.dtype}", path=path, fix="save labels as integers")
    return labels.astype(np.int64)


def instances_from_mask(labels: np.ndarray) -> tuple[np.ndarray, bool]:
    """``labels`` as instances: a binary mask (one foreground value in several separate
    8-connected blobs) becomes one label per blob. Returns ``(labels, was_binary_mask)``."""
    values = np.unique(labels)
    foreground = values[values != 0]
    if foreground.size != 1:
        return labels, False
    blobs, n_blobs = measure.label(labels != 0, connectivity=2, return_num=True)
    if n_blobs < 2:
        return labels, False
    return blobs.astype(np.int64), True


def evaluate_pair(prediction: Path, truth: Path) -> dict:
    """Scores of one prediction against its truth (a row of :data:`EVALUATION_COLUMNS`)."""
    predicted, true = read_labels(prediction), read_labels(truth)
    if predicted.shape != true.shape:
        raise InputError(
            f"shape {predicted.shape} differs from its truth {truth.name} {true.shape}",
            path=prediction,
            fix="compare label images of the same field",
        )
    true, truth_was_mask = instances_from_mask(true)
    predicted, prediction_was_mask = instances_from_mask(predicted)
    scores = dataclasses.asdict(match_scores(true, predicted))
    binary = {(False, False): "", (True, False): "truth", (False, True): "prediction", (True, True): "both"}
    return (
        {"image": truth.stem}
        | {k: scores[k] for k in SCORE_COLUMNS[1:]}
        | {"binary_mask": binary[truth_was_mask, prediction_was_mask]}
    )


def evaluate(predictions: str | Path, truths: str | Path) -> pd.DataFrame:
    """Per-image precision, recall, F1 at IoU 0.5 and DSB AP (IoU 0.5:0.95)."""
    rows = [evaluate_pair(p, t) for p, t in pair_files(predictions, truths)]
    return pd.DataFrame(rows, columns=EVALUATION_COLUMNS)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of the per-image scores."""
    scores = table[["precision", "recall", "f1", "ap"]]
    return pd.DataFrame({"mean": scores.mean(), "median": scores.median()}).T
