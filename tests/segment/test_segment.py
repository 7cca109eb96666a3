import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from imaging.metrics import match_scores
from imaging.segment import check_labels, derive_cells, segment_nuclei
from imaging.segment.classical import concavity_depth, merge_unsupported_splits
from imaging.segment.scale import estimate_radius
from tests.conftest import ROOT, disk_image

DSB_DEV = ROOT / "benchmarks" / "data" / "dsb2018_dev"


def test_radius_estimate_from_disks_and_clumps():
    mask = disk_image((200, 200), [(40, 40), (40, 120), (140, 60)], 10, value=1, background=0).astype(bool)
    assert estimate_radius(mask) == pytest.approx(10, abs=1)
    # Two touching disks form one component whose inscribed radius is still ~10.
    clump = disk_image((100, 100), [(50, 40), (50, 58)], 10, value=1, background=0).astype(bool)
    assert estimate_radius(clump) == pytest.approx(10, abs=1)


def test_two_touching_nuclei_are_split():
    image = disk_image((80, 100), [(40, 38), (40, 60)], 12)
    image = ndi.gaussian_filter(image.astype(float), 1)
    labels, info = segment_nuclei(image)
    assert labels.max() == 2
    assert info["radius_px"] == pytest.approx(12, abs=2.5)
    left, right = labels[40, 30], labels[40, 68]
    assert left != right and left > 0 and right > 0


def test_separate_nuclei_of_very_different_sizes_in_two_images():
    small = disk_image((128, 128), [(30, 30), (30, 90), (90, 60)], 5)
    large = disk_image((512, 512), [(120, 120), (120, 380), (360, 250)], 40)
    for image, radius in ((small, 5), (large, 40)):
        labels, info = segment_nuclei(image)
        assert labels.max() == 3
        assert info["radius_px"] == pytest.approx(radius, rel=0.25)
        areas = np.bincount(labels.ravel())[1:]
        true_areas = np.bincount(ndi.label(image > image.min())[0].ravel())[1:]
        np.testing.assert_allclose(areas, true_areas, rtol=0.25)


def test_blank_image_gives_no_nuclei():
    labels, info = segment_nuclei(np.full((64, 64), 7, np.uint16))
    assert labels.shape == (64, 64) and labels.dtype == np.int32 and labels.max() == 0


def test_uneven_illumination_does_not_create_objects():
    rows, cols = np.mgrid[0:200, 0:200]
    ramp = 100 + 2 * cols  # strong background gradient
    image = ramp + disk_image((200, 200), [(50, 50), (150, 150), (50, 150)], 10, value=800, background=0)
    labels, _ = segment_nuclei(image.astype(np.uint16))
    assert labels.max() == 3


def test_stardist_real_image_f1(samples):
    image = tifffile.imread(samples / "stardist_nuclei" / "img2d.tif")
    truth = tifffile.imread(samples / "stardist_nuclei" / "mask2d.tif")
    labels, _ = segment_nuclei(image)
    scores = match_scores(truth, labels)
    assert scores.f1 >= 0.9, scores  # 0.938 measured


def _ellipse(shape, centre, semi_axes):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((rows - centre[0]) / semi_axes[0]) ** 2 + ((cols - centre[1]) / semi_axes[1]) ** 2 <= 1


def test_concavity_depth_is_zero_for_convex_and_the_waist_for_two_disks():
    assert concavity_depth(_ellipse((60, 60), (30, 30), (10, 10))) <= 1.0  # pixel steps only
    assert concavity_depth(_ellipse((60, 100), (30, 50), (12, 40))) <= 1.0
    # Disks of radius 10 with centres 18 apart: waist half-width sqrt(100 - 81) = 4.4,
    # so the notch is 10 - 4.4 = 5.6 px deep.
    two = _ellipse((60, 80), (30, 31), (10, 10)) | _ellipse((60, 80), (30, 49), (10, 10))
    assert concavity_depth(two) == pytest.approx(5.6, abs=0.8)


def test_convex_hull_kernel_is_skimages_hull_pixel_for_pixel():
    """The notch test's hull (imaging.kernels.convex_hull_mask, exact in integers) against
    skimage's qhull-based one: speckle, blobs of several sizes, single rows and columns,
    single pixels, masks touching the border and masks with empty rows between parts."""
    import warnings

    from skimage.morphology import convex_hull_image

    from imaging.kernels import convex_hull_mask

    rng = np.random.default_rng(3)
    masks = [np.eye(7, dtype=bool), np.ones((1, 9), bool), np.ones((6, 1), bool), np.pad(np.ones((1, 1), bool), 2)]
    for trial in range(1500):
        rows, cols = (int(n) for n in rng.integers(1, 60, 2))
        if trial % 3 == 0:
            mask = rng.random((rows, cols)) < rng.choice([0.02, 0.1, 0.5])
        else:
            smoothed = ndi.gaussian_filter(rng.random((rows, cols)), float(rng.choice([1, 2, 4])))
            mask = smoothed > rng.choice([0.5, 0.55, 0.6])
        masks.append(np.pad(mask, 1) if trial % 2 else mask)
    checked = 0
    for mask in masks:
        if not mask.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns on degenerate input
            expected = convex_hull_image(mask)
        np.testing.assert_array_equal(convex_hull_mask(mask), expected)
        checked += 1
    assert checked > 1000


def test_splits_without_a_notch_are_merged_and_real_contacts_kept():
    cols = np.mgrid[0:60, 0:140][1]
    # One ellipse cut in three across its long axis: no notch anywhere, so one object.
    ellipse = _ellipse((60, 140), (30, 70), (12, 45))
    thirds = np.where(ellipse, 1 + (cols >= 55) + (cols >= 85), 0).astype(np.int32)
    merged = merge_unsupported_splits(thirds, radius=12)
    assert merged.max() == 1 and np.array_equal(merged > 0, ellipse)
    # Two disks meeting at a waist 4.4 px deep on a radius of 10: two nuclei.
    pair = _ellipse((60, 140), (30, 61), (10, 10)) | _ellipse((60, 140), (30, 79), (10, 10))
    halves = np.where(pair, 1 + (cols >= 70), 0).astype(np.int32)
    kept = merge_unsupported_splits(halves, radius=10)
    assert kept.max() == 2 and np.array_equal(kept, halves)


def test_elongated_nucleus_stays_one_object():
    # Distance-transform peaks alone cut this 120 x 20 px nucleus into several pieces.
    ellipse = _ellipse((120, 200), (60, 100), (10, 60))
    image = ndi.gaussian_filter(np.where(ellipse, 1000.0, 100.0), 1)
    labels, _ = segment_nuclei(image)
    assert labels.max() == 1
    assert match_scores(ndi.label(ellipse)[0], labels).f1 == 1.0


def _confluent_field(radius, spacing, *, rows=10, seed=0):
    """Hexagonally packed dome-shaped nuclei (projected ellipsoids) with random size, shape,
    orientation and brightness, pressed together (``spacing`` < 2 ``radius``), blurred."""
    rng = np.random.default_rng(seed)
    size = int(spacing * rows + 4 * radius)
    rr, cc = np.mgrid[0:size, 0:size]
    image, truth = np.zeros((size, size)), np.zeros((size, size), np.int32)
    for i in range(rows):
        for j in range(rows):
            cy = 2 * radius + i * spacing * 0.866 + rng.normal(0, 1.5)
            cx = 2 * radius + j * spacing + (spacing / 2 if i % 2 else 0) + rng.normal(0, 1.5)
            a, b, theta = radius * rng.uniform(0.9, 1.2), radius * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
            y = (rr - cy) * np.cos(theta) + (cc - cx) * np.sin(theta)
            x = -(rr - cy) * np.sin(theta) + (cc - cx) * np.cos(theta)
            q = (y / a) ** 2 + (x / b) ** 2
            inside = (q <= 1) & (truth == 0)
            truth[inside] = i * rows + j + 1
            image[inside] = rng.uniform(0.5, 1.0) * (0.35 + 0.65 * np.sqrt(1 - q[inside]))
    image = ndi.gaussian_filter(image, 0.15 * radius) + rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, None) * 4000).astype(np.uint16), truth


@pytest.mark.parametrize("radius, spacing, seed", [(10, 18, 0), (20, 30, 1), (20, 30, 2)])
def test_confluent_field_is_not_read_as_one_giant_nucleus(radius, spacing, seed):
    # The global Otsu mask is one sheet here; its inscribed radius (18 px for radius 10,
    # 28-30 px for radius 20) used to be taken as the nucleus radius: F1 0.05-0.17.
    image, truth = _confluent_field(radius, spacing, rows=10 if radius < 20 else 8, seed=seed)
    labels, info = segment_nuclei(image)
    assert 0.45 * radius <= info["radius_px"] <= 1.1 * radius
    scores = match_scores(truth, labels)
    assert scores.f1 >= 0.8, scores


def test_holes_larger_than_a_nucleus_stay_background():
    # A ring of nuclei around an empty space: the space is not a nucleolus to fill.
    rows, cols = np.mgrid[0:200, 0:200]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    centres = [(100 + 50 * np.sin(a), 100 + 50 * np.cos(a)) for a in angles]
    image = disk_image((200, 200), centres, 11)
    labels, _ = segment_nuclei(image)
    assert labels[100, 100] == 0 and labels.max() == 16


def test_real_dsb_development_set_mean_f1():
    """The 37 annotated Data Science Bowl images shipped for the benchmark: the default
    backend's mean F1 at IoU 0.5 was 0.903 when this test was written (naive Otsu +
    watershed: 0.72); the bound catches a regression, not noise."""
    scores = []
    for image_path in sorted((DSB_DEV / "images").glob("*.tif")):
        truth = tifffile.imread(DSB_DEV / "labels" / image_path.name)
        labels, _ = segment_nuclei(tifffile.imread(image_path))
        scores.append(match_scores(truth, labels).f1)
    assert len(scores) == 37
    assert np.mean(scores) >= 0.895, np.mean(scores)
    assert np.median(scores) >= 0.9


def test_label_contract_is_enforced():
    assert check_labels(np.array([[0, 5], [5, 9]]), (2, 2), backend="x").tolist() == [[0, 1], [1, 2]]
    with pytest.raises(RuntimeError, match="shape"):
        check_labels(np.zeros((3, 3), int), (2, 2), backend="x")
    with pytest.raises(RuntimeError, match="float"):
        check_labels(np.zeros((2, 2)), (2, 2), backend="x")
    with pytest.raises(ValueError, match="unknown segmentation method"):
        segment_nuclei(np.zeros((8, 8)), method="magic")
    with pytest.raises(ValueError, match=r"shape \(M, N\), got \(2, 8, 8\)"):
        segment_nuclei(np.zeros((2, 8, 8)))


def test_expand_cells_keep_ids_and_do_not_overlap():
    nuclei = np.zeros((20, 40), np.int32)
    nuclei[8:12, 8:12] = 1
    nuclei[8:12, 20:24] = 2
    cells = derive_cells(nuclei, method="expand", distance=5)
    assert set(np.unique(cells)) == {0, 1, 2}
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
    distance = ndi.distance_transform_edt(nuclei == 0)
    assert distance[cells > 0].max() <= 5
    # Columns 12..19 lie between the nuclei: split at the midpoint, 15 | 16.
    assert cells[10, 15] == 1 and cells[10, 16] == 2
    assert cells[10, 3] == 1 and cells[10, 2] == 0  # 5 px reach to the left


def test_watershed_cells_follow_the_cytoplasm_stain():
    nuclei = np.zeros((40, 80), np.int32)
    nuclei[18:22, 18:22] = 1
    nuclei[18:22, 58:62] = 2
    cytoplasm = np.zeros((40, 80))
    cytoplasm[10:30, 5:35] = 100  # cell 1 is large; cell 2 has almost no cytoplasm
    cytoplasm[17:23, 57:63] = 100
    cells = derive_cells(nuclei, method="watershed", cytoplasm=cytoplasm, distance=30, radius=2)
    assert (cells == 1).sum() > 400
    assert (cells == 2).sum() < 60
    with pytest.raises(ValueError, match="needs a cytoplasm image"):
        derive_cells(nuclei, method="watershed", distance=3)


@pytest.mark.parametrize("disk_radius", [1, 4, 7, 12])
def test_binary_opening_by_a_disk_matches_scipy_opening(disk_radius):
    from skimage import morphology

    from imaging.filters import binary_opening_disk as open_with_disk

    rng = np.random.default_rng(disk_radius)
    blobs = ndi.gaussian_filter(rng.random((160, 210)), 1 + disk_radius / 2) > 0.5  # blobs touching the edges
    expected = ndi.binary_opening(blobs, structure=morphology.disk(disk_radius))
    assert expected.any() and not np.array_equal(expected, blobs)
    np.testing.assert_array_equal(open_with_disk(blobs, disk_radius), expected)
    assert not open_with_disk(np.zeros((30, 30), bool), disk_radius).any()


@pytest.mark.parametrize("kind", ["gaussian float", "poisson uint16"])
def test_a_field_of_pure_noise_has_no_nuclei(kind):
    rng = np.random.default_rng(5)
    if kind == "gaussian float":
        image = rng.normal(100.0, 5.0, (256, 256)).astype(np.float32)
    else:
        image = rng.poisson(100, (256, 256)).astype(np.uint16)
    labels, _ = segment_nuclei(image)
    assert labels.max() == 0  # without the noise test: about 1,500 specks


def test_dim_nuclei_in_noise_are_kept():
    # mean contrast 4 noise sigmas, the faintest seen on the real benchmark images
    centres = [(r, c) for r in range(30, 230, 50) for c in range(30, 230, 50)]
    truth = np.zeros((256, 256), np.int32)
    rows, cols = np.mgrid[0:256, 0:256]
    for k, (r, c) in enumerate(centres, start=1):
        truth[(rows - r) ** 2 + (cols - c) ** 2 <= 12**2] = k
    rng = np.random.default_rng(6)
    image = (100.0 + 20.0 * (truth > 0) + rng.normal(0.0, 5.0, truth.shape)).astype(np.float32)
    labels, _ = segment_nuclei(image)
    assert match_scores(truth, labels).f1 >= 0.95


def test_pixel_noise_of_integer_images_is_numpys_float_median():
    """8- and 16-bit images take the counting path: the same number as numpy's float32
    medians of the differences, on noise, on flat and on two-level images."""
    from imaging.segment.classical import pixel_noise

    def by_numpy(image):
        differences = np.diff(image.astype(np.float32), axis=1).ravel()
        spread = np.median(np.abs(differences - np.median(differences)))
        return max(1.4826 * float(spread) / np.sqrt(2.0), 1.0 / np.sqrt(12.0))

    rng = np.random.default_rng(2)
    for trial in range(400):
        dtype = (np.uint8, np.uint16, bool)[trial % 3]
        top = {np.uint8: 255, np.uint16: 65535, bool: 1}[dtype]
        shape = (int(rng.integers(1, 7)), int(rng.integers(2, 11)))
        image = [
            rng.integers(0, top + 1, shape),
            rng.integers(0, 3, shape) * top // 2,
            np.full(shape, top),
            rng.normal(top / 2, 2, shape).clip(0, top).round(),
        ][trial % 4].astype(dtype)
        assert pixel_noise(image) == by_numpy(image), image
    field = rng.poisson(400, (300, 300)).astype(np.uint16)
    assert pixel_noise(field) == by_numpy(field)
    assert pixel_noise(field) == pytest.approx(20.0, rel=0.05)  # Poisson: sqrt(400)
    assert pixel_noise(np.zeros((0, 5), np.uint16)) == pytest.approx(1 / np.sqrt(12))


def test_pixel_noise_and_faint_objects():
    from imaging.segment.classical import drop_faint, pixel_noise

    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 500, 300)[None, :] * np.ones((200, 1))  # smooth signal cancels
    assert pixel_noise(ramp + rng.normal(0, 3.0, ramp.shape)) == pytest.approx(3.0, rel=0.05)
    assert pixel_noise(np.full((50, 50), 7, np.uint8)) == pytest.approx(1 / np.sqrt(12))
    assert pixel_noise(np.full((50, 50), 7.0)) == 0.0
    labels = np.array([[1, 1, 0, 2, 2, 3]])
    flattened = np.array([[0.5, 0.3, 9.0, 0.1, 0.2, 0.4]])
    # object 2 (mean 0.15) is under 2 x 0.1; 1 and 3 are kept and renumbered 1, 2
    np.testing.assert_array_equal(drop_faint(labels, flattened, noise=0.1), [[1, 1, 0, 0, 0, 2]])
    np.testing.assert_array_equal(drop_faint(labels, flattened, noise=0.0), labels)


def test_watershed_by_component_equals_the_whole_image_watershed():
    """The per-component flooding must give exactly the labels of one masked watershed."""
    from scipy import ndimage as ndi
    from skimage import feature, segmentation

    from imaging.segment.classical import watershed_by_component
    from imaging.synthetic import place_nuclei

    rng = np.random.default_rng(3)
    mask = place_nuclei((300, 300), radius=8, density=0.45, rng=rng) > 0  # many touching nuclei
    components, n = ndi.label(mask)
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.3)
    peaks = feature.peak_local_max(distance, min_distance=3, labels=components, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    per_component = np.bincount(components[markers > 0], minlength=n + 1)
    assert (per_component[1:] >= 2).sum() > 5 and (per_component[1:] == 1).sum() > 5  # both paths taken
    expected = segmentation.watershed(-distance, markers, mask=mask)
    np.testing.assert_array_equal(watershed_by_component(-distance, markers, components, n), expected)


def test_grown_pixels_pass_the_tests_numpy_makes_in_the_images_dtype():
    """Growth into a pixel stays where the pixel beats the floor (compared in float32, as
    numpy compares a float32 image with a Python float) and its nucleus's own share of peak
    (compared in float64), values placed on both sides of each bound by one float32 step."""
    from imaging.distance import expand_labels
    from imaging.label_stats import label_maxima
    from imaging.segment.classical import grow_to_own_contrast
    from imaging.synthetic import place_nuclei

    rng = np.random.default_rng(6)
    labels = place_nuclei((200, 220), radius=6, density=0.2, rng=rng).astype(np.int32)
    # at an Otsu level of 2 - 4e-9 the floor binds, just under 0.5: a float32 0.5 fails it in
    # float32 (numpy's comparison) and would pass it in float64
    for dtype, otsu in ((np.float32, 0.5), (np.float32, 2.0 - 4e-9), (np.float64, 2.0 - 4e-9)):
        image = rng.random(labels.shape).astype(dtype)
        fraction, floor_fraction = 0.4, 0.25
        peaks = np.concatenate([[0.0], label_maxima(image, labels)])
        grown = expand_labels(labels, distance=3.0)
        ring = (labels == 0) & (grown > 0)
        bounds = np.maximum(np.float32(floor_fraction * otsu), fraction * peaks[grown])
        step = rng.integers(-1, 2, labels.shape)  # a step under, on or over each bound
        toward = np.where(step > 0, np.inf, -np.inf)
        near = np.where(step == 0, bounds.astype(dtype), np.nextafter(bounds.astype(dtype), toward))
        near = near.astype(dtype)
        image = np.where(ring & (rng.random(labels.shape) < 0.5), near, image)
        peaks = np.concatenate([[0.0], label_maxima(image, labels)])
        values = image[ring]
        bright = (values > floor_fraction * otsu) & (values > fraction * peaks[grown[ring]])
        expected = grown.copy()
        expected[ring] = np.where(bright, grown[ring], 0)
        found = grow_to_own_contrast(labels, image, radius=6.0, otsu_level=otsu)
        np.testing.assert_array_equal(found, expected)
        assert 0 < bright.sum() < bright.size


def test_touching_pairs_by_hand_and_against_shifted_copies():
    """Pairs share an edge (not a corner), each once, ascending, background never a partner."""
    from imaging.segment.classical import _touching_pairs

    labels = np.array([[1, 1, 0, 2], [3, 0, 2, 2], [0, 4, 0, 5], [6, 0, 0, 5]])
    # 1-3 and 2-5 share an edge; 3-4 and 4-6 only a corner (no pair)
    np.testing.assert_array_equal(_touching_pairs(labels), [[1, 3], [2, 5]])
    rng = np.random.default_rng(2)
    for _ in range(200):
        labels = rng.integers(0, int(rng.integers(1, 9)), tuple(int(v) for v in rng.integers(1, 30, 2)))
        expected = set()
        for first, second in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
            for a, b in zip(first.ravel(), second.ravel()):
                if a > 0 and b > 0 and a != b:
                    expected.add((min(a, b), max(a, b)))
        found = _touching_pairs(labels.astype(np.int32))
        assert [tuple(pair) for pair in found] == sorted(expected)


def test_fill_small_holes_is_labelling_the_background_and_counting():
    """The run-based fill must fill exactly the background regions (4-connected) that do not
    touch the border and have at most ``max_area`` pixels: snakes, nested rings, holes
    touching only a corner, one-row and one-column images."""
    from scipy import ndimage as ndi

    from imaging.segment.classical import fill_small_holes

    def expected(mask, max_area):
        holes, n = ndi.label(~mask)
        fill = np.bincount(holes.ravel(), minlength=n + 1) <= max_area
        fill[0] = False
        fill[np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])] = False
        return mask | fill[holes]

    rng = np.random.default_rng(11)
    for trial in range(500):
        shape = (int(rng.integers(1, 45)), int(rng.integers(1, 45)))
        mask = rng.random(shape) < rng.random()
        if trial % 4 == 0:
            mask = ndi.binary_dilation(mask)
        max_area = float(rng.integers(0, 30))
        np.testing.assert_array_equal(fill_small_holes(mask, max_area=max_area), expected(mask, max_area))
    ring = np.ones((9, 9), bool)
    ring[2:7, 2:7] = False
    ring[4, 4] = True  # a hole of 24 px around an island
    assert fill_small_holes(ring, max_area=24).all()
    assert not fill_small_holes(ring, max_area=23)[3, 3]


def test_flood_components_is_skimages_watershed_on_each_crop_with_plateaus_and_ties():
    """The compiled flooding must give skimage's labels bit for bit where the order is
    decided by the queue alone: integer surfaces (wide plateaus, markers of equal value),
    several markers per component, components without a marker, crops on the image edge."""
    from scipy import ndimage as ndi
    from skimage import segmentation

    from imaging.kernels import flood_components
    from imaging.label_stats import label_boxes

    rng = np.random.default_rng(1)
    for trial in range(400):
        shape = tuple(int(v) for v in rng.integers(3, 40, 2))
        mask = rng.random(shape) < 0.8
        if trial % 2:
            mask = ndi.binary_opening(mask)
        components, n = ndi.label(mask)
        if trial % 3 == 0:
            surface = -ndi.distance_transform_edt(mask).astype(np.float32)
        else:
            surface = -rng.integers(0, int(rng.integers(1, 6)), shape).astype(np.float32)
        markers = np.zeros(shape, np.int32)
        k = int(rng.integers(1, 8))
        markers.flat[rng.choice(markers.size, k, replace=False)] = np.arange(1, k + 1)
        markers[~mask] = 0
        expected = np.zeros(shape, np.int32)
        for index, box in enumerate(ndi.find_objects(components), start=1):
            inside = components[box] == index
            flooded = segmentation.watershed(surface[box], np.where(inside, markers[box], 0), mask=inside)
            expected[box][inside] = flooded[inside]
        out = np.full(shape, -7, np.int32)  # written only inside the wanted components
        flood_components(surface, markers, components, label_boxes(components, n), np.ones(n, bool), out)
        np.testing.assert_array_equal(np.where(mask, out, 0), expected)
        assert (out[~mask] == -7).all()


def test_intensity_limits_of_integer_images_are_numpys_percentiles():
    """8- and 16-bit images take the counting path: the same float32 percentiles as numpy's
    linear interpolation, on noise, sparse counts, constant and two-level images."""
    from imaging.segment.classical import _intensity_limits

    rng = np.random.default_rng(9)
    for trial in range(600):
        dtype = (np.uint8, np.uint16, bool)[trial % 3]
        top = {np.uint8: 255, np.uint16: 65535, bool: 1}[dtype]
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        image = [
            rng.integers(0, top + 1, shape),
            rng.poisson(rng.uniform(0, 50), shape).clip(0, top),
            np.full(shape, top),
            rng.integers(0, 3, shape) * (top // 2),
        ][trial % 4].astype(dtype)
        low, high = float(rng.uniform(0, 5)), float(rng.uniform(95, 100))
        lo, hi = np.percentile(image.astype(np.float32), [low, high])
        expected = (float(lo), float(hi if hi > lo else lo + 1.0))
        assert _intensity_limits(image, low=low, high=high) == expected, (trial, low, high)
