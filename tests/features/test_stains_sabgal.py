import numpy as np
import pytest

from imaging.features.sabgal import estimate_xgal_vector, measure_sabgal, xgal_amount
from imaging.stains.optical import (
    STAIN_VECTORS,
    angle_between,
    estimate_stain_vectors,
    optical_density,
    stain_matrix,
    unit,
    unmix,
)


def test_optical_density_is_beer_lambert():
    rgb = np.array([[[100.0, 10.0, 200.0]]])
    od = optical_density(rgb, 200.0)
    np.testing.assert_allclose(od[0, 0], [np.log10(2), np.log10(20), 0.0])


def test_unmix_recovers_known_amounts():
    matrix = stain_matrix([STAIN_VECTORS["hematoxylin"], STAIN_VECTORS["dab"]])
    amounts = np.array([[0.3, 0.5, 0.0], [1.2, 0.0, 0.0]])
    od = amounts @ matrix
    np.testing.assert_allclose(unmix(od, matrix), amounts, atol=1e-12)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1)


def test_parallel_vectors_are_refused():
    with pytest.raises(ValueError, match="parallel"):
        stain_matrix([(1, 1, 0), (2, 2, 0), (0, 0, 1)])


def test_macenko_estimate_recovers_planted_vectors():
    rng = np.random.default_rng(0)
    first, second = unit((0.8, 0.56, 0.22)), unit((0.577, 0.577, 0.577))
    amounts = rng.gamma(2.0, 0.2, size=(5000, 2)) * (rng.random((5000, 2)) < 0.6)
    od = amounts @ np.vstack([first, second]) + rng.normal(0, 0.005, (5000, 3))
    found = estimate_stain_vectors(od)
    angles = sorted(min(angle_between(f, t) for f in found) for t in (first, second))
    assert angles[-1] < 3.0


def make_stained_field(amount_per_cell, *, white=(230.0, 235.0, 240.0), vector=STAIN_VECTORS["xgal"]):
    nuclei = np.zeros((60, 120), np.int32)
    cells = np.zeros((60, 120), np.int32)
    for k, col in enumerate((20, 60, 100), start=1):
        cells[15:45, col - 15 : col + 15] = k
        nuclei[25:35, col - 5 : col + 5] = k
    od = np.zeros(cells.shape + (3,))
    for k, amount in enumerate(amount_per_cell, start=1):
        od[cells == k] = amount * unit(vector)
    rgb = np.asarray(white) * 10 ** (-od)
    return rgb, nuclei, cells


def test_per_cell_xgal_od_is_exact_on_a_clean_image():
    rgb, nuclei, cells = make_stained_field([0.0, 0.1, 0.4])
    table, info = measure_sabgal(rgb, nuclei, cells)
    np.testing.assert_allclose(table["sabgal_od_mean"], [0.0, 0.1, 0.4], atol=1e-9)
    np.testing.assert_allclose(table["sabgal_stained_fraction"], [0.0, 1.0, 1.0])
    np.testing.assert_allclose(table["sabgal_od_integrated"], [0.0, 90.0, 360.0], atol=1e-6)
    assert info["sabgal_white_r"] == pytest.approx(230.0)
    assert info["sabgal_pixel_threshold_od"] == pytest.approx(0.02)


def test_white_reference_follows_uneven_illumination():
    rgb, nuclei, cells = make_stained_field([0.0, 0.2, 0.2])
    rows, cols = np.mgrid[0:60, 0:120]
    rgb = rgb * (1.0 - 0.3 * cols / 120)[..., None]  # 30 % darker on the right
    xgal, white = xgal_amount(rgb, cells == 0)
    table, _ = measure_sabgal(rgb, nuclei, cells)
    np.testing.assert_allclose(table["sabgal_od_mean"], [0.0, 0.2, 0.2], atol=0.02)


def test_grey_absorbance_is_not_xgal():
    rgb, nuclei, cells = make_stained_field([0.3, 0.3, 0.0], vector=STAIN_VECTORS["neutral"])
    table, _ = measure_sabgal(rgb, nuclei, cells)
    np.testing.assert_allclose(table["sabgal_od_mean"], 0.0, atol=1e-9)


def test_xgal_vector_estimate_falls_back_without_stain():
    vector, source = estimate_xgal_vector(np.zeros((500, 3)))
    assert source.startswith("default") and np.allclose(vector, STAIN_VECTORS["xgal"])
    rng = np.random.default_rng(1)
    true = unit((0.80, 0.56, 0.22))
    amounts = rng.gamma(2.0, 0.15, size=(4000, 2))
    od = amounts @ np.vstack([true, unit(STAIN_VECTORS["neutral"])])
    vector, source = estimate_xgal_vector(od)
    assert source == "estimated" and angle_between(vector, true) < 3
