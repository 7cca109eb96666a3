"""Local operations by padded tiles (imaging.tiles) give the whole image's result bit for bit,
on one thread or several, and a plate run on several threads per field writes the same tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from imaging import filters
from imaging.tiles import map_tiles, tiles


def test_tile_cores_cover_the_image_once_and_windows_stay_inside():
    shape = (37, 53)
    count = np.zeros(shape, int)
    for tile in tiles(shape, halo=4, size=10):
        count[tile.core] += 1
        for core, window, n in zip(tile.core, tile.window, shape, strict=True):
            assert window.start == max(core.start - 4, 0) and window.stop == min(core.stop + 4, n)
        inner = tile.core_in_window
        assert inner[0].stop - inner[0].start == tile.core[0].stop - tile.core[0].start
    np.testing.assert_array_equal(count, 1)
    with pytest.raises(ValueError, match="size of at least 1"):
        tiles(shape, halo=2, size=0)


LOCAL_FILTERS = [
    ("gaussian 0.7", lambda a: ndi.gaussian_filter(a, 0.7), 3),
    ("gaussian 2.5", lambda a: ndi.gaussian_filter(a, 2.5), 10),
    ("maximum 9 nearest", lambda a: ndi.maximum_filter(a, size=9, mode="nearest"), 4),
    ("minimum 4 constant", lambda a: ndi.minimum_filter(a, size=4, mode="constant", cval=7.0), 2),
    ("gradient magnitude 1.5", lambda a: ndi.gaussian_gradient_magnitude(a, 1.5), 6),
]


@pytest.mark.parametrize("name, operation, halo", LOCAL_FILTERS, ids=[f[0] for f in LOCAL_FILTERS])
def test_map_tiles_equals_the_whole_image_for_tiny_tiles_and_threads(name, operation, halo):
    rng = np.random.default_rng(1)
    for shape, size, threads in [((37, 53), 5, 1), ((64, 31), 8, 3), ((20, 20), 64, 2), ((41, 47), 1, 2)]:
        image = rng.normal(size=shape).astype(np.float32)
        got = map_tiles(
            lambda w, core: operation(w)[core], image, halo=halo, dtype=image.dtype, threads=threads, size=size
        )
        np.testing.assert_array_equal(got, operation(image), err_msg=f"{name} {shape} tile {size}")


def test_a_halo_short_of_the_reach_changes_the_result():
    """The test above can fail: one pixel less of padding than the filter reaches is wrong."""
    image = np.random.default_rng(2).normal(size=(40, 40))
    short = map_tiles(lambda w, core: ndi.maximum_filter(w, size=9)[core], image, halo=3, dtype=image.dtype, size=8)
    assert not np.array_equal(short, ndi.maximum_filter(image, size=9))


def test_public_filters_are_scipys_on_a_multi_tile_image():
    rng = np.random.default_rng(3)
    image = ndi.gaussian_filter(rng.random((700, 1100)), 2).astype(np.float32)
    for threads in (1, 2):
        np.testing.assert_array_equal(filters.gaussian(image, 1.3, threads=threads), ndi.gaussian_filter(image, 1.3))
        np.testing.assert_array_equal(
            filters.gaussian_gradient_magnitude(image, 2.0, threads=threads),
            ndi.gaussian_gradient_magnitude(image, 2.0),
        )


def test_skipped_tiles_are_zero_and_a_tiles_error_reaches_the_caller():
    image = np.zeros((30, 30))
    image[2, 2] = 1
    out = map_tiles(lambda w, core: w[core] * 2 if w.any() else None, image, halo=0, dtype=np.float64, size=10)
    assert out[2, 2] == 2 and out.sum() == 2
    whole = map_tiles(lambda w, core: w[core], image, halo=0, dtype=np.float64)  # one tile: a copy, not a view
    assert not np.shares_memory(whole, image) and np.array_equal(whole, image)
    assert not map_tiles(lambda w, core: None, image, halo=0, dtype=np.int32).any()

    def broken(window, core):
        raise RuntimeError("tile failed")

    with pytest.raises(RuntimeError, match="tile failed"):
        map_tiles(broken, image, halo=1, dtype=np.float64, threads=2, size=10)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        map_tiles(broken, image, halo=1, dtype=np.float64, threads=0)


def test_segmentation_on_threads_is_the_same_labels():
    from imaging.segment.classical import segment_nuclei_classical
    from imaging.synthetic import place_nuclei, render_dapi

    rng = np.random.default_rng(4)
    nuclei = place_nuclei((1100, 700), radius=9, density=0.3, rng=rng)
    image = render_dapi(nuclei, rng=rng, illumination=np.ones(nuclei.shape))
    one, info_one = segment_nuclei_classical(image)
    several, info_several = segment_nuclei_classical(image, threads=3)
    assert one.max() > 500  # a real segmentation, not an empty one
    np.testing.assert_array_equal(one, several)
    assert info_one == info_several


def test_plate_run_with_threads_writes_the_same_tables(pjnk_run, samples, pipelines, tmp_path):
    from imaging.cli import main

    plate = samples / "pjnk_plate"
    out = tmp_path / "threads"
    args = ["run", str(pipelines / "pjnk.yaml"), str(plate / "images"), "--platemap", str(plate / "platemap.csv")]
    assert main([*args, "--out", str(out), "--workers", "1", "--threads", "3", "--no-save-labels"]) == 0
    plate_name = next(p.name for p in pjnk_run.out_dir.iterdir() if (p / "cells.csv").is_file())
    for table in ("cells.csv", "wells.csv"):
        assert (out / plate_name / table).read_bytes() == (pjnk_run.out_dir / plate_name / table).read_bytes()
    assert json.loads((out / "run.json").read_text())["options"]["threads_per_field"] == 3


def test_threads_below_one_is_refused_before_anything_is_written(samples, pipelines, tmp_path):
    from imaging.cli import main

    plate = samples / "pjnk_plate"
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(pipelines / "pjnk.yaml"), str(plate / "images"), "--out", str(out), "--threads", "0"])
    assert stopped.value.code == 2 and not out.exists()
