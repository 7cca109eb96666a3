"""Instance-segmentation accuracy: matching predicted to true objects by IoU.

The scores are those of the 2018 Data Science Bowl: an object pair matches when their
intersection over union exceeds a threshold ``t``; at ``t >= 0.5`` a matching is unique,
so no assignment problem needs solving. Per image: precision, recall and F1 at IoU 0.5,
and the challenge's average precision ``TP / (TP + FP + FN)`` averaged over
``t = 0.50, 0.55, ..., 0.95``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from imaging.errors import InputError

AP_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))


@dataclasses.dataclass(frozen=True)
class MatchScores:
    """Scores of one predicted label image against its truth."""

    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float  # DSB average precision over IoU 0.5:0.95


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every overlapping (true, pred) object pair.

    Parameters
    ----------
    true, pred : ndarray of int
        Instance label images of the same shape (0 = background).

    Returns
    -------
    true_ids, pred_ids : ndarray
        Object ids of each overlapping pair.
    iou : ndarray
        Their intersection over union.
    """
    true = np.asarray(true).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    n_pred = int(pred.max(initial=0)) + 1
    both = (true > 0) & (pred > 0)
    pair_codes, intersections = np.unique(true[both] * n_pred + pred[both], return_counts=True)
    true_ids, pred_ids = np.divmod(pair_codes, n_pred)
    true_areas = np.bincount(true)
    pred_areas = np.bincount(pred)
    unions = true_areas[true_ids] + pred_areas[pred_ids] - intersections
    return true_ids, pred_ids, intersections / unions


def match_scores(true: np.ndarray, pred: np.ndarray) -> MatchScores:
    """Precision, recall, F1 at IoU > 0.5 and DSB AP of ``pred`` against ``true``.

    Both are instance label images of the same shape (0 = background). Objects are
    counted by their distinct non-zero ids.

    Parameters
    ----------
    true : ndarray of int
        The annotated objects.
    pred : ndarray of int
        The segmentation scored.

    Returns
    -------
    MatchScores
        Counts, precision, recall, F1 at IoU 0.5 and the DSB average precision (IoU 0.5 to 0.95).

    Raises
    ------
    ValueError
        When the shapes differ (both named).
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from truth shape {true.shape}",
            fix="compare label images of the same field",
        )
    n_true = int(np.count_nonzero(np.unique(true)))
    n_pred = int(np.count_nonzero(np.unique(pred)))
    _, _, iou = iou_matrix(true, pred)

    def counts(threshold: float) -> tuple[int, int, int]:
        tp = int(np.count_nonzero(iou > threshold))
        return tp, n_pred - tp, n_true - tp

    tp, fp, fn = counts(0.5)
    precision = tp / n_pred if n_pred else float(n_true == 0)
    recall = tp / n_true if n_true else float(n_pred == 0)
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    ap_values = []
    for threshold in AP_THRESHOLDS:
        t_tp, t_fp, t_fn = counts(threshold)
        denominator = t_tp + t_fp + t_fn
        ap_values.append(t_tp / denominator if denominator else 1.0)
    return MatchScores(
        n_true=n_true,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        ap=float(np.mean(ap_values)),
    )
