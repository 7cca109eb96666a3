"""Illumination correction on a plate of identical cells under uneven light (made here).

16 fields of 40 identical nuclei each (random places, some cut by the edge) under an
off-centre fall-off of 45 %, written as a plate (`tests/features/test_illumination.py`'s
generator). One table, all rows from one run: for ``illumination.method`` none, estimate and
files (the true flat-field given as a CellProfiler-style ``.npy``), the cell-to-cell
coefficient of variation of the nuclear reporter mean (the cells are identical, so the light is
all that varies it), the flat-field's largest relative error, and seconds per field.

Usage: ``python benchmarks/illumination.py``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imaging.plate import execute, plan_run  # noqa: E402
from tests.features.test_illumination import lighting, pipeline, write_plate  # noqa: E402  (the plate generator)


def main() -> None:
    rows = []
    truth = lighting()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        write_plate(images, np.random.default_rng(2), truth, n_fields=16)
        np.save(tmp / "flat.npy", truth * 7.0)
        settings = {
            "none": {"method": "none"},
            "estimate": {"method": "estimate"},
            "files (true flat)": {"method": "files", "files": {"dapi": "flat.npy", "rep": "flat.npy"}},
        }
        for name, setting in settings.items():
            path = tmp / f"{name.split()[0]}.yaml"
            path.write_text(pipeline(illumination=setting).to_yaml())
            started = time.perf_counter()
            result = execute(plan_run(path, images), tmp / name.split()[0], workers=1)
            seconds = (time.perf_counter() - started) / 16
            cells = pd.read_csv(tmp / name.split()[0] / "P1" / "cells.csv")
            values = cells.loc[~cells["touches_border"], "rep_nuclear_mean"]
            entry = result.record["plates"]["P1"]["illumination"]
            error = np.nan
            if entry:
                flat = tifffile.imread(tmp / name.split()[0] / entry["channels"]["rep"]["flat_file"])
                error = float(np.abs(flat / truth - 1).max())
            rows.append(
                {
                    "illumination": name,
                    "cells": len(values),
                    "cv_nuclear_mean": values.std() / values.mean(),
                    "flat_max_rel_error": error,
                    "s_per_field": seconds,
                }
            )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
