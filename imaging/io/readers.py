"""Read image files into arrays, with checks that name the file and the fix.

Grayscale channels come back as 2-D arrays (row, column); brightfield colour channels as
(row, column, 3) RGB. Truncated or corrupt TIFF files are caught up front by
:func:`check_image_file`, which reads only headers, so a run can refuse bad input before
it writes anything.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import tifffile

from imaging.errors import InputError
from imaging.io import files

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
_SUPPORTED_DTYPES = ("u", "i", "f")  # unsigned, signed integer, float kinds


def _is_tiff(path) -> bool:
    return str(path).lower().endswith(TIFF_SUFFIXES)


def check_image_file(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an image file, from its header alone.

    For TIFF files this also checks that every image strip or tile lies inside the file,
    which catches truncated transfers without reading pixels.

    Raises
    ------
    InputError
        The file is missing, not an image, corrupt or truncated.
    """
    if not files.is_file(path):
        raise InputError("image file not found", path=path, fix="check the folder and file names")
    if not _is_tiff(path):
        image = read_raw(path)
        return image.shape, image.dtype
    size = files.size(path)
    try:
        with files.open_binary(path) as handle, tifffile.TiffFile(handle) as tif:
            if not tif.series:
                raise InputError(
                    "not a readable TIFF file (corrupt: it holds no image)",
                    path=path,
                    fix="copy the file again from the instrument or remove the field",
                )
            series = tif.series[0]
            for page in series.pages:
                if page is None:
                    continue
                offsets = getattr(page, "dataoffsets", ()) or ()
                counts = getattr(page, "databytecounts", ()) or ()
                for offset, count in zip(offsets, counts):
                    if offset + count > size:
                        raise InputError(
                            f"TIFF file is truncated ({size} bytes, image data runs to {offset + count})",
                            path=path,
                            fix="copy the file again from the instrument or remove the field",
                        )
            return tuple(series.shape), np.dtype(series.dtype)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(
            f"not a readable TIFF file ({type(exc).__name__}: {exc})",
            path=path,
            fix="copy the file again from the instrument or remove the field",
        ) from None


MAX_FIELD_PIXELS = 2**27  # the default of a pipeline's max_field_pixels


def check_field_image(path: str | Path, *, max_pixels: int = MAX_FIELD_PIXELS) -> tuple[tuple[int, ...], np.dtype]:
    """:func:`check_image_file`, then what a field image must be before any work: at most
    ``max_pixels`` per plane (from the header, so nothing large is allocated), numeric (not
    boolean), and, for floating-point files (the only ones that can hold them), free of NaN
    and infinite pixels (those files are read here: NaN would leave cells with empty values
    in tables that otherwise look complete)."""
    shape, dtype = check_image_file(path)
    plane = int(np.prod(sorted(shape)[-2:], dtype=np.int64))  # the two largest axes: rows x columns
    if plane > max_pixels:
        raise InputError(
            f"the header claims {' x '.join(map(str, shape))} pixels, more than a field may have "
            f"({max_pixels} per plane)",
            path=path,
            fix="check the file (it may be corrupt); for truly larger fields raise max_field_pixels "
            "in the pipeline, or use a tissue pipeline, which reads tile by tile",
        )
    if dtype.kind == "b":
        raise InputError(
            "is a boolean (mask) image, not a measured channel",
            path=path,
            fix="give the instrument's intensity image, not a thresholded mask",
        )
    if dtype.kind == "f":
        pixels = read_raw(path)
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise InputError(
                f"has {bad} NaN or infinite pixel(s)",
                path=path,
                fix="export the image again without NaN (or replace them, e.g. with 0, in Fiji)",
            )
    return shape, dtype


def read_raw(path: str | Path) -> np.ndarray:
    """Pixels of an image file, as stored; InputError on unreadable files."""
    if not files.is_file(path):
        raise InputError("image file not found", path=path, fix="check the folder and file names")
    try:
        if _is_tiff(path):
            with files.open_binary(path) as handle:
                image = tifffile.imread(handle)
        else:
            import imageio.v3 as iio  # comes with scikit-image

            image = np.asarray(iio.imread(files.read_bytes(path) if files.is_url(path) else path))
    except Exception as exc:
        raise InputError(
            f"cannot be read as an image ({type(exc).__name__}: {exc})",
            path=path,
            fix="copy the file again or convert it to TIFF",
        ) from None
    if image.size == 0:
        raise InputError(
            "cannot be read as an image (corrupt: no pixels)",
            path=path,
            fix="copy the file again from the instrument or remove the field",
        )
    return image


def _check_dtype(image: np.ndarray, path: Path) -> None:
    if image.dtype.kind not in _SUPPORTED_DTYPES:
        raise InputError(
            f"has pixel type {image.dtype}, which is not an intensity image",
            path=path,
            fix="save the image as 8- or 16-bit integers or floats",
        )


def as_grayscale(image: np.ndarray, *, path: str | Path = "") -> np.ndarray:
    """A 2-D view of a grayscale image; squeezes singleton axes, accepts gray-as-RGB."""
    path = Path(path)
    _check_dtype(image, path)
    squeezed = np.squeeze(image)
    if squeezed.ndim == 3 and squeezed.shape[-1] in (3, 4):
        rgb = squeezed[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(
                "is a colour (RGB) image, where a grayscale fluorescence channel is expected",
                path=path,
                fix="export the channel as a grayscale TIFF, or declare it as kind: brightfield in the pipeline",
            )
        squeezed = rgb[..., 0]
    if squeezed.ndim != 2:
        raise InputError(
            f"expected a 2-D grayscale image, got shape {image.shape}",
            path=path,
            fix="export one channel, one z-plane and one time point per file",
        )
    if min(squeezed.shape) < 8:
        raise InputError(
            f"image is too small ({squeezed.shape})", path=path, fix="check that the file holds a whole field"
        )
    return squeezed


def as_rgb(image: np.ndarray, *, path: str | Path = "") -> np.ndarray:
    """An (row, column, 3) RGB view of a colour image; drops alpha, accepts channel-first."""
    path = Path(path)
    _check_dtype(image, path)
    squeezed = np.squeeze(image)
    if squeezed.ndim == 3 and squeezed.shape[-1] not in (3, 4) and squeezed.shape[0] in (3, 4):
        squeezed = np.moveaxis(squeezed, 0, -1)
    if squeezed.ndim != 3 or squeezed.shape[-1] not in (3, 4):
        raise InputError(
            f"expected an RGB colour image (rows, columns, 3), got shape {image.shape}",
            path=path,
            fix="export the brightfield channel as an RGB TIFF, or declare the channel as "
            "kind: fluorescence in the pipeline",
        )
    return squeezed[..., :3]


def read_channel(path: str | Path, *, kind: str) -> np.ndarray:
    """Read one channel file: ``kind='brightfield'`` gives RGB, anything else 2-D."""
    raw = read_raw(path)
    if kind == "brightfield":
        return as_rgb(raw, path=path)
    return as_grayscale(raw, path=path)


_CALIBRATION_RE = re.compile(r'spatial-calibration-x"\s+type="float"\s+value="([0-9.eE+-]+)"')


def pixel_size_from_tiff(path: str | Path) -> float | None:
    """Pixel size in micrometres from TIFF metadata (OME, ImageJ, MetaXpress, resolution
    tags in centimetres), or None when the file does not record one."""
    if not _is_tiff(path):
        return None
    try:
        with files.open_binary(path) as handle, tifffile.TiffFile(handle) as tif:
            if tif.is_ome and tif.ome_metadata:
                match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
                if match and (unit is None or unit.group(1) in ("µm", "um", "micron")):
                    return float(match.group(1))
            page = tif.pages[0]
            description = page.description or ""
            match = _CALIBRATION_RE.search(description)
            if match and float(match.group(1)) > 0:
                return float(match.group(1))
            resolution = page.tags.get("XResolution")
            if resolution is None:
                return None
            numerator, denominator = resolution.value
            pixels_per_unit = numerator / denominator if denominator else 0
            if pixels_per_unit <= 0:
                return None
            imagej_unit = (tif.imagej_metadata or {}).get("unit", "")
            if imagej_unit in ("micron", "um", "µm", "\\u00B5m"):
                return 1.0 / pixels_per_unit
            unit_tag = page.tags.get("ResolutionUnit")
            if unit_tag is not None and int(unit_tag.value) == 3:  # centimetre
                return 1e4 / pixels_per_unit
    except Exception:  # metadata is a convenience: unreadable metadata means "unknown"
        log.debug("no pixel size in %s", path, exc_info=True)
    return None
