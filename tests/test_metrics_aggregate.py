import numpy as np
import pandas as pd
import pytest

from imaging.metrics import match_scores
from imaging.plate.summary import summarize_cells


def test_match_scores_on_hand_made_labels():
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # matched exactly
    truth[6:10, 6:10] = 2  # predicted too small: IoU 4/16
    truth[0:3, 6:9] = 3  # missed
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:4] = 7
    pred[8:10, 8:10] = 8
    pred[6:8, 0:2] = 9  # false positive
    scores = match_scores(truth, pred)
    assert (scores.tp, scores.fp, scores.fn) == (1, 2, 2)
    assert scores.precision == pytest.approx(1 / 3) and scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(2 / 6)
    # AP: 1 match at every IoU threshold 0.5..0.95 -> 1 / (1 + 2 + 2) each.
    assert scores.ap == pytest.approx(0.2)


def test_match_scores_empty_images():
    empty = np.zeros((4, 4), int)
    assert match_scores(empty, empty).f1 == 1.0
    one = empty.copy()
    one[1, 1] = 1
    assert match_scores(one, empty).f1 == 0.0


def test_summaries_use_means_medians_and_percentages():
    cells = pd.DataFrame(
        {
            "label": [1, 2, 3, 4],
            "cell_area_px": [10, 20, 30, 100],
            "x_nc_ratio": [1.0, 2.0, 3.0, 100.0],
            "sabgal_positive": pd.array([True, False, True, pd.NA], dtype="boolean"),
        }
    )
    summary = summarize_cells(cells, ["label", "cell_area_px", "x_nc_ratio"], ["sabgal_positive"])
    assert np.isnan(summary.pop("sabgal_positive_pct_mixture"))  # no mixture threshold given
    assert summary == {
        "n_cells": 4,
        "n_cells_in_readouts": 4,
        "sabgal_positive_pct": pytest.approx(200 / 3),
        "cell_area_px": 40.0,
        "x_nc_ratio": 2.5,
        "x_nc_ratio_mean": 26.5,
    }
    empty = summarize_cells(cells.iloc[:0], ["cell_area_px"], ["sabgal_positive"])
    assert empty["n_cells"] == 0 and np.isnan(empty["cell_area_px"]) and np.isnan(empty["sabgal_positive_pct"])
