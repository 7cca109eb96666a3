"""Percent positive per well against the truth: hard calls vs the mixture estimate.

Generates ``--plates`` synthetic SA-beta-gal plates (imaging.synthetic, seeds 100, 101, ...),
runs ``pipelines/sabgal.yaml`` on each, and prints one table, all rows from the same run: for
``sabgal_positive_pct`` (hard calls) and ``sabgal_positive_pct_mixture`` the mean absolute
error, the mean error (bias) and the share of wells within 5 points of the true percentage.

Usage: ``python benchmarks/percent_positive.py [--plates 4] [--workers 2]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from imaging.plate import execute, plan_run
from imaging.synthetic import make_plate

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "sabgal.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plates", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    wells = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.plates):
            folder = Path(tmp) / f"plate{index}"
            paths = make_plate(folder, assay="sabgal", seed=100 + index, plate=f"S{index}")
            result = execute(
                plan_run(PIPELINE, paths["images"], platemap=paths["platemap"]), folder / "out", workers=args.workers
            )
            wells.append(result.wells[f"S{index}"].merge(pd.read_csv(paths["truth_wells"]), on=["plate", "well"]))
    table = pd.concat(wells, ignore_index=True)
    print(f"{len(table)} wells of {args.plates} synthetic SA-beta-gal plates")
    print(f"{'estimate':<30} {'MAE':>6} {'bias':>6} {'within 5':>9}")
    for column in ("sabgal_positive_pct", "sabgal_positive_pct_mixture"):
        error = table[column] - table["true_sabgal_positive_pct"]
        print(f"{column:<30} {error.abs().mean():>6.2f} {error.mean():>6.2f} {100 * (error.abs() <= 5).mean():>8.0f}%")


if __name__ == "__main__":
    main()
