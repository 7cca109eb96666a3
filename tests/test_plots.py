import numpy as np
import pandas as pd
import pytest

from imaging.report.plots import dose_response, fit_dose_response, four_parameter_logistic, plate_heatmap, superplot


def test_heatmap_places_wells_on_the_plate_grid():
    wells = pd.DataFrame({"well": ["A01", "B03", "H12"], "row": [1, 2, 8], "column": [1, 3, 12], "v": [1.0, 2.0, 3.0]})
    figure = plate_heatmap(wells, "v", title="t", flagged_wells={"B03"})
    grid = figure.axes[0].images[0].get_array()
    assert grid.shape == (8, 12)
    assert grid[0, 0] == 1.0 and grid[1, 2] == 2.0 and grid[7, 11] == 3.0 and grid.mask[0, 1]
    crosses = [line for line in figure.axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_xydata().tolist() == [[2.0, 1.0]]


def test_superplot_draws_every_well_and_replicate_mean():
    wells = pd.DataFrame({"genotype": ["sgNT"] * 6 + ["KO"] * 6, "treatment": ["DMSO"] * 12,
                          "replicate": [1, 1, 2, 2, 3, 3] * 2, "plate": "P", "v": np.arange(12.0)})
    figure = superplot(wells, "v", control_genotype="sgNT", vehicle_treatment="DMSO")
    def points(size):
        return sum(len(c.get_offsets()) for c in figure.axes[0].collections
                   if hasattr(c, "get_sizes") and len(c.get_offsets()) and list(c.get_sizes()) == [size])

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
