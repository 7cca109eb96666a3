"""A pinned git revision checked out beside this tree, for benchmarks that compare the two in
one run (``versions.py``, ``same_tables.py``, ``segmentation.py --against``,
``throughput.py --against``), the environment that runs code from it in a subprocess, and
the timing of ``measure_field`` in such a process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def pinned_worktree(revision: str, folder: Path) -> Iterator[Path]:
    """``revision`` checked out (detached) at ``folder``, removed afterwards."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(folder), revision], cwd=ROOT, check=True, capture_output=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)


def code_environment(code_root: Path) -> dict[str, str]:
    """The environment that imports ``imaging`` from ``code_root``, on one thread."""
    return dict(os.environ, PYTHONPATH=str(code_root), **ONE_THREAD)


TIMER = r"""
import json, sys, time
from pathlib import Path
import numpy as np, tifffile
from imaging.config import load_pipeline
try:
    from imaging.plate.measure import measure_field
except ImportError:  # revisions before the run engine (imaging/pipeline.py)
    from imaging.pipeline import measure_field
try:  # the process set up as the tree's own workers set themselves up
    from imaging.run.workers import keep_freed_memory
    keep_freed_memory()
except ImportError:  # revisions from before this setting
    pass
pipeline = load_pipeline(sys.argv[1])
# the first call pays once per process for what later fields reuse (lazy imports, compiled
# kernels loaded from numba's cache): timed apart, so the per-field times are the steady ones
first = sys.argv[3]
started = time.perf_counter()
measure_field({"dapi": tifffile.imread(first + "_w1.tif"), "pjnk": tifffile.imread(first + "_w2.tif")}, pipeline)
first_call = time.perf_counter() - started
times = []
for stem in sys.argv[3:]:
    images = {"dapi": tifffile.imread(stem + "_w1.tif"), "pjnk": tifffile.imread(stem + "_w2.tif")}
    started = time.perf_counter()
    result = measure_field(images, pipeline)
    times.append(time.perf_counter() - started)
    result.cells.to_csv(Path(sys.argv[2]) / (Path(stem).name + ".csv"), index=False)
print(json.dumps({"times": times, "first_call": first_call}))
"""


def time_measure_field(code_root: Path, stems: list[str], tables: Path) -> dict:
    """``measure_field`` with ``pipelines/pjnk.yaml`` of the code at ``code_root`` on each field
    ``<stem>_w1.tif`` (DAPI) + ``<stem>_w2.tif`` (pJNK), in its own one-thread process: the
    seconds per field after a first, separately timed call on the first field
    (``first_call``), and each field's cells table written to ``tables``."""
    tables.mkdir()
    output = subprocess.run(
        [sys.executable, "-c", TIMER, str(code_root / "pipelines" / "pjnk.yaml"), str(tables), *stems],
        env=code_environment(code_root),
        capture_output=True,
        text=True,
        cwd=code_root,
    )
    if output.returncode != 0:  # a pinned revision may need a package this tree dropped (5c8cd2a: edt)
        last = (output.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"measure_field of the code at {code_root} failed: {last}")
    return json.loads(output.stdout.strip().splitlines()[-1])
