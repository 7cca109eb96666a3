"""The ``--out`` folder of a run: one run at a time, one assay per folder, writable, tidy.

:func:`claimed` is held around everything that writes into a run folder (a plate or
tissue run, a rebuild of the tables after curation):

- it makes the folder, and turns "cannot write here" into an :class:`InputError` before any
  work is done;
- it takes an advisory lock (``fcntl.flock`` on ``OUT/.imaging.lock``). The operating system
  drops the lock when the holding process ends, also on ``kill -9``, so a killed run never
  leaves the folder locked; a second run while the first holds it is refused, naming the
  holder (process, host, start time, command);
- holding the lock, it removes the hidden ``.tmp-*`` files of the atomic writers
  (:mod:`imaging.io.writers`) that a killed run left behind: no live writer can own them.

:func:`check_same_assay` refuses a run into a folder that holds another assay's results
(another pipeline's channels or measurements), which would leave two assays' tables side by
side under one ``run.json``.

Viewer layers made from a run folder carry it in their metadata under :data:`SOURCE_KEY`;
:func:`source_of` finds it again, so a dock opened after the reader knows which run it shows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from imaging.errors import InputError
from imaging.io.writers import TEMPORARY_PREFIX

LOCK_FILE = ".imaging.lock"
SOURCE_KEY = "imaging_source"  # viewer layer metadata: {"folder": the run or plate folder opened}

NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _holder_description(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return "another imaging run"
    command = " ".join(holder.get("command") or []) or "?"
    return (
        f"another imaging run (process {holder.get('pid')} on {holder.get('host')}, started "
        f"{holder.get('started')}: {command})"
    )


def remove_stale_temporaries(out_dir: Path) -> int:
    """Remove the atomic writers' leftover temporary files under ``out_dir``; returns how many.

    Only safe while holding the folder's lock (every writer into the folder holds it)."""
    import shutil

    removed = 0
    for path in list(out_dir.rglob(f"{TEMPORARY_PREFIX}*")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
        elif path.is_dir():  # a folder-shaped output (OME-Zarr) a killed run left half-written
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _make_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", path=out_dir, fix="choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create the output folder ({exc.strerror})", path=out_dir, fix="choose an --out where you may write"
        ) from None


@contextlib.contextmanager
def claimed(out_dir: str | Path, *, command: list[str] | None = None) -> Iterator[Path]:
    """Hold ``out_dir`` for one run (see module docstring); yields the folder."""
    import fcntl

    out_dir = Path(out_dir)
    _make_folder(out_dir)
    lock_path = out_dir / LOCK_FILE
    try:
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise InputError(
            f"cannot write in the output folder ({exc.strerror})",
            path=out_dir,
            fix="choose an --out where you may write, or fix its permissions",
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"is in use by {_holder_description(lock_path)}",
                path=out_dir,
                fix="wait for that run to finish, or choose another --out",
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        handle.truncate(0)
        handle.write(json.dumps(holder))
        handle.flush()
        remove_stale_temporaries(out_dir)
        try:
            yield out_dir
        finally:
            handle.truncate(0)  # the lock itself goes with the handle
            fcntl.flock(handle, fcntl.LOCK_UN)


def assay_identity(config: dict) -> dict:
    """What makes two pipelines (``model_dump`` of either kind) the same assay: a tuned
    threshold, segmentation or QC rule may share a folder; other channels, other measurements
    or other stains need their own."""
    if config.get("mode") == "tissue":
        return {
            "mode": "tissue",
            "stains": config.get("stains"),
            "scores": sorted(k for k in ("cells", "lesions") if config.get(k) is not None),
        }
    return {"mode": "plate", "channels": config.get("channels"), "measure": config.get("measure")}


def check_same_assay(out_dir: str | Path, config: dict) -> None:
    """InputError if ``out_dir`` holds the results of another assay (see module docstring).

    The recorded pipeline is read back with this version's models (``record.read_record``),
    so settings added since carry their defaults and an upgrade alone is not another assay."""
    from imaging.run.record import read_record

    if not (Path(out_dir) / "run.json").is_file():
        return
    _, previous = read_record(out_dir)
    previous_config = previous.model_dump(mode="json")
    if assay_identity(previous_config) != assay_identity(config):
        name = previous_config.get("name") or "another pipeline"
        raise InputError(
            f"holds the results of {name!r}, which measures other channels or readouts than {config.get('name')!r}",
            path=out_dir,
            fix="give each assay its own --out (a re-run with tuned thresholds or segmentation may share it)",
        )


def disk_error(exc: OSError, *, needed_bytes: int | None = None) -> InputError | None:
    """The one-line input error for a full disk or an unwritable place (None for other errors)."""
    where = exc.filename or "the output folder"
    if exc.errno in NO_SPACE:
        folder = Path(where).parent if exc.filename else Path(".")
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free"
        except OSError:
            free = "free space unknown"
        needed = f", about {needed_bytes / 1e6:.0f} MB more needed" if needed_bytes else ""
        return InputError(
            f"the disk is full ({free}{needed})",
            path=where,
            fix="free space or choose an --out on another disk; completed work is kept and reused by the next run",
        )
    if exc.errno in NOT_WRITABLE:
        return InputError(
            f"cannot be written ({exc.strerror})",
            path=where,
            fix="choose an --out where you may write, or fix its permissions",
        )
    return None


LABEL_SUFFIXES = {
    "tiff": ("_{kind}.tif",),
    "ome-zarr": ("_{kind}.ome.zarr",),
    "both": ("_{kind}.tif", "_{kind}.ome.zarr"),
}


def field_label_paths(labels_dir: str | Path, key: str, label_format: str = "tiff") -> dict[str, tuple[Path, ...]]:
    """Where a field's label images go (``OUT/<plate>/labels/<key>_nuclei.tif``, and/or
    ``.ome.zarr``), for ``nuclei`` and ``cells``, in the order they are read back (TIFF first)."""
    return {
        kind: tuple(Path(labels_dir) / (key + suffix.format(kind=kind)) for suffix in LABEL_SUFFIXES[label_format])
        for kind in ("nuclei", "cells")
    }


def layer_source(folder: str | Path, *, kind: str, **details) -> dict:
    """Metadata for a viewer layer made from ``folder``, a ``kind`` ("plate" or "tissue") of
    run (see :func:`source_of`)."""
    return {SOURCE_KEY: {"folder": str(folder), "kind": kind, **details}}


def source_of(layers, *, kind: str) -> Path | None:
    """The folder of the most recently added layer made from a ``kind`` of run, among viewer
    layers (anything with a ``metadata`` mapping); None when no layer names one."""
    for layer in reversed(list(layers)):
        source = (getattr(layer, "metadata", None) or {}).get(SOURCE_KEY)
        if isinstance(source, dict) and source.get("kind") == kind and source.get("folder"):
            return Path(source["folder"])
    return None
