"""Peak memory and time of tissue pipelines on a large pyramidal section.

Writes a synthetic 40,000 x 40,000 RGB H&E section (0.25 um/px, 10 x 10 mm, pyramidal
OME-TIFF, rendered tile by tile), then measures each step as its own process, in the same
run, with peak resident memory (ru_maxrss) and wall time:

- ``floor``: read every level-0 tile once (the least any full-resolution analysis does);
- ``metastasis``: ``imaging run pipelines/metastasis.yaml`` on the section;
- ``ihc``: IHC cell scoring at full resolution on a --ihc-size square crop of it
  (whole-section cell scoring takes hours on two cores; memory is set by the tile).

Usage: python benchmarks/tissue_memory.py [--size 40000] [--ihc-size 8192] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION_PX, CROP_PX = 40000, 8192  # the default section and IHC crop (10 mm and 2 mm at 0.25 um/px)

FLOOR = """
import sys, numpy as np
from imaging.tissue.slide import Slide
total = 0
with Slide(sys.argv[1]) as slide:
    for tile in slide.tiles(2048):
        total += int(slide.read_region(tile.row, tile.col, tile.height, tile.width).sum() & 1)
print(total)
"""

IHC = """
import sys
from imaging.config import parse_pipeline
from imaging.tissue.image import ImageTask, analyse_image
pipeline = parse_pipeline({"schema_version": 1, "mode": "tissue", "name": "bench", "stains": {"preset": "hdab"},
                           "cells": {"tile_px": 2048, "nucleus_diameter_um": 7.0}})
summary = analyse_image(ImageTask(sys.argv[1], pipeline, sys.argv[2]))
print(summary["ihc"]["n_cells"])
"""


def measured(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, the child's own peak RSS (MB, from wait4) and its last output line."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:3]} failed")
    return seconds, usage.ru_maxrss / 1024, (output.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=SECTION_PX)
    parser.add_argument("--ihc-size", type=int, default=CROP_PX)
    parser.add_argument("--keep", type=Path, help="folder to keep the generated images in")
    args = parser.parse_args()
    from imaging.tissue.synthetic import random_section, write_section

    folder = args.keep or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    section_path = folder / f"section_{args.size}.ome.tif"
    start = time.perf_counter()
    # lesions sized for the default 10 mm section and 2 mm crop, smaller on smaller ones (so they fit)
    scale, crop_scale = min(1.0, args.size / SECTION_PX), min(1.0, args.ihc_size / CROP_PX)
    section = random_section(
        (args.size, args.size), pixel_size_um=0.25, n_lesions=12, seed=1, lesion_radius_um=(100 * scale, 600 * scale)
    )
    if not section_path.exists():
        write_section(section, section_path, tile=512)
    written = time.perf_counter() - start
    crop_path = folder / f"crop_{args.ihc_size}.ome.tif"
    if not crop_path.exists():
        crop = random_section(
            (args.ihc_size, args.ihc_size),
            pixel_size_um=0.25,
            n_lesions=3,
            seed=2,
            lesion_radius_um=(50 * crop_scale, 150 * crop_scale),
        )
        write_section(crop, crop_path, tile=512)
    raw_gb = args.size**2 * 3 / 1e9
    rows = []
    rows.append(("floor: read every level-0 tile",) + measured([sys.executable, "-c", FLOOR, str(section_path)]))
    rows.append(
        (f"IHC cell scoring, {args.ihc_size} px crop",)
        + measured([sys.executable, "-c", IHC, str(crop_path), str(folder / "ihc_out")])
    )
    rows.append(
        ("metastasis: imaging run (whole section)",)
        + measured(
            [
                sys.executable,
                "-m",
                "imaging.cli",
                "run",
                str(ROOT / "pipelines" / "metastasis.yaml"),
                str(section_path),
                "--out",
                str(folder / "metastasis_out"),
                "--workers",
                "1",
            ]
        )
    )
    print(
        f"section {args.size} x {args.size} RGB at 0.25 um/px ({raw_gb:.1f} GB of pixels), "
        f"{section_path.stat().st_size / 1e9:.2f} GB on disk, written in {written:.0f} s; "
        f"{len(section.lesions)} planted lesions"
    )
    print(f"{'step':44s} {'seconds':>8s} {'peak RSS MB':>12s}  output")
    for name, seconds, peak, output in rows:
        print(f"{name:44s} {seconds:8.1f} {peak:12.0f}  {output[:60]}")


if __name__ == "__main__":
    main()
