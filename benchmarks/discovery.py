"""Discovery and planning of a 384-well TIFF plate folder: file-name path vs the sources entry point.

``imaging.io.sources.find_fields`` first looks for instrument containers (ND2, CZI, LIF, OME)
and only then runs the file-name discovery; this measures what that costs on a plain TIFF
plate folder. Rows, all in the same run on the same folder (384 wells x 9 sites x 2 channels
of small TIFFs; header checks read only headers, so the pixel count barely matters):

- ``discover + group`` (the path before containers): ``discover_images`` + ``group_fields``;
- ``find_fields``: the same through ``imaging.io.sources``;
- ``plan_run``: all planning checks (headers of every file), as ``imaging run`` does.

Usage: ``python benchmarks/discovery.py [--sites 9] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from imaging.config import load_pipeline
from imaging.io.discover import discover_images, group_fields
from imaging.io.sources import find_fields
from imaging.io.wells import format_well
from imaging.plate import plan_run

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "pjnk.yaml"


def make_plate(folder: Path, sites: int) -> int:
    image = np.zeros((64, 64), np.uint16)
    n = 0
    for row in range(1, 17):
        for column in range(1, 25):
            for site in range(1, sites + 1):
                for channel in (1, 2):
                    tifffile.imwrite(folder / f"PLATE1_{format_well(row, column)}_s{site}_w{channel}.tif", image)
                    n += 1
    return n


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipeline = load_pipeline(PIPELINE)
    ids = {name: spec.id for name, spec in pipeline.channels.items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_files = make_plate(folder, args.sites)
        rows = {
            "discover + group": best_of(lambda: group_fields(discover_images(folder)[0], ids), args.repeats),
            "find_fields": best_of(lambda: find_fields(folder, pipeline), args.repeats),
            "plan_run": best_of(lambda: plan_run(pipeline, folder), args.repeats),
        }
    baseline = rows["discover + group"]
    print(f"{n_files} files (384 wells x {args.sites} sites x 2 channels), best of {args.repeats}")
    print(f"{'step':<18} {'seconds':>8} {'x baseline':>11}")
    for name, seconds in rows.items():
        print(f"{name:<18} {seconds:>8.3f} {seconds / baseline:>11.2f}")


if __name__ == "__main__":
    main()
