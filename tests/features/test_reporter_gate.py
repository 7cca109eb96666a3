"""The reporter-expression gate: cells without the reporter are flagged and left out of readouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imaging.features.thresholds import reporter_expressed, reporter_gate_threshold
from imaging.plate import execute, plan_run
from tests.features.test_illumination import pipeline, write_plate


def test_auto_gate_finds_a_separate_population_near_background():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(2, 3, 90), rng.normal(400, 60, 910)])  # 9 % without the reporter
    gate = reporter_gate_threshold(values, "auto")
    assert gate.method == "mixture" and 15 < gate.value < 250
    expressed = reporter_expressed(values, gate)
    assert int((~expressed).sum()) == 90


def test_auto_gate_measures_near_background_from_the_cell_free_level_without_subtraction():
    """With ``background: none`` a cell without reporter reads at the cell-free level (here
    100), not 0: 100 vs 300 is a non-expressing population once that level is known."""
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(100, 4, 100), rng.normal(300, 25, 900)])
    assert reporter_gate_threshold(values, "auto").method == "none"  # 100 / 300 looks like two expressing levels
    gate = reporter_gate_threshold(values, "auto", background=100.0)
    assert gate.method == "mixture" and int((~reporter_expressed(values, gate)).sum()) == 100


@pytest.mark.parametrize(
    "values, reason",
    [
        (np.random.default_rng(1).lognormal(np.log(400), 0.3, 1000), "no separate"),  # every cell expresses
        (
            np.concatenate(
                [np.random.default_rng(2).normal(100, 10, 500), np.random.default_rng(3).normal(300, 30, 500)]
            ),
            "not near background",
        ),  # a drug raised the reporter 3-fold in half the wells: not a gate
    ],
)
def test_auto_gate_gates_nobody_without_a_non_expressing_population(values, reason):
    gate = reporter_gate_threshold(values, "auto")
    assert gate.method == "none" and gate.value == -np.inf and reason in gate.detail["reason"]
    assert reporter_expressed(values, gate).all()


def test_fixed_gate_and_missing_values():
    gate = reporter_gate_threshold([1.0, 5.0], 3.0)
    assert list(reporter_expressed(pd.Series([1.0, 5.0, np.nan, 3.0]), gate).astype(object)) == [
        False,
        True,
        pd.NA,
        False,
    ]


@pytest.mark.parametrize("background", ["local", "none"])
def test_cells_without_the_reporter_stay_in_cells_csv_flagged_and_leave_the_well_readouts(tmp_path, background):
    images = tmp_path / "images"
    images.mkdir()
    flat = np.ones((240, 320))
    truth = write_plate(
        images,
        np.random.default_rng(5),
        flat,
        n_fields=6,
        reporter=lambda rng: np.where(rng.random(40) < 0.2, 0.0, 600.0),
    )
    out = tmp_path / "out"
    result = execute(
        plan_run(
            pipeline(
                qc={"reporter_gate": {"column": "rep_cell_mean"}, "exclude_border_cells": False},
                measure={"intensity": [{"channel": "rep", "background": background}]},
            ),
            images,
        ),
        out,
    )
    gate = result.record["plates"]["P1"]["reporter_gate"]
    assert gate["method"] == "mixture"
    cells = pd.read_csv(out / "P1" / "cells.csv")
    wells = pd.read_csv(out / "P1" / "wells.csv").set_index("well")
    n_without = sum(int((levels == 0).sum()) for _, levels in truth.values())
    assert abs(int((~cells["reporter_expressed"]).sum()) - n_without) <= 2
    for well, group in cells.groupby("well"):
        kept = group[group["reporter_expressed"]]
        assert wells.at[well, "n_cells"] == len(group) and wells.at[well, "n_cells_in_readouts"] == len(kept)
        assert wells.at[well, "rep_nc_ratio"] == pytest.approx(kept["rep_nc_ratio"].median())
        assert wells.at[well, "rep_nc_ratio_mean"] == pytest.approx(kept["rep_nc_ratio"].mean())
    # the gated cells' ratios are noise around 1; the expressing cells' are far above
    assert cells.loc[~cells["reporter_expressed"], "rep_nc_ratio"].median() < 2
    assert cells.loc[cells["reporter_expressed"], "rep_nc_ratio"].median() > 4


def test_a_gate_on_a_column_the_pipeline_does_not_measure_is_refused():
    from imaging.errors import InputError

    with pytest.raises(InputError, match="reporter_gate uses column 'gfp_cell_mean'"):
        pipeline(qc={"reporter_gate": {"column": "gfp_cell_mean"}})
