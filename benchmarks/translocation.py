"""NF-kB translocation on the real BBBC014 well pair (development data): N/C separation.

Runs a pJNK-style pipeline (nuclei on DAPI, cells expanded, compartment intensities of the
NF-kB channel) on the stimulated (A01) and unstimulated (A12) wells of
``../shared/data/translocation_dev_bbbc014`` with ``background: local`` and ``none``, and
prints one table, all rows from the same run: per well the cell count, median and mean
per-cell N/C ratio and % of cells with N/C > 1, and per setting the fold between the wells'
median ratios. Two wells give no Z' (that needs replicate control wells); the data's README
gives an independent check instead: median ratio 2.68 (A01) and 0.95 (A12), 100 % and 44 % of
cells above 1.

Usage: ``python benchmarks/translocation.py [--data ../shared/data/translocation_dev_bbbc014]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from imaging.batch import execute, plan_run
from imaging.config import parse_pipeline

ROOT = Path(__file__).resolve().parents[1]
PATTERN = r"Channel (?P<channel>\d)-(?P<column>\d+)-(?P<row>[A-H])-\d+-\d+\.tif"


def pipeline(background: str):
    return parse_pipeline({
        "schema_version": 1, "name": "nfkb", "channels": {"nfkb": {"id": 1}, "dapi": {"id": 2}},
        "naming": {"preset": "regex", "pattern": PATTERN},
        "segmentation": {"method": "classical", "channel": "dapi"},
        "cells": {"method": "expand", "expansion_factor": 1.0},
        "measure": {"intensity": [{"channel": "nfkb", "background": background}]}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "translocation_dev_bbbc014"))
    args = parser.parse_args()
    rows = []
    for background in ("local", "none"):
        with tempfile.TemporaryDirectory() as tmp:
            execute(plan_run(pipeline(background), args.data), tmp, workers=1)
            plate = next(p for p in Path(tmp).iterdir() if p.is_dir() and (p / "cells.csv").is_file())
            cells = pd.read_csv(plate / "cells.csv")
        ratio = {well: group["nfkb_nc_ratio"].dropna().to_numpy() for well, group in cells.groupby("well")}
        fold = np.median(ratio["A01"]) / np.median(ratio["A12"])
        for well, values in ratio.items():
            rows.append({"background": background, "well": well, "n_cells": len(values),
                         "nc_median": np.median(values), "nc_mean": values.mean(),
                         "pct_nc_above_1": 100 * (values > 1).mean(), "median_fold_A01_vs_A12": fold})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
