"""Public library functions refuse arrays they cannot measure with one ValueError that names
the argument and its shape (scikit-image's habit), instead of a numpy error from deep inside
or a number computed from the wrong pixels."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.features import background, qc
from imaging.stains import optical, vectors, white

RNG = np.random.default_rng(0)
RGB = (RNG.random((40, 40, 3)) * 255).astype(np.uint8)
WITH_NAN = RNG.random((40, 40))
WITH_NAN[3, 3] = np.nan
HDAB = vectors.default_vectors(("hematoxylin", "dab"))

CASES = {
    "focus of an image with a NaN": (lambda: qc.edge_blur_px(WITH_NAN), "1 NaN or infinite"),
    "focus of a 1-D array": (lambda: qc.edge_blur_px(RNG.random(40)), r"shape \(M, N\), got \(40,\)"),
    "saturation of a 1-D array": (lambda: qc.saturated_fraction(RNG.random(40)), r"got \(40,\)"),
    "a white of two values": (lambda: optical.optical_density(RGB, np.array([1, 2])), r"white shape \(2,\)"),
    "OD of a grey image": (lambda: optical.optical_density(RNG.random((40, 40)), 255.0), r"3 colour channels"),
    "a stain of a grey image": (
        lambda: vectors.stain_channel(RNG.random((40, 40)), HDAB, "dab", white=255),
        r"rgb must have shape \(M, N, 3\), got \(40, 40\)",
    ),
    "the white point of a grey image": (lambda: white.white_point(RNG.random((40, 40))), r"got \(40, 40\)"),
    "background tiles of another mask": (
        lambda: background.tile_statistic(RNG.random((40, 40)), np.ones((30, 30), bool)),
        r"image shape \(40, 40\) differs from mask shape \(30, 30\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arrays_are_refused_naming_the_argument_and_its_shape(case):
    call, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        call()
