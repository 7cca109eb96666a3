import numpy as np
import pytest
from scipy import ndimage as ndi

from imaging.label_stats import label_maxima


def test_label_maxima_by_hand():
    values = np.array([[-3.0, -1.0, 5.0], [2.0, -7.0, -8.0]])
    labels = np.array([[1, 1, 0], [3, 3, 3]])
    # label 2 has no pixels (0, as scipy gives); the background's 5.0 belongs to nobody
    np.testing.assert_array_equal(label_maxima(values, labels), [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(label_maxima(values, labels, 2), [-1.0, 0.0])
    assert label_maxima(values, np.zeros_like(labels)).shape == (0,)


def test_label_maxima_matches_scipy_on_many_labels():
    rng = np.random.default_rng(3)
    labels, n = ndi.label(rng.random((300, 400)) > 0.6)
    values = rng.normal(size=labels.shape)
    expected = ndi.maximum(values, labels, np.arange(1, n + 1))
    np.testing.assert_array_equal(label_maxima(values, labels, n), expected)


def test_label_maxima_keep_numpys_rules_for_signed_zeros_and_nan():
    rng = np.random.default_rng(5)
    for trial in range(300):
        shape = tuple(int(v) for v in rng.integers(1, 25, 2))
        labels = rng.integers(0, 7, shape).astype((np.int32, np.uint16, np.int64)[trial % 3])
        values = rng.normal(size=shape).astype((np.float32, np.float64)[trial % 2])
        if trial % 3 == 0:
            values[rng.random(shape) < 0.1] = np.nan
        if trial % 4 == 0:  # only signed zeros: every comparison a tie
            values = np.where(rng.random(shape) < 0.5, -0.0, 0.0).astype(values.dtype)
        n = int(rng.integers(0, 9))
        expected = np.full(n + 1, -np.inf)
        inside = (labels > 0) & (labels <= n)
        with np.errstate(invalid="ignore"):
            np.maximum.at(expected, labels[inside], values[inside].astype(np.float64))
        expected[np.isneginf(expected)] = 0.0
        found = label_maxima(values, labels, n)
        np.testing.assert_array_equal(found, expected[1:])
        np.testing.assert_array_equal(np.signbit(found), np.signbit(expected[1:]))


def test_label_boxes_are_find_objects():
    from imaging.label_stats import box_slices, label_boxes

    rng = np.random.default_rng(4)
    labels, n = ndi.label(rng.random((120, 90)) > 0.7)
    labels[labels == 5] = 0  # an absent label
    boxes = label_boxes(labels, n + 2)  # two more labels than present: absent as well
    assert boxes.shape == (n + 2, 4)
    for index, box in enumerate(ndi.find_objects(labels, n + 2)):
        if box is None:
            assert (boxes[index] == -1).all()
        else:
            assert box_slices(boxes[index]) == box
    np.testing.assert_array_equal(label_boxes(np.array([[0, 2], [2, 0]])), [[-1, -1, -1, -1], [0, 2, 0, 2]])


def blobs(seed: int, shape=(300, 340), sigma=5.0, level=0.53):
    """Random touching and separate components, a smoothed distance map on them, flat and
    one-pixel components, and components on the image edge."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random(shape), sigma) > level
    mask[5, 5] = True  # a one-pixel component (flat: skimage's isolated-pixel rule)
    mask[20:24, 300:304] = True  # a flat square once its distance is rounded below
    labels, _ = ndi.label(mask)
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.5)
    distance[20:24, 300:304] = 1.0
    return distance, labels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_distance", [1, 2, 4, 7])
def test_label_peaks_are_peak_local_max_exactly(seed, min_distance):
    from skimage.feature import peak_local_max

    from imaging.label_stats import label_peaks

    distance, labels = blobs(seed)
    expected = peak_local_max(distance, min_distance=min_distance, labels=labels, exclude_border=False)
    found = label_peaks(distance, labels, min_distance=min_distance)
    np.testing.assert_array_equal(found, expected)  # same peaks, same order (they number the markers)
    assert len(found) > 20


def test_label_peaks_without_labels_and_with_integer_images():
    from imaging.label_stats import label_peaks

    assert label_peaks(np.zeros((8, 8)), np.zeros((8, 8), np.int32), min_distance=2).shape == (0, 2)
    with pytest.raises(ValueError, match="floating-point"):
        label_peaks(np.zeros((8, 8), np.uint8), np.ones((8, 8), np.int32), min_distance=2)


@pytest.mark.parametrize("shape", [(40, 50), (130, 140), (700, 900)])
def test_distance_to_background_is_scipys(shape):
    from scipy import ndimage as ndi

    from imaging.distance import distance_to_background

    rng = np.random.default_rng(1)
    mask = ndi.gaussian_filter(rng.random(shape), 4) > 0.5
    np.testing.assert_array_equal(distance_to_background(mask), ndi.distance_transform_edt(mask))
    full = np.ones(shape, bool)  # no background at all: scipy's own convention is kept
    np.testing.assert_array_equal(distance_to_background(full), ndi.distance_transform_edt(full))


def test_distance_to_background_is_scipys_on_random_masks_of_every_kind():
    """The compiled transform against scipy where the envelope of parabolas is tested hardest:
    single background pixels (every distance from one point), background only in some columns
    or rows, speckle and blobs, single rows and columns."""
    from scipy import ndimage as ndi

    from imaging.distance import distance_to_background

    rng = np.random.default_rng(8)
    cases = [np.ones((1, 9), bool), np.ones((9, 1), bool), np.ones((31, 47), bool)]
    cases[0][0, 4] = cases[1][6, 0] = cases[2][15, 20] = False
    one_column = np.ones((40, 30), bool)
    one_column[:, 7] = False
    cases.append(one_column)
    for trial in range(500):
        shape = tuple(int(n) for n in rng.integers(1, 90, 2))
        if trial % 2:
            mask = rng.random(shape) < rng.choice([0.5, 0.9, 0.99, 0.999])
        else:
            mask = ndi.gaussian_filter(rng.random(shape), 2) > rng.choice([0.3, 0.45, 0.5])
        cases.append(mask)
    # rows deeper than the direct search's reach (kernels.NEAR_SEARCH_PX) take the envelope,
    # the others the search, in one image: large blobs beside speckle, one far background pixel
    rows, columns = np.mgrid[:300, :400]
    deep = ((rows - 150) ** 2 + (columns - 130) ** 2 < 120**2) | (rng.random((300, 400)) < 0.3)
    far = np.ones((260, 300), bool)
    far[200, 20] = False
    cases += [deep, far]
    checked = 0
    for mask in cases:
        if mask.all():
            continue
        np.testing.assert_array_equal(distance_to_background(mask), ndi.distance_transform_edt(mask))
        checked += 1
    assert checked > 400


def test_expand_labels_by_tiles_is_skimages_ties_included():
    """Sparse single-pixel seeds leave many pixels equidistant from two labels, and small
    tiles put those ties on tile borders: the result must still be skimage's, pixel for pixel."""
    from skimage import segmentation

    from imaging.distance import expand_labels

    rng = np.random.default_rng(5)
    for _ in range(60):
        rows, cols = (int(n) for n in rng.integers(10, 160, 2))
        labels = np.zeros((rows, cols), np.int32)
        n = int(rng.integers(1, 30))
        labels[rng.integers(0, rows, n), rng.integers(0, cols, n)] = rng.integers(1, 8, n)
        distance = float(rng.uniform(0.5, 30))
        expected = segmentation.expand_labels(labels, distance)
        got = expand_labels(labels, distance, tile=int(rng.integers(4, 48)), threads=int(rng.integers(1, 4)))
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    seeds = np.zeros((90, 90), np.int32)
    seeds[45, 45], seeds[10, 70] = 1, 2
    for distance in (np.sqrt(50.0), np.sqrt(2.0), 5.0, np.nextafter(5.0, 0), 0.0):  # rims exactly at sqrt(q)
        np.testing.assert_array_equal(
            expand_labels(seeds, distance, tile=16), segmentation.expand_labels(seeds, distance)
        )
    blobs = ndi.label(ndi.gaussian_filter(rng.random((600, 700)), 3) > 0.53)[0]
    np.testing.assert_array_equal(expand_labels(blobs, 9.5), segmentation.expand_labels(blobs, 9.5))
    empty = np.zeros((30, 40), np.uint16)
    assert not expand_labels(empty, 5).any() and expand_labels(empty, 5).dtype == np.uint16


def test_expand_labels_kernel_is_skimages_on_grids_of_ties_and_any_dtype():
    """The compiled nearest-label loop (imaging.kernels) against skimage on the hardest cases
    for its tie rule: seeds on regular grids (each pixel between them equidistant from two to
    four labels), random seeds, blobs; every integer dtype; distances under one pixel, on a
    rim, negative, and wider than the image."""
    from skimage import segmentation

    from imaging.distance import expand_labels

    rng = np.random.default_rng(11)
    for trial in range(600):
        rows, cols = (int(n) for n in rng.integers(1, 60, 2))
        kind = trial % 3
        if kind == 0:
            labels = np.zeros((rows, cols), np.int64)
            step = int(rng.integers(2, 9))
            labels[::step, ::step] = rng.integers(1, 9, labels[::step, ::step].shape)
        elif kind == 1:
            labels = (rng.random((rows, cols)) < rng.choice([0.01, 0.05, 0.3])) * rng.integers(1, 6, (rows, cols))
        else:
            labels = ndi.label(ndi.gaussian_filter(rng.random((rows, cols)), 1.5) > 0.56)[0]
        labels = labels.astype(rng.choice([np.int32, np.uint16, np.int64, np.uint8]))
        distance = float(rng.choice([-1.0, 0.0, 0.7, 1.0, np.sqrt(2.0), 2.5, 5.0, 7.3, 80.0]))
        got = expand_labels(labels, distance, tile=int(rng.integers(4, 64)))
        expected = segmentation.expand_labels(labels, distance)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected, err_msg=f"trial {trial}, distance {distance}")


def test_label_ids_and_moments_match_numpy():
    """Ids as np.unique gives them, and the moments from one pass over the label image equal
    to numpy's bincounts of coordinate arrays bit for bit."""
    from imaging.features.morphology import label_moments
    from imaging.label_stats import label_ids

    rng = np.random.default_rng(3)
    labels = np.zeros((300, 400), np.int32)
    for k in range(1, 120):
        r, c = rng.integers(0, 290), rng.integers(0, 390)
        labels[r : r + rng.integers(2, 10), c : c + rng.integers(2, 10)] = k
    labels[labels == 57] = 0  # an id with no pixels left
    np.testing.assert_array_equal(label_ids(labels), np.unique(labels[labels > 0]))
    assert label_ids(np.zeros((4, 4), np.int32)).size == 0
    size = int(labels.max()) + 1
    moments = label_moments(labels)
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=size)
    expected = np.bincount(flat, weights=(rows * cols).ravel(), minlength=size) / np.maximum(area, 1)
    expected -= (np.bincount(flat, weights=rows.ravel(), minlength=size) / np.maximum(area, 1)) * (
        np.bincount(flat, weights=cols.ravel(), minlength=size) / np.maximum(area, 1)
    )
    np.testing.assert_array_equal(moments["mu11"][1:], expected[1:])
    np.testing.assert_array_equal(moments["area"][1:], area[1:])


def test_per_label_statistics_name_both_shapes_when_they_differ():
    """A values image larger than the labels once gave a result (the first pixels' means)."""
    from imaging.label_stats import label_maxima, label_means, label_peaks

    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 2:4] = 1
    for values in (np.ones((20, 20)), np.ones((5, 5))):
        with pytest.raises(ValueError, match=r"values shape \(\d+, \d+\) differs from labels shape \(10, 10\)"):
            label_means(values, labels, np.array([1]))
        with pytest.raises(ValueError, match=r"exclude shape \(\d+, \d+\) differs from labels shape \(10, 10\)"):
            label_means(np.ones((10, 10)), labels, np.array([1]), exclude=values > 0)
        with pytest.raises(ValueError, match="differs from labels shape"):
            label_maxima(values, labels, 1)
        with pytest.raises(ValueError, match=r"image shape .* differs from labels shape"):
            label_peaks(values, labels, min_distance=1)
    means, counts = label_means(np.arange(100.0).reshape(10, 10), labels, np.array([1]))
    assert means[0] == pytest.approx((22 + 23 + 32 + 33) / 4) and counts[0] == 4


def _grow(labels, image):
    from imaging.segment.classical import grow_to_own_contrast

    return grow_to_own_contrast(labels, image, radius=5)


def _drop_faint(labels, image):
    from imaging.segment.classical import drop_faint

    return drop_faint(labels, image, noise=0.01)


def _cores(labels, image):
    from imaging.tissue.ihc import nucleus_cores

    return nucleus_cores(labels, image)


def _ring(labels, image):
    from imaging.tissue.ihc import membrane_ring

    return membrane_ring(labels, image.astype(np.int32), width_px=2)


def _lesions(labels, image):
    from imaging.tissue.burden import lesion_table

    return lesion_table(labels, image, pixel_size_um=1.0)


@pytest.mark.parametrize(
    "call, names",
    [
        (_grow, ("flattened", "labels")),
        (_drop_faint, ("flattened", "labels")),
        (_cores, ("nuclear_od", "nuclei")),
        (_ring, ("nuclei", "cells")),
        (_lesions, ("signal", "labels")),
    ],
)
def test_library_steps_name_both_shapes_when_labels_and_image_differ(call, names):
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    for image in (np.random.default_rng(0).random((30, 30)), np.random.default_rng(1).random((50, 50))):
        with pytest.raises(ValueError, match=rf"^({names[0]}|{names[1]}) shape \(\d+, \d+\) differs from"):
            call(labels, image.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_peaks_are_skimages_on_plateaus_and_ties(dtype):
    """label_peaks' compiled loop against skimage on small label images with quantised values
    (many equal maxima: ties in the ordering and in the thinning), flat objects, one-pixel
    objects, holes, several labels, and a threshold (the image's minimum) below or at the
    labels' lowest values."""
    from skimage.feature import peak_local_max

    from imaging.label_stats import label_peaks

    rng = np.random.default_rng(11)
    n_with_several = 0
    for trial in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 30, size=2))
        inside = ndi.gaussian_filter(rng.random(shape), 1.5) > rng.uniform(0.3, 0.6)
        if trial % 7 == 0:
            inside[:] = True
        if not inside.any():
            continue
        values = np.round(ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) * rng.integers(2, 12))
        if trial % 5 == 0:
            values[:] = 1  # flat
        labels = ndi.label(inside)[0] if trial % 2 else inside.astype(np.int32)
        # a ring of background at the minimum, or one below it (then the minimum can be a peak)
        values = np.pad(values, 1, constant_values=values.min() - (trial % 3 == 0)).astype(dtype)
        labels = np.pad(labels, 1)
        min_distance = int(rng.integers(1, 8))
        expected = peak_local_max(values, min_distance=min_distance, labels=labels, exclude_border=False)
        found = label_peaks(values, labels, min_distance=min_distance)
        np.testing.assert_array_equal(found, expected.reshape(-1, 2), err_msg=f"trial {trial}")
        n_with_several += len(expected) > 1
    assert n_with_several > 30  # the thinning was exercised


def test_label_peaks_leaves_labels_with_many_candidates_to_skimage_in_label_order():
    """A label whose candidates exceed the compiled loop's limit is thinned by skimage, and its
    peaks still come in label order among the others'."""
    from skimage.feature import peak_local_max

    from imaging.label_stats import MAX_CANDIDATES_THINNED_HERE, label_peaks

    rng = np.random.default_rng(4)
    labels = np.zeros((60, 90), np.int32)
    labels[5:20, 5:20] = 1
    labels[25:55, 10:80] = 2  # noise: hundreds of local maxima
    labels[5:20, 40:60] = 3
    values = ndi.gaussian_filter(rng.random(labels.shape), 0.6)
    values[labels == 1] += 5
    found = label_peaks(values, labels, min_distance=2)
    expected = peak_local_max(values, min_distance=2, labels=labels, exclude_border=False)
    np.testing.assert_array_equal(found, expected)
    owners = labels[found[:, 0], found[:, 1]]
    assert (np.diff(owners) >= 0).all() and (owners == 2).sum() > MAX_CANDIDATES_THINNED_HERE / 4


def test_keep_labels_removes_and_renumbers_in_one_lookup():
    from skimage.segmentation import relabel_sequential

    from imaging.label_stats import keep_labels

    labels = np.array([[0, 3, 3, 7], [5, 5, 0, 7], [9, 0, 0, 9]])
    keep = np.zeros(10, bool)
    keep[[3, 7, 9]] = True
    keep[0] = True  # the background stays 0 whatever keep[0] says
    np.testing.assert_array_equal(keep_labels(labels, keep), [[0, 1, 1, 2], [0, 0, 0, 2], [3, 0, 0, 3]])
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 40, size=(50, 60))
    keep = rng.random(40) < 0.5
    expected = relabel_sequential(np.where(keep[labels], labels, 0))[0]
    result = keep_labels(labels, keep & (np.bincount(labels.ravel(), minlength=40) > 0))
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == np.int32
    with pytest.raises(ValueError, match="inside the table"):  # an id beyond keep: never a wild read
        keep_labels(np.array([[0, 12]]), np.ones(5, bool))


def test_label_means_by_hand_with_exclusion_empty_ids_and_labels_beyond_the_ids():
    from imaging.label_stats import label_ids, label_means

    labels = np.array([[0, 2, 2], [1, 0, 2], [1, 1, 9]])
    values = np.array([[9.0, 1.0, 2.0], [4.0, 9.0, 6.0], [5.0, 6.0, 9.0]])
    ids = np.array([2, 1, 3])  # id 3 has no pixels; label 9 is not asked for
    means, counts = label_means(values, labels, ids)
    np.testing.assert_array_equal(means[:2], [3.0, 5.0])
    assert np.isnan(means[2])
    np.testing.assert_array_equal(counts, [3, 3, 0])
    nucleus = np.array([[0, 0, 1], [0, 0, 0], [0, 4, 0]])  # pixels left out where not 0
    means, counts = label_means(values, labels, ids, exclude=nucleus)
    np.testing.assert_array_equal(means[:2], [3.5, 4.5])
    np.testing.assert_array_equal(counts, [2, 2, 0])
    np.testing.assert_array_equal(label_means(values, labels, ids, exclude=nucleus > 0)[0][:2], [3.5, 4.5])
    np.testing.assert_array_equal(label_ids(labels), [1, 2, 9])
    with pytest.raises(ValueError, match="0 or more"):
        label_means(values, -labels, ids)
    with pytest.raises(ValueError, match="integers, got float64"):
        label_means(values, labels.astype(float), ids)


def test_label_means_of_difference_are_the_gathered_means_bit_for_bit():
    """The compiled pass over the label image sums ``image - surface`` in the order np.bincount
    does: the same float64 numbers as subtracting at the gathered pixels first, for 16-bit and
    float images, float64 and float32 surfaces, a constant surface, with and without pixels
    left out, ids without pixels, ids in any order and labels beyond the ids asked for."""
    from imaging.label_stats import label_means_of_difference

    rng = np.random.default_rng(21)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 90, 2))
        labels = ndi.label(ndi.gaussian_filter(rng.random(shape), 1.5) > 0.5)[0].astype(
            [np.int32, np.uint16][trial % 2]
        )
        image = (rng.random(shape) * 4000).astype(np.uint16 if trial % 2 else np.float32)
        surface = [rng.random(shape) * 300, (rng.random(shape) * 300).astype(np.float32), 123.25][trial % 3]
        exclude = [None, rng.random(shape) < 0.3, (rng.random(shape) < 0.3) * labels][trial % 3]
        top = int(labels.max())
        ids = rng.permutation(np.arange(1, top + 3))[: max(1, top // (1 + trial % 2))]  # some ids beyond
        kept = labels > 0 if exclude is None else (labels > 0) & (exclude == 0)
        index = np.flatnonzero(kept)
        gathered = image.ravel()[index].astype(np.float64)
        gathered -= surface.ravel()[index] if np.ndim(surface) else surface
        size = max(top, int(ids.max())) + 1
        sums = np.bincount(labels.ravel()[index], weights=gathered, minlength=size)
        counts = np.bincount(labels.ravel()[index], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = sums / counts
        got = label_means_of_difference(image, surface, labels, ids, exclude=exclude)
        np.testing.assert_array_equal(got[0], expected[ids], err_msg=f"trial {trial}")
        np.testing.assert_array_equal(got[1], counts[ids])


def test_compartment_means_are_the_three_label_means_bit_for_bit():
    """One pass over nuclei and cells gives what three label_means_of_difference calls give
    (nuclei; cells without nuclei; cells), bit for bit: 16-bit and float images, array and
    constant surfaces, cells without a nucleus pixel, nuclei beyond any cell, ids without
    pixels and in any order."""
    from imaging.label_stats import compartment_means_of_difference, label_means_of_difference

    rng = np.random.default_rng(29)
    for trial in range(40):
        shape = tuple(int(n) for n in rng.integers(1, 90, 2))
        cells = ndi.label(ndi.gaussian_filter(rng.random(shape), 1.5) > 0.45)[0].astype(np.int32)
        nuclei = np.where(rng.random(shape) < 0.5, cells, 0).astype([np.int32, np.uint16][trial % 2])
        if trial % 4 == 3:  # a nucleus outside every cell, with a label no cell has
            nuclei[0, 0] = cells.max() + 2
        image = (rng.random(shape) * 4000).astype(np.uint16 if trial % 2 else np.float32)
        surface = [rng.random(shape) * 300, 123.25][trial % 2]
        top = int(max(cells.max(), nuclei.max()))
        ids = rng.permutation(np.arange(1, top + 3))[: max(1, top // (1 + trial % 2))]
        got = compartment_means_of_difference(image, surface, nuclei, cells, ids)
        expected = {
            "nuclear": label_means_of_difference(image, surface, nuclei, ids),
            "cytoplasm": label_means_of_difference(image, surface, cells, ids, exclude=nuclei),
            "cell": label_means_of_difference(image, surface, cells, ids),
        }
        for name, (mean, area) in expected.items():
            np.testing.assert_array_equal(getattr(got, f"{name}_mean"), mean, err_msg=f"trial {trial} {name}")
            np.testing.assert_array_equal(getattr(got, f"{name}_area"), area, err_msg=f"trial {trial} {name}")
    # the hand-made case: one cell of 3 pixels, its nucleus the middle one
    cells = np.array([[1, 1, 1]], np.int32)
    nuclei = np.array([[0, 1, 0]], np.int32)
    got = compartment_means_of_difference(np.array([[2.0, 10.0, 4.0]]), 1.0, nuclei, cells, np.array([1]))
    assert (got.nuclear_mean[0], got.cytoplasm_mean[0], got.cell_mean[0]) == (9.0, 2.0, 13.0 / 3)
    assert (got.nuclear_area[0], got.cytoplasm_area[0], got.cell_area[0]) == (1, 2, 3)


def test_label_sum_kernels_refuse_labels_beyond_their_tables():
    """The kernels' tables have a fixed length: a label beyond it (or a negative one) is an
    error, never a write past the table."""
    from imaging.kernels import compartment_counts_and_sums_of_difference, label_counts_and_sums_of_difference

    image, none = np.ones((2, 2)), np.zeros(1)
    labels = np.array([[0, 1], [2, 3]], np.int32)
    with pytest.raises(ValueError, match="0 or more, under size"):
        label_counts_and_sums_of_difference(image, none, labels, np.zeros(1, np.uint8), 3)
    with pytest.raises(ValueError, match="0 or more, under size"):
        compartment_counts_and_sums_of_difference(image, none, labels, np.zeros_like(labels), 3)
    with pytest.raises(ValueError, match="0 or more, under size"):
        compartment_counts_and_sums_of_difference(image, none, np.zeros_like(labels), -labels, 4)
    counts, sums = label_counts_and_sums_of_difference(image, none, labels, np.zeros(1, np.uint8), 4)
    assert counts.tolist() == [0, 1, 1, 1] and sums.tolist() == [0.0, 1.0, 1.0, 1.0]


def test_label_counts_and_sums_are_bincounts():
    from imaging.label_stats import label_counts, label_counts_and_sums

    rng = np.random.default_rng(23)
    for trial in range(50):
        shape = tuple(int(n) for n in rng.integers(1, 80, 2))
        labels = rng.integers(0, int(rng.integers(1, 40)), shape).astype(
            [np.int32, np.uint16, np.intp, np.uint8][trial % 4]
        )
        values = (rng.random(shape) * 1e3).astype(np.float32 if trial % 2 else np.float64)
        minlength = int(rng.integers(0, 60))
        np.testing.assert_array_equal(
            label_counts(labels, minlength=minlength), np.bincount(labels.ravel(), minlength=minlength)
        )
        size = int(labels.max()) + 1 + int(rng.integers(0, 3))
        counts, sums = label_counts_and_sums(labels, values, size=size)
        np.testing.assert_array_equal(counts, np.bincount(labels.ravel(), minlength=size))
        np.testing.assert_array_equal(sums, np.bincount(labels.ravel(), weights=values.ravel(), minlength=size))
    # runs of one label (the counter's fast path) and values far above the first table's length
    # (the table grows as they come), with a minlength beyond the largest value or under it
    runs = np.repeat(rng.integers(0, 5000, 300), rng.integers(1, 60, 300)).reshape(1, -1).astype(np.int32)
    for minlength in (0, 3, 6000):
        np.testing.assert_array_equal(
            label_counts(runs, minlength=minlength), np.bincount(runs.ravel(), minlength=minlength)
        )
    assert label_counts(np.zeros((0, 5), np.int32)).shape == (0,)
    assert label_counts(np.zeros((0, 5), np.int32), minlength=4).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="0 or more"):
        label_counts(np.array([[1, -2]]))
    with pytest.raises(ValueError, match="size - 1"):
        label_counts_and_sums(np.array([[1, 5]]), np.ones((1, 2)), size=3)


def test_distance_to_background_in_float32_is_scipys_rounded_once():
    from scipy import ndimage as ndi

    from imaging.distance import distance_to_background

    rng = np.random.default_rng(25)
    for _ in range(30):
        shape = tuple(int(n) for n in rng.integers(1, 120, 2))
        mask = ndi.gaussian_filter(rng.random(shape), 2) > 0.45
        got = distance_to_background(mask, dtype=np.float32)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ndi.distance_transform_edt(mask).astype(np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        distance_to_background(np.ones((3, 3), bool), dtype=np.int32)
