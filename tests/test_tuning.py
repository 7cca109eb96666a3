"""Tuning saved as a pipeline: only moved controls change, comments and order survive."""

from __future__ import annotations

import pytest
import yaml

from imaging.config import load_pipeline, parse_pipeline
from imaging.errors import InputError
from imaging.plate.tuning import tuned_pipeline, tuned_pipeline_text, tuning_changes

ORIGINAL = """\
# my assay: keep this comment
schema_version: 1
name: mine
channels:
  dapi: {id: 1}
  gfp: {id: 2}
segmentation:
  method: classical
  channel: dapi
  nucleus_diameter_um: 9   # measured on the scope
cells:
  max_expansion_px: 12
measure:
  intensity:
    - channel: gfp
calls:
  - name: gfp_high
    column: gfp_nuclear_mean
    threshold: auto        # per plate
  - name: gfp_any
    column: gfp_cell_mean
    threshold: 40
"""


def controls(**moved):
    base = {
        "nucleus_diameter_px": 0.0,
        "min_distance_fraction": 0.4,
        "expansion_factor": 1.0,
        "threshold:gfp_high": 312.5,
        "threshold:gfp_any": 40.0,
    }
    return base | moved


@pytest.fixture()
def original(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(ORIGINAL)
    return path


def test_nothing_moved_writes_the_original_back_unchanged(original):
    pipeline = load_pipeline(original)
    assert tuning_changes(pipeline, controls(), controls()) == []
    assert tuned_pipeline_text(pipeline, [], original=original) == ORIGINAL


def test_moved_controls_only_and_auto_thresholds_stay_auto(original):
    pipeline = load_pipeline(original)
    changes = tuning_changes(pipeline, controls(), controls(nucleus_diameter_px=22.0, **{"threshold:gfp_any": 55.0}))
    assert [c.describe() for c in changes] == [
        "segmentation.nucleus_diameter_px: 9.0 um -> 22.0",
        "calls[gfp_any].threshold: 40.0 -> 55.0",
    ]
    text = tuned_pipeline_text(pipeline, changes, original=original)
    saved = parse_pipeline(yaml.safe_load(text))
    assert saved.segmentation.nucleus_diameter_px == 22.0 and saved.segmentation.nucleus_diameter_um is None
    assert saved.calls[0].threshold == "auto" and saved.calls[1].threshold == 55.0
    assert saved.cells.max_expansion_px == 12  # the reach was not touched
    assert "# my assay: keep this comment" in text and "threshold: auto        # per plate" in text
    assert text.index("segmentation:") < text.index("cells:") < text.index("calls:")


def test_reach_and_estimate_replace_the_absolute_settings(original):
    pipeline = load_pipeline(original)
    start = controls(nucleus_diameter_px=0.0)
    changes = tuning_changes(pipeline, controls(nucleus_diameter_px=18.0), start | {"expansion_factor": 0.5})
    keys = [c.key for c in changes]
    assert keys == ["segmentation.nucleus_diameter_px", "cells.expansion_factor"]
    saved = parse_pipeline(yaml.safe_load(tuned_pipeline_text(pipeline, changes, original=original)))
    assert saved.segmentation.nucleus_diameter_px is None and saved.segmentation.nucleus_diameter_um is None
    assert saved.cells.expansion_factor == 0.5 and saved.cells.max_expansion_px is None


def test_without_the_original_file_the_pipeline_is_written_out(tmp_path, original):
    pipeline = load_pipeline(original)
    changes = tuning_changes(pipeline, controls(), controls(min_distance_fraction=0.7))
    text = tuned_pipeline_text(pipeline, changes, original=tmp_path / "moved_away.yaml")
    assert parse_pipeline(yaml.safe_load(text)).segmentation.min_distance_fraction == 0.7


def test_an_invalid_result_is_refused(original):
    from imaging.plate.tuning import TuningChange

    pipeline = load_pipeline(original)
    with pytest.raises(InputError):
        tuned_pipeline_text(pipeline, [TuningChange("segmentation.min_distance_fraction", 0.4, 5.0)], original=original)


def test_review_calls_follow_the_batch_rule_for_missing_values():
    """The napari widget once had two rules of its own: on [0.1, NaN, 0.5] at 0.3 they gave
    False or NaN for the missing value; the batch leaves it uncalled."""
    import numpy as np
    import pandas as pd

    from imaging.features.thresholds import Threshold, apply_call
    from imaging.plate.review import calls_at, percent_positive

    values = pd.Series([0.1, np.nan, 0.5])
    calls = calls_at(values, 0.3)
    assert calls.tolist()[0] is False and calls.isna().tolist() == [False, True, False] and bool(calls[2])
    assert calls.equals(apply_call(values, Threshold(0.3, "fixed", 3)))
    assert percent_positive(pd.DataFrame({"v": values}), "v", 0.3) == 50.0  # the uncalled cell is not counted


def test_apply_measures_with_the_pipeline_save_writes(original):
    """One rule for the plugin's Apply and Save: the pipeline Apply measures with is the one
    the saved YAML gives, and with nothing moved it is the original."""
    pipeline = load_pipeline(original)
    assert tuned_pipeline(pipeline, []) == pipeline
    for moved in (
        {"nucleus_diameter_px": 22.0},
        {"nucleus_diameter_px": 0.0, "expansion_factor": 0.5},
        {"min_distance_fraction": 0.7, "threshold:gfp_any": 55.0},
    ):
        changes = tuning_changes(pipeline, controls(), controls(**moved))
        assert changes
        saved = parse_pipeline(yaml.safe_load(tuned_pipeline_text(pipeline, changes, original=original)))
        assert tuned_pipeline(pipeline, changes) == saved
