"""A large image is scored in parts of contiguous tiles, each its own unit of the run (so a
whole section spreads over every worker, not one), then assembled by a finishing unit: the
same files, byte for byte, as scoring it as one unit. Parts resume on their own, and run on
Dask alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from imaging.run.engine import RunOptions, run_assay
from imaging.tissue import image as tissue_image
from imaging.tissue.assay import TissueAssay
from imaging.tissue.plan import plan_tissue
from imaging.tissue.synthetic import make_ihc_image

PIPELINE = """\
schema_version: 1
mode: tissue
name: parts
stains: {preset: hdab}
pixel_size_um: 1.0
cells: {tile_px: 512, nucleus_diameter_um: 12.0}
"""
STEM = "section"


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file a reader of the run sees (not run.json: times differ)."""
    names = ["cells.csv", "regions.csv", f"detections/{STEM}.geojson", f".images/{STEM}.cells.csv"]
    names += sorted(str(p.relative_to(out)) for p in (out / "plots").glob(f"{STEM}_*.png"))
    return {name: (out / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    rgb, _ = make_ihc_image(size=1536, n_nuclei=1400, seed=4)  # dense: nuclei cut by every tile border
    (root / "images").mkdir()
    tifffile.imwrite(
        root / "images" / f"{STEM}.ome.tif", rgb, tile=(256, 256), photometric="rgb", metadata={"axes": "YXS"}
    )
    (root / "parts.yaml").write_text(PIPELINE)
    return plan_tissue(root / "parts.yaml", root / "images")


@pytest.fixture(scope="module")
def whole(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "out"
    record = run_assay(TissueAssay(plan), out).record
    assert record["image_parts"]["n_parts"] == 0  # 9 tiles: one unit by default
    assert record["images"][0]["ihc"]["n_cells"] > 1000
    return out


def test_parts_assemble_to_the_files_of_one_unit(plan, whole, tmp_path):
    out = tmp_path / "out"
    record = run_assay(TissueAssay(plan, tiles_per_part=2), out).record
    assert record["image_parts"] == {"n_images": 1, "n_parts": 5, "reused_from_previous_run": 0}
    assert (whole / "regions.csv").read_text().count("\n") == 2  # header + the image
    expected = _outputs(whole)
    assert len(expected) >= 6  # tables, detections and the crops and overlay of the report
    assert _outputs(out) == expected
    assert not tissue_image.parts_folder(out, STEM).exists()  # removed once the image is complete


def test_a_run_stopped_after_its_parts_resumes_them(plan, whole, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were stopped before the image was assembled

    monkeypatch.setattr(tissue_image, "read_part", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_assay(TissueAssay(plan, tiles_per_part=2), out)
    assert len(list(tissue_image.parts_folder(out, STEM).glob("part*.json"))) == 5
    monkeypatch.undo()
    record = run_assay(TissueAssay(plan, tiles_per_part=2), out).record
    assert record["image_parts"] == {"n_images": 1, "n_parts": 5, "reused_from_previous_run": 5}
    assert _outputs(out) == _outputs(whole)
    # and a complete image is reused whole: no parts planned
    record = run_assay(TissueAssay(plan, tiles_per_part=2), out).record
    assert record["image_parts"]["n_parts"] == 0 and record["images_reused_from_previous_run"] == 1


def test_parts_on_dask_give_the_same_files(plan, whole, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    run_assay(TissueAssay(plan, tiles_per_part=3), out, RunOptions(workers=2, scheduler="local"))
    assert _outputs(out) == _outputs(whole)
