"""The ``imaging`` command: success paths, and every bad-input path ends with exit 2,
a one-line error naming the file, and no half-written output."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.cli import main


@pytest.fixture()
def plate(samples, tmp_path):
    """A writable copy of the sample SA-beta-gal plate (4 wells, to stay fast)."""
    source = samples / "sabgal_plate"
    target = tmp_path / "plate"
    (target / "images").mkdir(parents=True)
    for path in (source / "images").glob("SABGAL01_A0[1-4]_*"):
        shutil.copy(path, target / "images" / path.name)
    table = pd.read_csv(source / "platemap.csv")
    table[table["well"].isin(["A01", "A02", "A03", "A04"])].to_csv(target / "platemap.csv", index=False)
    return target


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sabgal_args(pipelines, plate, out):
    return [
        "run",
        pipelines / "sabgal.yaml",
        plate / "images",
        "--platemap",
        plate / "platemap.csv",
        "--out",
        out,
        "--workers",
        "1",
    ]


def assert_input_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_run_writes_tables_and_summary(pipelines, plate, tmp_path, capsys):
    code, out, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert code == 0, err
    assert "Done in" in out and "sabgal_positive: threshold" in out
    for name in ("cells.csv", "fields.csv", "wells.csv"):
        assert (tmp_path / "out" / "SABGAL01" / name).is_file()
    assert (tmp_path / "out" / "run.json").is_file()


def test_validate_reports_ok(pipelines, plate, capsys):
    code, out, _ = run_cli(
        ["validate", pipelines / "sabgal.yaml", plate / "images", "--platemap", plate / "platemap.csv"], capsys
    )
    assert code == 0
    assert "16 files, naming imagexpress, 8 fields in 4 wells" in out


def test_corrupt_tiff(pipelines, plate, tmp_path, capsys):
    bad = plate / "images" / "SABGAL01_A02_s1_w2.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "SABGAL01_A02_s1_w2.tif", "Fix:")
    assert not (tmp_path / "out").exists()


def test_truncated_tiff_leaves_previous_results_intact(pipelines, plate, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(sabgal_args(pipelines, plate, out), capsys)[0] == 0
    before = (out / "SABGAL01" / "wells.csv").read_bytes()
    bad = plate / "images" / "SABGAL01_A03_s2_w1.tif"
    bad.write_bytes(bad.read_bytes()[:5000])
    code, _, err = run_cli(sabgal_args(pipelines, plate, out), capsys)
    assert_input_error(code, err, "SABGAL01_A03_s2_w1.tif", "truncated")
    assert (out / "SABGAL01" / "wells.csv").read_bytes() == before
    assert not list(out.rglob(".tmp-*"))


def test_wrong_dimensions(pipelines, plate, tmp_path, capsys):
    tifffile.imwrite(plate / "images" / "SABGAL01_A01_s1_w1.tif", np.zeros((256, 256), np.uint8))
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "SABGAL01_A01_s1_w1.tif", "expected an RGB colour image")
    tifffile.imwrite(plate / "images" / "SABGAL01_A01_s1_w1.tif", np.zeros((5, 256, 256), np.uint16))
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "SABGAL01_A01_s1_w1.tif")


def test_channels_of_different_sizes(pipelines, plate, tmp_path, capsys):
    tifffile.imwrite(plate / "images" / "SABGAL01_A01_s1_w2.tif", np.zeros((128, 128), np.uint16))
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "differ in size", "SABGAL01_A01_s1_w2.tif (128, 128)")


def test_missing_channel(pipelines, plate, tmp_path, capsys):
    (plate / "images" / "SABGAL01_A04_s2_w2.tif").unlink()
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "well A04, site 2 has no image for channel dapi")
    assert not (tmp_path / "out").exists()


def test_empty_folder(pipelines, plate, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["run", pipelines / "sabgal.yaml", empty, "--out", tmp_path / "out"], capsys)
    assert_input_error(code, err, str(empty), "no image files")


def test_bad_yaml(plate, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("schema_version: 1\nname: [x\n")
    code, _, err = run_cli(["run", pipeline, plate / "images", "--out", tmp_path / "out"], capsys)
    assert_input_error(code, err, "p.yaml", "not valid YAML")


def test_unknown_pipeline_key(pipelines, plate, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text((pipelines / "sabgal.yaml").read_text().replace("qc:\n", "qc:\n  sharpness: 3\n"))
    code, _, err = run_cli(["validate", pipeline], capsys)
    assert_input_error(code, err, "unknown key 'qc.sharpness'", "max_relative_blur")


@pytest.mark.parametrize(
    "content,fragment",
    [
        (
            "well,genotype,treatment\nA01,sgNT,DMSO\nA02,sgNT,TAM\nA03,sgNT,PALBO\n",
            "does not describe imaged well(s) SABGAL01/A04",
        ),
        ("well,genotype,treatment\nA01,sgNT,DMSO\nA1,sgNT,DMSO\n", "well A01 is described more than once"),
        ("well,genotype,treatment\nA01,sgNT,DMSO\nX77,sgNT,DMSO\n", "'X77' is not a well name"),
        (
            "well,genotype,treatment\nA01,KO,DMSO\nA02,KO,TAM\nA03,KO,PALBO\nA04,KO,TAM\n",
            "no imaged well has genotype 'sgNT'",
        ),
    ],
)
def test_bad_plate_maps(pipelines, plate, tmp_path, capsys, content, fragment):
    (plate / "platemap.csv").write_text(content)
    code, _, err = run_cli(sabgal_args(pipelines, plate, tmp_path / "out"), capsys)
    assert_input_error(code, err, "platemap.csv", fragment)
    assert not (tmp_path / "out").exists()


def test_segment_command_writes_labels(samples, tmp_path, capsys):
    code, out, err = run_cli(
        ["segment", samples / "stardist_nuclei" / "img2d.tif", "--out", tmp_path, "--workers", "1"], capsys
    )
    assert code == 0, err
    labels = tifffile.imread(tmp_path / "img2d_nuclei.tif")
    assert labels.shape == (512, 512) and labels.dtype == np.uint16 and 100 < labels.max() < 150  # Fiji reads uint16


def test_segment_refuses_non_2d_input_before_writing(samples, tmp_path, capsys):
    stack = tmp_path / "in" / "stack.tif"
    stack.parent.mkdir()
    tifffile.imwrite(stack, np.zeros((3, 4, 64, 64), np.uint16), photometric="minisblack")
    shutil.copy(samples / "stardist_nuclei" / "img2d.tif", tmp_path / "in" / "a.tif")
    code, _, err = run_cli(["segment", tmp_path / "in", "--out", tmp_path / "out"], capsys)
    assert_input_error(code, err, "stack.tif", "2-D grayscale")
    assert not (tmp_path / "out").exists()


def test_console_script_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "imaging.cli", "validate", str(tmp_path / "none.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "none.yaml" in result.stderr


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--scene-map", "scenes.csv"], "--scene-map is for plate pipelines"),
        (["--no-save-labels", "--pattern", "x"], "--pattern, --save-labels/--no-save-labels are for plate pipelines"),
        (["--table-format", "parquet"], "--table-format is for plate pipelines"),
        (["--threads", "2"], "--threads is for plate pipelines"),
    ],
)
def test_plate_only_flags_are_refused_on_tissue_runs_before_anything_is_written(
    pipelines, samples, tmp_path, capsys, flags, named
):
    out = tmp_path / "out"
    code = main(["run", str(pipelines / "ihc_hscore.yaml"), str(samples / "tissue" / "ihc"), "--out", str(out), *flags])
    assert code == 2 and named in capsys.readouterr().err and not out.exists()
