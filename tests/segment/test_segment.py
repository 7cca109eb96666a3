import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from imaging.metrics import match_scores
from imaging.segment import check_labels, derive_cells, segment_nuclei
from imaging.segment.scale import estimate_radius
from tests.conftest import disk_image


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
    assert scores.f1 >= 0.85, scores


def test_label_contract_is_enforced():
    assert check_labels(np.array([[0, 5], [5, 9]]), (2, 2), backend="x").tolist() == [[0, 1], [1, 2]]
    with pytest.raises(RuntimeError, match="shape"):
        check_labels(np.zeros((3, 3), int), (2, 2), backend="x")
    with pytest.raises(RuntimeError, match="float"):
        check_labels(np.zeros((2, 2)), (2, 2), backend="x")
    with pytest.raises(ValueError, match="unknown segmentation method"):
        segment_nuclei(np.zeros((8, 8)), method="magic")
    with pytest.raises(ValueError, match="2-D"):
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
