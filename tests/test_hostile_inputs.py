"""Hostile but realistic inputs: never a silently wrong table, nothing outside --out.

Each case here failed before its fix: the tables looked complete and were wrong, or files
landed outside the output folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from imaging.cli import main
from imaging.errors import InputError
from imaging.io.names import check_folder_name, file_stem
from imaging.io.writers import safe_for_spreadsheets, write_csv
from tests.conftest import copy_sample_wells

WELLS = ["A01", "A02", "B01", "B02"]


def _run(pipelines, images, out, platemap=None) -> int:
    arguments = ["run", str(pipelines / "pjnk.yaml"), str(images), "--out", str(out), "--workers", "1"]
    return main(arguments + (["--platemap", str(platemap)] if platemap else []))


def test_a_plate_name_with_a_dot_keeps_every_field_apart(samples, pipelines, tmp_path):
    """PJNK.01_A01_s1_w1.tif: every field once wrote PJNK.cells.csv, so all wells reported the
    last field's cells. Per-well results must equal those of the same files without the dot."""
    plain = copy_sample_wells(samples, WELLS, tmp_path / "plain", assay="pjnk")
    dotted = tmp_path / "dotted"
    (dotted / "images").mkdir(parents=True)
    for path in (plain / "images").iterdir():
        shutil.copy(path, dotted / "images" / path.name.replace("PJNK01_", "PJNK.01_"))
    assert _run(pipelines, plain / "images", tmp_path / "out_plain", plain / "map.csv") == 0
    assert _run(pipelines, dotted / "images", tmp_path / "out_dotted", plain / "map.csv") == 0
    expected = pd.read_csv(tmp_path / "out_plain" / "PJNK01" / "wells.csv")
    got = pd.read_csv(tmp_path / "out_dotted" / "PJNK.01" / "wells.csv")
    assert got["n_cells"].tolist() == expected["n_cells"].tolist()
    assert len(set(got["n_cells"])) > 1  # the wells differ, as they do without the dot
    pd.testing.assert_frame_equal(got.drop(columns="plate"), expected.drop(columns="plate"))


def test_input_dir_dot_and_dotdot_name_their_real_folder_and_write_only_into_out(samples, pipelines, tmp_path):
    """A pattern without a plate group names the plate after the folder: '..' once put the
    tables next to --out, and '.' gave an empty plate name and a traceback."""
    plate_folder = tmp_path / "MyPlate"
    copy_sample_wells(samples, WELLS[:2], plate_folder, assay="pjnk")
    images = plate_folder / "images"
    inner = images / "sub"
    inner.mkdir()
    pipeline = tmp_path / "p.yaml"
    text = (pipelines / "pjnk.yaml").read_text().replace("  preset: auto", "  pattern: '[A-Z0-9]+_(?P<well>[A-P]\\d{2})_s(?P<site>\\d+)_w(?P<channel>\\d)\\.tif'")
    pipeline.write_text(text)
    before = set(os.listdir(tmp_path))
    cwd = os.getcwd()
    try:
        os.chdir(images)
        assert main(["run", str(pipeline), ".", "--out", str(tmp_path / "out_dot"), "--workers", "1"]) == 0
        os.chdir(inner)
        assert main(["run", str(pipeline), "..", "--out", str(tmp_path / "out_up"), "--workers", "1"]) == 0
    finally:
        os.chdir(cwd)
    assert (tmp_path / "out_dot" / "images" / "wells.csv").is_file()
    assert (tmp_path / "out_up" / "images" / "wells.csv").is_file()
    assert set(os.listdir(tmp_path)) - before == {"out_dot", "out_up"}  # nothing beside --out


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "tab\there"])
def test_names_that_would_escape_a_folder_are_refused(name):
    with pytest.raises(InputError, match="cannot be a folder name"):
        check_folder_name(name, kind="plate")
    assert check_folder_name("PJNK.01", kind="plate") == "PJNK.01"


def test_names_that_only_label_files_stay_inside_the_folder(tmp_path):
    stem = file_stem("superplot_../../../../tmp/x")
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
    path = (tmp_path / "plots" / f"{stem}.png").resolve()
    assert path.parent == (tmp_path / "plots").resolve()
    assert file_stem("plate_PJNK.01_pjnk_nuclear_mean") == "plate_PJNK.01_pjnk_nuclear_mean"  # names kept


def test_formulas_from_a_plate_map_are_neutralised_in_every_table(tmp_path):
    table = pd.DataFrame({"genotype": ["=HYPERLINK(\"http://x\")", "=cmd|' /C calc'!A0", "@SUM(A1)", "sgNT",
                                       "-1", "+1", "\tx"],
                          "value": [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    safe = safe_for_spreadsheets(table)
    assert safe["genotype"].tolist() == ["'=HYPERLINK(\"http://x\")", "'=cmd|' /C calc'!A0", "'@SUM(A1)", "sgNT",
                                         "-1", "+1", "'\tx"]
    assert safe["value"].tolist() == table["value"].tolist()  # numbers untouched
    written = pd.read_csv(write_csv(table, tmp_path / "t.csv"), dtype=str, keep_default_na=False)
    assert written["genotype"].str.startswith(("=", "@", "\t")).sum() == 0


def test_formulas_in_a_plate_map_do_not_reach_cells_csv(samples, pipelines, tmp_path):
    root = copy_sample_wells(samples, WELLS[:2], tmp_path, assay="pjnk")
    platemap = pd.read_csv(root / "map.csv")
    platemap["note"] = ["=HYPERLINK(\"http://evil\")", "+SUM(1)"]
    platemap.to_csv(root / "map.csv", index=False)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 0
    for name in ("cells.csv", "fields.csv", "wells.csv"):
        notes = pd.read_csv(tmp_path / "out" / "PJNK01" / name, dtype=str)["note"]
        assert set(notes) == {"'=HYPERLINK(\"http://evil\")", "'+SUM(1)"}, name


def test_platemap_values_are_read_back_equal_to_the_source_otherwise(samples, pipelines, tmp_path):
    """The neutralising quote touches only formula-like text: other tables are byte-stable."""
    root = copy_sample_wells(samples, WELLS[:2], tmp_path, assay="pjnk")
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 0
    wells = pd.read_csv(tmp_path / "out" / "PJNK01" / "wells.csv", dtype=str)
    assert not wells.apply(lambda column: column.str.startswith("'", na=False)).any().any()


def test_readouts_named_like_paths_plot_inside_the_run(tmp_path):
    from imaging.report.build import file_stem as used

    assert used is file_stem  # the report names its plots through the one sanitiser
    assert Path(f"plots/{file_stem('superplot_../../x')}.png").parent == Path("plots")


# ---- limits: nothing allocates what a header or a setting claims ---------------------------------
def _one_field(samples, tmp_path):
    return copy_sample_wells(samples, WELLS[:1], tmp_path / "plate", assay="pjnk")


def test_a_header_claiming_a_huge_image_is_refused_at_planning(samples, pipelines, tmp_path, capsys):
    """A few-KB TIFF whose header says 100000 x 100000 px once grew a worker past 3 GB."""
    import tifffile

    root = _one_field(samples, tmp_path)
    target = sorted((root / "images").glob("*_w1.tif"))[0]
    import numpy as np

    tifffile.imwrite(target, np.zeros((64, 64), np.uint16))
    with tifffile.TiffFile(target, mode="r+b") as tif:  # an 8 KB file whose header claims 10^10 px
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tif.pages[0].tags[tag].overwrite(100000)
    assert target.stat().st_size < 10_000
    code = _run(pipelines, root / "images", tmp_path / "out", root / "map.csv")
    assert code == 2 and "more than a field may have" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nan_pixels_and_boolean_images_are_refused_at_planning(samples, pipelines, tmp_path, capsys):
    import numpy as np
    import tifffile

    for kind, data, message in (("nan", None, "NaN or infinite"), ("bool", None, "boolean")):
        root = _one_field(samples, tmp_path / kind)
        target = sorted((root / "images").glob("*_w2.tif"))[0]
        image = tifffile.imread(target).astype(np.float32)
        if kind == "nan":
            image[10:20, 10:20] = np.nan
        else:
            image = image > image.mean()
        tifffile.imwrite(target, image)
        code = _run(pipelines, root / "images", tmp_path / kind / "out", root / "map.csv")
        assert code == 2 and message in capsys.readouterr().err, kind
        assert not (tmp_path / kind / "out").exists()


@pytest.mark.parametrize("setting,message", [("nucleus_diameter_px: 1.0e9", "more than half the field"),
                                             ("nucleus_diameter_px: .inf", "finite"),
                                             ("nucleus_diameter_px: .nan", "finite")])
def test_impossible_settings_are_refused(samples, pipelines, tmp_path, capsys, setting, message):
    root = _one_field(samples, tmp_path)
    text = (pipelines / "pjnk.yaml").read_text()
    assert "segmentation:" in text
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(text.replace("segmentation:\n", f"segmentation:\n  {setting}\n", 1))
    code = main(["run", str(pipeline), str(root / "images"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_nan_threshold_is_refused(samples, pipelines, tmp_path, capsys):
    root = _one_field(samples, tmp_path)
    text = (pipelines / "pjnk.yaml").read_text()
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(text.replace("threshold: auto", "threshold: .nan", 1))
    assert "threshold: .nan" in pipeline.read_text()
    code = main(["run", str(pipeline), str(root / "images"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 2 and "finite" in capsys.readouterr().err


def test_semicolon_and_tab_separated_plate_maps_are_read(tmp_path):
    """Excel in many locales saves "CSV" with semicolons: it was "no 'well' column"."""
    from imaging.io.platemap import read_platemap

    for name, separator in (("semicolon.csv", ";"), ("tab.csv", "\t")):
        rows = [["well", "genotype", "dose"], ["A01", "sgNT", "0.5"], ["A02", "MAPK8", "1"]]
        (tmp_path / name).write_text("\n".join(separator.join(r) for r in rows) + "\n")
        table = read_platemap(tmp_path / name)
        assert table["well"].tolist() == ["A01", "A02"] and table["genotype"].tolist() == ["sgNT", "MAPK8"]
        assert table["dose"].tolist() == [0.5, 1.0]
    # such maps often carry decimal commas: the dose is refused with its line, never misread
    (tmp_path / "comma.csv").write_text("well;dose\nA01;0,5\n")
    with pytest.raises(InputError, match="dose '0,5' is not a number"):
        read_platemap(tmp_path / "comma.csv")
