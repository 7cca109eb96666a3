"""Cluster execution and resume: a real Dask LocalCluster with several worker processes
gives the serial run's tables byte for byte, survives a killed worker and a failing task
without losing or duplicating rows, and an interrupted run resumes to the same tables."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest

from imaging.errors import InputError
from imaging.plate import execute, plan_run
from tests.conftest import copy_sample_wells, finished_records

distributed = pytest.importorskip("distributed")

TABLES = ("cells.csv", "fields.csv", "wells.csv")
WELLS = ("A01", "A02", "B03", "C04", "D01", "D04")


@pytest.fixture(scope="module")
def plate(samples, tmp_path_factory):
    return copy_sample_wells(samples, WELLS, tmp_path_factory.mktemp("dist_plate"))


@pytest.fixture(scope="module")
def serial(plate, pipelines, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    execute(plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv"), out, workers=1)
    return {name: (out / "SABGAL01" / name).read_bytes() for name in TABLES}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


def tables(out):
    return {name: (out / "SABGAL01" / name).read_bytes() for name in TABLES}


def test_cluster_run_equals_the_serial_run_byte_for_byte(plate, pipelines, serial, cluster, tmp_path):
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv")
    result = execute(plan, tmp_path, scheduler=cluster.scheduler_address)
    assert tables(tmp_path) == serial
    assert result.record["options"]["scheduler"] == cluster.scheduler_address
    assert result.record["worker_peak_rss_mb"] > 0


def test_fsspec_url_input_on_the_cluster(plate, pipelines, serial, cluster, tmp_path):
    plan = plan_run(pipelines / "sabgal.yaml", f"file://{plate / 'images'}", platemap=plate / "map.csv")
    assert all(path.startswith("file://") for f in plan.fields for path in f.paths.values())
    execute(plan, tmp_path, scheduler=cluster.scheduler_address)
    assert tables(tmp_path) == serial


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(plate, pipelines, serial, tmp_path):
    with (
        distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill_one(summary):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv")
        result = execute(plan, tmp_path, scheduler=cluster.scheduler_address, on_field=kill_one)
    assert killed and result.record["inputs"]["n_fields"] == 12
    assert tables(tmp_path) == serial
    cells = pd.read_csv(tmp_path / "SABGAL01" / "cells.csv")
    assert not cells.duplicated(["well", "site", "label"]).any()


def test_a_failing_task_stops_the_run_and_keeps_finished_fields(plate, pipelines, serial, cluster, tmp_path):
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv")
    broken = plate / "images" / "SABGAL01_D04_s2_w2.tif"
    original = broken.read_bytes()
    try:
        broken.write_bytes(b"II*\x00" + b"\x00" * 32)  # damaged after the checks passed
        with pytest.raises(InputError, match="SABGAL01_D04_s2_w2.tif"):
            execute(plan, tmp_path, scheduler=cluster.scheduler_address)
    finally:
        broken.write_bytes(original)
    finished = finished_records(tmp_path / "SABGAL01" / ".fields")
    assert 0 < len(finished) < 12
    assert not (tmp_path / "SABGAL01" / "cells.csv").exists()
    result = execute(plan, tmp_path, scheduler=cluster.scheduler_address)
    assert result.record["fields_reused_from_previous_run"] == len(finished)
    assert tables(tmp_path) == serial


def test_an_interrupted_run_resumes_to_the_same_tables(plate, pipelines, serial, tmp_path):
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv")
    seen = []

    def interrupt(summary):
        seen.append(summary)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(plan, tmp_path, workers=1, on_field=interrupt)
    assert len(finished_records(tmp_path / "SABGAL01" / ".fields")) == 5
    result = execute(plan, tmp_path, workers=2)
    assert result.record["fields_reused_from_previous_run"] == 5
    assert tables(tmp_path) == serial


def test_changed_input_is_redone(plate, pipelines, serial, tmp_path):
    plan = plan_run(pipelines / "sabgal.yaml", plate / "images", platemap=plate / "map.csv")
    execute(plan, tmp_path, workers=1)
    summary = tmp_path / "SABGAL01" / ".fields" / "SABGAL01_A01_s1.json"
    summary.write_text(summary.read_text().replace('"fingerprint": "', '"fingerprint": "stale'))
    (tmp_path / "SABGAL01" / ".fields" / "SABGAL01_A02_s2.cells.parquet").unlink()  # half-written field
    result = execute(plan, tmp_path, workers=1)
    assert result.record["fields_reused_from_previous_run"] == 10
    assert tables(tmp_path) == serial
