"""Illumination (flat-field) correction of fluorescence channels.

A widefield microscope lights and sees the middle of a field better than its corners
(vignetting), so the same cell reads dimmer near the edge, and a well's numbers depend on
where in the field its cells happen to lie. The correction is

    corrected = (raw - dark) / flat

with ``flat`` scaled to mean 1 over the field, so corrected intensities stay in the
camera's units on average and a uniformly lit image is left unchanged.

The flat-field comes from the user's files (flat-field and dark-field images, or
CellProfiler's illumination functions saved as ``.npy`` or ``.mat``) or is estimated per
plate from the fields themselves: each field is reduced to a coarse grid of block means and
divided by its own median (so bright and dim wells weigh alike), the grids are combined by the
25th percentile of each block over fields (cells lie in different places in every field, the
lighting is the same: a cell covers a given block in fewer than a quarter of the fields, and a
median let the 16-fold brighter cells of a third of the fields through), and a smooth surface
(a degree-4 polynomial of the logarithm, refitted without outlying blocks) is fitted to the
result. This is the classical "normalised fields" estimate; BaSiC would add a per-field
baseline, but its maintained implementation (basicpy) needs jax, which this project does not
otherwise install. A camera offset is not lit: give it as a dark-field (``method: files``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imaging.errors import InputError
from imaging.features.background import interpolate_grid

ESTIMATE_GRID = 64  # blocks on the long side of a field for the estimate
POLYNOMIAL_DEGREE = 4  # radial vignetting is even in r: r^2 and r^4 terms
REFITS = 4  # fits, each without the blocks the previous one found off by > 3 robust SDs
FIELD_QUANTILE = 0.25  # per block, over fields: a cell sits on a block in fewer than a quarter of the fields


@dataclasses.dataclass(frozen=True)
class Flatfield:
    """The illumination of one channel.

    ``flat`` is either the field's own size (from a file) or, when ``grid`` is True, a
    coarse grid of a smooth surface sampled at block centres (an estimate), interpolated
    bilinearly to the field. ``dark`` (optional) is field-sized. ``source`` says where it
    came from, for the run record. ``sha256`` (of the arrays, part of every field's
    fingerprint) is computed once here, not once per field: a field-sized flat is 16 MB."""

    flat: np.ndarray
    dark: np.ndarray | None = None
    grid: bool = False
    source: str = ""
    sha256: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        digest = hashlib.sha256(np.ascontiguousarray(self.flat, dtype=np.float32).tobytes())
        digest.update(b"grid" if self.grid else b"full")
        if self.dark is not None:
            digest.update(np.ascontiguousarray(self.dark, dtype=np.float32).tobytes())
        object.__setattr__(self, "sha256", digest.hexdigest())

    def check_shape(self, shape: tuple[int, int]) -> None:
        """InputError unless the flat- and dark-field files fit fields of ``shape`` (the one
        size rule: planning checks it on the first field's header, correction on every field).

        Parameters
        ----------
        shape : tuple of int
            A field's (rows, columns).

        Raises
        ------
        InputError
            Naming the file, both shapes and the fix.
        """
        for what, array in (("flat-field", None if self.grid else self.flat), ("dark-field", self.dark)):
            if array is not None and array.shape != tuple(shape):
                raise InputError(
                    f"the {what} is {array.shape[0]} x {array.shape[1]} px but the fields are "
                    f"{shape[0]} x {shape[1]} px",
                    path=self.source,
                    fix=f"give a {what} made with the same camera settings (size, binning), "
                    "or use illumination.method: estimate",
                )

    def flat_at(self, shape: tuple[int, int]) -> np.ndarray:
        """The flat-field at the field's size, mean 1 (float32).

        Parameters
        ----------
        shape : tuple of int
            A field's (rows, columns); a coarse grid is interpolated to it.

        Returns
        -------
        ndarray of float32, of ``shape``
        """
        self.check_shape(shape)
        flat = interpolate_grid(self.flat, shape) if self.grid else self.flat
        return (flat / flat.mean()).astype(np.float32)


def correct(image: np.ndarray, flatfield: Flatfield) -> np.ndarray:
    """``(image - dark) / flat`` as float32 (see module docstring).

    Parameters
    ----------
    image : (M, N) ndarray
        A raw field of one channel.
    flatfield : Flatfield
        That channel's flat-field (and dark-field).

    Returns
    -------
    (M, N) ndarray of float32
        The corrected field, in the raw image's units at the flat's mean light.

    Raises
    ------
    InputError
        When the image is not 2-D or does not fit the flat-field's size.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(
            f"illumination correction needs a 2-D channel, got shape {image.shape}",
            fix="correct fluorescence channels only",
        )
    flat = flatfield.flat_at(image.shape)  # checks the dark-field's size too
    corrected = image.astype(np.float32)
    if flatfield.dark is not None:
        corrected -= flatfield.dark
    corrected /= flat
    return corrected


def correct_channels(images: dict[str, np.ndarray], illumination: dict[str, Flatfield] | None) -> dict[str, np.ndarray]:
    """``images`` with each channel that has a flat-field corrected (others unchanged).

    Parameters
    ----------
    images : dict of str to ndarray
        A field's channels by pipeline name.
    illumination : dict of str to Flatfield, or None
        Flat-fields by channel name; None or empty corrects nothing.

    Returns
    -------
    dict of str to ndarray
    """
    if not illumination:
        return images
    return {
        name: correct(image, illumination[name]) if name in illumination else image for name, image in images.items()
    }


# ---- files -------------------------------------------------------------------------------
def _single_array_from_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises several types for non-MAT files
        raise InputError(
            f"is not a readable MATLAB file ({type(exc).__name__}: {exc})",
            path=path,
            fix="save the illumination function as .npy or TIFF",
        ) from None
    arrays = {k: v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2}
    if "Image" in arrays:  # CellProfiler's name for a saved image
        return arrays["Image"]
    if len(arrays) != 1:
        raise InputError(
            f"holds {len(arrays)} 2-D arrays ({', '.join(arrays) or 'none'}); expected one",
            path=path,
            fix="save only the illumination function in the .mat file",
        )
    return next(iter(arrays.values()))


def _check_npy_header(path: Path) -> None:
    """The array a ``.npy`` header claims must be field-sized, checked before it is mapped."""
    from imaging.io.readers import MAX_FIELD_PIXELS

    try:
        with open(path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(handle)
    except (ValueError, OSError) as exc:
        raise InputError(
            f"is not a readable .npy file ({type(exc).__name__}: {exc})",
            path=path,
            fix="save the illumination function again with numpy.save",
        ) from None
    if int(np.prod(shape, dtype=np.int64)) > MAX_FIELD_PIXELS:
        raise InputError(
            f"claims {' x '.join(map(str, shape))} values, more than a field may have ({MAX_FIELD_PIXELS})",
            path=path,
            fix="give the flat-field of one field (the fields' size)",
        )


def read_illumination_image(path: str | Path) -> np.ndarray:
    """A flat- or dark-field from ``.npy`` / ``.mat`` (CellProfiler's illumination functions)
    or an image file, checked: 2-D, numeric, finite (float64).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    (M, N) ndarray of float64

    Raises
    ------
    InputError
        Naming the file when it cannot be read, is not 2-D, or holds NaN or infinite values.
    """
    from imaging.io.readers import check_field_image, read_raw

    path = Path(path)
    if not path.is_file():
        raise InputError(
            "illumination file not found",
            path=path,
            fix="give the path relative to the pipeline file, or an absolute path",
        )
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".mat"):
        check_field_image(path)  # headers first: a damaged or oversized TIFF is refused before it is read
    if suffix == ".npy":
        _check_npy_header(path)
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except Exception as exc:
            raise InputError(
                f"is not a readable .npy file ({type(exc).__name__}: {exc})",
                path=path,
                fix="save the illumination function again with numpy.save",
            ) from None
    elif suffix == ".mat":
        array = _single_array_from_mat(path)
    else:
        array = read_raw(path)
    array = np.squeeze(array)
    if array.ndim != 2 or array.dtype.kind not in "uif":
        raise InputError(
            f"must be a 2-D numeric image, got shape {array.shape} of {array.dtype}",
            path=path,
            fix="give one plane of the illumination function",
        )
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InputError("has NaN or infinite values", path=path, fix="export the illumination function again")
    return array


def flatfield_from_files(flat_path: str | Path, dark_path: str | Path | None = None) -> Flatfield:
    """A :class:`Flatfield` from a flat-field file and an optional dark-field file. The dark
    is subtracted from the flat too (a flat-field image is an image like any other).

    Parameters
    ----------
    flat_path : str or Path
        The flat-field (any positive scale; it is normalised to mean 1).
    dark_path : str or Path, optional
        The dark-field (camera offset), the flat's shape.

    Returns
    -------
    Flatfield

    Raises
    ------
    InputError
        When a file is unreadable, the two shapes differ, or the flat is not positive.
    """
    flat = read_illumination_image(flat_path)
    dark = None if dark_path is None else read_illumination_image(dark_path)
    if dark is not None:
        if dark.shape != flat.shape:
            raise InputError(
                f"the dark-field is {dark.shape[0]} x {dark.shape[1]} px, the flat-field "
                f"{flat.shape[0]} x {flat.shape[1]} px",
                path=dark_path,
                fix="give flat- and dark-field images of the same size",
            )
        flat = flat - dark
    bad = int(np.count_nonzero(flat <= 0))
    if bad:
        raise InputError(
            f"has {bad} pixel(s) at or below zero{' after the dark-field is subtracted' if dark is not None else ''}; "
            "an image cannot be divided by it",
            path=flat_path,
            fix="check that the flat- and dark-field files are not swapped, or smooth the flat-field",
        )
    return Flatfield(
        flat=flat.astype(np.float32), dark=None if dark is None else dark.astype(np.float32), source=str(flat_path)
    )


# ---- estimate ---------------------------------------------------------------------------------
def block_means(image: np.ndarray, n_blocks: int = ESTIMATE_GRID) -> np.ndarray:
    """Mean of each block of a grid with ``n_blocks`` blocks on the long side (edge blocks
    smaller); float64.

    Parameters
    ----------
    image : (M, N) ndarray
        A field.
    n_blocks : int
        Blocks along the image's long side (square blocks).

    Returns
    -------
    ndarray of float64
        One mean per block.
    """
    image = np.asarray(image, dtype=np.float64)
    block = _block_size(image.shape, n_blocks)
    rows = np.arange(0, image.shape[0], block)
    cols = np.arange(0, image.shape[1], block)
    sums = np.add.reduceat(np.add.reduceat(image, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, image.shape[0])), np.diff(np.append(cols, image.shape[1])))
    return sums / counts


def _block_size(shape: tuple[int, int], n_blocks: int) -> int:
    return max(1, int(np.ceil(max(shape) / n_blocks)))


def _block_centres(length: int, block: int) -> np.ndarray:
    """Centres of :func:`block_means`' blocks along one axis (px)."""
    starts = np.arange(0, length, block)
    return (starts + np.minimum(starts + block, length) - 1) / 2.0


def _grid_centres(length: int, n: int) -> np.ndarray:
    """Where :func:`imaging.features.background.interpolate_grid` puts ``n`` grid values (px)."""
    return (np.arange(n) + 0.5) * length / n - 0.5


def _powers(positions: np.ndarray, length: int, degree: int) -> np.ndarray:
    x = 2.0 * positions / max(length - 1, 1) - 1.0  # -1 .. 1 across the field
    return np.stack([x**k for k in range(degree + 1)], axis=1)


def _surface(coefficients: np.ndarray, rows: np.ndarray, cols: np.ndarray, degree: int) -> np.ndarray:
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    return sum(c * np.outer(rows[:, i], cols[:, j]) for c, (i, j) in zip(coefficients, terms))


def fit_log_polynomial(grid: np.ndarray, shape: tuple[int, int], *, degree: int = POLYNOMIAL_DEGREE) -> np.ndarray:
    """A 2-D polynomial of total degree ``degree`` fitted to the log of ``grid`` (the
    :func:`block_means` of a field of ``shape``; NaN blocks ignored), refitted (REFITS fits in
    all) without the blocks the previous fit found more than 3 robust SDs off.

    Parameters
    ----------
    grid : (R, C) ndarray of float
        Block means, positive (NaN where unknown).
    shape : tuple of int
        The field's (rows, columns) the blocks came from.
    degree : int
        Total degree of the polynomial.

    Returns
    -------
    (R, C) ndarray of float64
        exp of the fit on a grid of the same size, at the points where
        :func:`~imaging.features.background.interpolate_grid` puts grid values.

    Raises
    ------
    InputError
        When too few blocks hold signal to fit.
    """
    from scipy.stats import median_abs_deviation

    block = _block_size(shape, max(grid.shape))
    rows = _powers(_block_centres(shape[0], block), shape[0], degree)
    cols = _powers(_block_centres(shape[1], block), shape[1], degree)
    if (len(rows), len(cols)) != grid.shape:
        raise ValueError(f"grid {grid.shape} is not the block means of a {shape} field")
    n_terms = (degree + 1) * (degree + 2) // 2
    design = np.stack([_surface(np.eye(n_terms)[k], rows, cols, degree).ravel() for k in range(n_terms)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        target = np.log(grid).ravel()
    keep = np.isfinite(target)
    if keep.sum() < n_terms:
        raise InputError(
            f"only {int(keep.sum())} blocks with signal; the illumination cannot be estimated",
            fix="set illumination.method: none, or give flat-field files",
        )
    for _ in range(REFITS):
        coefficients, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        residual = target - design @ coefficients
        spread = median_abs_deviation(residual[keep], scale="normal")
        if spread > 0:
            keep = np.isfinite(target) & (np.abs(residual) <= 3 * spread)
    out_rows, out_cols = grid.shape
    rows_out = _powers(_grid_centres(shape[0], out_rows), shape[0], degree)
    cols_out = _powers(_grid_centres(shape[1], out_cols), shape[1], degree)
    return np.exp(_surface(coefficients, rows_out, cols_out, degree))


class FlatfieldEstimator:
    """One channel's flat-field estimate, fed one field at a time (see module docstring):
    it keeps only each field's coarse grid, so memory stays that of one field whatever the
    plate's size."""

    def __init__(self, *, n_blocks: int = ESTIMATE_GRID, degree: int = POLYNOMIAL_DEGREE):
        self.n_blocks, self.degree = n_blocks, degree
        self.grids: list[np.ndarray] = []
        self.shape: tuple[int, ...] | None = None

    def add(self, image: np.ndarray) -> None:
        """Add one field of the channel (only its coarse block grid is kept).

        Parameters
        ----------
        image : (M, N) ndarray
            A raw field; a blank one (median block 0) is skipped.

        Raises
        ------
        InputError
            When its size differs from the fields added before.
        """
        image = np.asarray(image)
        if self.shape is None:
            self.shape = image.shape
        elif image.shape != self.shape:
            raise InputError(
                f"fields differ in size ({self.shape} and {image.shape}); one flat-field cannot serve both",
                fix="estimate illumination per acquisition setting (one pipeline run per field size)",
            )
        grid = block_means(image, self.n_blocks)
        level = np.median(grid)
        if level > 0:  # a blank field says nothing about the light
            self.grids.append(grid / level)

    def result(self) -> tuple[Flatfield, dict]:
        """The flat-field (a coarse grid, mean 1) and what the record says of it: ``n_fields``,
        ``min``/``max`` of the flat (0.7: the dimmest part of the field gets 70 % of the mean light)."""
        if not self.grids:
            raise InputError(
                "no field with signal to estimate the illumination from",
                fix="set illumination.method: none, or give flat-field files",
            )
        combined = np.quantile(np.stack(self.grids), FIELD_QUANTILE, axis=0)
        combined = np.where(combined > 0, combined, np.nan)
        surface = fit_log_polynomial(combined, self.shape, degree=self.degree)
        flat_full = interpolate_grid(surface, self.shape)
        flat_full /= flat_full.mean()
        info = {"n_fields": len(self.grids), "min": float(flat_full.min()), "max": float(flat_full.max())}
        return Flatfield(flat=surface.astype(np.float32), grid=True, source="estimated"), info


def estimate_flatfield(images: Iterable[np.ndarray], **options) -> tuple[Flatfield, dict]:
    """Estimate one channel's flat-field from many fields of a plate (:class:`FlatfieldEstimator`).

    Parameters
    ----------
    images : iterable of (M, N) ndarray
        Raw fields of one channel, all the same size (read one at a time).
    **options
        ``n_blocks`` and ``degree`` of :class:`FlatfieldEstimator`.

    Returns
    -------
    flatfield : Flatfield
        A coarse grid, mean 1.
    info : dict
        ``n_fields`` used and the flat's ``min`` and ``max``.
    """
    estimator = FlatfieldEstimator(**options)
    for image in images:
        estimator.add(image)
    return estimator.result()
