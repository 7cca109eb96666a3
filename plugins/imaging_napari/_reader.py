"""Reader: a run folder or a plate folder holding a pipeline opens as layers, and only layers
(the napari plugin template's rule: a reader has no side effects).

A plate run (or plate folder) opens on its first field (`imaging.plate.layers`); the plate
browser (Plugins > imaging > Plate browser) finds the run from those layers' metadata and walks
the rest. A tissue run opens as its sections, cells by class and lesions
(`imaging.tissue.layers`); the Tissue curation dock finds it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path


def get_reader(path):
    """A reader for a run folder (``run.json``) or a plate folder with one pipeline YAML;
    None (never an error) for anything else, so napari offers other readers."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        folder = Path(path)
        if not folder.is_dir():
            return None
    except (TypeError, ValueError, OSError):
        return None
    if (folder / "run.json").is_file():
        return read_tissue_run if _is_tissue_run(folder) else read_plate
    from imaging.plate.review import pipeline_in_folder  # heavy: only for folders that may be plates

    if pipeline_in_folder(folder) is not None:
        return read_plate
    return None


def _is_tissue_run(folder: Path) -> bool:
    try:
        return json.loads((folder / "run.json").read_text()).get("mode") == "tissue"
    except (OSError, ValueError, AttributeError):
        return False


def _folder(path) -> Path:
    return Path(path[0] if isinstance(path, list) else path)


def read_tissue_run(path):
    """Layer data only: every section (multiscale), its cells and lesions with their tables."""
    from imaging.tissue.layers import tissue_run_layers

    return tissue_run_layers(_folder(path))


def read_plate(path):
    """Layer data only: the first field of a plate run, or of a plate folder with a pipeline."""
    from imaging.plate.layers import plate_run_layers

    return plate_run_layers(_folder(path))
