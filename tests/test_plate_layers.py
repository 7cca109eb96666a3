"""A plate run as viewer layers (what the napari reader returns), without Qt."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from imaging.errors import InputError
from imaging.io.run_folder import source_of
from imaging.plate import execute, plan_run
from imaging.plate.layers import NEGATIVE, POSITIVE, plate_run_layers
from imaging.plate.review import open_review, pipeline_in_folder
from tests.conftest import copy_sample_wells


@pytest.fixture(scope="module")
def sabgal_run(samples, pipelines, tmp_path_factory):
    root = copy_sample_wells(samples, ["A01", "A04"], tmp_path_factory.mktemp("layers_run"))
    out = root / "out"
    execute(plan_run(pipelines / "sabgal.yaml", root / "images", platemap=root / "map.csv"), out, save_labels=True)
    return out


def test_a_run_opens_on_its_first_field_with_the_batch_table(sabgal_run):
    layers = plate_run_layers(sabgal_run)
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["brightfield", "dapi", "nuclei", "cells"]
    assert [kind for _, _, kind in layers] == ["image", "image", "labels", "labels"]
    (bright, bright_kwargs, _), (dapi, dapi_kwargs, _), _, (cells, cell_kwargs, _) = layers
    assert bright_kwargs["rgb"] and bright.shape[-1] == 3 and dapi.ndim == 2
    assert dapi_kwargs["blending"] == "additive"
    table = pd.read_csv(sabgal_run / "SABGAL01" / "cells.csv")
    field = table[(table["well"] == "A01") & (table["site"] == 1)].reset_index(drop=True)
    features = cell_kwargs["features"]
    assert len(features) == len(field) > 10
    np.testing.assert_allclose(features["sabgal_od_mean"], field["sabgal_od_mean"])
    assert set(np.unique(cells[cells > 0])) == set(features["index"]) == set(field["label"])
    colours = cell_kwargs["colormap"]
    for label, positive in zip(field["label"], field["sabgal_positive"].astype(bool)):
        assert colours[int(label)] == (POSITIVE if positive else NEGATIVE)
    assert colours[0][3] == 0  # background transparent
    stand_ins = [SimpleNamespace(metadata=kwargs["metadata"]) for _, kwargs, _ in layers]
    assert source_of(stand_ins, kind="plate") == sabgal_run and source_of(stand_ins, kind="tissue") is None


def test_a_plate_folder_with_one_pipeline_opens_segmented(samples, pipelines, tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    for path in (samples / "sabgal_plate" / "images").glob("SABGAL01_A01_*"):
        shutil.copy(path, folder / path.name)
    assert pipeline_in_folder(folder) is None
    shutil.copy(pipelines / "sabgal.yaml", folder / "sabgal.yaml")
    assert pipeline_in_folder(folder) == folder / "sabgal.yaml"
    layers = plate_run_layers(folder)
    _, cell_kwargs, _ = layers[-1]
    assert len(cell_kwargs["features"]) > 10 and "sabgal_od_mean" in cell_kwargs["features"]
    shutil.copy(pipelines / "pjnk.yaml", folder / "pjnk.yaml")  # two pipelines: which one is a guess
    assert pipeline_in_folder(folder) is None
    with pytest.raises(InputError, match="neither a run folder"):
        open_review(folder)


def test_feature_colours_scale_over_the_field_and_grey_the_missing():
    from imaging.plate.layers import UNDEFINED, feature_colours

    colours = feature_colours([3, 5, 9], [1.0, float("nan"), 3.0], cmap="viridis")
    from matplotlib import colormaps

    assert colours[3] == tuple(colormaps["viridis"](0.0)) and colours[9] == tuple(colormaps["viridis"](1.0))
    assert colours[5] == UNDEFINED and colours[0][3] == 0
