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
from imaging.errors import InputError
from tests.conftest import finished_records
from tests.tissue.test_tissue import report_links

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


def _complete(out: Path) -> list[Path]:
    """The images a run has completed: their summaries."""
    return finished_records(out / ".images")


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
    original = (pipelines / "metastasis.yaml").read_text()
    changed = tmp_path / "metastasis.yaml"
    command = _metastasis(pipelines, samples, out, "--workers", "1")
    command[1] = str(changed)
    changed.write_text(original.replace("test: mann-whitney", "test: welch"))  # a comparison setting only
    assert main(command) == 0 and _reused(out) == 2
    changed.write_text(original.replace("min_area_um2: 5000", "min_area_um2: 20000"))  # what an image measures
    assert main(command) == 0 and _reused(out) == 0


def test_a_run_killed_midway_resumes_to_the_uninterrupted_tables(pipelines, samples, clean, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "imaging.cli", *_metastasis(pipelines, samples, out, "--workers", "1")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not _complete(out) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    complete = len(_complete(out))
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


def _cohort(folder: Path, seeds: dict[str, int]) -> Path:
    from imaging.tissue.synthetic import random_section, write_section

    folder.mkdir(parents=True)
    for name, seed in seeds.items():
        section = random_section((900, 900), pixel_size_um=2.0, n_lesions=1 + seed % 3, seed=seed)
        write_section(section, folder / f"{name}.ome.tif", tile=256, levels=1)
    return folder


def test_runs_of_one_tissue_pipeline_pool_into_one_report(pipelines, tmp_path):
    """Two cohorts run apart, reported together: the pooled samples are the union of the runs'
    samples, and the groups are compared over all of them, as one run of every image would."""
    pipeline = tmp_path / "burden.yaml"  # a fixed threshold: an auto one is per run
    pipeline.write_text((pipelines / "metastasis.yaml").read_text().replace("threshold: auto", "threshold: 0.3"))
    seeds = {"a1": 1, "b1": 2, "a2": 3, "b2": 4, "a3": 5, "b3": 6}
    sheet = tmp_path / "mice.csv"
    sheet.write_text(
        "image,sample,group\n"
        + "".join(f"{n}.ome.tif,mouse_{n},{'sgNT' if n[0] == 'a' else 'MAP2K7'}\n" for n in seeds)
    )
    first = _cohort(tmp_path / "cohort1", {n: s for n, s in seeds.items() if n[1] in "12"})
    second = _cohort(tmp_path / "cohort2", {n: s for n, s in seeds.items() if n[1] == "3"})
    every = _cohort(tmp_path / "every", seeds)
    for images, out in ((first, "run1"), (second, "run2"), (every, "all")):
        assert (
            main(
                [
                    "run",
                    str(pipeline),
                    str(images),
                    "--samples",
                    str(sheet),
                    "--out",
                    str(tmp_path / out),
                    "--workers",
                    "1",
                ]
            )
            == 0
        )
    import pandas as pd

    assert main(["report", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(tmp_path / "pooled")]) == 0
    pooled = pd.read_csv(tmp_path / "pooled" / "samples.csv")
    alone = pd.read_csv(tmp_path / "all" / "samples.csv")
    assert sorted(pooled["sample"]) == sorted(alone["sample"]) and set(pooled["run"]) == {"run1", "run2"}
    merged = pooled.merge(alone, on="sample", suffixes=("", "_alone"))
    assert (merged["lesion_percent_of_tissue"] == merged["lesion_percent_of_tissue_alone"]).all()
    comparisons = pd.read_csv(tmp_path / "pooled" / "comparisons.csv")
    expected = pd.read_csv(tmp_path / "all" / "comparisons.csv")
    pd.testing.assert_frame_equal(comparisons, expected)
    assert "runs" in (tmp_path / "pooled" / "report.html").read_text()
    links = report_links(tmp_path / "pooled" / "report.html")  # into each run's own plots/
    assert {Path(link).parts[:3] for link in links} == {("..", "run1", "plots"), ("..", "run2", "plots")}
    # a pooled report never overwrites a run's tables; a sample in two runs is refused
    assert main(["report", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(tmp_path / "run1")]) == 2
    assert main(["report", str(tmp_path / "run1"), str(tmp_path / "all"), "--out", str(tmp_path / "p2")]) == 2


def test_an_excluded_image_leaves_every_table_and_comes_back_when_included(pipelines, samples, clean, tmp_path):
    """Tissue curation: a reviewer excludes a section (a fold, a bubble) with a reason in
    curation.csv; `imaging report` rebuilds the tables without it, says so in the report and
    run.json, and the undo gives the original tables back byte for byte."""
    import shutil

    import pandas as pd

    from imaging import curation

    out = tmp_path / "out"
    shutil.copytree(clean, out)
    curation.record(out, action="exclude_image", image="lung_b", reason="folded section", user="pathologist")
    assert main(["report", str(out)]) == 0
    sections = pd.read_csv(out / "sections.csv")
    assert sections["image"].tolist() == ["lung_a"]
    assert pd.read_csv(out / "samples.csv")["sample"].tolist() == ["mouse_a"]
    assert set(pd.read_csv(out / "lesions.csv")["image"]) == {"lung_a"}
    record = json.loads((out / "run.json").read_text())
    assert record["curation"]["excluded_images"][0]["image"] == "lung_b"
    assert "folded section by pathologist" in (out / "report.html").read_text()
    (decision,) = curation.in_force(curation.load(out))
    assert decision.text.startswith("image lung_b excluded: folded section")
    curation.record(out, **decision.undo, reason="fold is outside the lesions")
    assert main(["report", str(out)]) == 0
    assert _tables(out) == _tables(clean)
    # a run into the folder keeps applying the decisions in force
    curation.record(out, action="exclude_image", image="lung_a", reason="bubble")
    assert main(_metastasis(pipelines, samples, out, "--workers", "1")) == 0 and _reused(out) == 2
    assert pd.read_csv(out / "sections.csv")["image"].tolist() == ["lung_b"]
    with pytest.raises(InputError, match="needs an image"):
        curation.record(out, action="exclude_image", reason="which one?")


def test_a_tissue_run_of_an_earlier_version_is_still_reported(clean, tmp_path):
    """run.json without the sample sheet (before curation existed): the report is rebuilt from
    the tables as they are; an exclusion, which needs a rebuild, asks for a new run."""
    import shutil

    from imaging import curation

    out = tmp_path / "old"
    shutil.copytree(clean, out)
    record = json.loads((out / "run.json").read_text())
    del record["sheet"], record["curation"]
    (out / "run.json").write_text(json.dumps(record))
    assert main(["report", str(out)]) == 0 and _tables(out) == _tables(clean)
    curation.record(out, action="exclude_image", image="lung_a", reason="fold")
    assert main(["report", str(out)]) == 2


def test_the_tissue_curation_model_excludes_rebuilds_and_undoes(clean, tmp_path):
    """The napari dock's Qt-free engine: images with their measured burden, an exclusion with
    a reason, a rebuild without the section, the undo back to the original tables; a decision
    without a reason, an unknown image and a plate run folder are refused in one line."""
    import shutil

    import pandas as pd

    from imaging.tissue.curation import TissueCuration

    out = tmp_path / "out"
    shutil.copytree(clean, out)
    review = TissueCuration.open(out)
    images = review.images()
    assert images["image"].tolist() == ["lung_a", "lung_b"] and not images["excluded"].any()
    measured = pd.read_csv(clean / "sections.csv").set_index("image")["n_lesions"]
    assert images.set_index("image")["n_lesions"].to_dict() == measured.to_dict()
    with pytest.raises(InputError, match="needs a reason"):
        review.exclude("lung_b", reason="  ")
    with pytest.raises(InputError, match="has no image 'lung_c'"):
        review.exclude("lung_c", reason="fold")
    review.exclude("lung_b", reason="folded section", user="pathologist")
    assert review.images().set_index("image").at["lung_b", "excluded"]
    record = review.rebuild()
    assert [e["image"] for e in record["curation"]["excluded_images"]] == ["lung_b"]
    assert pd.read_csv(out / "sections.csv")["image"].tolist() == ["lung_a"]
    assert "folded section by pathologist" in (out / "report.html").read_text()
    (decision,) = review.decisions()
    review.undo(decision, reason="fold is outside the lesions")
    review.rebuild()
    assert _tables(out) == _tables(clean)


def test_the_tissue_curation_model_refuses_a_plate_run(samples, pipelines, tmp_path):
    from imaging.tissue.curation import TissueCuration
    from tests.conftest import copy_sample_wells

    root = copy_sample_wells(samples, ["A01"], tmp_path)
    command = ["run", str(pipelines / "sabgal.yaml"), str(root / "images"), "--platemap", str(root / "map.csv")]
    assert main([*command, "--out", str(root / "out")]) == 0
    with pytest.raises(InputError, match="is a plate run"):
        TissueCuration.open(root / "out")
