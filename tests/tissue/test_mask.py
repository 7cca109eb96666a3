"""The tissue mask on hand-made overviews: pale tissue between its nuclei, gaps, glass."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.tissue.mask import close_gaps, tissue_mask

GLASS = (222, 220, 210)  # a real Ki67 tile's warm glass (DeepLIIF 799_2), 8-bit RGB
PALE_CYTOPLASM = (210, 209, 202)  # that tile's cytoplasm: 0.02-0.03 OD above its glass
NUCLEUS = (150, 170, 205)  # haematoxylin


def pale_tile(size=300, tissue_columns=180, spacing_um=18, radius_um=5, seed=0):
    """A 1 um/px overview: glass on the right, palely counterstained tissue on the left whose
    nuclei (on a jittered grid) are the only pixels above 0.05 OD."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float64)
    image[:] = GLASS
    image[:, :tissue_columns] = PALE_CYTOPLASM
    rows, cols = np.mgrid[:size, :size]
    for r in range(spacing_um // 2, size, spacing_um):
        for c in range(spacing_um // 2, tissue_columns - radius_um, spacing_um):
            y, x = r + rng.uniform(-3, 3), c + rng.uniform(-3, 3)
            image[(rows - y) ** 2 + (cols - x) ** 2 <= radius_um**2] = NUCLEUS
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), tissue_columns / size


def test_pale_tissue_is_outlined_where_its_cells_are_not_only_at_its_nuclei():
    image, truth = pale_tile()
    mask = tissue_mask(image, pixel_size_um=1.0, min_area_um2=20000)
    # without the gap closing the nuclei alone pass 0.05 OD: each piece is under the minimum
    # area, so the tile kept no tissue at all (DeepLIIF 799_2 reported no cells per mm2)
    assert mask.mean() == pytest.approx(truth, abs=0.03)
    assert not mask[:, 200:].any()  # the glass stays glass
    assert mask[:, 10:170].mean() > 0.99


def test_gaps_narrower_than_the_closing_are_filled_and_wider_ones_kept():
    bars = np.zeros((40, 40), bool)
    bars[:, :10] = True
    bars[:, 14:20] = True  # a 4 px gap, then a 10 px one
    bars[:, 30:] = True
    closed = close_gaps(bars, 3)
    assert closed[:, 10:14].all()
    assert not closed[:, 21:29].any()
    assert (closed | ~bars).all()  # a closing never drops a pixel, at the border either
    assert (close_gaps(bars, 0.5) == bars).all()  # under one pixel: unchanged


def test_a_mask_filled_wholly_by_the_closing_keeps_its_corners():
    mask = np.ones((30, 30), bool)
    mask[10:12, 5:25] = False  # a 2 px slit
    assert close_gaps(mask, 3).all()
