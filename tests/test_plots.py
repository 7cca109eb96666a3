import numpy as np
import pandas as pd
import pytest

from imaging.report.plots import dose_response, plate_heatmap, superplot
from imaging.stats import dose_response_table, fit_dose_response, four_parameter_logistic


def test_heatmap_places_wells_on_the_plate_grid():
    wells = pd.DataFrame({"well": ["A01", "B03", "H12"], "row": [1, 2, 8], "column": [1, 3, 12], "v": [1.0, 2.0, 3.0]})
    figure = plate_heatmap(wells, "v", title="t", flagged_wells={"B03"})
    grid = figure.axes[0].images[0].get_array()
    assert grid.shape == (8, 12)
    assert grid[0, 0] == 1.0 and grid[1, 2] == 2.0 and grid[7, 11] == 3.0 and grid.mask[0, 1]
    crosses = [line for line in figure.axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_xydata().tolist() == [[2.0, 1.0]]


def test_superplot_draws_every_well_and_replicate_mean():
    wells = pd.DataFrame(
        {
            "genotype": ["sgNT"] * 6 + ["KO"] * 6,
            "treatment": ["DMSO"] * 12,
            "replicate": [1, 1, 2, 2, 3, 3] * 2,
            "plate": "P",
            "v": np.arange(12.0),
        }
    )
    figure = superplot(wells, "v", control_genotype="sgNT", vehicle_treatment="DMSO")

    def points(size):
        return sum(
            len(c.get_offsets())
            for c in figure.axes[0].collections
            if hasattr(c, "get_sizes") and len(c.get_offsets()) and list(c.get_sizes()) == [size]
        )

    assert points(12) == 12  # every well
    assert points(70) == 6  # every replicate mean (3 replicates x 2 genotypes)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["DMSO\nsgNT", "DMSO\nKO"]


def test_dose_response_fit_recovers_the_ec50():
    doses = np.repeat([0.01, 0.1, 1, 10, 100], 3)
    values = four_parameter_logistic(doses, 5, 80, np.log10(2.0), 1.2)
    values = values + np.random.default_rng(0).normal(0, 0.5, len(values))
    fit = fit_dose_response(doses, values)
    assert fit["ec50"] == pytest.approx(2.0, rel=0.15)
    wells = pd.DataFrame({"dose": doses, "v": values, "genotype": "sgNT"})
    assert dose_response(wells, "v") is not None
    assert dose_response(wells.drop(columns="dose"), "v") is None
    assert fit["ec50_ci_low"] < 2.0 < fit["ec50_ci_high"] and fit["ec50_ci_high"] / fit["ec50_ci_low"] < 2


def test_dose_response_table_fits_each_compound_apart():
    """Two compounds once pooled into one curve per genotype, the EC50 only in a PNG legend."""
    rng = np.random.default_rng(1)
    doses = np.repeat([0.01, 0.1, 1, 10, 100], 3)
    rows = []
    for compound, ec50, hill in (("tamoxifen", 2.0, 1.0), ("palbociclib", 0.2, -1.5)):
        values = four_parameter_logistic(doses, 10, 90, np.log10(ec50), hill) + rng.normal(0, 1.0, len(doses))
        rows += [
            {"treatment": compound, "genotype": "sgNT", "dose": d, "dose_unit": "uM", "v": v}
            for d, v in zip(doses, values)
        ]
    rows += [{"treatment": "DMSO", "genotype": "sgNT", "dose": 0.0, "dose_unit": "uM", "v": 50.0}] * 3
    rows += [{"treatment": "other", "genotype": "sgNT", "dose": d, "dose_unit": "uM", "v": 1.0} for d in (1, 10)]
    table = dose_response_table(pd.DataFrame(rows), ["v"], vehicle_treatment="DMSO").set_index("compound")
    assert set(table.index) == {"tamoxifen", "palbociclib", "other"}  # not the vehicle
    assert table.at["tamoxifen", "ec50"] == pytest.approx(2.0, rel=0.2)
    assert table.at["palbociclib", "ec50"] == pytest.approx(0.2, rel=0.2)
    assert table.at["palbociclib", "hill"] < 0 < table.at["tamoxifen", "hill"]
    assert table.at["tamoxifen", "n_doses"] == 5 and table.at["tamoxifen", "dose_unit"] == "uM"
    assert table.at["other", "fit_status"] == "too few doses" and np.isnan(table.at["other", "ec50"])
