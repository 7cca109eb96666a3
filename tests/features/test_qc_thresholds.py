import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from imaging.features.qc import decide_field_qc, edge_blur_px, focus_outliers, saturated_fraction
from imaging.features.thresholds import Threshold, apply_call, auto_threshold, resolve_threshold
from tests.conftest import disk_image


def test_edge_blur_recovers_the_applied_blur():
    image = disk_image((256, 256), [(r, c) for r in range(30, 256, 60) for c in range(30, 256, 60)], 12)
    assert edge_blur_px(image) == pytest.approx(0.0, abs=0.3)
    for sigma in (1.0, 2.0, 3.0):
        assert edge_blur_px(ndi.gaussian_filter(image.astype(float), sigma)) == pytest.approx(sigma, rel=0.15)
    assert edge_blur_px(np.ones((32, 32))) == 50.0


def test_saturation_counts_only_full_scale_pixels():
    image = np.zeros((10, 10), np.uint16)
    image[0, :5] = 4095
    assert saturated_fraction(image) == pytest.approx(0.05)
    image[0, :5] = 4000  # below full scale: not saturated
    assert saturated_fraction(image) == 0.0
    rgb = np.full((10, 10, 3), 200, np.uint8)
    rgb[0, 0, 2] = 255
    assert saturated_fraction(rgb) == pytest.approx(0.01)


def test_focus_outliers_flag_the_blurred_field_only():
    blur = np.array([1.0, 1.1, 0.9, 1.05, 3.5, 1.0])
    assert focus_outliers(blur).tolist() == [False, False, False, False, True, False]
    assert not focus_outliers(np.array([3.0, 3.2, 2.9, 3.1])).any()  # uniformly soft plate
    assert not focus_outliers(np.array([1.0, 1.2, 1.0, 1.0])).any()  # within 1.3x


def test_field_qc_decisions_and_reasons():
    fields = pd.DataFrame(
        {
            "focus_blur_px": [1.0, 1.0, 4.0, 1.0],
            "n_cells": [50, 3, 40, 60],
            "saturated_fraction_dapi": [0, 0.2, 0, 0],
            "saturated_fraction_bf": [0, 0, 0, 0.3],
        }
    )
    qc = decide_field_qc(
        fields,
        channel_kinds={"dapi": "fluorescence", "bf": "brightfield"},
        max_relative_blur=1.5,
        max_saturated_fraction=0.01,
        max_saturated_fraction_brightfield=0.5,
        min_cells=5,
    )
    assert qc["qc_pass"].tolist() == [True, False, False, True]
    assert "dapi saturated" in qc["qc_reasons"][1] and "too few cells" in qc["qc_reasons"][1]
    assert qc["qc_reasons"][2].startswith("out of focus")


def test_auto_threshold_finds_the_boundary_of_unequal_populations():
    rng = np.random.default_rng(0)
    negative = rng.normal(0.02, 0.01, 900)
    positive = rng.normal(0.20, 0.05, 100)
    threshold = auto_threshold(np.concatenate([negative, positive]))
    assert threshold.method == "mixture"
    # Bayes boundary of these two Gaussians (weights 0.9 / 0.1) lies near 0.06.
    assert 0.045 < threshold.value < 0.08
    fraction = np.mean(np.concatenate([negative, positive]) > threshold.value)
    assert fraction == pytest.approx(0.10, abs=0.02)


def test_threshold_fixed_and_undefined():
    assert resolve_threshold([1, 2, 3], 2.5) == Threshold(2.5, "fixed", 3)
    assert resolve_threshold([1.0, 2.0], "auto").method == "undefined"
    calls = apply_call([0.1, np.nan, 0.5], Threshold(0.2, "fixed", 2))
    assert calls.tolist() == [False, pd.NA, True]
    assert apply_call([0.1], Threshold(float("nan"), "undefined", 1)).isna().all()


def _overlapping_wells(rng, *, kind: str, n_wells: int = 24, n_cells: int = 300):
    wells = []
    for fraction in rng.uniform(0.02, 0.9, size=n_wells):
        k = rng.binomial(n_cells, fraction)
        if kind == "gaussian":  # 3 SD apart: about 7 % of each population beyond the boundary
            values = np.concatenate([rng.normal(0.1, 0.05, n_cells - k), rng.normal(0.25, 0.05, k)])
        else:
            values = np.concatenate(
                [rng.lognormal(np.log(0.1), 0.35, n_cells - k), rng.lognormal(np.log(0.1) + 1.05, 0.35, k)]
            )
        wells.append((100.0 * k / n_cells, values))
    return wells


@pytest.mark.parametrize("kind,scale", [("gaussian", "linear"), ("lognormal", "log")])
def test_mixture_percent_removes_the_hard_call_bias_of_overlapping_populations(kind, scale):
    from imaging.features.thresholds import auto_threshold, mixture_percent

    rng = np.random.default_rng(7)
    hard_errors, mixture_errors = [], []
    for _ in range(10):
        wells = _overlapping_wells(rng, kind=kind)
        threshold = auto_threshold(np.concatenate([values for _, values in wells]))
        assert threshold.method == "mixture" and threshold.detail["scale"] == scale
        for truth, values in wells:
            hard_errors.append(100.0 * (values > threshold.value).mean() - truth)
            mixture_errors.append(mixture_percent(values, threshold) - truth)
    hard, mixture = np.abs(hard_errors), np.abs(mixture_errors)
    assert mixture.mean() < 0.5 * hard.mean()
    assert mixture.mean() < 1.6 and np.mean(mixture <= 5) >= 0.95
    assert hard.mean() > 2.5  # the populations do overlap: hard calls are off here


def test_mixture_percent_is_undefined_without_a_mixture_fit():
    from imaging.features.thresholds import Threshold, mixture_percent

    assert np.isnan(mixture_percent([0.1, 0.2], Threshold(0.15, "fixed", 2)))
