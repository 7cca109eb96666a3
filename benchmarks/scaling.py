"""Fields per second and peak memory per worker, at 1, 2 and N workers, for a plate of
2048 x 2048 two-channel fields, against a floor measured in the same run.

Rows (same files, same run):

- ``floor``: read both channels of every field and one Gaussian pass, one process;
- ``imaging run`` with 1 worker, and with local processes and a Dask LocalCluster at 2..N
  workers (N = CPUs): fields per second of the whole run (tables, QC and record included)
  and the largest peak resident memory of any worker.

Then a sizing table for a 384-well x 9-site plate (3,456 fields).

Usage: python benchmarks/scaling.py [--fields 12] [--size 2048]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from imaging.config import load_pipeline
from imaging.plate import execute, plan_run
from imaging.run.workers import default_workers, keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
PLATE_FIELDS = 384 * 9


def make_plate(folder: Path, n_fields: int, size: int) -> None:
    from imaging.synthetic import derive_cell_truth, place_nuclei, render_dapi, render_pjnk, vignetting

    rng = np.random.default_rng(0)
    for i in range(n_fields):
        nuclei = place_nuclei((size, size), radius=10, density=0.2, rng=rng)
        cells = derive_cell_truth(nuclei, radius=10, rng=rng)
        n = int(nuclei.max())
        light = vignetting((size, size), strength=0.3, rng=rng)
        well = f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}"
        tifffile.imwrite(folder / f"SCALE_{well}_s1_w1.tif", render_dapi(nuclei, rng=rng, illumination=light))
        tifffile.imwrite(
            folder / f"SCALE_{well}_s1_w2.tif",
            render_pjnk(nuclei, cells, np.full(n, 500.0), np.full(n, 150.0), rng=rng, illumination=light),
        )


def floor(folder: Path) -> float:
    start = time.perf_counter()
    for path in sorted(folder.glob("*_w1.tif")):
        dapi = tifffile.imread(path)
        tifffile.imread(str(path).replace("_w1.tif", "_w2.tif"))
        ndi.gaussian_filter(dapi.astype(np.float32), 1.0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=12)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    keep_freed_memory()  # the 1-worker run is this process: set up as the imaging command sets up its own
    pipeline = load_pipeline(ROOT / "pipelines" / "pjnk.yaml")
    cpus = default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plate"
        folder.mkdir()
        make_plate(folder, args.fields, args.size)
        plan = plan_run(pipeline, folder)
        rows = [("floor: read 2 channels + 1 Gaussian", 1, floor(folder), None)]
        settings = [("imaging run", 1, None)]
        for workers in sorted({2, cpus}):
            settings += [
                ("imaging run, local processes", workers, None),
                ("imaging run, Dask LocalCluster", workers, "local"),
            ]
        for name, workers, scheduler in settings:
            out = Path(tmp) / f"out_{name[-5:]}_{workers}"
            start = time.perf_counter()
            result = execute(plan, out, workers=workers, scheduler=scheduler)
            rows.append((name, workers, time.perf_counter() - start, result.record["worker_peak_rss_mb"]))
    floor_rate = args.fields / rows[0][2]
    print(f"{args.fields} fields of {args.size} x {args.size} px, 2 channels (uint16); {cpus} CPUs")
    print(f"{'run':36s} {'workers':>7s} {'fields/s':>9s} {'x floor time':>13s} {'peak MB/worker':>15s}")
    for name, workers, seconds, peak in rows:
        rate = args.fields / seconds
        print(f"{name:36s} {workers:7d} {rate:9.3f} {floor_rate / rate:13.1f} {peak or float('nan'):15.0f}")
    single = args.fields / rows[1][2]
    best = max((args.fields / r[2], r[1]) for r in rows[2:])
    efficiency = best[0] / (single * best[1])
    print(
        f"\n384-well x 9-site plate ({PLATE_FIELDS} fields): one worker does {single:.3f} fields/s; "
        f"parallel efficiency at {best[1]} workers {efficiency:.2f}"
    )
    print(f"{'target time':>12s} {'workers needed':>15s}")
    for minutes in (240, 120, 60, 30, 15):
        needed = math.ceil(PLATE_FIELDS / (single * efficiency * minutes * 60))
        print(f"{minutes:9d} min {needed:15d}")


if __name__ == "__main__":
    main()
