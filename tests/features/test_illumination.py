"""Illumination correction: estimate, files, correction, and through a run and review."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.features.illumination import (
    Flatfield,
    correct,
    estimate_flatfield,
    flatfield_from_files,
    read_illumination_image,
)
from imaging.plate import execute, plan_run

SHAPE = (240, 320)


def lighting(shape=SHAPE, *, strength=0.45, centre=(0.4, 0.6)):
    """An off-centre radial fall-off (what a misaligned lamp gives), mean 1."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    distance = np.hypot(rows / shape[0] - centre[0], cols / shape[1] - centre[1])
    flat = 1.0 - strength * (distance / distance.max()) ** 2
    return flat / flat.mean()


def cell_field(rng, flat, *, n=40, radius=7, level=800.0, background=40.0, shape=SHAPE):
    """Identical bright disks at random places (anywhere: as in real fields, some are cut by
    the edge), under ``flat``, with shot-like noise."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    ideal = np.full(shape, background)
    centres = []
    while len(centres) < n:
        c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if all(np.hypot(c[0] - p[0], c[1] - p[1]) > 2.6 * radius for p in centres):
            centres.append(c)
    for r, c in centres:
        ideal[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = background + level
    image = ideal * flat
    return np.clip(image + rng.normal(scale=np.sqrt(image)), 0, 65535).astype(np.uint16), centres


def test_estimate_recovers_the_lighting_from_a_plates_fields_whatever_each_wells_brightness():
    rng = np.random.default_rng(1)
    truth = lighting()
    fields = [(cell_field(rng, truth)[0] * rng.uniform(0.5, 2.0)).astype(np.float32) for _ in range(24)]
    flat, info = estimate_flatfield(fields)
    estimate = flat.flat_at(SHAPE)
    assert estimate.mean() == pytest.approx(1.0, abs=1e-4)
    relative = estimate / truth - 1
    assert np.sqrt(np.mean(relative**2)) < 0.01 and np.abs(relative).max() < 0.04
    assert info["n_fields"] == 24 and info["min"] == pytest.approx(truth.min(), abs=0.03)


def test_correction_is_raw_minus_dark_over_a_mean_one_flat():
    raw = np.array([[110, 210], [60, 410]], dtype=np.uint16)
    dark = np.full((2, 2), 10, dtype=np.float32)
    flat = Flatfield(flat=np.array([[2.0, 4.0], [1.0, 1.0]], dtype=np.float32), dark=dark)  # mean 2
    np.testing.assert_allclose(correct(raw, flat), [[100.0, 100.0], [100.0, 800.0]])
    uniform = Flatfield(flat=np.full((2, 2), 3.0, dtype=np.float32))
    np.testing.assert_allclose(correct(raw, uniform), raw)  # even lighting changes nothing


def test_cellprofiler_illumination_functions_are_read_from_npy_mat_and_tiff(tmp_path):
    from scipy.io import savemat

    function = lighting((20, 30)) * 3.5
    np.save(tmp_path / "IllumDAPI.npy", function)
    savemat(tmp_path / "IllumDAPI.mat", {"Image": function})
    tifffile.imwrite(tmp_path / "flat.tif", function.astype(np.float32))
    for name in ("IllumDAPI.npy", "IllumDAPI.mat", "flat.tif"):
        np.testing.assert_allclose(read_illumination_image(tmp_path / name), function, rtol=1e-6)
    tifffile.imwrite(tmp_path / "dark.tif", np.full((20, 30), 0.5, dtype=np.float32))
    flat = flatfield_from_files(tmp_path / "flat.tif", tmp_path / "dark.tif")
    np.testing.assert_allclose(flat.flat, function - 0.5, rtol=1e-5)


@pytest.mark.parametrize(
    "case, message",
    [
        ("zero", "at or below zero"),
        ("nan", "NaN"),
        ("stack", "2-D"),
        ("dark_size", "dark-field is"),
        ("missing", "not found"),
        ("mat_two", "2-D arrays"),
    ],
)
def test_unusable_flatfield_files_are_refused_naming_the_file(tmp_path, case, message):
    from scipy.io import savemat

    flat, dark = tmp_path / "flat.npy", None
    good = np.ones((10, 12))
    if case == "zero":
        good[3, 4] = 0
    if case == "nan":
        good[3, 4] = np.nan
    np.save(flat, np.ones((2, 10, 12)) if case == "stack" else good)
    if case == "dark_size":
        dark = tmp_path / "dark.npy"
        np.save(dark, np.zeros((5, 5)))
    if case == "missing":
        flat = tmp_path / "absent.npy"
    if case == "mat_two":
        flat = tmp_path / "two.mat"
        savemat(flat, {"a": good, "b": good})
    with pytest.raises(InputError, match=message) as error:
        flatfield_from_files(flat, dark)
    assert str(error.value.path).endswith((".npy", ".mat"))


def write_plate(root, rng, flat, *, n_fields=12, reporter=None):
    """A plate of fields of identical cells (DAPI w1, reporter w2) under ``flat``."""
    centres_by_field = {}
    for k in range(n_fields):
        well = f"A{k + 1:02d}"
        levels = None if reporter is None else reporter(rng)
        dapi, centres = cell_field(rng, flat)
        signal = reporter_image(centres, flat, levels, rng)  # on the same disks
        tifffile.imwrite(root / f"P1_{well}_s1_w1.tif", dapi)
        tifffile.imwrite(root / f"P1_{well}_s1_w2.tif", signal)
        centres_by_field[well] = (centres, levels)
    return centres_by_field


def reporter_image(centres, flat, levels, rng, *, radius=7, cytoplasm=100.0, background=40.0):
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    ideal = np.full(SHAPE, background)
    for k, (r, c) in enumerate(centres):
        level = 600.0 if levels is None else levels[k]
        d2 = (rows - r) ** 2 + (cols - c) ** 2
        ideal[(d2 > radius**2) & (d2 <= (2 * radius) ** 2)] = background + level * cytoplasm / 600.0
        ideal[d2 <= radius**2] = background + level
    image = ideal * flat
    return np.clip(image + rng.normal(scale=np.sqrt(image)), 0, 65535).astype(np.uint16)


def pipeline(**extra):
    data = {
        "schema_version": 1,
        "name": "flat",
        "channels": {"dapi": {"id": "1"}, "rep": {"id": "2"}},
        "naming": {
            "preset": "regex",
            "pattern": r"(?P<plate>P1)_(?P<well>[A-H]\d+)_s(?P<site>\d)_w(?P<channel>\d)\.tif",
        },
        "segmentation": {"method": "classical", "channel": "dapi", "nucleus_diameter_px": 14},
        "cells": {"max_expansion_px": 7},
        "measure": {"intensity": [{"channel": "rep"}]},
    } | extra
    return parse_pipeline(data)


def test_a_run_with_estimated_illumination_measures_identical_cells_alike_everywhere(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_plate(images, np.random.default_rng(2), lighting(), n_fields=16)
    spread = {}
    for method in ("none", "estimate"):
        out = tmp_path / method
        result = execute(plan_run(pipeline(illumination={"method": method}), images), out)
        cells = pd.read_csv(out / "P1" / "cells.csv")
        interior = cells[~cells["touches_border"]]
        values = interior["rep_nuclear_mean"]
        spread[method] = values.std() / values.mean()
        assert 0.95 * 16 * 40 <= len(cells) <= 16 * 40
    assert spread["none"] > 0.07 and spread["estimate"] < 0.025, spread
    entry = result.record["plates"]["P1"]["illumination"]
    assert entry["method"] == "estimate" and entry["n_fields"] == 16 and "warning" not in entry
    assert set(entry["channels"]) == {"dapi", "rep"}
    stored = tifffile.imread(tmp_path / "estimate" / entry["channels"]["rep"]["flat_file"])
    assert stored.shape == SHAPE and np.abs(stored / lighting() - 1).max() < 0.05

    again = execute(plan_run(pipeline(illumination={"method": "estimate"}), images), tmp_path / "estimate")
    assert again.record["fields_reused_from_previous_run"] == 16

    from imaging.plate.review import RunReview

    review = RunReview.open_run(tmp_path / "estimate")
    measured = review.measure("P1", "A03", 1, images=review.images("P1", "A03", 1)).cells
    batch = review.field_cells("P1", "A03", 1)
    np.testing.assert_allclose(measured["rep_nuclear_mean"], batch["rep_nuclear_mean"], rtol=1e-9)
    shown = review.corrected_images("P1", review.images("P1", "A03", 1))["rep"]
    assert shown.dtype == np.float32


def test_illumination_files_of_the_wrong_size_are_refused_before_any_work(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_plate(images, np.random.default_rng(3), lighting(), n_fields=2)
    np.save(tmp_path / "rep_flat.npy", lighting((100, 100)))
    path = tmp_path / "flat.yaml"
    text = pipeline(illumination={"method": "files", "files": {"rep": "rep_flat.npy"}}).to_yaml()
    path.write_text(text)
    with pytest.raises(InputError, match="100 x 100 px but the fields are 240 x 320") as error:
        plan_run(path, images)
    assert str(error.value.path).endswith("rep_flat.npy")


def test_illumination_files_correct_a_run_like_the_estimate(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_plate(images, np.random.default_rng(4), lighting(), n_fields=4)
    np.save(tmp_path / "rep_flat.npy", lighting() * 7.0)  # CellProfiler's functions are not mean 1
    np.save(tmp_path / "dapi_flat.npy", lighting() * 7.0)
    path = tmp_path / "flat.yaml"
    path.write_text(
        pipeline(
            illumination={"method": "files", "files": {"rep": "rep_flat.npy", "dapi": {"flat": "dapi_flat.npy"}}}
        ).to_yaml()
    )
    result = execute(plan_run(path, images), tmp_path / "out")
    cells = pd.read_csv(tmp_path / "out" / "P1" / "cells.csv")
    cells = cells[~cells["touches_border"]]
    assert cells["rep_nuclear_mean"].std() / cells["rep_nuclear_mean"].mean() < 0.025
    entry = json.loads((tmp_path / "out" / "run.json").read_text())["plates"]["P1"]["illumination"]
    assert entry["method"] == "files" and entry["channels"]["rep"]["source"].endswith("rep_flat.npy")
    assert result.record["plates"]["P1"]["illumination"] == entry


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"method": "files"}, "needs illumination.files"),
        ({"method": "estimate", "files": {"rep": "a.npy"}}, "only read with method 'files'"),
        ({"method": "estimate", "channels": ["gfp"]}, "not under 'channels'"),
    ],
)
def test_illumination_settings_are_checked(setting, message):
    with pytest.raises(InputError, match=message):
        pipeline(illumination=setting)


def test_the_shipped_translocation_pipeline_runs_on_a_two_channel_plate(samples, pipelines, tmp_path, capsys):
    """pipelines/translocation.yaml (w1 DAPI, w2 reporter) on the pJNK sample plate: the
    illumination is estimated from all 32 fields, the gate finds every cell expressing (and
    says so, in run.json and on screen), border cells leave the readouts."""
    from imaging.cli import main
    from imaging.run.record import read_record

    plate = samples / "pjnk_plate"
    assert (
        main(
            [
                "run",
                str(pipelines / "translocation.yaml"),
                str(plate / "images"),
                "--platemap",
                str(plate / "platemap.csv"),
                "--out",
                str(tmp_path),
                "--workers",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "illumination reporter: estimated from 32 fields, flat 0." in printed
    assert "reporter gate: no cell gated (no separate non-expressing population" in printed
    record, _ = read_record(tmp_path)
    entry = record["plates"]["PJNK01"]
    assert entry["illumination"]["n_fields"] == 32 and "warning" not in entry["illumination"]
    assert entry["reporter_gate"]["method"] == "none" and "no separate" in entry["reporter_gate"]["detail"]["reason"]
    wells = pd.read_csv(tmp_path / "PJNK01" / "wells.csv")
    assert (wells["n_cells_in_readouts"] < wells["n_cells"]).all()
    assert {"reporter_nc_ratio", "reporter_nc_ratio_mean", "translocated_pct"} <= set(wells.columns)


def test_validate_warns_before_any_work_when_a_plate_is_too_small_for_an_estimate(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    write_plate(images, np.random.default_rng(6), lighting(), n_fields=3)
    plan_run(pipeline(illumination={"method": "estimate"}), images)
    assert "plate P1 has 3 field(s): an illumination estimate needs at least 10" in caplog.text


def test_a_flatfield_header_claiming_a_huge_array_is_refused_without_reading_it(tmp_path):
    """A .npy whose header claims 40,000 x 40,000 float64 (12.8 GB; the file is sparse) is
    refused from its header: nothing is allocated."""
    import subprocess
    import sys

    path = tmp_path / "flat.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (40_000, 40_000)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.truncate(handle.tell() + 40_000 * 40_000 * 8)  # sparse: no disk used
    code = "\n".join(
        [
            "import resource, sys",
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GB: the claimed array would not fit",
            "from imaging.errors import InputError",
            "from imaging.features.illumination import read_illumination_image",
            "try:",
            "    read_illumination_image(sys.argv[1])",
            "except InputError as error:",
            "    print(error)",
        ]
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert "more than a field may have" in result.stdout, result.stderr[-2000:]
