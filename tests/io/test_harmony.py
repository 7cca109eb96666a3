"""Harmony exports: the index's pixel size and channel names over the TIFFs' resolution tags."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import tifffile

from imaging.cli import main
from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.io.harmony import read_index
from imaging.io.sources import find_fields
from tests.conftest import disk_image

INDEX = Path(__file__).resolve().parents[1] / "data" / "formats" / "harmony" / "Index.idx.xml"
NAMES = ["r03c03f01p01-ch1sk1fk1fl1.tiff", "r03c03f02p01-ch1sk1fk1fl1.tiff"]


def _export(tmp_path: Path) -> Path:
    """An Operetta export: Images/ with the real index and stand-in TIFFs whose resolution tag
    claims 6.45 um per pixel (what the real files' tag says; the index says 1.196 um)."""
    images = tmp_path / "Plate1" / "Images"
    images.mkdir(parents=True)
    shutil.copy(INDEX, images / "Index.idx.xml")
    centres = [(r, c) for r in range(20, 200, 40) for c in range(20, 200, 40)]
    for name in NAMES:
        tifffile.imwrite(
            images / name,
            disk_image((220, 220), centres, 8),
            resolution=(1 / 6.450363e-4, 1 / 6.450363e-4),
            resolutionunit="CENTIMETER",
        )
    return tmp_path / "Plate1"


def _pipeline(channel: dict):
    return parse_pipeline(
        {
            "schema_version": 1,
            "name": "fitc",
            "channels": {"nuclei": channel},
            "segmentation": {"method": "classical", "channel": "nuclei"},
        }
    )


def test_the_index_is_read_as_the_instrument_wrote_it():
    index = read_index(INDEX)
    assert sorted(index.images) == NAMES
    image = index.images[NAMES[0]]
    assert (image.channel_id, image.channel_name) == ("1", "Fluorescein (FITC)")
    assert image.pixel_size_um == pytest.approx(1.19595216, abs=1e-7)


def test_pixel_size_and_channel_names_come_from_the_index(tmp_path):
    from imaging.io.readers import pixel_size_from_tiff

    export = _export(tmp_path)
    assert pixel_size_from_tiff(export / "Images" / NAMES[0]) == pytest.approx(6.450363, abs=1e-5)  # the tag
    fields = find_fields(export, _pipeline({"name": "fluorescein (fitc)"})).fields
    assert [(f.plate, f.well, f.site) for f in fields] == [("Plate1", "C03", 1), ("Plate1", "C03", 2)]
    assert all(f.pixel_size_um == pytest.approx(1.19595216, abs=1e-7) for f in fields)
    with pytest.raises(InputError, match=r"names \['Fluorescein \(FITC\)'\]"):
        find_fields(export, _pipeline({"name": "DAPI"}))


def test_a_run_on_a_harmony_export_reports_the_true_pixel_size(tmp_path):
    export = _export(tmp_path)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: fitc\nchannels:\n  nuclei: {name: Fluorescein (FITC)}\n"
        "segmentation: {method: classical, channel: nuclei}\n"
    )
    assert main(["run", str(pipeline), str(export), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    fields = pd.read_csv(tmp_path / "out" / "Plate1" / "fields.csv")
    assert fields["pixel_size_um"].round(4).tolist() == [1.196, 1.196]


def test_a_damaged_index_is_one_line(tmp_path, capsys):
    export = _export(tmp_path)
    (export / "Images" / "Index.idx.xml").write_text("<EvaluationInputData><Images><Image>")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: fitc\nchannels:\n  nuclei: {id: 1}\n"
        "segmentation: {method: classical, channel: nuclei}\n"
    )
    assert main(["validate", str(pipeline), str(export)]) == 2
    assert "is not a readable Harmony index" in capsys.readouterr().err
