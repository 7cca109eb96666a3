"""Field throughput of the pJNK pipeline on 2048 x 2048 two-channel fields.

Prints one table, all rows measured in the same run on the same files, each a steady time per
field: the first ``measure_field`` call of a process (lazy imports, the compiled kernels of
:mod:`imaging.kernels` loaded from numba's cache, or compiled on a machine's first run) is
timed apart and printed below the table.

- ``floor``: read both channels and one Gaussian pass (the least any analysis does);
- ``naive``: read, Otsu threshold of DAPI, connected components, mean pJNK per object
  (a typical one-line Fiji macro: no declumping, background, cells or QC);
- ``pipeline``: :func:`imaging.plate.measure.measure_field` with ``pipelines/pjnk.yaml``;
- ``pipeline, N threads``: the same with ``threads=N`` (tiles of the image-wide steps on
  threads, :mod:`imaging.tiles`; the same numbers), for each ``--threads`` above 1;
- ``batch, N workers``: ``imaging run`` end to end (tables, QC, run record) over the plate,
  after a run of a one-field plate, timed apart and printed below the table (imports a
  plate of thousands of fields pays once);
- with ``--against REV``: ``measure_field`` of this tree and of a pinned git revision, each in
  its own one-thread process on the same fields (``_revisions.time_measure_field``), so the
  speed-up is read off one run, and the two cells tables of each field compared byte for byte;
- with ``--cellprofiler EXE``: headless CellProfiler 4.2.8 running a comparable pJNK pipeline
  (``--cellprofiler-pipeline``, default ``../shared/cellprofiler/pjnk.cppipe``: nuclei on DAPI,
  cells by propagation on pJNK, cytoplasm, intensities, image quality, spreadsheets) on the same
  files in one process: the whole run (start-up included) and the sum of its modules'
  ``ExecutionTime`` columns, with the process's peak memory. ``../shared/cellprofiler/setup_cp.sh``
  builds it (about 15 minutes; never in tests).

Usage: ``python benchmarks/throughput.py [--fields 8] [--size 2048] [--workers 1 2] [--threads 2] [--against REV]
[--cellprofiler /tmp/cpenv/bin/cellprofiler]``
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from _revisions import ROOT, pinned_worktree, time_measure_field
from scipy import ndimage as ndi
from skimage import filters, measure

from imaging.config import load_pipeline
from imaging.plate import execute, plan_run
from imaging.plate.measure import measure_field
from imaging.run.workers import keep_freed_memory
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


DEFAULT_CELLPROFILER_PIPELINE = ROOT.parent / "shared" / "cellprofiler" / "pjnk.cppipe"


def run_cellprofiler(executable: str, pipeline: Path, folder: Path, out: Path) -> dict:
    """Run headless CellProfiler on every field of ``folder`` in one process; its wall time,
    the summed ``ExecutionTime_*`` of its modules (the analysis without start-up), its peak
    memory (MB) and how many image sets it measured."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [executable, "-c", "-r", "-p", str(pipeline), "-i", str(folder), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not every child's
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"CellProfiler exited with status {process.returncode}")
    images = pd.read_csv(next(out.rglob("*Image.csv")))
    modules = [column for column in images.columns if column.startswith("ExecutionTime_")]
    peak_mb = usage.ru_maxrss / 1024  # kB on Linux
    return {"wall": wall, "modules": float(images[modules].to_numpy().sum()), "peak_mb": peak_mb, "n": len(images)}


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
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="threads per field for extra rows")
    parser.add_argument("--against", help="also time measure_field of this git revision")
    parser.add_argument("--cellprofiler", help="a headless CellProfiler 4.2.8 executable (see module docstring)")
    parser.add_argument("--cellprofiler-pipeline", type=Path, default=DEFAULT_CELLPROFILER_PIPELINE)
    args = parser.parse_args()
    keep_freed_memory()  # this process measures fields as imaging's own processes do
    pipeline = load_pipeline(ROOT / "pipelines" / "pjnk.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plate"
        folder.mkdir()
        pairs = make_fields(folder, args.fields, args.size)

        def full(pair, threads=1):
            images = {"dapi": tifffile.imread(pair[0]), "pjnk": tifffile.imread(pair[1])}
            return measure_field(images, pipeline, threads=threads)

        # once per process: lazy imports and the compiled kernels loaded (or, the first time
        # on a machine, compiled): reported apart, so the rows are per-field steady times
        first_call = timed(full, pairs[:1])
        rows = [
            ("floor: read + 1 Gaussian", timed(floor, pairs, repeats=2)),
            ("naive: Otsu + label + mean", timed(naive, pairs, repeats=2)),
            ("pipeline: measure_field, 1 process", timed(full, pairs)),
        ]
        for threads in (t for t in args.threads if t > 1):
            rows.append(
                (f"pipeline: measure_field, {threads} threads", timed(functools.partial(full, threads=threads), pairs))
            )
        # once per process, as a plate of thousands of fields pays it: the table writers' and
        # the threshold fit's imports (pyarrow, scipy.stats), on a plate of one field
        warm_folder = Path(tmp) / "warm_plate"
        warm_folder.mkdir()
        for path in pairs[0]:
            os.link(path, warm_folder / path.name)
        start = time.perf_counter()
        execute(plan_run(pipeline, warm_folder), Path(tmp) / "warm_out", workers=1)
        first_run = time.perf_counter() - start
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
            first_calls = f"; in their own processes: this tree {own['first_call']:.2f} s, {args.against} {pinned['first_call']:.2f} s"
            same = sum(
                (Path(tmp) / "tables" / name).read_bytes() == (Path(tmp) / "pinned_tables" / name).read_bytes()
                for name in (Path(stem).name + ".csv" for stem in stems)
            )
            first_calls += f"\ncells tables of this tree and {args.against}: {same} of {len(stems)} byte-identical"
        else:
            first_calls = ""
        cellprofiler = None
        if args.cellprofiler:
            cellprofiler = run_cellprofiler(args.cellprofiler, args.cellprofiler_pipeline, folder, Path(tmp) / "cp")
            if cellprofiler["n"] != args.fields:
                raise SystemExit(f"CellProfiler measured {cellprofiler['n']} image sets, not {args.fields}")
            rows.append(("CellProfiler 4.2.8: modules' time", cellprofiler["modules"]))
            rows.append(("CellProfiler 4.2.8: whole run, 1 process", cellprofiler["wall"]))
    floor_rate = args.fields / rows[0][1]
    print(f"{args.fields} fields of {args.size} x {args.size} px, 2 channels (uint16)")
    print(f"{'step':40s} {'s/field':>9s} {'fields/s':>9s} {'x floor time':>13s}")
    for name, seconds in rows:
        rate = args.fields / seconds
        print(f"{name:40s} {seconds / args.fields:9.3f} {rate:9.3f} {floor_rate / rate:13.1f}")
    print(f"first measure_field call (imports, compiled kernels), before the rows: {first_call:.2f} s{first_calls}")
    print(
        f"first imaging run, of a one-field plate (the table writers' imports), before the batch rows: {first_run:.2f} s"
    )
    if cellprofiler is not None:
        pipeline_seconds = rows[2][1]
        print(
            f"CellProfiler peak memory {cellprofiler['peak_mb']:.0f} MB; measure_field is "
            f"{cellprofiler['modules'] / pipeline_seconds:.1f}x faster than its modules, "
            f"{cellprofiler['wall'] / pipeline_seconds:.1f}x than its whole run"
        )


if __name__ == "__main__":
    main()
