"""Time series (``naming.timepoint: all``): each time point a field, a ``timepoint`` column in
every table, and the same numbers as a run of each time point alone.

The plate: four wells of the shipped pJNK sample plate at two time points, the second with
the pJNK channel 1.5 times brighter (the background is scaled too, so the background-
subtracted intensities scale exactly). It is written as a MetaXpress time-lapse export
(``TimePoint_1/``, ``TimePoint_2/``) and, with bioio's own writer, as one OME-TIFF whose
scenes have a T axis.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging import curation
from imaging.cli import main
from imaging.plate.review import RunReview
from imaging.plate.tables import rebuild_tables
from tests.conftest import copy_sample_wells

WELLS = ["A01", "A02", "B01", "B02"]
BRIGHTER = 1.5
CALLS = ["pjnk_high_pct", "pjnk_high_pct_mixture"]  # auto thresholds pool the run's time points: not compared


@pytest.fixture(scope="module")
def series(samples, pipelines, tmp_path_factory):
    """The plate as TimePoint folders (and as an OME-TIFF time series when bioio is there),
    with pipelines for every time point and for one."""
    tmp = tmp_path_factory.mktemp("series")
    root = copy_sample_wells(samples, WELLS, tmp / "plate", assay="pjnk")
    export = tmp / "export"
    stacks = {}
    for path in sorted((root / "images").glob("*.tif")):
        image = tifffile.imread(path)
        well, site, channel = re.search(r"_([A-P]\d\d)_s(\d+)_w(\d)", path.name).groups()
        for t in (1, 2):
            scaled = (
                image if channel == "1" or t == 1 else np.clip(np.rint(image * BRIGHTER), 0, 65535).astype(image.dtype)
            )
            (export / f"TimePoint_{t}").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(export / f"TimePoint_{t}" / path.name, scaled)
            stacks.setdefault((well, int(site)), {}).setdefault(t, {})[int(channel)] = scaled
    text = (pipelines / "pjnk.yaml").read_text()
    yamls = {}
    for name, choice in (("all", "all"), ("t1", "1"), ("t2", "2")):
        yamls[name] = tmp / f"pjnk_{name}.yaml"
        yamls[name].write_text(text.replace("  preset: auto", f"  preset: auto\n  timepoint: {choice}"))
    return {"root": root, "export": export, "stacks": stacks, "yamls": yamls, "tmp": tmp}


def _run(series, pipeline: str, source: Path, out: Path) -> Path:
    assert (
        main(
            [
                "run",
                str(series["yamls"][pipeline]),
                str(source),
                "--out",
                str(out),
                "--platemap",
                str(series["root"] / "map.csv"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    return out / "PJNK01"


@pytest.fixture(scope="module")
def every(series):
    return _run(series, "all", series["export"], series["tmp"] / "every")


@pytest.fixture(scope="module")
def alone(series):
    """Runs of one time point each (naming.timepoint: 1, then 2)."""
    return {t: _run(series, f"t{t}", series["export"], series["tmp"] / f"alone{t}") for t in (1, 2)}


def test_every_time_point_is_a_field_and_each_table_has_a_timepoint_column(series, every):
    cells, fields, wells = (pd.read_csv(every / f"{t}.csv") for t in ("cells", "fields", "wells"))
    for table in (cells, fields):
        assert sorted(table["timepoint"].unique()) == [1, 2]
        assert table.columns.get_loc("timepoint") == table.columns.get_loc("site") + 1
    assert list(wells.columns[:5]) == ["plate", "well", "row", "column", "timepoint"]
    assert len(wells) == 2 * len(WELLS) and len(fields) == 2 * len(series["stacks"])
    import json

    entry = json.loads((every.parent / "run.json").read_text())["plates"]["PJNK01"]
    assert (entry["n_wells"], entry["n_timepoints"]) == (len(WELLS), 2)
    assert sorted(p.name for p in (every / ".fields").glob("*.json"))[0] == "PJNK01_A01_s1_t1.json"
    labels = sorted(p.name for p in (every / "labels").glob("*_nuclei.tif"))
    assert labels[:2] == ["PJNK01_A01_s1_t1_nuclei.tif", "PJNK01_A01_s1_t2_nuclei.tif"]
    # the pJNK channel is 1.5 times brighter at time point 2, the nuclei unchanged
    by_time = wells.set_index(["well", "timepoint"])
    ratio = (
        by_time.xs(2, level="timepoint")["pjnk_nuclear_mean"] / by_time.xs(1, level="timepoint")["pjnk_nuclear_mean"]
    )
    assert np.allclose(ratio, BRIGHTER, rtol=0.01), ratio
    assert (by_time.xs(2, level="timepoint")["n_cells"] == by_time.xs(1, level="timepoint")["n_cells"]).all()


def test_each_time_point_has_the_numbers_of_a_run_of_that_time_point_alone(every, alone):
    wells = pd.read_csv(every / "wells.csv")
    cells = pd.read_csv(every / "cells.csv")
    for t in (1, 2):
        expected = pd.read_csv(alone[t] / "wells.csv").drop(columns=CALLS)
        got = wells[wells["timepoint"] == t].drop(columns=["timepoint", *CALLS]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)
        expected_cells = pd.read_csv(alone[t] / "cells.csv").drop(columns="pjnk_high")
        got_cells = cells[cells["timepoint"] == t].drop(columns=["timepoint", "pjnk_high"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got_cells, expected_cells)


def test_an_ome_tiff_time_series_gives_the_time_point_folders_tables(series, every):
    pytest.importorskip("bioio_ome_tiff")
    from bioio.writers import OmeTiffWriter

    folder = series["tmp"] / "ometiff"
    folder.mkdir()
    keys = sorted(series["stacks"])
    OmeTiffWriter.save(
        [np.stack([np.stack([series["stacks"][k][t][c] for c in (1, 2)]) for t in (1, 2)]) for k in keys],
        folder / "PJNK01.ome.tif",
        dim_order="TCYX",
        image_name=[f"{well}_s{site}" for well, site in keys],
    )
    plate = _run(series, "all", folder, series["tmp"] / "from_ometiff")
    for table in ("cells.csv", "wells.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(plate / table), pd.read_csv(every / table))
    fields = pd.read_csv(plate / "fields.csv")
    assert (fields["source_timepoint"] == fields["timepoint"]).all()


def test_comparisons_and_report_are_per_time_point(every, alone):
    out = every.parent
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert comparisons.columns[0] == "timepoint" and sorted(comparisons["timepoint"].unique()) == [1, 2]
    for t in (1, 2):  # the tests of a run of that time point alone; q-values differ (twice the tests)
        mine = comparisons[(comparisons["timepoint"] == t) & (comparisons["readout"] == "pjnk_nuclear_mean")]
        theirs = pd.read_csv(alone[t].parent / "comparisons.csv").query("readout == 'pjnk_nuclear_mean'")
        assert len(mine) == len(theirs) > 0
        assert np.allclose(mine["p_value"], theirs["p_value"], equal_nan=True)
        assert np.allclose(mine["difference"], theirs["difference"], equal_nan=True)
    assert sorted(pd.read_csv(out / "well_scores.csv")["timepoint"].unique()) == [1, 2]
    assert sorted(pd.read_csv(out / "plate_qc.csv")["timepoint"].unique()) == [1, 2]
    html = (out / "report.html").read_text()
    assert 'id="time"' in html and "Plate maps (time point 2)" in html
    assert (out / "plots" / "time_pjnk_nuclear_mean.png").is_file()


def test_curation_and_review_address_one_time_point(series, every):
    out = every.parent
    before = pd.read_csv(every / "wells.csv").set_index(["well", "timepoint"])
    curation.record(out, action="exclude_field", plate="PJNK01", well="A01", site=1, timepoint=2, reason="drift")
    rebuild_tables(out)
    after = pd.read_csv(every / "wells.csv").set_index(["well", "timepoint"])
    assert after.loc[("A01", 2), "n_fields_used"] == before.loc[("A01", 2), "n_fields_used"] - 1
    assert after.loc[("A01", 1), "n_fields_used"] == before.loc[("A01", 1), "n_fields_used"]
    assert "drift" in after.loc[("A01", 2), "curation"] and pd.isna(after.loc[("A01", 1), "curation"])
    (decision,) = curation.in_force(curation.load(out))
    assert decision.text.startswith("field PJNK01 A01 s1 t2 excluded")

    review = RunReview.open_run(out)
    assert review.timepoints("PJNK01") == [1, 2] and review.sites("PJNK01", "A01", 2) == [1, 2]
    loaded = review.load_field("PJNK01", "A02", 1, timepoint=2)
    assert not loaded.segmented_again and loaded.key == ("PJNK01", "A02", 1, 2)
    assert (loaded.table["timepoint"] == 2).all() and len(loaded.table) == int(loaded.nuclei.max())
    assert len(review.wells_table("PJNK01", 1)) == len(WELLS)
    curation.record(out, action="include_field", plate="PJNK01", well="A01", site=1, timepoint=2, reason="undo")
    rebuild_tables(out)


def test_profiles_carry_the_time_point_and_pycytominer_aggregates_per_time_point(every):
    pycytominer = pytest.importorskip("pycytominer")
    assert main(["profiles", str(every.parent)]) == 0
    profiles = pd.read_csv(every / "profiles.csv")
    assert sorted(profiles["Metadata_Timepoint"].unique()) == [1, 2]
    per_well = pycytominer.aggregate(
        profiles,
        strata=["Metadata_Plate", "Metadata_Well", "Metadata_Timepoint"],
        features=["Nuclei_Intensity_MeanIntensity_PJNK"],
        operation="mean",
    )
    assert len(per_well) == 2 * len(WELLS)
    by_time = per_well.set_index(["Metadata_Well", "Metadata_Timepoint"])["Nuclei_Intensity_MeanIntensity_PJNK"]
    assert np.allclose(by_time.xs(2, level=1) / by_time.xs(1, level=1), BRIGHTER, rtol=0.01)
