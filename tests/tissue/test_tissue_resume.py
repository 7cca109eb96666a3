"""Tissue runs resume like plate runs: an image whose fingerprint (bytes, pipeline, lesion
threshold, version) and written files are unchanged is reused; a run killed midway and run
again gives the tables of an uninterrupted run; Dask gives the same tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaging.cli import main

TABLES = ("sections.csv", "lesions.csv", "samples.csv", "comparisons.csv")
IHC_TABLES = ("cells.csv", "regions.csv", "samples.csv")


def _metastasis(pipelines, samples, out: Path, *extra) -> list[str]:
    return [
        "run",
        str(pipelines / "metastasis.yaml"),
        str(samples / "tissue" / "sections"),
        "--samples",
        str(samples / "tissue" / "sections_samples.csv"),
        "--out",
        str(out),
        *extra,
    ]


def _tables(out: Path, names=TABLES) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in names}


def _reused(out: Path) -> int:
    return json.loads((out / "run.json").read_text())["images_reused_from_previous_run"]


@pytest.fixture(scope="module")
def clean(pipelines, samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("tissue_clean") / "out"
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0
    return out


def test_a_second_run_reuses_every_image_and_writes_the_same_tables(pipelines, samples, clean, tmp_path):
    out = tmp_path / "out"
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0 and _reused(out) == 0
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0 and _reused(out) == 2
    assert _tables(out) == _tables(clean)
    (out / ".images" / "lung_b.json").unlink()  # as if the run had stopped before lung_b was complete
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0 and _reused(out) == 1
    assert _tables(out) == _tables(clean)
    changed = tmp_path / "metastasis.yaml"  # another lesion size limit: every image again
    changed.write_text((pipelines / "metastasis.yaml").read_text().replace("min_area_um2: 5000", "min_area_um2: 20000"))
    command = _metastasis(pipelines, samples, tmp_path / "other", "--workers", "1")
    command[1] = str(changed)
    assert main(command) == 0 and _reused(tmp_path / "other") == 0


def test_a_run_killed_midway_resumes_to_the_uninterrupted_tables(pipelines, samples, clean, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "imaging.cli", *_metastasis(pipelines, samples, out, "--workers", "1")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list((out / ".images").glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    complete = len(list((out / ".images").glob("*.json")))
    assert complete >= 1  # the kill came after the first image was complete (or after the run)
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0
    assert _reused(out) == complete and _tables(out) == _tables(clean)


def test_a_damaged_per_image_cells_table_is_scored_again(pipelines, samples, tmp_path):
    out = tmp_path / "out"
    command = [
        "run",
        str(pipelines / "ihc_hscore.yaml"),
        str(samples / "tissue" / "ihc"),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    assert main(command) == 0
    before = _tables(out, IHC_TABLES)
    cells = next((out / ".images").glob("*.cells.csv"))
    cells.write_bytes(cells.read_bytes().replace(b",", b";", 3))
    assert main(command) == 0 and _reused(out) == 0
    assert _tables(out, IHC_TABLES) == before


def test_a_tissue_run_on_a_dask_cluster_gives_the_same_tables(pipelines, samples, clean, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    assert main(_metastasis(pipelines, samples, out, "--workers", "2", "--scheduler", "local")) == 0
    assert _tables(out) == _tables(clean)
    assert json.loads((out / "run.json").read_text())["options"]["scheduler"] == "local"
