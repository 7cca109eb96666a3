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
from tests.conftest import copy_sample_wells, finished_records

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
    text = (
        (pipelines / "pjnk.yaml")
        .read_text()
        .replace(
            "  preset: auto", "  pattern: '[A-Z0-9]+_(?P<well>[A-P]\\d{2})_s(?P<site>\\d+)_w(?P<channel>\\d)\\.tif'"
        )
    )
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
    table = pd.DataFrame(
        {
            "genotype": ['=HYPERLINK("http://x")', "=cmd|' /C calc'!A0", "@SUM(A1)", "sgNT", "-1", "+1", "\tx"],
            "value": [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    safe = safe_for_spreadsheets(table)
    assert safe["genotype"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'=cmd|' /C calc'!A0",
        "'@SUM(A1)",
        "sgNT",
        "-1",
        "+1",
        "'\tx",
    ]
    assert safe["value"].tolist() == table["value"].tolist()  # numbers untouched
    written = pd.read_csv(write_csv(table, tmp_path / "t.csv"), dtype=str, keep_default_na=False)
    assert written["genotype"].str.startswith(("=", "@", "\t")).sum() == 0


def test_formulas_in_a_plate_map_do_not_reach_cells_csv(samples, pipelines, tmp_path):
    root = copy_sample_wells(samples, WELLS[:2], tmp_path, assay="pjnk")
    platemap = pd.read_csv(root / "map.csv")
    platemap["note"] = ['=HYPERLINK("http://evil")', "+SUM(1)"]
    platemap.to_csv(root / "map.csv", index=False)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 0
    for name in ("cells.csv", "fields.csv", "wells.csv"):
        notes = pd.read_csv(tmp_path / "out" / "PJNK01" / name, dtype=str)["note"]
        assert set(notes) == {'\'=HYPERLINK("http://evil")', "'+SUM(1)"}, name


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

    for kind, _, message in (("nan", None, "NaN or infinite"), ("bool", None, "boolean")):
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


@pytest.mark.parametrize(
    "setting,message",
    [
        ("nucleus_diameter_px: 1.0e9", "more than half the field"),
        ("nucleus_diameter_px: .inf", "finite"),
        ("nucleus_diameter_px: .nan", "finite"),
    ],
)
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


# ---- the --out folder: one run at a time, one assay, writable, tidy ------------------------------
HOLD_LOCK = """
import sys, time
from imaging.io.run_folder import claimed
with claimed(sys.argv[1], command=["imaging", "run", "held-by-test"]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_into_a_busy_out_is_refused_and_a_killed_holder_frees_it(samples, pipelines, tmp_path, capsys):
    """Two runs into one --out once mixed their tables (31 fields of one, 1 of the other)."""
    import signal
    import subprocess
    import sys

    root = _one_field(samples, tmp_path)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _run(pipelines, root / "images", out, root / "map.csv") == 2
        err = capsys.readouterr().err
        assert f"in use by another imaging run (process {holder.pid}" in err and "held-by-test" in err
        assert not (out / "run.json").exists()
        # kill -9 cannot release a lock by hand: the system drops it with the process
        stale = out / "PJNK01" / ".fields" / ".tmp-999-deadbeef-PJNK01_A01_s1.cells.parquet"
        stale.parent.mkdir(parents=True)
        stale.write_text("half a table")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    assert not stale.exists()  # a killed run's temporary files are cleaned at the next start
    assert not list(out.rglob(".tmp-*"))


def test_a_run_into_another_assays_folder_is_refused_a_tuned_rerun_is_not(samples, pipelines, tmp_path, capsys):
    root = _one_field(samples, tmp_path)
    out = tmp_path / "out"
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    text = (pipelines / "pjnk.yaml").read_text()
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(text.replace("max_relative_blur: 1.3", "max_relative_blur: 1.5"))
    other = tmp_path / "other.yaml"
    other.write_text(text.replace("name: pjnk\n", "name: cjun\n").replace("    - channel: dapi\n", ""))
    for path, code in ((tuned, 0), (other, 2)):
        assert (
            main(
                [
                    "run",
                    str(path),
                    str(root / "images"),
                    "--out",
                    str(out),
                    "--workers",
                    "1",
                    "--platemap",
                    str(root / "map.csv"),
                ]
            )
            == code
        )
    assert "holds the results of 'pjnk'" in capsys.readouterr().err
    assert pd.read_csv(out / "PJNK01" / "cells.csv").filter(like="dapi_").shape[1] > 0  # pjnk's tables kept


def test_a_full_disk_is_one_line_with_the_space_needed(samples, pipelines, tmp_path, capsys, monkeypatch):
    import errno

    import imaging.plate.fields

    root = copy_sample_wells(samples, WELLS, tmp_path / "plate", assay="pjnk")
    real_write_parquet, calls = imaging.plate.fields.write_parquet, []

    def fills_the_disk(table, path):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write_parquet(table, path)

    monkeypatch.setattr(imaging.plate.fields, "write_parquet", fills_the_disk)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the disk is full" in err and "MB more needed" in err and "MB free" in err
    monkeypatch.undo()  # space freed: the next run reuses the two stored fields
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 0
    assert "2 reused" in capsys.readouterr().out


def test_an_out_that_cannot_be_written_is_one_line(samples, pipelines, tmp_path, capsys, monkeypatch):
    import errno

    root = _one_field(samples, tmp_path)
    (tmp_path / "a_file").write_text("")
    assert _run(pipelines, root / "images", tmp_path / "a_file" / "out", root / "map.csv") == 2
    assert "cannot create the output folder" in capsys.readouterr().err

    def refused(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)  # as a user without write access (tests may run as root)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    assert "Permission denied" in capsys.readouterr().err


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_sigterm_stops_the_workers_and_keeps_finished_fields(samples, pipelines, tmp_path):
    """What a batch scheduler sends on a time limit: once the workers kept running."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    # 16 wells x 8 sites (each sample field copied under four site numbers): enough work left
    # after the first field that the signal always finds the run busy, however fast fields get
    images = tmp_path / "plate" / "images"
    images.mkdir(parents=True)
    for path in (samples / "pjnk_plate" / "images").glob("*.tif"):
        plate, well, site, channel = path.stem.split("_")
        for copy in range(4):
            shutil.copy(path, images / f"{plate}_{well}_s{int(site[1:]) + 2 * copy}_{channel}.tif")
    out = tmp_path / "out"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imaging.cli",
            "run",
            str(pipelines / "pjnk.yaml"),
            str(images),
            "--out",
            str(out),
            "--workers",
            "2",
            "--platemap",
            str(samples / "pjnk_plate" / "platemap.csv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not finished_records(out / "PJNK01" / ".fields") and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    workers = _children(run.pid)
    assert run.poll() is None and workers, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err, err[-3000:]
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]
    assert finished_records(out / "PJNK01" / ".fields") and not list(out.rglob(".tmp-*"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt
def test_a_termination_signal_lost_in_a_finaliser_still_ends_the_run_as_interrupted(monkeypatch, tmp_path, capsys):
    """Python prints and drops an exception raised in a finaliser (``__del__``, a weakref
    callback), so the KeyboardInterrupt of a SIGTERM that lands there is lost and the run goes
    on to its end (seen once in the full suite: the SIGTERM test's run ended with 0). The run
    must still end with 130 and say it was interrupted, and the handlers are put back."""
    import signal

    import imaging.cli

    class SignalledWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the finaliser
                pass

    def run_whose_interrupt_is_lost(args):
        SignalledWhileCollected()  # collected at once: the signal lands in its __del__

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(imaging.cli, "cmd_run", run_whose_interrupt_is_lost)
    code = main(["run", str(tmp_path / "pipeline.yaml"), str(tmp_path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 130 and "interrupted" in captured.err
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stored_field_changed_after_the_run_is_measured_again(samples, pipelines, tmp_path, capsys):
    root = copy_sample_wells(samples, WELLS[:2], tmp_path / "plate", assay="pjnk")
    out = tmp_path / "out"
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    expected = pd.read_csv(out / "PJNK01" / "wells.csv")
    damaged = sorted((out / "PJNK01" / ".fields").glob("*.cells.parquet"))[0]
    stored = damaged.read_bytes()
    damaged.write_bytes(stored[: len(stored) // 2])  # as a disk error would
    assert main(["report", str(out)]) == 2
    assert "changed or damaged after the run" in capsys.readouterr().err
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    assert "3 reused" in capsys.readouterr().out  # 4 fields, the damaged one measured again
    pd.testing.assert_frame_equal(pd.read_csv(out / "PJNK01" / "wells.csv"), expected)


# ---- late failures found at planning ---------------------------------------------------------------
@pytest.mark.parametrize("column", ["qc_pass", "pjnk_nuclear_mean", "pjnk_high_pct", "saturated_fraction_dapi"])
def test_a_platemap_column_named_like_an_output_column_is_refused_at_planning(
    samples, pipelines, tmp_path, capsys, column
):
    """qc_pass once gave a KeyError traceback after every field was measured."""
    root = _one_field(samples, tmp_path)
    table = pd.read_csv(root / "map.csv")
    table[column] = "x"
    table.to_csv(root / "map.csv", index=False)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    assert f"column {column!r} is" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_file_name_that_is_not_utf8_is_refused_at_planning(samples, pipelines, tmp_path, capsys):
    """Once a UnicodeEncodeError after every field was processed."""
    root = _one_field(samples, tmp_path)
    source = sorted((root / "images").glob("*_w1.tif"))[0]
    os.rename(source, os.fsencode(root / "images") + b"/PJNK01_A01_s1_w1\xe9.tif")
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    err = capsys.readouterr().err
    assert "is not valid UTF-8" in err and "rename" in err
    assert not (tmp_path / "out").exists()


def test_a_one_pixel_image_is_named_as_too_small(samples, pipelines, tmp_path, capsys):
    import numpy as np
    import tifffile

    root = _one_field(samples, tmp_path)
    tifffile.imwrite(sorted((root / "images").glob("*_w1.tif"))[0], np.zeros((1, 1), np.uint16))
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    assert "is 1 x 1 px, too small" in capsys.readouterr().err


def test_a_truncated_run_record_is_one_line(samples, pipelines, tmp_path, capsys):
    root = _one_field(samples, tmp_path)
    out = tmp_path / "out"
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    text = (out / "run.json").read_text()
    (out / "run.json").write_text(text[: len(text) // 2])
    assert main(["report", str(out)]) == 2
    assert "run.json is not valid JSON" in capsys.readouterr().err


# ---- smaller: wording and library boundaries ------------------------------------------------------
def test_a_blank_field_fails_qc_as_no_nuclei_not_out_of_focus():
    from imaging.features.qc import decide_field_qc

    fields = pd.DataFrame(
        {"focus_blur_px": [1.0, 1.1, 1.0, 9.0], "n_cells": [50, 60, 55, 0], "saturated_fraction_dapi": [0.0] * 4}
    )
    decided = decide_field_qc(
        fields,
        channel_kinds={"dapi": "fluorescence"},
        max_relative_blur=1.3,
        max_saturated_fraction=0.01,
        max_saturated_fraction_brightfield=0.05,
        min_cells=10,
    )
    assert decided["qc_pass"].tolist() == [True, True, True, False]
    assert decided["qc_reasons"].iloc[3].startswith("no nuclei found") and "focus" not in decided["qc_reasons"].iloc[3]


def test_library_functions_name_both_shapes_and_refuse_empty_nan_and_non_positive_sizes():
    import numpy as np

    from imaging.features.intensity import measure_compartments
    from imaging.features.morphology import measure_morphology
    from imaging.segment import derive_cells, segment_nuclei

    labels = np.zeros((10, 12), np.int32)
    with pytest.raises(ValueError, match=r"nuclei shape \(10, 12\) differs from x image shape \(10, 10\)"):
        measure_compartments(np.zeros((10, 10)), labels, labels, prefix="x")
    with pytest.raises(ValueError, match=r"cells shape \(10, 10\) differs from nuclei shape \(10, 12\)"):
        measure_morphology(labels, np.zeros((10, 10), np.int32))
    with pytest.raises(ValueError, match="empty"):
        segment_nuclei(np.zeros((0, 5)))
    nan_image = np.ones((16, 16))
    nan_image[3, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite pixels"):
        segment_nuclei(nan_image)
    with pytest.raises(ValueError, match="radius must be a finite size in px above 0"):
        segment_nuclei(np.ones((16, 16)), radius=0)
    with pytest.raises(ValueError, match="distance must be"):
        derive_cells(labels, method="expand", distance=-1)
    with pytest.raises(ValueError, match="integer labels"):
        derive_cells(labels.astype(float), method="expand", distance=2)


def test_a_diameter_or_radius_of_zero_is_refused_by_the_cli(tmp_path, capsys):
    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint16))
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path / "a.tif"), "--out", str(tmp_path / "o"), "--diameter", "0"])
    assert exit_info.value.code == 2 and "must be a size in px above 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_colour_image_for_a_fluorescence_channel_is_refused_at_planning(samples, pipelines, tmp_path, capsys):
    import numpy as np
    import tifffile

    root = _one_field(samples, tmp_path)
    target = sorted((root / "images").glob("*_w2.tif"))[0]
    gray = tifffile.imread(target)
    tifffile.imwrite(target, np.stack([gray, gray, gray], axis=-1))  # gray saved as RGB: accepted
    assert main(["validate", str(pipelines / "pjnk.yaml"), str(root / "images")]) == 0
    colour = np.stack([gray, gray // 2, gray], axis=-1)
    tifffile.imwrite(target, colour)
    assert _run(pipelines, root / "images", tmp_path / "out", root / "map.csv") == 2
    assert "is a colour (RGB) image, where a grayscale fluorescence channel" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_damaged_compressed_strips_are_found_by_validate_read_pixels(samples, pipelines, tmp_path, capsys):
    """No header shows them: `validate --read-pixels` decodes every file before a run."""
    import numpy as np
    import tifffile

    root = _one_field(samples, tmp_path)
    target = sorted((root / "images").glob("*_w1.tif"))[0]
    tifffile.imwrite(target, tifffile.imread(target), compression="zlib", rowsperstrip=16)
    with tifffile.TiffFile(target) as tif:
        offset = int(tif.pages[0].dataoffsets[3])
    data = bytearray(target.read_bytes())
    data[offset : offset + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    args = ["validate", str(pipelines / "pjnk.yaml"), str(root / "images"), "--workers", "1"]
    assert main(args) == 0  # the header is intact
    capsys.readouterr()
    assert main(args + ["--read-pixels"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read as an image" in err and target.name in err


def test_a_run_recorded_by_an_older_version_is_the_same_assay(samples, pipelines, tmp_path):
    """Settings added since (a channel's name) must not make an upgrade look like another assay."""
    import json

    root = _one_field(samples, tmp_path)
    out = tmp_path / "out"
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
    record = json.loads((out / "run.json").read_text())
    for channel in record["pipeline"]["config"]["channels"].values():
        channel.pop("name")  # as 0.1 wrote it
    (out / "run.json").write_text(json.dumps(record))
    assert _run(pipelines, root / "images", out, root / "map.csv") == 0
