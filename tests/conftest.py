"""Shared fixtures: paths to the shipped samples and small images written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
PIPELINES = ROOT / "pipelines"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def pipelines() -> Path:
    return PIPELINES


@pytest.fixture(scope="session")
def pjnk_run(samples, pipelines, tmp_path_factory):
    """The pJNK sample plate run once, on one worker (end-to-end and tiling tests compare with it)."""
    from imaging.plate import execute, plan_run

    out = tmp_path_factory.mktemp("pjnk_run")
    plate = samples / "pjnk_plate"
    plan = plan_run(pipelines / "pjnk.yaml", plate / "images", platemap=plate / "platemap.csv")
    return execute(plan, out, workers=1)


def finished_records(folder: Path) -> list[Path]:
    """The ``*.json`` records under their final names in ``folder``: pathlib's ``*`` also
    matches the hidden ``.tmp-*`` file an atomic write is about to rename, so a test that
    waits for a record (or counts them) must not count that one."""
    return [path for path in folder.glob("*.json") if not path.name.startswith(".")]


def write_tiff(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image)
    return path


def disk_image(shape, centres, radius, *, value=1000, background=100, dtype=np.uint16) -> np.ndarray:
    """Bright disks of ``radius`` at ``centres`` on a flat background."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.full(shape, background, dtype=float)
    for r, c in centres:
        image[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = value
    return image.astype(dtype)


def copy_sample_wells(samples: Path, wells, destination: Path, *, assay: str = "sabgal") -> Path:
    """Copy some wells of a shipped sample plate (images and plate-map rows) into
    ``destination/images`` and ``destination/map.csv``; returns ``destination``."""
    import shutil

    import pandas as pd

    source = samples / f"{assay}_plate"
    (destination / "images").mkdir(parents=True, exist_ok=True)
    for well in wells:
        for path in (source / "images").glob(f"*_{well}_*"):
            shutil.copy(path, destination / "images" / path.name)
    table = pd.read_csv(source / "platemap.csv")
    table[table["well"].isin(list(wells))].to_csv(destination / "map.csv", index=False)
    return destination
