"""Field throughput of the pJNK pipeline on 2048 x 2048 two-channel fields.

Prints one table, all rows measured in the same run on the same files:

- ``floor``: read both channels and one Gaussian pass (the least any analysis does);
- ``naive``: read, Otsu threshold of DAPI, connected components, mean pJNK per object
  (a typical one-line Fiji macro: no declumping, background, cells or QC);
- ``pipeline``: :func:`imaging.plate.measure.measure_field` with ``pipelines/pjnk.yaml``;
- ``batch, N workers``: ``imaging run`` end to end (tables, QC, run record) over the plate;
- with ``--against REV``: ``measure_field`` of this tree and of a pinned git revision, each in
  its own one-thread process on the same fields (``_revisions.time_measure_field``), so the
  speed-up is read off one run.

Usage: ``python benchmarks/throughput.py [--fields 8] [--size 2048] [--workers 1 2] [--against REV]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _revisions import ROOT, pinned_worktree, time_measure_field
from scipy import ndimage as ndi
from skimage import filters, measure

from imaging.config import load_pipeline
from imaging.plate import execute, plan_run
from imaging.plate.measure import measure_field
from imaging.synthetic import derive_cell_truth, place_nuclei, render_dapi, render_pjnk, vignetting


def make_fields(folder: Path, n_fields: int, size: int) -> list[tuple[Path, Path]]:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n_fields):
        nuclei = place_nuclei((size, size), radius=10, density=0.2, rng=rng)
        cells = derive_cell_truth(nuclei, radius=10, rng=rng)
        n = int(nuclei.max())
        light = vignetting((size, size), strength=0.3, rng=rng)
        dapi = render_dapi(nuclei, rng=rng, illumination=light)
        pjnk = render_pjnk(nuclei, cells, np.full(n, 500.0), np.full(n, 150.0), rng=rng, illumination=light)
        well = f"A{i + 1:02d}"
        pair = folder / f"BENCH_{well}_s1_w1.tif", folder / f"BENCH_{well}_s1_w2.tif"
        tifffile.imwrite(pair[0], dapi)
        tifffile.imwrite(pair[1], pjnk)
        pairs.append(pair)
    return pairs


def floor(pair):
    dapi, pjnk = tifffile.imread(pair[0]), tifffile.imread(pair[1])
    ndi.gaussian_filter(dapi.astype(np.float32), 1.0)
    return pjnk


def naive(pair):
    dapi, pjnk = tifffile.imread(pair[0]), tifffile.imread(pair[1])
    labels = measure.label(dapi > filters.threshold_otsu(dapi))
    return measure.regionprops_table(labels, pjnk, properties=("label", "intensity_mean"))


def timed(function, items, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--against", help="also time measure_field of this git revision")
    args = parser.parse_args()
    pipeline = load_pipeline(ROOT / "pipelines" / "pjnk.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plate"
        folder.mkdir()
        pairs = make_fields(folder, args.fields, args.size)

        def full(pair):
            images = {"dapi": tifffile.imread(pair[0]), "pjnk": tifffile.imread(pair[1])}
            return measure_field(images, pipeline)

        rows = [
            ("floor: read + 1 Gaussian", timed(floor, pairs, repeats=2)),
            ("naive: Otsu + label + mean", timed(naive, pairs, repeats=2)),
            ("pipeline: measure_field, 1 process", timed(full, pairs)),
        ]
        for workers in args.workers:
            plan = plan_run(pipeline, folder)
            start = time.perf_counter()
            execute(plan, Path(tmp) / f"out{workers}", workers=workers)
            rows.append((f"batch: imaging run, {workers} worker(s)", time.perf_counter() - start))
        if args.against:
            stems = [str(pair[0])[: -len("_w1.tif")] for pair in pairs]
            own = time_measure_field(ROOT, stems, Path(tmp) / "tables")
            rows.append(("measure_field, this tree, own process", sum(own["times"])))
            with pinned_worktree(args.against, Path(tmp) / "code") as code:
                pinned = time_measure_field(code, stems, Path(tmp) / "pinned_tables")
            rows.append((f"measure_field at {args.against}, own process", sum(pinned["times"])))
    floor_rate = args.fields / rows[0][1]
    print(f"{args.fields} fields of {args.size} x {args.size} px, 2 channels (uint16)")
    print(f"{'step':40s} {'s/field':>9s} {'fields/s':>9s} {'x floor time':>13s}")
    for name, seconds in rows:
        rate = args.fields / seconds
        print(f"{name:40s} {seconds / args.fields:9.3f} {rate:9.3f} {floor_rate / rate:13.1f}")


if __name__ == "__main__":
    main()
