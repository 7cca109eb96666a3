import pandas as pd

from imaging.synthetic import make_plate


def test_sample_plate_is_reproducible(samples, tmp_path):
    paths = make_plate(tmp_path, assay="pjnk", seed=1)
    shipped = pd.read_csv(samples / "pjnk_plate" / "truth_wells.csv")
    pd.testing.assert_frame_equal(pd.read_csv(paths["truth_wells"]), shipped)
    assert (paths["images"] / "PJNK01_A01_s1_w1.tif").read_bytes() == (
        samples / "pjnk_plate" / "images" / "PJNK01_A01_s1_w1.tif"
    ).read_bytes()


def test_planted_biology_in_the_truth(samples):
    truth = pd.read_csv(samples / "sabgal_plate" / "truth_wells.csv")
    layout = pd.read_csv(samples / "sabgal_plate" / "platemap.csv")
    merged = truth.merge(layout, on="well").groupby(["genotype", "treatment"])["true_sabgal_positive_pct"].mean()
    assert merged["sgNT", "TAM+PALBO"] - merged["MAP2K7", "TAM+PALBO"] > 25
    assert abs(merged["sgNT", "DMSO"] - merged["MAP2K7", "DMSO"]) < 5
