"""The run record (``OUT/run.json``): what goes into it for every assay (software versions,
file checksums) and reading it back with the pipeline that produced it."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

from imaging.config import parse_pipeline
from imaging.errors import InputError


def read_record(out_dir: str | Path) -> tuple[dict, object]:
    """``run.json`` of a run folder and its validated pipeline; InputError if it is not one."""
    out_dir = Path(out_dir)
    path = out_dir / "run.json"
    if not path.is_file():
        raise InputError("has no run.json", path=out_dir, fix="give the --out folder of an `imaging run`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"run.json is not valid JSON ({exc}): the run was interrupted or the file damaged",
            path=path,
            fix="re-run `imaging run` into this folder (completed fields are reused)",
        ) from None
    try:
        config = record["pipeline"]["config"]
    except (KeyError, TypeError):
        raise InputError(
            "run.json has no pipeline record",
            path=path,
            fix="re-run `imaging run` into this folder (completed fields are reused)",
        ) from None
    return record, parse_pipeline(config, source=path)


def software_versions() -> dict:
    """Versions of Python, the platform and the libraries that shape the numbers."""
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("imaging", "numpy", "scipy", "scikit-image", "pandas", "tifffile", "pydantic", "PyYAML", "edt"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def file_sha256(path: str | Path | None) -> str | None:
    """SHA-256 of a file given to a run (pipeline, plate map, sample sheet); None without one."""
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()
