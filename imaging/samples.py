"""Where the shipped sample images are (``sample_images/`` of the source tree)."""

from __future__ import annotations

from pathlib import Path

from imaging.errors import InputError


def shipped_folder(name: str) -> Path:
    """A folder shipped with the source tree (``sample_images``, ``pipelines``): in the
    working directory or next to the package."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / name).is_dir():
            return base / name
    raise InputError(
        f"cannot find the shipped folder {name!r}",
        fix="run from the repository root (where README.md is), or install with pip install -e .",
    )


def sample_images_dir() -> Path:
    return shipped_folder("sample_images")
