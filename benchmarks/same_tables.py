"""Are the tables byte-identical to a pinned revision's? (refactors must not change numbers)

Runs every shipped pipeline on the shipped samples (`imaging demo`'s inputs: the SA-beta-gal
and pJNK plates, the IHC cores, the lung sections) with this checkout and with a pinned git
revision (checked out into a temporary worktree), in the same environment, and compares
every table each run writes, byte for byte. Prints one row per table and exits 1 if any
differs.

Usage: ``python benchmarks/same_tables.py [--against c26739a]``
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from _revisions import ROOT, code_environment, pinned_worktree

SAMPLES = ROOT / "sample_images"
RUNS = {  # name: (pipeline, input, extra arguments)
    "sabgal": ("sabgal.yaml", "sabgal_plate/images", ["--platemap", "sabgal_plate/platemap.csv"]),
    "pjnk": ("pjnk.yaml", "pjnk_plate/images", ["--platemap", "pjnk_plate/platemap.csv"]),
    "ihc": ("ihc_hscore.yaml", "tissue/ihc", []),
    "ihc_cytoplasmic": ("ihc_cytoplasmic.yaml", "tissue/ihc_cytoplasmic", []),
    "mhcii": ("mhcii_density.yaml", "tissue/ihc_cytoplasmic", []),
    "metastasis": ("metastasis.yaml", "tissue/sections", ["--samples", "tissue/sections_samples.csv"]),
}
TABLE_SUFFIXES = (".csv",)
NOT_COMPARED = {"run.json", "curation.csv"}  # times and paths differ by design


def run_all(source: Path, out: Path) -> dict[str, str]:
    """Every run of RUNS with the code in ``source``; SHA-256 of each table, by relative path."""
    environment = code_environment(source)
    digests = {}
    for name, (pipeline, inputs, extra) in RUNS.items():
        arguments = [str(SAMPLES / a) if a.endswith(".csv") else a for a in extra]
        command = [
            sys.executable,
            "-m",
            "imaging.cli",
            "run",
            str(source / "pipelines" / pipeline),
            str(SAMPLES / inputs),
            "--out",
            str(out / name),
            "--workers",
            "2",
            *arguments,
        ]
        subprocess.run(command, check=True, env=environment, cwd=source, stdout=subprocess.DEVNULL)
        for path in sorted((out / name).rglob("*")):
            if path.suffix in TABLE_SUFFIXES and path.name not in NOT_COMPARED and ".fields" not in path.parts:
                digests[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="c26739a", help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        with pinned_worktree(args.against, scratch / "baseline") as worktree:
            baseline = run_all(worktree, scratch / "baseline_out")
            current = run_all(ROOT, scratch / "current_out")
    print(f"{'table':55} {args.against:>12} {'this tree':>12}  same")
    differing = 0
    for name in sorted(set(baseline) | set(current)):
        a, b = baseline.get(name, "-"), current.get(name, "-")
        differing += a != b
        print(f"{name:55} {a[:12]:>12} {b[:12]:>12}  {'yes' if a == b else 'NO'}")
    print(f"{len(current)} tables, {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
