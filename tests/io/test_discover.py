from pathlib import Path

import numpy as np
import pytest

from imaging.errors import InputError
from imaging.io.discover import discover_images, group_fields
from tests.conftest import write_tiff

PIXELS = np.zeros((16, 16), np.uint16)


def make_files(root: Path, names: list[str]) -> None:
    for name in names:
        write_tiff(root / name, PIXELS)


def test_imagexpress_names_with_guid_thumbnails_and_underscored_plate(tmp_path):
    make_files(
        tmp_path,
        [
            "Exp_2_plate1_A01_s1_w1.tif",
            "Exp_2_plate1_A01_s1_w2B7F3A9C2-1D2E-4F5A-8B9C-0D1E2F3A4B5C.tif",
            "Exp_2_plate1_A01_s1_w1_thumb6C2B.tif",
            "Exp_2_plate1_B12_s2_w1.tif",
            "Exp_2_plate1_B12_s2_w2.tif",
        ],
    )
    table, naming = discover_images(tmp_path)
    assert naming == "imagexpress"
    assert len(table) == 4  # the thumbnail is skipped
    assert set(table["plate"]) == {"Exp_2_plate1"}
    assert table[["well", "row", "column", "site", "channel"]].values.tolist() == [
        ["A01", 1, 1, 1, "1"],
        ["A01", 1, 1, 1, "2"],
        ["B12", 2, 12, 2, "1"],
        ["B12", 2, 12, 2, "2"],
    ]


def test_imagexpress_without_site_or_channel_defaults_to_one(tmp_path):
    make_files(tmp_path, ["P1_C3.tif"])
    table, _ = discover_images(tmp_path, preset="imagexpress")
    assert table[["plate", "well", "site", "channel"]].values.tolist() == [["P1", "C03", 1, "1"]]


def test_operetta_plate_comes_from_the_folder_above_images(tmp_path):
    make_files(
        tmp_path / "MyPlate__2026-01-01T10_00_00" / "Images",
        ["r02c03f01p01-ch1sk1fk1fl1.tiff", "r02c03f01p01-ch2sk1fk1fl1.tiff", "r16c24f09p01-ch1sk1fk1fl1.tiff"],
    )
    table, naming = discover_images(tmp_path)
    assert naming == "operetta"
    assert set(table["plate"]) == {"MyPlate__2026-01-01T10_00_00"}
    assert table[["well", "site", "channel"]].values.tolist() == [["B03", 1, "1"], ["B03", 1, "2"], ["P24", 9, "1"]]


def test_custom_regex_with_row_and_column_groups(tmp_path):
    make_files(tmp_path / "plateX", ["img_R3_C7_F2_DAPI.tif", "img_R3_C7_F2_GFP.tif"])
    table, naming = discover_images(
        tmp_path, pattern=r"img_R(?P<row>\d+)_C(?P<column>\d+)_F(?P<site>\d+)_(?P<channel>\w+)\.tif"
    )
    assert naming == "regex"
    assert table[["plate", "well", "site", "channel"]].values.tolist() == [
        ["plateX", "C07", 2, "DAPI"],
        ["plateX", "C07", 2, "GFP"],
    ]


def test_regex_needs_a_well_group():
    with pytest.raises(InputError, match="needs a named group 'well'"):
        discover_images(".", pattern=r"(?P<site>\d+)\.tif")


def test_bad_regex_is_an_input_error(tmp_path):
    make_files(tmp_path, ["a.tif"])
    with pytest.raises(InputError, match="not a valid regular expression"):
        discover_images(tmp_path, pattern=r"(?P<well>[A-P]\d+")


def test_empty_folder_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(InputError) as info:
        discover_images(tmp_path)
    assert str(tmp_path) in str(info.value) and "no image files" in str(info.value)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_images(tmp_path / "nope")


def test_files_matching_no_preset(tmp_path):
    make_files(tmp_path, ["holiday.tif"])
    with pytest.raises(InputError, match="naming.pattern"):
        discover_images(tmp_path)


def test_a1_and_a01_files_are_one_well(tmp_path):
    make_files(tmp_path, ["P_A1_s1_w1.tif", "P_A01_s1_w2.tif"])
    table, _ = discover_images(tmp_path)
    fields = group_fields(table, {"dapi": "1", "gfp": "2"})
    assert len(fields) == 1 and fields[0].well == "A01"
    assert set(fields[0].paths) == {"dapi", "gfp"}


def test_field_missing_a_channel_is_named(tmp_path):
    make_files(tmp_path, ["P_A01_s1_w1.tif", "P_A01_s1_w2.tif", "P_A02_s3_w1.tif"])
    table, _ = discover_images(tmp_path)
    with pytest.raises(InputError, match=r"plate P, well A02, site 3 has no image for channel gfp \(id 2\)"):
        group_fields(table, {"dapi": "1", "gfp": "2"})


def test_several_planes_need_a_choice(tmp_path):
    make_files(tmp_path / "Plate" / "Images", ["r01c01f01p01-ch1.tiff", "r01c01f01p02-ch1.tiff"])
    table, _ = discover_images(tmp_path)
    with pytest.raises(InputError, match="several images of channel 1"):
        group_fields(table, {"dapi": "1"})
    fields = group_fields(table, {"dapi": "1"}, plane=2)
    assert fields[0].paths["dapi"].endswith("p02-ch1.tiff")


def test_imagexpress_upper_case_extension_and_separated_guid(tmp_path):
    make_files(tmp_path, ["Screen1_H12_s9_w2.TIF", "Screen1_H12_s9_w1_0C2B7C5E-8A3B-4C2F-9E5D-0123456789AB.tif"])
    table, naming = discover_images(tmp_path)
    assert naming == "imagexpress"
    assert table[["plate", "well", "site", "channel"]].values.tolist() == [
        ["Screen1", "H12", 9, "1"],
        ["Screen1", "H12", 9, "2"],
    ]


def test_a_metaxpress_time_lapse_runs_one_chosen_time_point(tmp_path):
    """TimePoint_1/, TimePoint_2/ hold the same file names: once 'several images of channel 1'."""
    import numpy as np
    import tifffile

    from imaging.config import parse_pipeline
    from imaging.errors import InputError
    from imaging.io.sources import find_fields

    for timepoint in (1, 2):
        folder = tmp_path / "9987_Plate" / f"TimePoint_{timepoint}"
        folder.mkdir(parents=True)
        for well in ("B02", "B03"):
            tifffile.imwrite(folder / f"9987_{well}_s1_w1.TIF", np.full((32, 32), timepoint, np.uint16))

    def pipeline(**naming):
        return parse_pipeline(
            {
                "schema_version": 1,
                "name": "mx",
                "channels": {"dapi": {"id": 1}},
                "naming": naming,
                "segmentation": {"method": "classical", "channel": "dapi"},
            }
        )

    with pytest.raises(InputError, match=r"2 time points \(1 ... 2\).*naming.timepoint: all"):
        find_fields(tmp_path / "9987_Plate", pipeline())
    found = find_fields(tmp_path / "9987_Plate", pipeline(timepoint=2))
    assert [(f.well, f.site) for f in found.fields] == [("B02", 1), ("B03", 1)] and found.n_files == 2
    assert all("TimePoint_2" in f.paths["dapi"] for f in found.fields)
    with pytest.raises(InputError, match=r"time points \[1, 2\]"):
        find_fields(tmp_path / "9987_Plate", pipeline(timepoint=3))
    assert len(find_fields(tmp_path / "9987_Plate" / "TimePoint_1", pipeline()).fields) == 2  # one folder alone
    every = find_fields(tmp_path / "9987_Plate", pipeline(timepoint="all")).fields
    assert [(f.well, f.timepoint, f.key) for f in every] == [
        ("B02", 1, "9987_B02_s1_t1"),
        ("B02", 2, "9987_B02_s1_t2"),
        ("B03", 1, "9987_B03_s1_t1"),
        ("B03", 2, "9987_B03_s1_t2"),
    ]
    assert all(f"TimePoint_{f.timepoint}" in f.paths["dapi"] for f in every)


def test_time_points_from_operetta_names_and_from_a_pattern_group(tmp_path):
    """Operetta's sk<n> is the time point; a pattern may name a timepoint group; without a time
    axis a run of every time point has time point 1."""
    import numpy as np
    import tifffile

    from imaging.config import parse_pipeline
    from imaging.io.sources import find_fields

    operetta = tmp_path / "op"
    operetta.mkdir()
    for t in (1, 2, 3):
        tifffile.imwrite(operetta / f"r02c03f01p01-ch1sk{t}fk1fl1.tiff", np.zeros((8, 8), np.uint16))
    custom = tmp_path / "custom"
    custom.mkdir()
    for t in (5, 10):
        tifffile.imwrite(custom / f"P1_C04_t{t:03d}_dapi.tif", np.zeros((8, 8), np.uint16))

    def pipeline(**naming):
        return parse_pipeline(
            {
                "schema_version": 1,
                "name": "t",
                "channels": {"dapi": {"id": 1}},
                "naming": naming,
                "segmentation": {"method": "classical", "channel": "dapi"},
            }
        )

    found = find_fields(operetta, pipeline(timepoint="all")).fields
    assert [(f.well, f.site, f.timepoint) for f in found] == [("B03", 1, 1), ("B03", 1, 2), ("B03", 1, 3)]
    assert [f.timepoint for f in find_fields(operetta, pipeline(timepoint=2)).fields] == [None]
    pattern = r"(?P<plate>[^_]+)_(?P<well>[A-P]\d+)_t(?P<timepoint>\d+)_dapi\.tif"
    found = find_fields(custom, pipeline(timepoint="all", preset="regex", pattern=pattern)).fields
    assert [(f.plate, f.well, f.timepoint) for f in found] == [("P1", "C04", 5), ("P1", "C04", 10)]
    single = tmp_path / "single"
    single.mkdir()
    tifffile.imwrite(single / "P2_A01_s1_w1.tif", np.zeros((8, 8), np.uint16))
    assert [f.key for f in find_fields(single, pipeline(timepoint="all")).fields] == ["P2_A01_s1_t1"]
