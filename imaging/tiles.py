"""Local operations computed tile by tile, optionally on several threads: the one home of that
mechanism.

An operation whose result at a pixel depends only on the input within ``halo`` px of it (a
Gaussian truncated at 4 sigma, a rank filter of a given size, the nearest label within a
growth distance) gives the same value on a tile padded by ``halo`` on each side as on the
whole image. Where a tile meets the image's own edge it has no padding there, so the
operation's boundary rule applies exactly as on the whole image. The tiles' results are
therefore the whole image's, bit for bit (each output pixel is computed from the same input
values in the same order), and:

- the compiled loops of :mod:`imaging.kernels` release the GIL, so tiles run in parallel on
  threads (``threads`` > 1) in one process, with the memory of one image;
- a tile's working arrays are a tile's, not an image's: the growth of
  :func:`imaging.distance.expand_labels` keeps two int32 maps of what it searches, 2 MB per
  512 px tile where the whole 2048 px field would take 32 MB.

On one thread the Gaussians skip the tiles (:func:`imaging.filters.gaussian`): their loop
streams whole rows, so tiles only add halos and copies there.

Each tile's result is written into its own part of the output, so threads never share a
pixel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

TILE = 512


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: its ``core`` (the pixels it computes) and its ``window`` (the core padded by
    the halo and clipped to the image), both as slices of the image."""

    core: tuple[slice, slice]
    window: tuple[slice, slice]

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """The core as slices of the window."""
        return tuple(
            slice(core.start - window.start, core.stop - window.start)
            for core, window in zip(self.core, self.window, strict=True)
        )


def tiles(shape: tuple[int, int], *, halo: int, size: int = TILE) -> list[Tile]:
    """The tiles of a 2-D image of ``shape``, row by row, each core ``size`` px a side (less at
    the image's far edges) and each window its core padded by ``halo`` px.

    Parameters
    ----------
    shape : tuple of int
        The image's (rows, columns).
    halo : int
        Padding on each side (px), at least the operation's reach.
    size : int
        Side of a tile's core (px).

    Returns
    -------
    list of Tile
    """
    if size < 1 or halo < 0:
        raise ValueError(f"tiles need a size of at least 1 px and a halo of at least 0, got {size} and {halo}")
    n_rows, n_columns = shape
    found = []
    for row in range(0, n_rows, size):
        for column in range(0, n_columns, size):
            core = (slice(row, min(row + size, n_rows)), slice(column, min(column + size, n_columns)))
            window = (
                slice(max(row - halo, 0), min(row + size + halo, n_rows)),
                slice(max(column - halo, 0), min(column + size + halo, n_columns)),
            )
            found.append(Tile(core, window))
    return found


def map_tiles(
    compute: Callable[[np.ndarray, tuple[slice, slice]], np.ndarray | None],
    image: np.ndarray,
    *,
    halo: int,
    dtype,
    threads: int = 1,
    size: int = TILE,
) -> np.ndarray:
    """Apply a local operation to a 2-D image tile by tile (see module docstring).

    Parameters
    ----------
    compute : callable
        ``compute(window, core)``: the operation on one padded window of ``image``, returning
        its result on ``core`` (slices of the window), or None where that result is all zero
        (a tile with nothing in reach, skipped).
    image : (M, N) ndarray
        The input.
    halo : int
        The operation's reach (px): a pixel's result depends on input within this distance.
    dtype : dtype
        The output's dtype.
    threads : int
        Tiles computed at once (1: one after another in this thread).
    size : int
        Side of a tile's core (px).

    Returns
    -------
    (M, N) ndarray of ``dtype``
        Equal to the operation on the whole image when ``halo`` covers its reach.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"map_tiles needs a 2-D image, got shape {image.shape}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    planned = tiles(image.shape, halo=halo, size=size)
    if len(planned) == 1:  # the whole image is one tile: its result, without a copy
        result = compute(image, planned[0].core_in_window)
        if result is None:
            return np.zeros(image.shape, dtype=dtype)
        return np.array(result, dtype=dtype, copy=np.may_share_memory(result, image) or None)  # never a view
    out = np.zeros(image.shape, dtype=dtype)

    def one(tile: Tile) -> None:
        result = compute(image[tile.window], tile.core_in_window)
        if result is not None:
            out[tile.core] = result

    if threads == 1:
        for tile in planned:
            one(tile)
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(planned))) as pool:
            for _ in pool.map(one, planned):  # re-raises a tile's exception here
                pass
    return out
