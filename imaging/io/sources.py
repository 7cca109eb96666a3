"""Where a run's fields come from: a folder of plain image files, or container files.

:func:`find_fields` is the one entry point (planning, review and the napari plugin use it):
instrument containers (:mod:`imaging.io.containers`: ND2, CZI, LIF, OME-TIFF, OME-Zarr) when
the input is one or holds some, else the file-name discovery of
:mod:`imaging.io.discover` (tifffile's fast path for plate folders of TIFFs), with a Harmony
``Index.idx.xml`` (:mod:`imaging.io.harmony`), when the export has one, for pixel sizes and
channel names, or a MetaXpress ``.HTD`` (:mod:`imaging.io.htd`) for channel names and the
wells the instrument acquired.
"""

from __future__ import annotations

import dataclasses
import logging

from imaging.errors import InputError
from imaging.io import containers, files, harmony, htd
from imaging.io.discover import Field, discover_images, group_fields

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FoundFields:
    fields: list[Field]
    naming: str  # a naming preset, 'regex', or 'containers'
    n_files: int
    acquired_without_images: tuple[str, ...] = ()  # wells the instrument's .HTD lists that have no files


def find_fields(input_dir, pipeline, *, pattern: str | None = None, scene_map=None) -> FoundFields:
    """Every field under ``input_dir`` for ``pipeline`` (see module docstring); ``scene_map``, a
    CSV placing container scenes on the plate (:func:`imaging.io.containers.read_scene_map`)."""
    pattern = pattern or pipeline.naming.pattern
    local = not files.is_url(input_dir)
    found = containers.list_containers(input_dir) if local else []
    # one OME-TIFF per field and channel, named like plain TIFFs: a naming pattern reads them as files
    per_file = pattern is not None and all(containers.container_suffix(p) in (".ome.tif", ".ome.tiff") for p in found)
    mapping = containers.read_scene_map(scene_map) if scene_map is not None else None
    if found and not per_file:
        fields, n_files = containers.container_fields(input_dir, pipeline, field_type=Field, scene_map=mapping)
        return FoundFields(fields=fields, naming="containers", n_files=n_files)
    if mapping is not None:
        raise InputError(
            "a scene map places the scenes of container files (ND2, CZI, LIF, OME), but this input holds none",
            path=input_dir,
            fix="drop --scene-map; plain files are placed by their names",
        )
    index_path = harmony.find_index(input_dir) if local else None
    index = harmony.read_index(index_path) if index_path is not None else None
    htd_path = htd.find_htd(input_dir) if local and index is None else None
    plate = htd.read_htd(htd_path) if htd_path is not None else None
    channel_ids = _channel_ids(pipeline, index or plate, input_dir)
    table, naming = discover_images(input_dir, preset=pipeline.naming.preset, pattern=pattern)
    table = _timepoints_chosen(table, pipeline.naming.timepoint, input_dir)
    fields = group_fields(
        table,
        channel_ids,
        plane=pipeline.naming.plane,
        source=str(input_dir),
        every_timepoint=pipeline.naming.every_timepoint,
    )
    if index is not None:
        fields = [_with_index_pixel_size(f, index, pipeline) for f in fields]
    missing = _acquired_without_images(plate, fields)
    return FoundFields(fields=fields, naming=naming, n_files=len(table), acquired_without_images=missing)


def _acquired_without_images(plate, fields: list[Field]) -> tuple[str, ...]:
    """Wells the .HTD says were acquired but that have no field here (a partial copy)."""
    if plate is None:
        return ()
    imaged = {f.well for f in fields}
    missing = tuple(w for w in plate.wells if w not in imaged)
    if missing:
        log.warning(
            "%s lists %d acquired well(s) without image files here: %s%s",
            plate.path,
            len(missing),
            ", ".join(missing[:12]),
            " ..." if len(missing) > 12 else "",
        )
    return missing


def _timepoints_chosen(table, timepoint: int | str | None, input_dir):
    """The files of the time points the run measures (``timepoint`` from the discovery table:
    a pattern's group, Operetta ``sk<n>``, MetaXpress ``TimePoint_<n>/``): ``naming.timepoint``
    picks one, or ``all``; several without a choice is an error, as for containers."""
    timepoints = sorted(int(t) for t in table["timepoint"].unique())
    if timepoint == "all" or (timepoint is None and len(timepoints) == 1):
        return table
    if timepoint is None:
        raise InputError(
            f"holds a time series: {len(timepoints)} time points ({timepoints[0]} ... {timepoints[-1]})",
            path=input_dir,
            fix="set naming.timepoint: all in the pipeline (a timepoint column in every table), "
            "or naming.timepoint: N for one time point",
        )
    if timepoint not in timepoints:
        raise InputError(
            f"naming.timepoint is {timepoint}, but the folder has time points {timepoints}",
            path=input_dir,
            fix="choose a time point the export has",
        )
    return table[table["timepoint"] == timepoint].reset_index(drop=True)


def _channel_ids(pipeline, index, input_dir) -> dict[str, str]:
    """Pipeline channel -> id in the file names; a channel chosen by name is looked up in the
    instrument's index (Harmony ``Index.idx.xml`` or MetaXpress ``.HTD``), the plain-file
    exports that name their channels."""
    ids = {}
    by_name = index.channel_ids_by_name() if index is not None else {}
    names = list(by_name)
    for name, spec in pipeline.channels.items():
        if spec.id is not None:
            ids[name] = spec.id
            continue
        position = containers.match_channel_name(spec.name, names)
        if position is None:
            known = (
                f"the index {index.path} names {sorted(names)}"
                if index is not None
                else "only container files (ND2, CZI, LIF, OME), Harmony and MetaXpress exports name their channels"
            )
            raise InputError(
                f"channel {name} is chosen by name {spec.name!r}, but {known}",
                path=input_dir,
                fix=f"give channels.{name}.id as written in the file names (w1 -> 1, ch2 -> 2)",
            )
        ids[name] = by_name[names[position]]
    return ids


def _with_index_pixel_size(field: Field, index, pipeline) -> Field:
    image = index.images.get(files.name(field.paths[pipeline.segmentation.channel]))
    if image is None or image.pixel_size_um is None:
        return field
    return dataclasses.replace(field, pixel_size_um=image.pixel_size_um)


__all__ = ["FoundFields", "find_fields"]
