"""Per-field time of this tree against an earlier commit, on the same fields in the same run.

Writes ``--fields`` synthetic 2048 x 2048 two-channel pJNK fields (dense, touching nuclei),
then times ``imaging.plate.measure.measure_field`` with ``pipelines/pjnk.yaml`` on each, first with
the code of ``--base`` (checked out with ``git worktree`` into a temporary folder), then with
this tree, each in its own process with one thread. Prints one table: seconds per field
(median), the ratio to the base, and for how many fields the cells tables are equal in every
column both versions write (to float rounding).

Usage: ``python benchmarks/versions.py --base 9783a6f [--fields 4] [--size 2048]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _revisions import ROOT, pinned_worktree, time_measure_field


def make_fields(folder: Path, n: int, size: int) -> list[str]:
    import numpy as np
    import tifffile

    from imaging.synthetic import derive_cell_truth, place_nuclei, render_dapi, render_pjnk

    stems = []
    rng = np.random.default_rng(0)
    for i in range(n):
        nuclei = place_nuclei((size, size), radius=9, density=0.3, rng=rng)
        cells = derive_cell_truth(nuclei, radius=9, rng=rng)
        flat = np.ones((size, size))
        count = int(nuclei.max())
        dapi = render_dapi(nuclei, rng=rng, illumination=flat)
        pjnk = render_pjnk(
            nuclei, cells, rng.lognormal(6, 0.3, count), rng.lognormal(5, 0.3, count), rng=rng, illumination=flat
        )
        stem = str(folder / f"field{i}")
        tifffile.imwrite(stem + "_w1.tif", dapi)
        tifffile.imwrite(stem + "_w2.tif", pjnk)
        stems.append(stem)
    return stems


def same_cells(base_dir: Path, current_dir: Path, name: str) -> bool:
    """Equal values (to 1e-9 relative: float rounding) in every column both versions write
    (a newer version may add columns)."""
    import numpy as np
    import pandas as pd

    base = pd.read_csv(base_dir / f"{name}.csv")
    current = pd.read_csv(current_dir / f"{name}.csv")
    shared = [c for c in base.columns if c in current.columns]
    if base.shape[0] != current.shape[0]:
        return False
    return all(
        np.allclose(base[c].to_numpy(float), current[c].to_numpy(float), rtol=1e-9, atol=0, equal_nan=True)
        for c in shared
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git commit or tag to compare against")
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stems = make_fields(tmp, args.fields, args.size)
        with pinned_worktree(args.base, tmp / "base") as worktree:
            base = time_measure_field(worktree, stems, tmp / "base_tables")
        current = time_measure_field(ROOT, stems, tmp / "tables")
        base["same"] = current["same"] = 0
        for stem in stems:
            base["same"] += 1
            current["same"] += int(same_cells(tmp / "base_tables", tmp / "tables", Path(stem).name))
    import numpy as np

    base_median = float(np.median(base["times"]))
    print(f"{args.fields} fields of {args.size} x {args.size} px, 2 channels, pipelines/pjnk.yaml, one thread")
    print(f"{'code':<22} {'s/field':>8} {'x base':>7}  cells equal to base")
    for name, result in ((f"base {args.base}", base), ("this tree", current)):
        median = float(np.median(result["times"]))
        print(f"{name:<22} {median:>8.2f} {median / base_median:>7.2f}  {result['same']} of {args.fields}")


if __name__ == "__main__":
    main()
