"""Label images as OME-Zarr (``output.labels``): the TIFFs' labels, read as labels by
ome-zarr-py (napari-ome-zarr's reader) and by bioio, with the pixel size; resumable; the
review reads them back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.cli import main
from imaging.plate.review import RunReview
from tests.conftest import copy_sample_wells


def _pipeline(pipelines, tmp_path, labels: str):
    path = tmp_path / f"pjnk_{labels}.yaml"
    path.write_text((pipelines / "pjnk.yaml").read_text() + f"\noutput:\n  labels: {labels}\npixel_size_um: 0.65\n")
    return path


def _run(pipeline, root, out, *extra):
    return main(
        [
            "run",
            str(pipeline),
            str(root / "images"),
            "--out",
            str(out),
            "--platemap",
            str(root / "map.csv"),
            "--workers",
            "1",
            *extra,
        ]
    )


def test_ome_zarr_labels_hold_the_tiff_labels_and_readers_see_labels(samples, pipelines, tmp_path, capsys):
    from bioio import BioImage
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    root = copy_sample_wells(samples, ["A01", "B02"], tmp_path / "plate", assay="pjnk")
    out = tmp_path / "out"
    assert _run(_pipeline(pipelines, tmp_path, "both"), root, out) == 0
    labels = out / "PJNK01" / "labels"
    tiffs = sorted(labels.glob("*_nuclei.tif"))
    assert len(tiffs) == 4 and len(sorted(labels.glob("*.ome.zarr"))) == 8
    for tiff in tiffs:
        for kind in ("nuclei", "cells"):
            expected = tifffile.imread(str(tiff).replace("_nuclei.tif", f"_{kind}.tif"))
            zarr_path = str(tiff).replace("_nuclei.tif", f"_{kind}.ome.zarr")
            (node, *_) = list(Reader(parse_url(zarr_path))())
            assert "Label" in [type(spec).__name__ for spec in node.specs]
            np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
            image = BioImage(zarr_path)
            assert image.physical_pixel_sizes.X == pytest.approx(0.65)
            np.testing.assert_array_equal(image.get_image_data("YX"), expected)
    cells = pd.read_csv(out / "PJNK01" / "cells.csv")
    first = cells[(cells["well"] == "A01") & (cells["site"] == 1)]
    assert int(tifffile.imread(labels / "PJNK01_A01_s1_nuclei.tif").max()) == first["label"].max()

    # OME-Zarr alone: the fields are reused (their OME-Zarr labels are there), the review reads them
    for tiff in labels.glob("*.tif"):
        tiff.unlink()
    capsys.readouterr()
    assert _run(_pipeline(pipelines, tmp_path, "ome-zarr"), root, out) == 0
    assert "4 reused" in capsys.readouterr().out and not list(labels.glob("*.tif"))
    review = RunReview.open_run(out)
    loaded = review.load_field("PJNK01", "A01", 1)
    assert not loaded.segmented_again and int(loaded.nuclei.max()) == first["label"].max()

    # a TIFF-only run after that needs the TIFFs again: those fields are measured again
    (labels / ".tmp-123-abcd-PJNK01_A01_s1_nuclei.ome.zarr").mkdir()  # a killed run's half-written folder
    capsys.readouterr()
    assert _run(_pipeline(pipelines, tmp_path, "tiff"), root, out) == 0
    assert "0 reused" in capsys.readouterr().out and len(list(labels.glob("*.tif"))) == 8
    assert not list(labels.glob(".tmp-*"))
