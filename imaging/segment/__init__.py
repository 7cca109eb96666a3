"""Segmentation backends behind one contract.

A backend is a function ``backend(image, *, threads, **options) -> (labels, info)``:

- ``image`` is a 2-D nuclear-stain image (any numeric dtype);
- ``threads`` is how many threads it may use for one image (the labels do not depend on it);
- ``labels`` is an int32 array of the same shape, objects numbered 1..n, 0 = background;
- ``info`` is a dict with at least ``radius_px``, the typical nucleus radius in pixels
  (used to scale cell derivation and QC).

:func:`segment_nuclei` looks the backend up by name, calls it and checks the contract, so
callers (pipeline, CLI, napari plugin) never depend on which backend ran.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imaging import arrays
from imaging.label_stats import relabel_sequential
from imaging.segment.cells import derive_cells
from imaging.segment.classical import segment_nuclei_classical

Backend = Callable[..., tuple[np.ndarray, dict]]


def _cellpose_backend(image: np.ndarray, *, threads: int = 1, **options) -> tuple[np.ndarray, dict]:
    from imaging.segment.cellpose_backend import segment_nuclei_cellpose  # torch is heavy: lazy

    del threads  # torch chooses its own threads
    return segment_nuclei_cellpose(image, **options)


BACKENDS: dict[str, Backend] = {
    "classical": segment_nuclei_classical,
    "cellpose": _cellpose_backend,
}


def check_labels(labels: np.ndarray, shape: tuple[int, ...], *, backend: str) -> np.ndarray:
    """Enforce the label contract: int32, ``shape``, ids 1..n with no gaps.

    Parameters
    ----------
    labels : ndarray
        What a backend returned.
    shape : tuple of int
        The image's shape.
    backend : str
        The backend's name, for the message.

    Returns
    -------
    ndarray of int32
        ``labels`` renumbered 1..n, in the order of their values.

    Raises
    ------
    RuntimeError
        When the backend broke the contract (a bug in the backend, not the user's input).
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise RuntimeError(f"segmentation backend {backend!r} returned shape {labels.shape}, expected {tuple(shape)}")
    if labels.dtype.kind not in "iu":
        raise RuntimeError(f"segmentation backend {backend!r} returned {labels.dtype} labels")
    if labels.size and labels.min() < 0:
        raise RuntimeError(f"segmentation backend {backend!r} returned negative labels")
    return relabel_sequential(labels)


def segment_nuclei(
    image: np.ndarray, *, method: str = "classical", threads: int = 1, **options
) -> tuple[np.ndarray, dict]:
    """Segment nuclei in a 2-D image with the named backend (see module docstring).

    Parameters
    ----------
    image : (M, N) ndarray
        Nuclear stain (finite values; any dtype).
    method : str
        A key of :data:`BACKENDS` (``'classical'``, ``'cellpose'``).
    threads : int
        Threads the backend may use for this image (the labels do not depend on it).
    **options
        The backend's options (``radius`` or ``diameter`` in px, model settings).

    Returns
    -------
    labels : (M, N) int32 ndarray
        0 background, nuclei 1..n.
    info : dict
        At least ``radius_px`` (typical nucleus radius) and ``n_objects``.
    """
    image = arrays.check_image(image, name="nuclei image")
    if options.get("radius") is not None:
        arrays.check_size(options["radius"], name="radius")
    if options.get("diameter") is not None:
        arrays.check_size(options["diameter"], name="diameter")
    try:
        backend = BACKENDS[method]
    except KeyError:
        raise ValueError(f"unknown segmentation method {method!r}; available: {', '.join(BACKENDS)}") from None
    labels, info = backend(image, threads=threads, **options)
    labels = check_labels(labels, image.shape, backend=method)
    info = dict(info)
    if "radius_px" not in info:
        areas = np.bincount(labels.ravel())[1:]
        info["radius_px"] = float(np.sqrt(np.median(areas) / np.pi)) if areas.size else 0.0
    info["n_objects"] = int(labels.max())
    return labels, info


__all__ = ["BACKENDS", "derive_cells", "segment_nuclei", "segment_nuclei_classical"]
