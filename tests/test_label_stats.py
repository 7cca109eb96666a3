import numpy as np
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
