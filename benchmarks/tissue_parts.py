"""A whole section on several workers: scored as one unit, or in parts of tiles spread over
the workers, in the same run (same files either way).

One synthetic H-DAB section (``--size`` px square, tiled OME-TIFF, 1 um/px) scored with
2048 px tiles: first as one unit on one worker (how every image ran before parts), then in
parts on ``--workers`` local processes. Prints wall time per row, the speed-up and whether
the cells table, detections and report crops are byte-identical.

    python benchmarks/tissue_parts.py [--size 6144] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import tifffile

from imaging.run.engine import RunOptions, run_assay
from imaging.tissue.assay import TissueAssay
from imaging.tissue.plan import plan_tissue
from imaging.tissue.synthetic import make_ihc_image

PIPELINE = """\
schema_version: 1
mode: tissue
name: parts
pixel_size_um: 1.0
stains: {preset: hdab}
cells: {tile_px: 2048, nucleus_diameter_um: 12.0}
"""


def outputs(out: Path) -> dict[str, bytes]:
    names = ["cells.csv", "regions.csv", "detections/section.geojson"]
    names += sorted(str(p.relative_to(out)) for p in (out / "plots").glob("section_cells_*.png"))
    return {name: (out / name).read_bytes() for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6144)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        rgb, _ = make_ihc_image(size=args.size, n_nuclei=int(0.6 * args.size**2 / 1000), seed=1)
        (root / "images").mkdir()
        tifffile.imwrite(root / "images" / "section.ome.tif", rgb, tile=(512, 512), photometric="rgb")
        del rgb
        (root / "p.yaml").write_text(PIPELINE)
        plan = plan_tissue(root / "p.yaml", root / "images")
        n_tiles = (-(-args.size // 2048)) ** 2
        rows = []
        for name, assay, options in (
            ("one unit, 1 worker", TissueAssay(plan, tiles_per_part=n_tiles), RunOptions(workers=1)),
            (f"parts of 1 tile, {args.workers} workers", TissueAssay(plan, tiles_per_part=1), RunOptions(args.workers)),
        ):
            out = root / name.replace(" ", "_").replace(",", "")
            started = time.perf_counter()
            record = run_assay(assay, out, options).record
            rows.append((name, time.perf_counter() - started, record["images"][0]["ihc"]["n_cells"], outputs(out)))
    base = rows[0][1]
    print(f"section {args.size} x {args.size} px, {n_tiles} tiles of 2048 px")
    print(f"{'run':32s} {'s':>7s} {'x faster':>9s} {'cells':>7s}  same files")
    for name, seconds, n_cells, files in rows:
        print(f"{name:32s} {seconds:7.1f} {base / seconds:9.2f} {n_cells:7d}  {files == rows[0][3]}")


if __name__ == "__main__":
    main()
