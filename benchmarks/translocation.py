"""NF-kB translocation on the real BBBC014 well pair (development data): N/C separation and
a within-well Z'.

Runs a translocation pipeline (nuclei on DAPI, cells expanded, compartment intensities of the
NF-kB channel; ``pipelines/translocation.yaml``'s settings) on the stimulated (A01) and
unstimulated (A12) wells of ``../shared/data/translocation_dev_bbbc014`` and prints one table,
all rows from the same run. The shipped pipeline's settings first, then one change at a time
(background subtraction, cytoplasm ring width in nucleus radii, border cells, reporter gate,
illumination): per well the cells used, the
median per-cell N/C ratio, the fold between the wells' medians, and a **tile Z'**: each field is
cut into a 3 x 3 grid of tiles, cells are assigned to tiles by centroid, and Z' = 1 - 3 (sd_A01 +
sd_A12) / |mean_A01 - mean_A12| is computed over the 9 tiles per well, for the tiles' median
and mean N/C. Two wells give no plate Z' (that needs replicate control wells); the tile Z'
measures what a plate Z' suffers from within a field: vignetting, uneven background, cell
density. The data's README gives an independent check: median ratio 2.68 (A01) and 0.95 (A12).

Illumination ``estimate`` from two fields is below the tool's 10-field minimum (the run warns):
its row shows what happens, not what a plate gets.

Usage: ``python benchmarks/translocation.py [--data ../shared/data/translocation_dev_bbbc014]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from imaging.config import load_pipeline, parse_pipeline
from imaging.plate import execute, plan_run
from imaging.plate.tables import readout_cells

ROOT = Path(__file__).resolve().parents[1]
PATTERN = r"Channel ?(?P<channel>\d)-\d+-(?P<row>[A-H])-(?P<column>\d+)(?:-\d+)?\.(?:tif|tiff|bmp|BMP)"  # the README's
TILES = 3


SHIPPED = {"background": "none", "ring": 0.3, "border_out": True, "gate": True, "illumination": "none"}
VARIANTS = [
    {},
    {"background": "local"},
    {"ring": 0.5},
    {"ring": 1.0},
    {"border_out": False},
    {"gate": False},
    {"illumination": "estimate"},
]


def pipeline(setting: dict):
    """The shipped translocation pipeline with this data's channels and names and one setting."""
    data = load_pipeline(ROOT / "pipelines" / "translocation.yaml").model_dump(mode="json", exclude_none=True)
    data["channels"] = {"nfkb": {"id": "1"}, "dapi": {"id": "2"}}
    data["naming"] = {"preset": "regex", "pattern": PATTERN}
    data["comparison"] = {}
    data["calls"] = []
    data["illumination"] = {"method": setting["illumination"]}
    data["cells"]["expansion_factor"] = setting["ring"]
    data["measure"]["intensity"] = [{"channel": "nfkb", "background": setting["background"]}]
    data["qc"]["exclude_border_cells"] = setting["border_out"]
    data["qc"].pop("reporter_gate", None)
    if setting["gate"]:
        data["qc"]["reporter_gate"] = {"column": "nfkb_cell_mean", "threshold": "auto"}
    return parse_pipeline(data)


def tile_z_prime(cells: pd.DataFrame, shape: tuple[int, int], statistic: str) -> float:
    tile_r = (cells["centroid_row"] // (shape[0] / TILES)).astype(int)
    tile_c = (cells["centroid_col"] // (shape[1] / TILES)).astype(int)
    per_tile = cells.assign(tile=tile_r * TILES + tile_c).groupby(["well", "tile"])["nfkb_nc_ratio"].agg(statistic)
    high, low = per_tile.loc["A01"], per_tile.loc["A12"]
    return 1 - 3 * (high.std() + low.std()) / abs(high.mean() - low.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "translocation_dev_bbbc014"))
    args = parser.parse_args()
    shape = (1024, 1360)
    shipped = load_pipeline(ROOT / "pipelines" / "translocation.yaml")
    assert shipped.cells.expansion_factor == SHIPPED["ring"] and shipped.qc.exclude_border_cells
    rows = []
    for change in VARIANTS:
        setting = SHIPPED | change
        with tempfile.TemporaryDirectory() as tmp:
            execute(plan_run(pipeline(setting), args.data), tmp, workers=1)
            plate = next(p for p in Path(tmp).iterdir() if p.is_dir() and (p / "cells.csv").is_file())
            cells = readout_cells(pd.read_csv(plate / "cells.csv"), pipeline(setting))  # the cells the wells use
        cells = cells.dropna(subset=["nfkb_nc_ratio"])
        medians = cells.groupby("well")["nfkb_nc_ratio"].median()
        rows.append(
            {
                "setting": ", ".join(f"{k}={v}" for k, v in change.items()) or "shipped pipeline",
                "cells_A01": int((cells["well"] == "A01").sum()),
                "cells_A12": int((cells["well"] == "A12").sum()),
                "nc_A01": medians["A01"],
                "nc_A12": medians["A12"],
                "fold": medians["A01"] / medians["A12"],
                "tile_z_median": tile_z_prime(cells, shape, "median"),
                "tile_z_mean": tile_z_prime(cells, shape, "mean"),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
