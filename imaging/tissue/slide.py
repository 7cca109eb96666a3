"""Whole-slide and large tissue images, read level by level and tile by tile.

:class:`Slide` wraps a pyramidal (OME-)TIFF or SVS, a plain (tiled or striped) TIFF, or a
small PNG/JPEG. Pixels are read through tifffile's zarr view, so a region costs only the
tiles it touches and a 40,000 x 40,000 section never has to fit in memory. Lower
resolutions come from the file's pyramid when it has one, and are otherwise computed by
block-averaging the full-resolution image one band of rows at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from imaging.errors import InputError
from imaging.io.readers import check_image_file, pixel_size_from_tiff, read_raw

log = logging.getLogger(__name__)

_SVS_MPP = re.compile(r"MPP\s*=\s*([0-9.]+)")


TILED_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8")  # read region by region; other files whole


@dataclasses.dataclass(frozen=True)
class Tile:
    """A tile of the full-resolution image: its core (where results belong) and the
    region read around it (core plus a margin), in full-resolution pixels."""

    row: int
    col: int
    height: int
    width: int
    margin_top: int
    margin_left: int
    read_row: int
    read_col: int
    read_height: int
    read_width: int


class Slide:
    """A tissue image opened for tiled reading (use as a context manager)."""

    def __init__(self, path: str | Path, *, pixel_size_um: float | None = None):
        self.path = Path(path)
        check_image_file(self.path)
        self._tif = None
        self._levels: list = []
        if self.path.suffix.lower() in TILED_SUFFIXES:
            import zarr

            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            self._levels = [zarr.open(self._tif.aszarr(series=0, level=i), mode="r") for i in range(len(series.levels))]
            shapes = [tuple(level.shape) for level in self._levels]
        else:
            self._image = read_raw(self.path)
            shapes = [self._image.shape]
        self.shapes = [self._spatial(shape) for shape in shapes]
        self.channels_last = [self._channel_axis(shape) for shape in shapes]
        self.pixel_size_um = pixel_size_um or self._file_pixel_size()

    # ---- geometry ------------------------------------------------------------------------
    @staticmethod
    def _channel_axis(shape: tuple) -> int | None:
        if len(shape) == 2:
            return None
        if shape[-1] in (3, 4):
            return len(shape) - 1
        if shape[0] in (3, 4):
            return 0
        raise ValueError(f"unsupported image shape {shape}")

    def _spatial(self, shape: tuple) -> tuple[int, int]:
        try:
            axis = self._channel_axis(shape)
        except ValueError:
            raise InputError(
                f"expected a 2-D or RGB image, got shape {shape}",
                path=self.path,
                fix="export the section as RGB (brightfield) or one channel",
            ) from None
        spatial = [s for i, s in enumerate(shape) if i != axis]
        if len(spatial) != 2:
            raise InputError(
                f"expected a 2-D or RGB image, got shape {shape}",
                path=self.path,
                fix="export one z-plane and time point",
            )
        return spatial[0], spatial[1]

    @property
    def shape(self) -> tuple[int, int]:
        """Full-resolution (rows, columns)."""
        return self.shapes[0]

    @property
    def is_rgb(self) -> bool:
        return self.channels_last[0] is not None

    @property
    def dtype(self) -> np.dtype:
        """The pixels' type, as stored."""
        return np.dtype(self._levels[0].dtype if self._tif is not None else self._image.dtype)

    def non_finite_pixels(self, tile_size: int = 2048) -> int:
        """NaN or infinite pixels of the full-resolution image (0 for integer types, which
        cannot hold them), counted tile by tile so that memory stays one tile's."""
        if self.dtype.kind != "f":
            return 0
        count = 0
        for t in self.tiles(tile_size):
            bad = ~np.isfinite(self._stored_region(t.row, t.col, t.height, t.width))
            count += int(np.count_nonzero(bad.any(axis=-1) if bad.ndim == 3 else bad))  # a pixel, not a channel
        return count

    def downsample(self, level: int) -> float:
        return self.shape[1] / self.shapes[level][1]

    def _file_pixel_size(self) -> float | None:
        if self._tif is None:
            return None
        description = self._tif.pages[0].description or ""
        match = _SVS_MPP.search(description)
        if match:
            return float(match.group(1))
        return pixel_size_from_tiff(self.path)

    # ---- reading -------------------------------------------------------------------------
    def _as_rows_cols_channels(self, block: np.ndarray, level: int) -> np.ndarray:
        axis = self.channels_last[level]
        if axis == 0:
            block = np.moveaxis(block, 0, -1)
        if block.ndim == 3:
            block = block[..., :3]
        return np.asarray(block)

    def read_region(self, row: int, col: int, height: int, width: int, *, level: int = 0) -> np.ndarray:
        """Pixels of a region of one level, as (rows, columns[, 3]); a floating-point RGB
        image in the 0-1 convention comes on the 0-255 scale (:attr:`intensity_scale`)."""
        block = self._stored_region(row, col, height, width, level=level)
        scale = self.intensity_scale
        return block if scale == 1.0 else block.astype(np.float32) * np.float32(scale)

    @functools.cached_property
    def intensity_scale(self) -> float:
        """The factor :meth:`read_region` applies: 255 for a floating-point RGB image whose
        values are all at most 1 (scikit-image's convention), 1 for every other image.

        Optical densities floor intensities at one grey level
        (:data:`imaging.stains.optical.MIN_INTENSITY`), the scale of the 8-bit RGB scanners
        write; a 0-1 image lies wholly under that floor and would read as blank glass, with
        no cells. Integer images of any depth keep their values (the white point sets their
        scale). Found once, tile by tile, for floating-point images only.
        """
        if self.dtype.kind != "f" or not self.is_rgb:
            return 1.0
        largest = max(
            float(np.max(self._stored_region(t.row, t.col, t.height, t.width), initial=0.0)) for t in self.tiles()
        )
        return 255.0 if largest <= 1.0 else 1.0

    def _stored_region(self, row: int, col: int, height: int, width: int, *, level: int = 0) -> np.ndarray:
        """:meth:`read_region` as stored, without the intensity scale."""
        rows = slice(max(row, 0), min(row + height, self.shapes[level][0]))
        cols = slice(max(col, 0), min(col + width, self.shapes[level][1]))
        try:
            if self._tif is None:
                block = self._image[rows, cols] if self.channels_last[0] != 0 else self._image[:, rows, cols]
            elif self.channels_last[level] == 0:
                block = self._levels[level][:, rows, cols]
            else:
                block = self._levels[level][rows, cols]
        except Exception as exc:  # truncated or corrupt tile data
            raise InputError(
                f"cannot read pixels ({type(exc).__name__}: {exc})",
                path=self.path,
                fix="copy the file again; it may be truncated",
            ) from None
        return self._as_rows_cols_channels(np.asarray(block), level)

    def tiles(self, tile_size: int = 2048, margin: int = 0) -> Iterator[Tile]:
        """Full-resolution tiles covering the image, each with a read margin around it."""
        rows, cols = self.shape
        for row in range(0, rows, tile_size):
            for col in range(0, cols, tile_size):
                height, width = min(tile_size, rows - row), min(tile_size, cols - col)
                read_row, read_col = max(0, row - margin), max(0, col - margin)
                read_bottom, read_right = min(rows, row + height + margin), min(cols, col + width + margin)
                yield Tile(
                    row,
                    col,
                    height,
                    width,
                    row - read_row,
                    col - read_col,
                    read_row,
                    read_col,
                    read_bottom - read_row,
                    read_right - read_col,
                )

    def level_for(self, pixel_size_um: float) -> int:
        """The coarsest pyramid level at least as fine as ``pixel_size_um``."""
        if not self.pixel_size_um:
            return 0
        best = 0
        for level in range(len(self.shapes)):
            if self.pixel_size_um * self.downsample(level) <= pixel_size_um * 1.001:
                best = level
        return best

    def overview(self, pixel_size_um: float, *, band_rows: int = 1024) -> tuple[np.ndarray, float]:
        """The whole image at about ``pixel_size_um`` per pixel (float32) and its exact pixel size.

        Starts from the pyramid level just finer than asked and block-averages it by an
        integer factor, reading a band of rows at a time (memory: one band plus the result).
        """
        if not self.pixel_size_um:
            raise InputError(
                "the pixel size is unknown",
                path=self.path,
                fix="set pixel_size_um in the pipeline (the file records none)",
            )
        level = self.level_for(pixel_size_um)
        level_size = self.pixel_size_um * self.downsample(level)
        factor = max(1, int(round(pixel_size_um / level_size)))
        rows, cols = self.shapes[level]
        out_rows, out_cols = max(1, rows // factor), max(1, cols // factor)
        channels = 3 if self.channels_last[level] is not None else None
        result = np.zeros((out_rows, out_cols) + ((channels,) if channels else ()), np.float32)
        step = max(factor, (band_rows // factor) * factor)
        for top in range(0, out_rows * factor, step):
            band = self.read_region(top, 0, min(step, out_rows * factor - top), out_cols * factor, level=level)
            band = band.astype(np.float32)
            shape = (band.shape[0] // factor, factor, out_cols, factor) + band.shape[2:]
            result[top // factor : top // factor + shape[0]] = (
                band[: shape[0] * factor, : out_cols * factor].reshape(shape).mean(axis=(1, 3))
            )
        return result, level_size * factor

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
