"""The run record (``OUT/run.json``): what goes into it for every assay (software versions,
file checksums) and reading it back with the pipeline that produced it."""

from __future__ import annotations

import datetime as dt
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
    for package in ("imaging", "numpy", "scipy", "scikit-image", "pandas", "tifffile", "pydantic", "PyYAML", "numba"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def run_record(pipeline, pipeline_path: str | Path | None, *, started: dt.datetime, command: list[str] | None) -> dict:
    """The entries of ``run.json`` every assay writes: versions, times, command and the pipeline
    (its file's checksum and the validated configuration, which :func:`read_record` reads back).

    Parameters
    ----------
    pipeline : Pipeline or TissuePipeline
    pipeline_path : str or Path, optional
        Its YAML file (checksummed), None for a pipeline built in code.
    started : datetime
        When the run began (UTC); ``finished`` is now.
    command : list of str, optional

    Returns
    -------
    dict
    """
    software = software_versions()
    return {
        "imaging_version": software["imaging"],
        "created": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "software": software,
        "pipeline": {
            "path": str(pipeline_path) if pipeline_path else None,
            "sha256": file_sha256(pipeline_path),
            "config": pipeline.model_dump(mode="json"),
        },
    }


def content_digest(path: str | Path) -> str:
    """BLAKE3 of an input's bytes (a local file or URL, or every file under a local folder
    such as a Zarr store, each with its relative path): what content fingerprints
    (:func:`content_fingerprint`) hold of the images they cover.

    BLAKE3, not SHA-256 (which run.json's provenance checksums keep, :func:`file_sha256`):
    a 2048 px two-channel field's 16 MB in 2.5 ms against 16 ms here, on one thread, which
    every field of a run pays and a rerun that reuses them all pays again for nothing else.

    Parameters
    ----------
    path : str or Path
        The input.

    Returns
    -------
    str
        64 hex digits.
    """
    from blake3 import blake3

    from imaging.io import files

    digest = blake3()
    target = Path(path)
    folder = not files.is_url(path) and target.is_dir()
    for part in sorted(p for p in target.rglob("*") if p.is_file()) if folder else [path]:
        if folder:
            digest.update(part.relative_to(target).as_posix().encode())
        _hash_bytes_of(part, digest)
    return digest.hexdigest()


def _hash_bytes_of(path: str | Path, digest) -> None:
    """Feed a file's bytes (local or URL) to a hashlib-style ``digest``, 4 MB at a time (slides
    are large)."""
    from imaging.io import files

    with files.open_binary(path) as handle:
        while block := handle.read(1 << 22):
            digest.update(block)


def content_fingerprint(payload: dict) -> str:
    """SHA-256 of everything a unit's result depends on (a JSON-able ``payload``, keys sorted):
    the one fingerprint rule of resumable runs (plate fields, tissue images). A stored result
    whose fingerprint equals the new one is reused."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_seal(path: str | Path) -> dict:
    """Size and SHA-256 of a file a unit wrote, kept in its stored summary: a stored result
    whose files were changed or damaged after the fact is not reused."""
    path = Path(path)
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def file_sealed(path: str | Path, seal: dict | None) -> bool:
    """Whether ``path`` is still the file ``seal`` (:func:`file_seal`) was taken of."""
    path = Path(path)
    if not seal or not path.is_file() or path.stat().st_size != seal.get("bytes"):
        return False
    return file_seal(path) == seal


def file_sha256(path: str | Path | None) -> str | None:
    """SHA-256 of a local file; None without one."""
    if path is None:
        return None
    digest = hashlib.sha256()
    _hash_bytes_of(path, digest)
    return digest.hexdigest()
