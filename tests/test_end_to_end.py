"""The shipped pipelines on the shipped sample plates, against their ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.metrics import match_scores
from imaging.plate import execute, plan_run


@pytest.fixture(scope="session")
def sabgal_run(samples, pipelines, tmp_path_factory):
    out = tmp_path_factory.mktemp("sabgal_run")
    plate = samples / "sabgal_plate"
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "platemap.csv")
    return execute(plan, out, workers=2, save_labels=True)


def test_sabgal_percent_positive_within_5_points_of_truth(sabgal_run, samples):
    wells = pd.read_csv(sabgal_run.out_dir / "SABGAL01" / "wells.csv")
    truth = pd.read_csv(samples / "sabgal_plate" / "truth_wells.csv")
    merged = wells.merge(truth, on=["plate", "well"])
    assert len(merged) == 16
    error = (merged["sabgal_positive_pct"] - merged["true_sabgal_positive_pct"]).abs()
    assert error.max() <= 5.0, merged[["well", "sabgal_positive_pct", "true_sabgal_positive_pct"]]
    mixture = (merged["sabgal_positive_pct_mixture"] - merged["true_sabgal_positive_pct"]).abs()
    assert mixture.max() <= 5.0 and mixture.mean() <= 1.5, merged[
        ["well", "sabgal_positive_pct_mixture", "true_sabgal_positive_pct"]
    ]


def test_cell_counts_within_10_percent(sabgal_run, pjnk_run, samples):
    for run, plate, folder in ((sabgal_run, "SABGAL01", "sabgal_plate"), (pjnk_run, "PJNK01", "pjnk_plate")):
        wells = pd.read_csv(run.out_dir / plate / "wells.csv")
        truth = pd.read_csv(samples / folder / "truth_wells.csv")
        merged = wells.merge(truth, on=["plate", "well"])
        relative = (merged["n_cells"] - merged["true_n_cells"]).abs() / merged["true_n_cells"]
        assert relative.max() <= 0.10, merged[["well", "n_cells", "true_n_cells"]]


def test_pjnk_wells_track_the_truth(pjnk_run, samples):
    wells = pd.read_csv(pjnk_run.out_dir / "PJNK01" / "wells.csv")
    truth = pd.read_csv(samples / "pjnk_plate" / "truth_wells.csv")
    merged = wells.merge(truth, on=["plate", "well"])
    assert np.corrcoef(merged["pjnk_nuclear_mean"], merged["true_pjnk_nuclear_mean"])[0, 1] >= 0.98
    # Well ordering as in the truth (Spearman = 1 up to ties of near-equal wells).
    ranks = merged[["pjnk_nuclear_mean", "true_pjnk_nuclear_mean"]].rank()
    assert ranks.corr().iloc[0, 1] >= 0.97
    by_condition = merged.groupby(["genotype", "treatment"])["pjnk_nuclear_mean"].mean()
    assert by_condition["sgNT", "TAM+PALBO"] > 2 * by_condition["sgNT", "DMSO"]
    assert (merged["pjnk_nc_ratio"] > 1).all()  # planted: nuclear ~ 2.9x cytoplasmic


def test_blurred_field_is_flagged_and_left_out(sabgal_run):
    fields = pd.read_csv(sabgal_run.out_dir / "SABGAL01" / "fields.csv")
    failed = fields[~fields["qc_pass"]]
    assert failed[["well", "site"]].values.tolist() == [["B03", 1]]
    assert failed["qc_reasons"].iloc[0].startswith("out of focus")
    wells = pd.read_csv(sabgal_run.out_dir / "SABGAL01" / "wells.csv").set_index("well")
    assert wells.loc["B03", "n_fields"] == 2 and wells.loc["B03", "n_fields_used"] == 1
    assert wells.loc["B03", "n_cells"] == fields.query("well == 'B03' and site == 2")["n_cells"].iloc[0]
    record = json.loads((sabgal_run.out_dir / "run.json").read_text())
    assert record["plates"]["SABGAL01"]["qc"]["failed_fields"][0]["well"] == "B03"


def test_tables_carry_plate_map_and_documented_columns(sabgal_run):
    plate_dir = sabgal_run.out_dir / "SABGAL01"
    wells = pd.read_csv(plate_dir / "wells.csv")
    for column in (
        "plate",
        "well",
        "row",
        "column",
        "cell_line",
        "genotype",
        "treatment",
        "replicate",
        "n_fields",
        "n_fields_used",
        "n_fields_failed_qc",
        "n_cells",
        "sabgal_positive_pct",
        "sabgal_od_mean",
        "sabgal_stained_fraction",
        "nucleus_area_px",
        "cell_area_px",
    ):
        assert column in wells.columns, column
    cells = pd.read_csv(plate_dir / "cells.csv")
    assert len(cells) == sabgal_run.record["plates"]["SABGAL01"]["n_cells"]
    assert {"genotype", "treatment", "label", "sabgal_positive", "field_used_in_wells"} <= set(cells.columns)
    # wells.csv is exactly the aggregate of cells.csv over fields used.
    used = cells[cells["field_used_in_wells"]]
    recomputed = used.groupby("well")["sabgal_positive"].mean() * 100
    np.testing.assert_allclose(wells.set_index("well")["sabgal_positive_pct"], recomputed.sort_index())


def test_run_record(sabgal_run, samples):
    record = json.loads((sabgal_run.out_dir / "run.json").read_text())
    assert record["software"]["numpy"] and record["software"]["scikit-image"]
    assert record["pipeline"]["config"]["name"] == "sabgal" and len(record["pipeline"]["sha256"]) == 64
    assert record["inputs"]["naming"] == "imagexpress" and record["inputs"]["n_fields"] == 32
    threshold = record["plates"]["SABGAL01"]["thresholds"]["sabgal_positive"]
    assert threshold["method"] == "mixture" and 0 < threshold["value"] < 0.2
    assert record["plates"]["SABGAL01"]["xgal_vector"]["source"] == "default"


def test_saved_labels_match_the_truth(sabgal_run, samples):
    nuclei = tifffile.imread(sabgal_run.out_dir / "SABGAL01" / "labels" / "SABGAL01_A01_s1_nuclei.tif")
    cells = tifffile.imread(sabgal_run.out_dir / "SABGAL01" / "labels" / "SABGAL01_A01_s1_cells.tif")
    truth = tifffile.imread(samples / "sabgal_plate" / "truth" / "SABGAL01_A01_s1_nuclei.tif")
    assert nuclei.shape == truth.shape == cells.shape and nuclei.dtype == cells.dtype == np.uint16
    assert match_scores(truth, nuclei).f1 >= 0.95
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()


def test_a_second_run_reuses_every_field_and_gives_identical_tables(sabgal_run, samples, pipelines):
    plate = samples / "sabgal_plate"
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "platemap.csv")
    before = {name: (sabgal_run.out_dir / "SABGAL01" / name).read_bytes() for name in ("cells.csv", "wells.csv")}
    again = execute(plan, sabgal_run.out_dir, workers=1, save_labels=True)
    assert again.record["fields_reused_from_previous_run"] == 32
    for name, content in before.items():
        assert (sabgal_run.out_dir / "SABGAL01" / name).read_bytes() == content


def test_estimated_stain_vector_recovers_the_rendered_xgal_colour(samples, pipelines, tmp_path):
    from imaging.config import load_pipeline, parse_pipeline
    from imaging.stains.optical import angle_between
    from imaging.synthetic import TRUE_XGAL_VECTOR

    data = load_pipeline(pipelines / "sabgal.yaml").model_dump(mode="json")
    data["measure"]["sabgal"]["stain_vector"] = "estimate"
    pipeline = parse_pipeline(data)
    plate = samples / "sabgal_plate"
    result = execute(plan_run(pipeline, plate / "images", platemap=plate / "platemap.csv"), tmp_path, workers=2)
    stain = result.record["plates"]["SABGAL01"]["xgal_vector"]
    assert stain["source"] == "estimated"
    assert angle_between(stain["vector"], TRUE_XGAL_VECTOR) < 5
    truth = pd.read_csv(plate / "truth_wells.csv")
    merged = result.wells["SABGAL01"].merge(truth, on=["plate", "well"])
    assert (merged["sabgal_positive_pct"] - merged["true_sabgal_positive_pct"]).abs().max() <= 5


def test_changing_only_qc_calls_or_comparisons_reuses_every_field(samples, pipelines, tmp_path):
    """Changing only the comparison block once recomputed every field."""
    from imaging.config import load_pipeline, parse_pipeline

    plate = samples / "pjnk_plate"
    base = load_pipeline(pipelines / "pjnk.yaml").model_dump(mode="json")
    first = execute(plan_run(parse_pipeline(base), plate / "images", platemap=plate / "platemap.csv"), tmp_path)
    tuned = dict(
        base,
        qc=dict(base["qc"], max_relative_blur=2.0),
        calls=[dict(base["calls"][0], threshold=500.0)],
        comparison=dict(base["comparison"], readouts=["pjnk_high_pct"]),
    )
    again = execute(plan_run(parse_pipeline(tuned), plate / "images", platemap=plate / "platemap.csv"), tmp_path)
    assert again.record["fields_reused_from_previous_run"] == first.record["inputs"]["n_fields"] == 32
    cells = pd.read_csv(tmp_path / "PJNK01" / "cells.csv")
    assert (cells["pjnk_high"] == (cells["pjnk_nuclear_mean"] > 500.0)).all()  # the new threshold applied
    assert again.record["plates"]["PJNK01"]["thresholds"]["pjnk_high"]["method"] == "fixed"


def test_border_cells_can_be_left_out_of_readouts_and_are_still_counted(samples, pipelines, tmp_path):
    from imaging.config import load_pipeline, parse_pipeline

    plate = samples / "pjnk_plate"
    data = load_pipeline(pipelines / "pjnk.yaml").model_dump(mode="json")
    data["qc"]["exclude_border_cells"] = True
    result = execute(plan_run(parse_pipeline(data), plate / "images", platemap=plate / "platemap.csv"), tmp_path)
    cells = pd.read_csv(tmp_path / "PJNK01" / "cells.csv")
    wells = result.wells["PJNK01"].set_index("well")
    used = cells[cells["field_used_in_wells"]]
    inner = used[~used["touches_border"]]
    assert inner.shape[0] < used.shape[0]  # the fields do have border cells
    for well, group in used.groupby("well"):
        interior = group[~group["touches_border"]]
        assert wells.at[well, "n_cells"] == len(group) and wells.at[well, "n_cells_in_readouts"] == len(interior)
        assert wells.at[well, "pjnk_nuclear_mean"] == pytest.approx(interior["pjnk_nuclear_mean"].mean())
