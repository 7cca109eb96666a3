"""The hot path's faster filters against the scipy / skimage calls they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import morphology, segmentation, transform

from imaging.filters import binary_opening_disk, grey_opening_disk, resize_linear
from imaging.label_stats import relabel_sequential


def _opening_by_definition(image: np.ndarray, radius: int) -> np.ndarray:
    """Erosion then dilation by disk(radius), each over the image reflected at its edges
    (scipy's mode 'reflect'), written out offset by offset."""
    offsets = np.argwhere(morphology.disk(radius)) - radius

    def rank(values, reduce):
        padded = np.pad(values, radius, mode="symmetric")
        rows, columns = values.shape
        shifted = [padded[radius + dr : radius + dr + rows, radius + dc : radius + dc + columns] for dr, dc in offsets]
        return reduce(np.stack(shifted), axis=0)

    return rank(rank(image, np.min), np.max)


@pytest.mark.parametrize("seed", range(4))
def test_grey_opening_by_a_disk_is_scipys_pixel_for_pixel(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        rows, columns = rng.integers(1, 70, 2)
        radius = int(rng.integers(1, 14))
        image = rng.normal(size=(rows, columns)).astype(np.float32)
        if rng.random() < 0.5:  # plateaus: ties everywhere
            image = np.round(image * 2).astype(np.float32)
        opened = grey_opening_disk(image, radius)
        np.testing.assert_array_equal(opened, _opening_by_definition(image, radius))
        if min(rows, columns) > 2 * radius:  # where scipy itself is well defined
            np.testing.assert_array_equal(opened, ndi.grey_opening(image, footprint=morphology.disk(radius)))


def test_grey_opening_of_an_image_narrower_than_the_disk_is_defined():
    """scipy 1.17 reads past the buffer here (NaN, or values that change between calls)."""
    rng = np.random.default_rng(7)
    for rows, columns, radius in [(3, 23, 13), (2, 5, 8), (2, 20, 9), (2, 14, 10), (1, 1, 5), (1, 40, 3)]:
        image = rng.normal(size=(rows, columns)).astype(np.float32)
        opened = grey_opening_disk(image, radius)
        assert np.isfinite(opened).all() and opened.shape == image.shape
        np.testing.assert_array_equal(opened, _opening_by_definition(image, radius))
        np.testing.assert_array_equal(opened, grey_opening_disk(image.copy(), radius))


@pytest.mark.parametrize("seed", range(3))
def test_binary_opening_by_a_disk_is_scipys_pixel_for_pixel(seed):
    rng = np.random.default_rng(10 + seed)
    for _ in range(80):
        rows, columns = rng.integers(1, 60, 2)
        radius = int(rng.integers(1, 12))
        mask = ndi.gaussian_filter(rng.normal(size=(rows, columns)), rng.uniform(0.5, 3)) > rng.uniform(-0.3, 0.3)
        expected = ndi.binary_opening(mask, structure=morphology.disk(radius))
        np.testing.assert_array_equal(binary_opening_disk(mask, radius), expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bilinear_resize_is_skimages_to_a_rounding_step_or_two(dtype):
    """float64 images are resized in float64, float32 ones in float32: a rounding step or two
    of skimage's value (the same weighted sum, added in another order)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        rows, columns = rng.integers(2, 60, 2)
        factor = int(rng.integers(2, 9))
        shape = (rows * factor - int(rng.integers(0, factor)), columns * factor - int(rng.integers(0, factor)))
        image = rng.normal(size=(rows, columns)).astype(dtype)
        expected = transform.resize(image, shape, order=1, mode="edge", anti_aliasing=False)
        got = resize_linear(image, shape)
        assert got.dtype == expected.dtype == dtype and got.shape == expected.shape
        step = np.finfo(dtype).eps
        # near 0 the error is that of the largest values summed: steps of the image's magnitude
        np.testing.assert_allclose(got, expected, rtol=2.5 * step, atol=2.5 * step * float(np.abs(image).max()))


def test_bilinear_resize_into_float32_is_the_float64_result_to_a_rounding_step():
    rng = np.random.default_rng(4)
    image = rng.normal(size=(40, 33))  # float64, as a block-averaged image is
    wide = resize_linear(image, (157, 130))
    narrow = resize_linear(image, (157, 130), dtype=np.float32)
    assert wide.dtype == np.float64 and narrow.dtype == np.float32
    step = np.finfo(np.float32).eps
    np.testing.assert_allclose(narrow, wide, rtol=2.5 * step, atol=2.5 * step)
    assert narrow.min() >= np.float32(image.min()) and narrow.max() <= np.float32(image.max())


def _resize_linear_in_numpy(image, shape, dtype=None):
    """resize_linear's two passes written as whole-array numpy expressions (its form before
    the row pass was compiled): the compiled pass must round exactly as these do."""
    from imaging.filters import _linear_taps

    rows_low, rows_high, row_fraction = _linear_taps(image.shape[0], shape[0])
    columns_low, columns_high, column_fraction = _linear_taps(image.shape[1], shape[1])
    out_dtype = np.dtype(image.dtype if dtype is None else dtype)
    work = np.float32 if out_dtype == np.float32 else np.float64
    row_fraction, column_fraction = row_fraction.astype(work), column_fraction.astype(work)
    values = image.astype(work, copy=False)
    columns = values[:, columns_low] * (1 - column_fraction) + values[:, columns_high] * column_fraction
    part = columns[rows_low] * (1 - row_fraction)[:, None]
    part += columns[rows_high] * row_fraction[:, None]
    np.clip(part, image.min(), image.max(), out=part)
    return part.astype(out_dtype)


@pytest.mark.parametrize(
    ("image_dtype", "out_dtype"), [(np.float32, None), (np.float64, None), (np.float64, np.float32)]
)
def test_bilinear_resize_rounds_exactly_as_its_numpy_expression(image_dtype, out_dtype):
    rng = np.random.default_rng(6)
    for _ in range(100):
        rows, columns = (int(n) for n in rng.integers(1, 50, 2))
        shape = tuple(int(n) for n in rng.integers(1, 300, 2))
        image = (rng.normal(size=(rows, columns)) * 10 ** rng.uniform(-3, 3)).astype(image_dtype)
        got = resize_linear(image, shape, dtype=out_dtype)
        expected = _resize_linear_in_numpy(image, shape, dtype=out_dtype)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_relabel_sequential_is_skimages_forward_map():
    rng = np.random.default_rng(2)
    labels = rng.choice([0, 3, 7, 8, 20, 21, 500], size=(64, 64)).astype(np.int32)
    expected = segmentation.relabel_sequential(labels)[0]
    got = relabel_sequential(labels)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    sparse = labels.astype(np.int64) * 10**9  # ids far beyond the pixel count: no huge table
    np.testing.assert_array_equal(relabel_sequential(sparse), expected)
    np.testing.assert_array_equal(relabel_sequential(np.zeros((3, 3), np.uint16)), np.zeros((3, 3)))


def test_gaussian_is_scipys_bit_for_bit_on_any_shape_and_sigma():
    """The compiled filter against ``scipy.ndimage.gaussian_filter``: float32 and float64,
    sigmas from half a pixel to wider than the image (reflection repeated past a whole line),
    images of one row or column, tiles smaller than the kernel."""
    from imaging.filters import gaussian

    rng = np.random.default_rng(12)
    for trial in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 70, 2))
        dtype = np.float32 if trial % 2 else np.float64
        image = (rng.random(shape) * 10 ** rng.uniform(-2, 3)).astype(dtype)
        sigma = float(rng.choice([0.5, 0.7, 1.0, 1.37, 2.0, 3.3, 8.0, 20.0]))
        got = gaussian(image, sigma)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, ndi.gaussian_filter(image, sigma), err_msg=f"{shape} {dtype} {sigma}")
    with pytest.raises(ValueError, match="2-D float image"):
        gaussian(np.zeros((5, 5), np.uint8), 1.0)


def test_threshold_otsu_is_skimages_value_and_dtype():
    """The compiled histogram bins as numpy.histogram does, rounding corrections included:
    random, quantised (values on bin edges) and skewed images, float32 and float64, and a
    constant image."""
    from skimage import filters as skimage_filters

    from imaging.filters import threshold_otsu

    rng = np.random.default_rng(13)
    for trial in range(600):
        shape = tuple(int(n) for n in rng.integers(1, 80, 2))
        image = rng.random(shape)
        if trial % 3 == 0:
            image = np.round(image * rng.integers(1, 20)) / 7.0  # many values exactly on edges
        if trial % 5 == 0:
            image = image**3 * 1e4 - 37
        image = image.astype(np.float32 if trial % 2 else np.float64)
        got, expected = threshold_otsu(image), skimage_filters.threshold_otsu(image)
        assert got == expected and np.asarray(got).dtype == np.asarray(expected).dtype, f"trial {trial}"
    constant = np.full((5, 6), 2.5, np.float32)
    assert threshold_otsu(constant) == skimage_filters.threshold_otsu(constant) == 2.5
    with pytest.raises(ValueError, match="float image"):
        threshold_otsu(np.zeros((4, 4), np.uint8))


def test_downscale_mean_is_skimages_bit_for_bit():
    """numpy's summation order reproduced: block rows by its pairwise sum (eight partial sums
    from 8 values, halves above 128), rows one after another, a single block column summed as
    one run; blocks past the image's end padded with zeros; float32 and float64."""
    from imaging.filters import downscale_mean

    rng = np.random.default_rng(14)
    cases = [((97, 131), 1), ((5, 300), 33), ((300, 5), 40), ((129, 140), 9), ((20, 260), 130)]
    for _ in range(300):
        cases.append((tuple(int(n) for n in rng.integers(1, 200, 2)), int(rng.integers(1, 40))))
    for trial, (shape, factor) in enumerate(cases):
        image = (rng.random(shape) * 10 ** rng.uniform(-3, 4)).astype(np.float32 if trial % 2 else np.float64)
        got = downscale_mean(image, factor)
        expected = transform.downscale_local_mean(image, (factor, factor))
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected, err_msg=f"{shape} factor {factor}")
    with pytest.raises(ValueError, match="2-D float image"):
        downscale_mean(np.zeros((4, 4), np.uint16), 2)


def test_gaussian_gradient_magnitude_is_scipys_bit_for_bit():
    from imaging.filters import gaussian_gradient_magnitude

    rng = np.random.default_rng(15)
    for trial in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 70, 2))
        dtype = np.float32 if trial % 2 else np.float64
        image = (rng.random(shape) * 10 ** rng.uniform(-2, 3)).astype(dtype)
        sigma = float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.3, 9.0]))
        got = gaussian_gradient_magnitude(image, sigma)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, ndi.gaussian_gradient_magnitude(image, sigma), err_msg=f"{shape} {sigma}")


def test_binary_opening_by_a_disk_is_scipys_across_word_boundaries_and_large_radii():
    """The packed opening on masks wider than one 64-bit word, radii whose runs span words
    (and reach in from beyond the image's edges), speckle and blobs."""
    from imaging.filters import binary_opening_disk

    rng = np.random.default_rng(16)
    for trial in range(120):
        shape = (int(rng.integers(1, 90)), int(rng.integers(1, 300)))
        radius = int(rng.choice([1, 2, 3, 5, 9, 33, 70])) if trial % 4 else int(rng.integers(1, 6))
        if trial % 2:
            mask = rng.random(shape) < rng.choice([0.5, 0.8, 0.95, 0.999])
        else:
            mask = ndi.gaussian_filter(rng.normal(size=shape), rng.uniform(0.5, 4)) > rng.uniform(-0.3, 0.3)
        expected = ndi.binary_opening(mask, structure=morphology.disk(radius))
        np.testing.assert_array_equal(binary_opening_disk(mask, radius), expected, err_msg=f"{shape} r {radius}")
