"""Instrument containers (ND2, CZI, LIF, OME-TIFF, OME-Zarr) as fields, on real files.

The real files (tests/data/formats, sources and licences in its README) check that dims,
channels, scenes, wells and pixel sizes come out as the file says. A sample plate written
by the formats' own libraries (ome-zarr-py, bioio's OME-TIFF writer) must give the same
tables as the plain TIFF folder it was made from.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

pytest.importorskip("bioio")

from imaging.cli import main  # noqa: E402
from imaging.config import parse_pipeline  # noqa: E402
from imaging.errors import InputError  # noqa: E402
from imaging.io.sources import find_fields  # noqa: E402
from tests.conftest import copy_sample_wells  # noqa: E402

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
WELLS = ["A01", "A02", "B01", "B02"]


def _pipeline(channels: dict, **naming):
    return parse_pipeline(
        {
            "schema_version": 1,
            "name": "containers",
            "channels": channels,
            "naming": naming,
            "segmentation": {"method": "classical", "channel": next(iter(channels))},
        }
    )


def _copy(name: str, tmp_path: Path, new_name: str | None = None) -> Path:
    source = FORMATS / name
    target = tmp_path / (new_name or name)
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return target


def test_nd2_channels_by_name_z_and_time_as_the_file_says(tmp_path):
    path = _copy("cluster.nd2", tmp_path, "P1_C05.nd2")  # the well from the file name
    named = _pipeline({"membrane": {"name": "FM 4-64"}, "dye": {"name": "5-fam/ph 9.0"}})
    with pytest.raises(InputError, match="time series of 3 time points"):
        find_fields(path, named)
    found = find_fields(
        path, _pipeline({"membrane": {"name": "FM 4-64"}, "dye": {"name": "5-fam/ph 9.0"}}, timepoint=2)
    )
    (field,) = found.fields
    plane = field.plane
    assert (field.plate, field.well, field.site) == ("P1_C05", "C05", 1)
    assert (plane.rows, plane.columns, plane.n_z, plane.timepoint) == (31, 38, 10, 1)
    assert dict(plane.channels) == {"membrane": 1, "dye": 0}  # substring, and case-insensitive
    assert plane.pixel_size_um == pytest.approx(0.16780898, abs=1e-6)
    assert plane.z_rule == "max" and plane.z_plane is None
    every = find_fields(path, _pipeline({"membrane": {"name": "FM 4-64"}}, timepoint="all")).fields
    assert [(f.timepoint, f.plane.timepoint, f.key) for f in every] == [
        (1, 0, "P1_C05_C05_s1_t1"),
        (2, 1, "P1_C05_C05_s1_t2"),
        (3, 2, "P1_C05_C05_s1_t3"),
    ]
    with pytest.raises(
        InputError,
        match=r"no channel named 'DAPI' for nuclei \(channels: '5-FAM/pH 9.0', "
        r"'FM 4-64/2% CHAPS'\)",
    ):
        find_fields(path, _pipeline({"nuclei": {"name": "DAPI"}}, timepoint=1))


def test_czi_scenes_become_sites_and_lif_and_ome_tiff_report_their_metadata(tmp_path):
    czi = _copy("xyz__multiple_images.czi", tmp_path, "plate7_B03.czi")
    fields = find_fields(czi, _pipeline({"cha": {"id": 1}}, plane=2)).fields
    assert [(f.well, f.site) for f in fields] == [("B03", 1), ("B03", 2)]
    assert {(f.plane.rows, f.plane.columns, f.plane.n_z, f.plane.z_plane) for f in fields} == {(251, 251, 2, 1)}
    assert fields[0].plane.pixel_size_um == pytest.approx(0.195644, abs=1e-5)

    lif = _copy("PR2729_frameOrderCombinedScanTypes.lif", tmp_path, "screen_D10.lif")
    (field,) = find_fields(lif, _pipeline({"red": {"name": "Red"}, "green": {"id": 1}}, timepoint=1)).fields
    assert dict(field.plane.channels) == {"red": 1, "green": 0}
    assert (field.plane.rows, field.plane.columns, field.plane.n_z) == (127, 127, 3)
    assert field.plane.pixel_size_um == pytest.approx(3.968254, abs=1e-5)

    ome = _copy("multi-channel.ome.tif", tmp_path, "plateX_H12.ome.tif")
    (field,) = find_fields(ome, _pipeline({"c3": {"id": 3}})).fields
    assert (field.well, field.plane.rows, field.plane.columns, field.plane.pixel_size_um) == ("H12", 167, 439, None)
    with pytest.raises(InputError, match=r"has id '4', but scene 'multi-channel.ome.tif' has 3 channel\(s\)"):
        find_fields(ome, _pipeline({"c4": {"id": 4}}))


def test_an_ome_zarr_hcs_plate_gives_its_wells_from_the_plate_metadata(tmp_path):
    plate = _copy("plate-rows-2.zarr", tmp_path)
    found = find_fields(plate, _pipeline({"nuclei": {"id": 1}}))
    assert [(f.plate, f.well, f.site) for f in found.fields] == [("Plate Name 0", "A01", 1), ("Plate Name 0", "B01", 1)]
    assert {(f.plane.rows, f.plane.columns) for f in found.fields} == {(512, 512)}


def test_scene_names_without_wells_are_one_line_listing_them(tmp_path, capsys):
    path = _copy("xyz__multiple_images.czi", tmp_path)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: c\nchannels:\n  dapi: {id: 1}\nsegmentation: {method: classical, channel: dapi}\n"
    )
    assert main(["run", str(pipeline), str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no well found for scene" in err and "naming.scenes" in err and "xyz__multiple_images-0" in err
    assert not (tmp_path / "out").exists()
    # a regex over '<file stem>/<scene name>' places them (scenes numbered from 0 become sites 1, 2)
    renamed = _copy("xyz__multiple_images.czi", tmp_path, "r02c05.czi")
    pipeline_with_scenes = _pipeline({"dapi": {"id": 1}}, scenes=r"r(?P<row>\d+)c(?P<column>\d+)/.*-(?P<site>\d+)$")
    assert [(f.well, f.site) for f in find_fields(renamed, pipeline_with_scenes).fields] == [("B05", 1), ("B05", 2)]


def test_a_damaged_container_is_one_line(tmp_path, capsys):
    path = tmp_path / "plate_A01.czi"
    path.write_bytes((FORMATS / "xyz__multiple_images.czi").read_bytes()[:5000])
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: c\nchannels:\n  dapi: {id: 1}\nsegmentation: {method: classical, channel: dapi}\n"
    )
    assert main(["validate", str(pipeline), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be read as .czi" in err and "plate_A01.czi" in err and "\n" not in err


def test_a_real_czi_runs_end_to_end_with_its_source_recorded(tmp_path):
    path = _copy("xyz__multiple_images.czi", tmp_path, "plate7_B03.czi")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: c\nchannels:\n  dapi: {name: ChA}\n"
        "segmentation: {method: classical, channel: dapi}\nmeasure:\n  intensity: [{channel: dapi}]\n"
    )
    assert main(["run", str(pipeline), str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    fields = pd.read_csv(tmp_path / "out" / "plate7_B03" / "fields.csv")
    assert fields["source_z"].tolist() == ["max of 2", "max of 2"]
    assert fields["pixel_size_um"].round(5).tolist() == [0.19564, 0.19564]
    assert (fields["n_cells"] > 0).all()


def _sample_fields(samples, tmp_path):
    root = copy_sample_wells(samples, WELLS, tmp_path / "plate", assay="pjnk")
    files = sorted((root / "images").glob("*.tif"))
    fields = {}
    for path in files:
        well, site, channel = re.search(r"_([A-P]\d\d)_s(\d+)_w(\d)", path.name).groups()
        fields.setdefault((well, int(site)), {})[int(channel)] = tifffile.imread(path)
    return root, {key: np.stack([planes[1], planes[2]]) for key, planes in sorted(fields.items())}


def test_a_plate_as_ome_zarr_hcs_and_as_ome_tiff_gives_the_tiff_folders_tables(samples, pipelines, tmp_path):
    pytest.importorskip("ome_zarr")
    import zarr
    from bioio.writers import OmeTiffWriter
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    root, fields = _sample_fields(samples, tmp_path)
    group = zarr.group(store=parse_url(tmp_path / "PJNK01.zarr", mode="w").store)
    write_plate_metadata(group, ["A", "B"], ["1", "2"], ["A/1", "A/2", "B/1", "B/2"], name="PJNK01")
    for well in WELLS:
        well_group = group.require_group(well[0]).require_group(str(int(well[1:])))
        sites = sorted(site for w, site in fields if w == well)
        write_well_metadata(well_group, [{"path": str(site - 1)} for site in sites])
        for site in sites:
            write_image(fields[well, site], well_group.require_group(str(site - 1)), axes="cyx")
    (tmp_path / "ometiff").mkdir()
    OmeTiffWriter.save(
        list(fields.values()),
        tmp_path / "ometiff" / "PJNK01.ome.tif",
        dim_order="CYX",
        image_name=[f"{well}_s{site}" for well, site in fields],
    )

    runs = {"tiff": root / "images", "zarr": tmp_path / "PJNK01.zarr", "ometiff": tmp_path / "ometiff"}
    for name, source in runs.items():
        assert (
            main(
                [
                    "run",
                    str(pipelines / "pjnk.yaml"),
                    str(source),
                    "--out",
                    str(tmp_path / name),
                    "--platemap",
                    str(root / "map.csv"),
                    "--workers",
                    "1",
                ]
            )
            == 0
        ), name
    for table in ("cells.csv", "wells.csv"):
        expected = pd.read_csv(tmp_path / "tiff" / "PJNK01" / table)
        for name in ("zarr", "ometiff"):
            pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name / "PJNK01" / table), expected)
    assert len(pd.read_csv(tmp_path / "zarr" / "PJNK01" / "wells.csv")) == 4


def test_z_stacks_projected_or_best_focus_or_one_plane(tmp_path):
    from bioio.writers import OmeTiffWriter

    from imaging.io.containers import read_planes

    rng = np.random.default_rng(0)
    sharp = (rng.random((64, 64)) > 0.9).astype(np.uint16) * 1000
    blurred = np.full((64, 64), 120, np.uint16)
    stack = np.stack([blurred, sharp, blurred + 50])[np.newaxis]  # C Z Y X
    OmeTiffWriter.save(stack, tmp_path / "p_A01.ome.tif", dim_order="CZYX")
    for naming, expected in (
        ({}, np.maximum(sharp, blurred + 50)),
        ({"z": "best_focus"}, sharp),
        ({"plane": 3}, blurred + 50),
    ):
        pipeline = _pipeline({"dapi": {"id": 1}}, **naming)
        (field,) = find_fields(tmp_path / "p_A01.ome.tif", pipeline).fields
        np.testing.assert_array_equal(read_planes(field.plane, pipeline)["dapi"], expected)
    with pytest.raises(InputError, match="naming.plane is 4, but scene '[^']*' has 3 Z plane"):
        find_fields(tmp_path / "p_A01.ome.tif", _pipeline({"dapi": {"id": 1}}, plane=4))


def test_per_channel_ome_tiffs_named_like_plain_tiffs_are_read_as_files_with_a_pattern(tmp_path):
    from bioio.writers import OmeTiffWriter

    for well in ("A01", "A02"):
        for channel in (1, 2):
            OmeTiffWriter.save(
                np.full((1, 32, 32), channel, np.uint16), tmp_path / f"P1_{well}_s1_w{channel}.ome.tif", dim_order="CYX"
            )
    channels = {"dapi": {"id": 1}, "gfp": {"id": 2}}
    pattern = r"(?P<plate>[^_]+)_(?P<well>[A-P]\d\d)_s(?P<site>\d+)_w(?P<channel>\d)\.ome\.tif"
    fields = find_fields(tmp_path, _pipeline(channels), pattern=pattern).fields
    assert [(f.plate, f.well, f.plane) for f in fields] == [("P1", "A01", None), ("P1", "A02", None)]
    assert fields[0].paths["gfp"].endswith("P1_A01_s1_w2.ome.tif")


MMSTACK = "181003_multi_pos_time_course_1_MMStack.ome.tif"


def test_a_scene_map_places_a_real_micro_manager_time_course(tmp_path):
    """Micro-Manager positions carry no well names: a scene map places them; with every time
    point, 2 positions x 10 time points are 20 fields with the file's pixel size. (The file keeps
    its name: its OME-XML names itself, and a renamed copy no longer opens.)"""
    path = _copy(MMSTACK, tmp_path)
    pipeline = _pipeline({"nuclei": {"name": "Default"}}, timepoint="all")
    with pytest.raises(InputError, match=r"no well found for scene 'Image:0'.*--scene-map"):
        find_fields(path, pipeline)
    scenes = tmp_path / "scenes.csv"
    scenes.write_text("scene,well\nImage:0,B02\nImage:1,B03\n")
    fields = find_fields(path, pipeline, scene_map=scenes).fields
    assert [(f.well, f.site, f.timepoint) for f in fields][:2] == [("B02", 1, 1), ("B02", 1, 2)]
    assert len(fields) == 20 and {f.well for f in fields} == {"B02", "B03"}
    assert np.allclose([f.plane.pixel_size_um for f in fields], 5.2304)
    scenes.write_text(f"file,scene,plate,well,site\n{MMSTACK},Image:0,dish1,C03,2\n{MMSTACK},Image:1,dish1,C03,3\n")
    one = find_fields(path, _pipeline({"nuclei": {"name": "Default"}}, timepoint=4), scene_map=scenes).fields
    assert [(f.plate, f.well, f.site, f.plane.timepoint) for f in one] == [
        ("dish1", "C03", 2, 3),
        ("dish1", "C03", 3, 3),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("scene,position\nImage:0,B02\n", "has no 'well' column"),
        ("scene,well,colour\nImage:0,B02,red\n", r"unknown column\(s\) \['colour'\]"),
        ("scene,well\nImage:0,Z99\n", "line 2: well 'Z99' is not valid"),
        ("scene,well,site\nImage:0,B02,0\n", "line 2: site '0' is not valid"),
        ("scene,well\nImage:0,B02\nImage:0,B03\n", "line 3: scene 'Image:0' is listed twice"),
        ("scene,well\nImage:0,B02\n", r"no row for 1 scene\(s\) of .*MMStack.ome.tif: 'Image:1'"),
        ("scene,well\nImage:0,B02\nImage:1,B02\n", None),  # sites counted: B02 s1, s2
        ("scene,well,site\nImage:0,B02,1\nImage:1,B02,1\n", "two scenes are plate .*, well B02, site 1"),
    ],
)
def test_a_bad_scene_map_is_one_line_naming_it(tmp_path, content, message):
    path = _copy(MMSTACK, tmp_path)
    scenes = tmp_path / "scenes.csv"
    scenes.write_text(content)
    pipeline = _pipeline({"nuclei": {"id": 1}}, timepoint=1)
    if message is None:
        assert [(f.well, f.site) for f in find_fields(path, pipeline, scene_map=scenes).fields] == [
            ("B02", 1),
            ("B02", 2),
        ]
        return
    with pytest.raises(InputError, match=message):
        find_fields(path, pipeline, scene_map=scenes)


def test_a_run_with_a_scene_map_records_it_and_reopens_for_review(tmp_path):
    from imaging.plate.review import RunReview

    path = _copy(MMSTACK, tmp_path)
    scenes = tmp_path / "scenes.csv"
    scenes.write_text("scene,well\nImage:0,B02\nImage:1,B03\n")
    pipeline = tmp_path / "mm.yaml"
    pipeline.write_text(
        "schema_version: 1\nname: mm\nchannels:\n  nuclei: {name: Default}\nnaming: {timepoint: 2}\n"
        "segmentation: {method: classical, channel: nuclei}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(pipeline), str(path), "--scene-map", str(scenes), "--out", str(out), "--workers", "1"]) == 0
    import json

    record = json.loads((out / "run.json").read_text())
    assert record["inputs"]["scene_map"]["path"] == str(scenes.resolve()) and record["inputs"]["scene_map"]["sha256"]
    wells = pd.read_csv(out / MMSTACK[: -len(".ome.tif")] / "wells.csv")
    assert wells["well"].tolist() == ["B02", "B03"] and (wells["n_cells"] > 50).all()
    review = RunReview.open_run(out)
    assert review.wells(MMSTACK[: -len(".ome.tif")]) == ["B02", "B03"]
    plain = tmp_path / "plain"
    plain.mkdir()
    tifffile.imwrite(plain / "P1_A01_s1_w1.tif", np.zeros((32, 32), np.uint16))
    assert main(["run", str(pipeline), str(plain), "--scene-map", str(scenes), "--out", str(tmp_path / "o2")]) == 2
