"""Where a run's fields come from: a folder of plain image files, or container files.

:func:`find_fields` is the one entry point (planning, review and the napari plugin use it):
instrument containers (:mod:`imaging.io.containers`: ND2, CZI, LIF, OME-TIFF, OME-Zarr) when
the input is one or holds some, else the file-name discovery of
:mod:`imaging.io.discover` (tifffile's fast path for plate folders of TIFFs).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from imaging.errors import InputError
from imaging.io import containers, files
from imaging.io.discover import Field, discover_images, group_fields

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FoundFields:
    fields: list[Field]
    naming: str  # a naming preset, 'regex', or 'containers'
    n_files: int


def find_fields(input_dir, pipeline, *, pattern: str | None = None) -> FoundFields:
    """Every field under ``input_dir`` for ``pipeline`` (see module docstring)."""
    found = [] if files.is_url(input_dir) else containers.list_containers(input_dir)
    if found:
        fields, n_files = containers.container_fields(input_dir, pipeline, field_type=Field)
        return FoundFields(fields=fields, naming="containers", n_files=n_files)
    unnamed = [name for name, spec in pipeline.channels.items() if spec.id is None]
    if unnamed:
        raise InputError(f"channel {unnamed[0]} is chosen by name, which only container files (ND2, CZI, LIF, "
                         "OME) carry, and the input holds none", path=input_dir,
                         fix=f"give channels.{unnamed[0]}.id as written in the file names (w1 -> 1)")
    pattern = pattern or pipeline.naming.pattern
    table, naming = discover_images(input_dir, preset=pipeline.naming.preset, pattern=pattern)
    channel_ids = {name: spec.id for name, spec in pipeline.channels.items()}
    fields = group_fields(table, channel_ids, plane=pipeline.naming.plane, source=str(input_dir))
    return FoundFields(fields=fields, naming=naming, n_files=len(table))


__all__ = ["FoundFields", "find_fields", "Path"]
