import numpy as np
import pandas as pd
import pytest

from imaging.features.background import background_surface, fill_from_nearest, fill_from_polynomial, robust_sd
from imaging.features.intensity import measure_compartments
from imaging.features.morphology import measure_morphology


def two_cells():
    nuclei = np.zeros((40, 60), np.int32)
    cells = np.zeros((40, 60), np.int32)
    cells[5:15, 5:15] = 1
    nuclei[8:12, 8:12] = 1  # 16 px nucleus, 84 px cytoplasm
    cells[20:30, 30:50] = 2
    nuclei[23:27, 38:42] = 2  # 16 px nucleus, 184 px cytoplasm
    return nuclei, cells


def test_compartment_means_with_constant_background():
    nuclei, cells = two_cells()
    image = np.full(nuclei.shape, 10.0)
    image[cells == 1] = 30
    image[nuclei == 1] = 110
    image[cells == 2] = 15
    image[nuclei == 2] = 60
    table, info = measure_compartments(image, nuclei, cells, prefix="pjnk", background=10.0)
    row1, row2 = table.iloc[0], table.iloc[1]
    assert row1["pjnk_nuclear_mean"] == 100 and row1["pjnk_cytoplasm_mean"] == 20
    assert row1["pjnk_nuclear_integrated"] == 1600
    assert row1["pjnk_cell_mean"] == pytest.approx((16 * 100 + 84 * 20) / 100)
    assert row1["pjnk_nc_ratio"] == pytest.approx(5.0)
    assert row2["pjnk_nuclear_mean"] == 50 and row2["pjnk_cytoplasm_mean"] == 5
    assert row2["pjnk_nc_ratio"] == pytest.approx(10.0)


def test_local_background_removes_a_gradient():
    nuclei, cells = two_cells()
    rows, cols = np.mgrid[0:40, 0:60]
    background = 50 + 2.0 * cols  # uneven background
    image = background + 100.0 * (nuclei > 0) + 20.0 * ((cells > 0) & (nuclei == 0))
    table, info = measure_compartments(image, nuclei, cells, prefix="x", background="local", margin=2)
    np.testing.assert_allclose(table["x_nuclear_mean"], 100, atol=6)
    np.testing.assert_allclose(table["x_cytoplasm_mean"], 20, atol=6)


def test_nc_ratio_denominator_is_floored_at_noise():
    nuclei, cells = two_cells()
    rng = np.random.default_rng(0)
    image = 100 + rng.normal(0, 5, nuclei.shape)
    image[nuclei > 0] += 200  # no cytoplasmic signal at all
    table, info = measure_compartments(image, nuclei, cells, prefix="x", background="local", margin=2)
    assert info["x_background_noise"] == pytest.approx(5, rel=0.3)
    assert np.isfinite(table["x_nc_ratio"]).all()
    assert (table["x_nc_ratio"] > 200 / 5 * 0.7).all()


def test_empty_field_gives_empty_table_with_columns():
    empty = np.zeros((20, 20), np.int32)
    table, _ = measure_compartments(np.ones((20, 20)), empty, empty, prefix="x")
    assert len(table) == 0 and "x_nc_ratio" in table.columns
    morphology = measure_morphology(empty, empty, pixel_size_um=0.5)
    assert len(morphology) == 0 and "nucleus_area_um2" in morphology.columns


def test_morphology_areas_and_border():
    nuclei, cells = two_cells()
    cells[0:3, 0:3] = 3
    nuclei[0:2, 0:2] = 3
    table = measure_morphology(nuclei, cells, pixel_size_um=0.5)
    assert table["label"].tolist() == [1, 2, 3]
    assert table["nucleus_area_px"].tolist() == [16, 16, 4]
    assert table["cell_area_px"].tolist() == [100, 200, 9]
    assert table["nucleus_area_um2"].tolist() == [4.0, 4.0, 1.0]
    assert table["touches_border"].tolist() == [False, False, True]
    assert table.loc[0, ["centroid_row", "centroid_col"]].tolist() == [9.5, 9.5]
    # the ids found once for morphology and intensities give the same table
    from imaging.features.intensity import compartments_of

    shared = measure_morphology(nuclei, cells, pixel_size_um=0.5, compartments=compartments_of(nuclei, cells))
    pd.testing.assert_frame_equal(shared, table)


def test_background_surface_follows_a_ramp_and_fills_gaps():
    rows, cols = np.mgrid[0:128, 0:128]
    image = 100 + cols.astype(float)
    mask = np.ones(image.shape, bool)
    mask[:, 40:70] = False  # no background pixels in a band
    surface = background_surface(image, mask, grid=8)
    assert np.abs(surface - image)[:, 16:112].max() < 10
    assert fill_from_nearest(np.array([[1.0, np.nan, 3.0]])).tolist() == [[1.0, 1.0, 3.0]]
    rows, cols = np.mgrid[0:4, 0:4].astype(float)
    quadratic = 5 + rows - 2 * cols + 0.5 * rows**2 + rows * cols
    holed = quadratic.copy()
    holed[1:3, 1:3] = np.nan
    np.testing.assert_allclose(fill_from_polynomial(holed), quadratic)
    assert background_surface(image, np.zeros(image.shape, bool)) == pytest.approx(101.0, abs=0.5)
    assert robust_sd(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(1.4826)


def test_shape_matches_scikit_image_regionprops():
    from skimage import draw, measure

    nuclei = np.zeros((80, 80), np.int32)
    rr, cc = draw.ellipse(30, 30, 12, 5, rotation=0.6)
    nuclei[rr, cc] = 1
    rr, cc = draw.disk((60, 60), 8)
    nuclei[rr, cc] = 2
    nuclei[5, 70] = 3
    table = measure_morphology(nuclei, nuclei)
    props = measure.regionprops_table(
        nuclei, properties=("eccentricity", "axis_major_length", "axis_minor_length", "centroid")
    )
    np.testing.assert_allclose(table["nucleus_eccentricity"], props["eccentricity"], atol=1e-9)
    np.testing.assert_allclose(table["nucleus_major_axis_px"], props["axis_major_length"], atol=1e-9)
    np.testing.assert_allclose(table["nucleus_minor_axis_px"], props["axis_minor_length"], atol=1e-9)
    np.testing.assert_allclose(table["centroid_row"], props["centroid-0"])


def test_integrated_intensities_add_up_per_compartment():
    from imaging.features.intensity import measure_compartments

    image = np.zeros((20, 20))
    nuclei = np.zeros((20, 20), np.int32)
    cells = np.zeros((20, 20), np.int32)
    cells[2:10, 2:10] = 1
    nuclei[4:8, 4:8] = 1  # 16 nuclear pixels, 48 cytoplasm pixels
    cells[12:16, 12:16] = 2
    nuclei[12:16, 12:16] = 2  # all nucleus: no cytoplasm
    image[cells == 1] = 2.0
    image[nuclei == 1] = 5.0
    image[cells == 2] = 3.0
    table, _ = measure_compartments(image, nuclei, cells, prefix="x", background="none")
    first, second = table.iloc[0], table.iloc[1]
    assert first["x_nuclear_integrated"] == 80.0 and first["x_cytoplasm_integrated"] == 96.0
    assert first["x_cell_integrated"] == pytest.approx(176.0)
    assert second["x_cytoplasm_integrated"] == 0.0 and np.isnan(second["x_cytoplasm_mean"])
    assert second["x_cell_integrated"] == pytest.approx(48.0)


@pytest.mark.parametrize(
    "grid,shape", [((16, 16), (512, 512)), ((5, 7), (300, 411)), ((1, 4), (50, 200)), ((1, 1), (9, 9))]
)
def test_separable_background_interpolation_equals_map_coordinates(grid, shape):
    from scipy import ndimage as ndi

    from imaging.features.background import interpolate_grid

    values = np.random.default_rng(0).random(grid) * 1000
    centres_r = (np.arange(grid[0]) + 0.5) * shape[0] / grid[0] - 0.5
    centres_c = (np.arange(grid[1]) + 0.5) * shape[1] / grid[1] - 0.5
    rr = np.interp(np.arange(shape[0]), centres_r, np.arange(grid[0]))
    cc = np.interp(np.arange(shape[1]), centres_c, np.arange(grid[1]))
    expected = ndi.map_coordinates(values, np.meshgrid(rr, cc, indexing="ij"), order=1, mode="nearest")
    np.testing.assert_allclose(interpolate_grid(values, shape), expected, rtol=0, atol=1e-9)


def test_background_mask_is_the_chessboard_distance_test():
    """background_mask (a square maximum filter, compiled) gives the pixels whose chessboard distance to
    every cell exceeds the margin, on random cells, margins and shapes (edges included)."""
    from scipy import ndimage as ndi

    from imaging.features.intensity import background_mask

    rng = np.random.default_rng(0)
    tested = 0
    for _ in range(300):
        shape = tuple(rng.integers(1, 60, 2))
        cells = (rng.random(shape) < rng.uniform(0, 0.05)).astype(np.int32) * int(rng.integers(1, 5))
        margin = float(rng.choice([0, 0.5, 1, 2.7, 3, 5.5, 80]))
        expected = ndi.distance_transform_cdt(cells == 0, metric="chessboard") > margin
        if not cells.any():
            expected = np.ones(shape, bool)
        np.testing.assert_array_equal(background_mask(cells, margin=margin), expected)
        tested += bool(cells.any())
    assert tested > 150


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16, np.int32])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 1000, 100_001])
def test_median_is_numpys_bit_for_bit(dtype, n):
    """The one-partition median against np.median on values with many ties, both parities."""
    from imaging.features.background import median

    rng = np.random.default_rng(n)
    values = (rng.normal(size=n) * 40).round(1 if dtype in (np.float64, np.float32) else 0)
    values = np.abs(values).astype(dtype) if dtype == np.uint16 else values.astype(dtype)
    expected = np.median(values)
    result = median(values)
    assert type(result) is type(expected)
    assert result.tobytes() == expected.tobytes()
    copy = values.copy()
    assert median(copy, overwrite_input=True).tobytes() == expected.tobytes()
    assert np.array_equal(np.sort(copy), np.sort(values))  # reordered, not changed


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.uint16])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 1001, 100_000])
def test_percentile_is_numpys_bit_for_bit(dtype, n):
    """The one-partition percentile against np.percentile: ranks on, beside and between
    samples (gamma under and over a half), ties, the ends."""
    from imaging.features.background import percentile

    rng = np.random.default_rng(n)
    values = (rng.gamma(2.0, 50.0, n)).round(1 if np.dtype(dtype).kind == "f" else 0).astype(dtype)
    for q in (0, 0.5, 1, 10, 33.3, 50, 90, 99, 99.5, 99.8, 100):
        expected = np.percentile(values, q)
        result = percentile(values, q)
        assert type(result) is type(expected), q
        assert result.tobytes() == expected.tobytes(), q
    image = values[: (n // 2) * 2].reshape(2, -1) if n > 1 else values
    assert percentile(image, 90).tobytes() == np.percentile(image, 90).tobytes()  # any shape
    assert np.isnan(percentile(np.array([1.0, np.nan, 2.0], np.float32), 90))


def test_median_keeps_numpys_rules_for_nan_signed_zeros_and_no_samples():
    from imaging.features.background import median

    assert np.isnan(median(np.array([1.0, np.nan, 0.5, 2.0])))
    assert np.isnan(median(np.array([np.nan, np.nan, 3.0])))
    zeros = np.array([-0.0, -0.0])
    assert median(zeros).tobytes() == np.median(zeros).tobytes()
    assert np.isnan(median(np.zeros(0)))
    with pytest.raises(ValueError, match="1-D"):
        median(np.zeros((2, 2)))
