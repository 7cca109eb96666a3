import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.errors import InputError
from imaging.io.readers import as_grayscale, as_rgb, check_image_file, pixel_size_from_tiff, read_channel
from imaging.io.writers import atomic_path, write_csv, write_json
from tests.conftest import write_tiff


def test_truncated_tiff_is_caught_from_the_header(tmp_path):
    path = write_tiff(tmp_path / "a.tif", np.arange(256 * 256, dtype=np.uint16).reshape(256, 256))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as info:
        check_image_file(path)
    assert "a.tif" in str(info.value)


def test_corrupt_tiff(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(InputError, match="not a readable TIFF"):
        check_image_file(path)
    with pytest.raises(InputError, match="cannot be read"):
        read_channel(path, kind="fluorescence")


def test_grayscale_shapes():
    assert as_grayscale(np.zeros((1, 20, 30))).shape == (20, 30)
    gray_rgb = np.repeat(np.arange(600).reshape(20, 30, 1), 3, axis=2)
    assert as_grayscale(gray_rgb).shape == (20, 30)
    with pytest.raises(InputError, match="expected a 2-D grayscale image"):
        as_grayscale(np.zeros((5, 20, 30)), path="stack.tif")
    with pytest.raises(InputError, match="pixel type bool"):
        as_grayscale(np.zeros((20, 30), bool))


def test_rgb_shapes():
    assert as_rgb(np.zeros((20, 30, 4), np.uint8)).shape == (20, 30, 3)
    assert as_rgb(np.zeros((3, 20, 30), np.uint8)).shape == (20, 30, 3)
    with pytest.raises(InputError, match="expected an RGB colour image"):
        as_rgb(np.zeros((20, 30), np.uint8), path="bf.tif")


def test_pixel_size_from_imagej_and_centimetre_resolution(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), imagej=True, resolution=(1 / 0.325, 1 / 0.325), metadata={"unit": "micron"}
    )
    assert pixel_size_from_tiff(path) == pytest.approx(0.325)
    path = tmp_path / "cm.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), resolution=(10000 / 0.65, 10000 / 0.65), resolutionunit="CENTIMETER"
    )
    assert pixel_size_from_tiff(path) == pytest.approx(0.65)
    path = write_tiff(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    assert pixel_size_from_tiff(path) is None


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "wells.csv"
    write_csv(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("a\n2\n")
            raise RuntimeError("interrupted")
    assert target.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["wells.csv"]


def test_json_writer_handles_numpy_and_nan(tmp_path):
    path = write_json(
        {"x": np.float32(1.5), "n": np.int64(3), "bad": float("nan"), "v": np.arange(2)}, tmp_path / "r.json"
    )
    assert path.read_text() == '{\n  "x": 1.5,\n  "n": 3,\n  "bad": null,\n  "v": [\n    0,\n    1\n  ]\n}\n'


def test_bmp_fields_are_found_and_read_like_tiff(tmp_path):
    """BBBC013-style exports (8-bit BMP per channel) are plate images like any other."""
    import imageio.v3 as iio

    from imaging.io.discover import list_image_files
    from imaging.io.readers import check_field_image, read_channel

    image = (np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) % 251).astype(np.uint8)
    iio.imwrite(tmp_path / "Channel1-01-A-01.BMP", image)
    assert [relative for _, relative in list_image_files(tmp_path)] == ["Channel1-01-A-01.BMP"]
    assert check_field_image(tmp_path / "Channel1-01-A-01.BMP") == ((40, 48), np.dtype(np.uint8))
    np.testing.assert_array_equal(read_channel(tmp_path / "Channel1-01-A-01.BMP", kind="fluorescence"), image)
