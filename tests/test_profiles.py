"""pycytominer reads the profile export: aggregate and normalize run on it and agree with cells.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imaging.cli import main
from imaging.plate.profiles import feature_columns
from tests.conftest import copy_sample_wells

WELLS = ["A01", "A02", "B01", "B02"]


@pytest.fixture(scope="module")
def run(samples, pipelines, tmp_path_factory):
    root = copy_sample_wells(samples, WELLS, tmp_path_factory.mktemp("profiles"), assay="pjnk")
    out = root / "out"
    assert (
        main(
            [
                "run",
                str(pipelines / "pjnk.yaml"),
                str(root / "images"),
                "--out",
                str(out),
                "--workers",
                "1",
                "--platemap",
                str(root / "map.csv"),
            ]
        )
        == 0
    )
    return out


def test_profiles_carry_cellprofiler_names_and_numbers_as_0_1(run):
    assert main(["profiles", str(run)]) == 0
    profiles = pd.read_csv(run / "PJNK01" / "profiles.csv")
    cells = pd.read_csv(run / "PJNK01" / "cells.csv")
    assert len(profiles) == len(cells)
    assert {
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "Metadata_Genotype",
        "Metadata_ObjectNumber",
        "Metadata_PjnkHigh",
    } <= set(profiles.columns)
    assert set(profiles["Metadata_PjnkHigh"].dropna().unique()) <= {0, 1}
    assert profiles["Metadata_PjnkHigh"].sum() == cells["pjnk_high"].sum()
    np.testing.assert_array_equal(profiles["Nuclei_Intensity_MeanIntensity_PJNK"], cells["pjnk_nuclear_mean"])
    np.testing.assert_array_equal(profiles["Cytoplasm_Intensity_MeanIntensity_PJNK"], cells["pjnk_cytoplasm_mean"])
    np.testing.assert_array_equal(profiles["Nuclei_AreaShape_Area"], cells["nucleus_area_px"])
    assert all(c.startswith(("Metadata_", "Nuclei_", "Cytoplasm_", "Cells_")) for c in profiles.columns)


def test_pycytominer_aggregates_and_normalizes_the_export(run):
    pycytominer = pytest.importorskip("pycytominer")
    assert main(["profiles", str(run), "--format", "parquet"]) == 0
    profiles = pd.read_parquet(run / "PJNK01" / "profiles.parquet")
    features = feature_columns(profiles)
    aggregated = pycytominer.aggregate(
        population_df=profiles, strata=["Metadata_Plate", "Metadata_Well"], features=features, operation="median"
    )
    cells = pd.read_csv(run / "PJNK01" / "cells.csv")
    expected = cells.groupby("well")["pjnk_nuclear_mean"].median()
    got = aggregated.set_index("Metadata_Well")["Nuclei_Intensity_MeanIntensity_PJNK"]
    np.testing.assert_allclose(got.loc[expected.index], expected, rtol=1e-9)
    annotated = aggregated.merge(
        profiles.groupby("Metadata_Well", as_index=False)["Metadata_Genotype"].first(), on="Metadata_Well"
    )
    normalized = pycytominer.normalize(
        profiles=annotated,
        features=features,
        meta_features=["Metadata_Plate", "Metadata_Well", "Metadata_Genotype"],
        samples="Metadata_Genotype == 'sgNT'",
        method="standardize",
    )
    control = normalized[normalized["Metadata_Genotype"] == "sgNT"]["Nuclei_Intensity_MeanIntensity_PJNK"]
    assert len(control) >= 1 and abs(control.mean()) < 1e-9  # standardized against the controls
    assert len(normalized) == len(WELLS)


def test_every_compartment_measurement_has_a_profile_name():
    from imaging.features.intensity import COMPARTMENT_SUFFIXES
    from imaging.plate.profiles import INTENSITY_NAMES

    assert set(INTENSITY_NAMES) == set(COMPARTMENT_SUFFIXES)
