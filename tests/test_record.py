"""Content digests: what fingerprints of resumable runs hold of their input images."""

import shutil

import blake3
import pytest

from imaging.run.record import content_digest


def test_a_file_digest_is_blake3_of_its_bytes_and_follows_every_byte(tmp_path):
    path = tmp_path / "A01_s1_w1.tif"
    data = bytes(range(256)) * 40_000  # over the 4 MB read block
    path.write_bytes(data)
    assert content_digest(path) == blake3.blake3(data).hexdigest()
    changed = bytearray(data)
    changed[-1] ^= 1
    path.write_bytes(bytes(changed))
    assert content_digest(path) != blake3.blake3(data).hexdigest()


def test_a_file_url_gives_the_local_files_digest(tmp_path):
    pytest.importorskip("fsspec")
    path = tmp_path / "field.tif"
    path.write_bytes(b"II*\x00" + b"\x01" * 1000)
    assert content_digest(path.as_uri()) == content_digest(path)


def test_a_folder_digest_follows_its_files_names_and_bytes_not_its_place(tmp_path):
    store = tmp_path / "plate.zarr"
    (store / "A" / "1").mkdir(parents=True)
    (store / ".zattrs").write_text("{}")
    (store / "A" / "1" / "0.0").write_bytes(b"\x00\x01\x02")
    first = content_digest(store)
    shutil.copytree(store, tmp_path / "copy.zarr")
    assert content_digest(tmp_path / "copy.zarr") == first
    (store / "A" / "1" / "0.0").write_bytes(b"\x00\x01\x03")
    assert content_digest(store) != first
    (store / "A" / "1" / "0.0").write_bytes(b"\x00\x01\x02")
    (store / "A" / "1" / "0.0").rename(store / "A" / "1" / "0.1")
    assert content_digest(store) != first
