"""Curation decisions round-trip into rebuilt tables, comparisons and the run record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from imaging import curation
from imaging.cli import main
from imaging.errors import InputError
from imaging.plate import execute, plan_run
from imaging.plate.tables import rebuild_tables
from tests.conftest import copy_sample_wells


@pytest.fixture()
def run(samples, pipelines, tmp_path):
    """A finished run of the sample SA-beta-gal plate (rows A and C: 8 wells, 16 fields)."""
    wells = [f"{row}{column:02d}" for row in "AC" for column in range(1, 5)]
    copy_sample_wells(samples, wells, tmp_path)
    out = tmp_path / "out"
    execute(plan_run(pipelines / "sabgal.yaml", tmp_path / "images", platemap=tmp_path / "map.csv"), out)
    return out


def tables(out):
    plate = out / "SABGAL01"
    return (
        pd.read_csv(plate / "cells.csv"),
        pd.read_csv(plate / "fields.csv"),
        pd.read_csv(plate / "wells.csv").set_index("well"),
    )


def test_latest_decision_wins(tmp_path):
    curation.record(tmp_path, action="exclude_field", plate="P", well="A1", site=2, reason="bubble", user="ana")
    curation.record(tmp_path, action="exclude_well", plate="P", well="B01", reason="contaminated")
    curation.record(
        tmp_path, action="set_call", plate="P", well="A01", site=1, label=7, call="pos", value=True, reason="mitotic"
    )
    curation.record(tmp_path, action="include_well", plate="P", well="B01", reason="was fine")
    resolved = curation.load(tmp_path)
    assert list(resolved.excluded_fields) == [("P", "A01", 2, None)]
    assert resolved.excluded_fields["P", "A01", 2, None].startswith("bubble by ana")
    assert resolved.excluded_wells == {} and resolved.calls == {("P", "A01", 1, None, 7, "pos"): True}
    assert len(resolved.log) == 4
    with pytest.raises(InputError, match="need a site"):
        curation.record(tmp_path, action="exclude_field", plate="P", well="A01", reason="blur")
    with pytest.raises(InputError, match="needs a reason"):  # plate and tissue decisions alike
        curation.record(tmp_path, action="exclude_well", plate="P", well="C01", reason="  ")
    assert len(curation.read_log(tmp_path)) == 4  # the refused decisions were not written


def test_excluding_a_field_rebuilds_tables_and_record(run):
    cells, fields, wells = tables(run)
    site2 = fields.query("well == 'A03' and site == 2").iloc[0]
    curation.record(run, action="exclude_field", plate="SABGAL01", well="A03", site=2, reason="debris", user="bo")
    record = rebuild_tables(run)
    _, fields_after, wells_after = tables(run)
    assert wells_after.loc["A03", "n_fields_used"] == 1
    assert wells_after.loc["A03", "n_cells"] == wells.loc["A03", "n_cells"] - site2["n_cells"]
    assert "field excluded: debris by bo" in wells_after.loc["A03", "curation"]
    excluded = fields_after.query("well == 'A03' and site == 2").iloc[0]
    assert not excluded["used_in_wells"] and excluded["qc_pass"]
    assert record["curation"]["excluded_fields"][0]["well"] == "A03"
    assert json.loads((run / "run.json").read_text())["curation"]["decisions"][0]["user"] == "bo"
    untouched = wells.drop(index="A03")[["n_cells", "sabgal_positive_pct"]]
    pd.testing.assert_frame_equal(wells_after.drop(index="A03")[["n_cells", "sabgal_positive_pct"]], untouched)


def test_correcting_a_call_changes_the_well_percentage(run):
    cells, _, wells = tables(run)
    negative = cells[
        (cells["well"] == "A01") & ~cells["sabgal_positive"] & cells["field_used_in_wells"] & ~cells["touches_border"]
    ].iloc[0]  # border cells are not in the well's readouts
    curation.record(
        run,
        action="set_call",
        plate="SABGAL01",
        well="A01",
        site=int(negative["site"]),
        label=int(negative["label"]),
        call="sabgal_positive",
        value=True,
        reason="clearly blue",
    )
    rebuild_tables(run)
    cells_after, _, wells_after = tables(run)
    cell = cells_after[
        (cells_after["well"] == "A01")
        & (cells_after["site"] == negative["site"])
        & (cells_after["label"] == negative["label"])
    ].iloc[0]
    assert cell["sabgal_positive"] and cell["curated"]
    n = wells.loc["A01", "n_cells_in_readouts"]
    assert wells_after.loc["A01", "sabgal_positive_pct"] == pytest.approx(
        wells.loc["A01", "sabgal_positive_pct"] + 100 / n
    )


def test_excluded_well_leaves_comparisons_and_undo_restores_tables(run, capsys):
    before = {name: (run / "SABGAL01" / name).read_bytes() for name in ("cells.csv", "wells.csv")}
    curation.record(run, action="exclude_well", plate="SABGAL01", well="C04", reason="mycoplasma")
    assert main(["report", str(run)]) == 0
    assert "1 curation decision(s)" in capsys.readouterr().out
    wells = pd.read_csv(run / "SABGAL01" / "wells.csv").set_index("well")
    assert wells.loc["C04", "n_fields_used"] == 0 and np.isnan(wells.loc["C04", "sabgal_positive_pct"])
    comparisons = pd.read_csv(run / "comparisons.csv")
    combination = comparisons[
        (comparisons["comparison"] == "genotype_vs_control") & (comparisons["treatment"] == "TAM+PALBO")
    ]
    assert (combination["n_test"] == 0).all()  # the knockout's only combination well is gone
    assert "mycoplasma" in (run / "report.html").read_text()
    curation.record(run, action="include_well", plate="SABGAL01", well="C04", reason="test was negative")
    rebuild_tables(run)
    for name, content in before.items():
        assert (run / "SABGAL01" / name).read_bytes() == content


def test_rebuild_needs_the_per_field_results(run):
    shutil.rmtree(run / "SABGAL01" / ".fields")
    with pytest.raises(InputError, match="per-field results of plate SABGAL01 are missing"):
        rebuild_tables(run)
