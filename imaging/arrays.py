"""Checks at the library's boundary: what a public function accepts as images and labels.

Like scikit-image, a public function checks its arrays first and raises a ``ValueError``
that names the argument and both shapes, instead of a numpy error from deep inside
(``zero-size array to reduction operation``, broadcasting errors, NaN comparisons).
"""

from __future__ import annotations

import math

import numpy as np


def check_image(image, *, name: str = "image", rgb: bool = False) -> np.ndarray:
    """``image`` as an array: 2-D (or ``(M, N, 3)`` when ``rgb``), not empty, numeric,
    every pixel finite.

    Parameters
    ----------
    image : array_like
        The image a public function was given.
    name : str
        The argument's name, for the message.
    rgb : bool
        True when a colour image ``(M, N, 3)`` is expected.

    Returns
    -------
    ndarray
        ``image`` as an array (no copy when it already is one).

    Raises
    ------
    ValueError
        Naming ``name``, its shape (and the expected one), dtype or count of non-finite pixels.
    """
    image = np.asarray(image)
    expected = "(M, N, 3)" if rgb else "(M, N)"
    if image.ndim != (3 if rgb else 2) or (rgb and image.shape[-1] != 3):
        raise ValueError(f"{name} must have shape {expected}, got {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError(f"{name} has {int((~np.isfinite(image)).sum())} NaN or infinite pixels")
    return image


def check_labels(labels, shape: tuple[int, ...], *, name: str = "labels", image_name: str = "image") -> np.ndarray:
    """``labels`` as an integer array of ``shape`` (the image's rows and columns), none negative.

    Parameters
    ----------
    labels : array_like
        A label image (0 = background).
    shape : tuple of int
        The shape it must have: the image's rows and columns.
    name, image_name : str
        The two arguments' names, for the message.

    Returns
    -------
    ndarray
        ``labels`` as an array.

    Raises
    ------
    ValueError
        When the shapes differ (both named), the dtype is not integer or a label is negative.
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"{name} shape {labels.shape} differs from {image_name} shape {tuple(shape)}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer labels, got dtype {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError(f"{name} has negative values")
    return labels


def check_size(value, *, name: str, allow_zero: bool = False) -> float:
    """A length in px: finite and above 0 (or at least 0 when ``allow_zero``).

    Parameters
    ----------
    value : float
        The length.
    name : str
        The argument's name, for the message.
    allow_zero : bool
        Accept 0.

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    ValueError
        When ``value`` is not finite, negative, or 0 without ``allow_zero``.
    """
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "above 0"
        raise ValueError(f"{name} must be a finite size in px {bound}, got {value}")
    return value


def check_same_shape(values, labels, *, names: tuple[str, str] = ("values", "labels")) -> None:
    """A per-label statistic's two arrays cover the same pixels (a shape check only: cheap
    enough for the hot path, where :func:`check_labels` has already run once per field).

    Parameters
    ----------
    values, labels : ndarray or tuple of int
        The two arrays, or their shapes.
    names : tuple of str
        Their names, for the message.

    Raises
    ------
    ValueError
        Naming both shapes when they differ.
    """
    first = tuple(values) if isinstance(values, tuple) else np.shape(values)
    second = tuple(labels) if isinstance(labels, tuple) else np.shape(labels)
    if first != second:
        raise ValueError(f"{names[0]} shape {first} differs from {names[1]} shape {second}")
