"""Reader: dropping a plate run folder (or a plate folder holding a pipeline) opens the plate
browser; a tissue run folder opens as layers (sections, cells by class, lesions)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def _pipeline_in(folder: Path) -> Path | None:
    """The single pipeline YAML (with ``schema_version``) at the top of ``folder``, if any."""
    found = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if isinstance(data, dict) and "schema_version" in data:
            found.append(path)
    return found[0] if len(found) == 1 else None


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
        return read_tissue_run if _is_tissue_run(folder) else read_run
    if _pipeline_in(folder) is not None:
        return read_plate
    return None


def _is_tissue_run(folder: Path) -> bool:
    try:
        return json.loads((folder / "run.json").read_text()).get("mode") == "tissue"
    except (OSError, ValueError, AttributeError):
        return False


def read_tissue_run(path):
    """Layer data only: every section (multiscale), its cells and lesions with their tables."""
    from imaging.tissue.layers import tissue_run_layers

    return tissue_run_layers(Path(path[0] if isinstance(path, list) else path))


BROWSER_DOCK = "Plate browser"


def _open_browser(review):
    """Show ``review`` in the viewer's plate browser: the one already docked (one per viewer,
    so a second run replaces the first instead of leaving a stale dock), else a new one."""
    import napari

    from imaging_napari._widget import PlateBrowser

    viewer = napari.current_viewer()
    docked = viewer.window.dock_widgets.get(BROWSER_DOCK)
    if isinstance(docked, PlateBrowser):
        docked.set_review(review)
    else:
        viewer.window.add_dock_widget(PlateBrowser(viewer, review=review), name=BROWSER_DOCK, area="right")
    return [(None,)]  # the browser adds the field's layers itself


def read_run(path):
    from imaging.plate.review import RunReview

    folder = Path(path[0] if isinstance(path, list) else path)
    return _open_browser(RunReview.open_run(folder))


def read_plate(path):
    from imaging.plate.review import RunReview

    folder = Path(path[0] if isinstance(path, list) else path)
    return _open_browser(RunReview.open_plate(_pipeline_in(folder), folder))
