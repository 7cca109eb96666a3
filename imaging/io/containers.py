"""Instrument container files as fields: Nikon ND2, Zeiss CZI, Leica LIF, OME-TIFF, OME-Zarr.

A plate folder of plain TIFFs keeps its fast path (:mod:`imaging.io.discover`, tifffile).
A container holds many fields in one file (scenes, positions, series) with channel names,
Z planes, time points and a pixel size in its metadata; it is read through bioio, the
maintained successor of aicsimageio, with the format's plugin chosen by the file's suffix
(bioio's own choice by plugin priority can hand an OME-TIFF to the plain-TIFF plugin).

Fields of a container
---------------------
OME-Zarr HCS plate (a ``.zarr`` folder with ``plate`` metadata)
    wells and fields from the plate and well metadata (``plate/row/column/field``); the
    plate is the plate's name in the metadata (else the folder's stem).
any other container (and a single-image ``.zarr``)
    each scene is a field of plate ``<file stem>``. Its well and site come from
    ``naming.scenes``, a regular expression with groups ``well`` (or ``row`` + ``column``)
    and optional ``site``, searched in ``<file stem>/<scene name>``; without a ``site``
    group, sites are numbered in scene order within each well. The default finds a well
    name (``A01``, ``B3``) in the file or scene name, the last one when there are several
    (``P1_C05.nd2`` is well C05).

Planes of a field
-----------------
A pipeline channel is chosen by ``name`` (the channel name in the metadata, matched without
regard to case, else as the one name containing it) or by ``id`` (its 1-based index).
Z stacks: ``naming.plane`` picks one plane (1-based), else ``naming.z`` projects them
(``max``, or ``best_focus``: the plane with the most Laplacian variance in the
segmentation channel). A time series needs ``naming.timepoint``: one time point (1-based), or
``all``, where each time point of a scene is a field of its own (``Field.timepoint``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from imaging.errors import InputError
from imaging.io.wells import MAX_COLUMNS, MAX_ROWS, format_well, parse_well

log = logging.getLogger(__name__)

# suffix -> (bioio plugin module, pip package); first match wins (.ome.tif before .tif)
PLUGINS = {
    ".nd2": ("bioio_nd2", "bioio-nd2"),
    ".czi": ("bioio_czi", "bioio-czi"),
    ".lif": ("bioio_lif", "bioio-lif"),
    ".ome.tif": ("bioio_ome_tiff", "bioio-ome-tiff"),
    ".ome.tiff": ("bioio_ome_tiff", "bioio-ome-tiff"),
    ".zarr": ("bioio_ome_zarr", "bioio-ome-zarr"),
}
DEFAULT_SCENE_PATTERN = r"(?<![A-Za-z0-9])(?P<well>[A-Pa-p]\d{1,2})(?!\d)"


@dataclasses.dataclass(frozen=True)
class ContainerPlane:
    """Where one field's planes sit in a container (picklable; travels with a Field)."""

    path: str
    scene: int  # index into the file's scenes
    scene_name: str
    channels: tuple[tuple[str, int], ...]  # pipeline channel name -> 0-based channel index
    z_plane: int | None  # 0-based, or None: project with z_rule
    z_rule: str
    n_z: int
    timepoint: int  # 0-based
    rows: int
    columns: int
    pixel_size_um: float | None
    n_timepoints: int = 1


def container_suffix(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    return next((suffix for suffix in PLUGINS if name.endswith(suffix)), None)


def is_container(path: str | Path) -> bool:
    path = Path(path)
    suffix = container_suffix(path)
    if suffix == ".zarr":
        return path.is_dir()
    return suffix is not None and path.is_file()


def list_containers(input_dir: str | Path) -> list[Path]:
    """Container files in ``input_dir`` (or ``input_dir`` itself), sorted; ``.zarr`` folders
    are not searched inside."""
    root = Path(input_dir)
    if is_container(root):
        return [root]
    if not root.is_dir():
        return []
    found = []
    for folder, subfolders, names in os.walk(root):
        for sub in list(subfolders):
            if sub.lower().endswith(".zarr"):
                found.append(Path(folder) / sub)
                subfolders.remove(sub)
        found += [Path(folder) / n for n in names if container_suffix(n) not in (None, ".zarr")]
    return sorted(found)


def open_image(path: str | Path, *, suffix: str | None = None):
    """A ``bioio.BioImage`` of ``path`` with the plugin for its suffix (``suffix`` for the
    fields inside an OME-Zarr plate, whose folders have none); InputError when the plugin is
    missing or the file cannot be read."""
    suffix = suffix or container_suffix(path)
    module, package = PLUGINS[suffix]
    try:
        from bioio import BioImage

        reader = __import__(module).Reader
    except ImportError:
        raise InputError(
            f"reading {suffix} files needs the bioio plugin {package}", path=path, fix=f"pip install bioio {package}"
        ) from None
    try:
        return BioImage(str(path), reader=reader)
    except Exception as exc:  # bioio's plugins raise anything from format errors to KeyErrors
        raise InputError(
            f"cannot be read as {suffix} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            path=path,
            fix="check the file (copy it again from the instrument), or export it as OME-TIFF",
        ) from None


# ---- OME-Zarr HCS plates ------------------------------------------------------------------
def _zarr_attributes(folder: Path) -> dict:
    """Attributes of a Zarr group, v2 (``.zattrs``) or v3 (``zarr.json``, OME under ``ome``)."""
    if (folder / "zarr.json").is_file():
        attributes = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
        return attributes.get("ome", attributes)
    if (folder / ".zattrs").is_file():
        return json.loads((folder / ".zattrs").read_text())
    return {}


def hcs_plate_fields(root: Path) -> list[dict] | None:
    """(plate, well, site, path) of every field of an OME-Zarr HCS plate; None if ``root`` is
    not a plate."""
    try:
        plate = _zarr_attributes(root).get("plate")
    except (OSError, ValueError) as exc:
        raise InputError(f"has unreadable Zarr metadata ({exc})", path=root, fix="check the plate's export") from None
    if not plate:
        return None
    name = str(plate.get("name") or root.name[: -len(".zarr")])
    fields = []
    for well in plate.get("wells", []):
        well_dir = root / well["path"]
        row_name, column_name = well["path"].split("/")[-2:]
        well_name = format_well(*parse_well(f"{row_name}{int(column_name):02d}"))
        images = _zarr_attributes(well_dir).get("well", {}).get("images", [])
        for site, image in enumerate(images, start=1):
            fields.append({"plate": name, "well": well_name, "site": site, "path": well_dir / image["path"]})
    return fields


def _zarr_x_unit(folder: Path) -> str | None:
    """Unit of the x axis of an OME-Zarr image (None when the axes name none)."""
    try:
        axes = _zarr_attributes(folder)["multiscales"][0].get("axes", [])
    except (KeyError, IndexError, OSError, ValueError):
        return None
    return next((a.get("unit") for a in axes if isinstance(a, dict) and a.get("name") == "x"), None)


# ---- scenes of other containers -----------------------------------------------------------
def scene_names(image, suffix: str) -> list[str]:
    """What names each scene: bioio's scene ids, except for OME-TIFF, where they are
    ``Image:0, Image:1``, and the images' own names (``A01_s1``, Micro-Manager's position
    names) are in the OME metadata."""
    scenes = [str(s) for s in image.scenes]
    if suffix in (".ome.tif", ".ome.tiff"):
        try:
            names = [str(i.name or "") for i in image.ome_metadata.images]
        except Exception:  # metadata is optional here: ids still place scenes by order
            return scenes
        if len(names) == len(scenes) and all(names) and len(set(names)) == len(names):
            return names
    return scenes


def scene_positions(stem: str, scene_names: list[str], pattern: str | None, *, path) -> list[tuple[str, int]]:
    """(well, site) of each scene (see module docstring); InputError naming the scenes when a
    well cannot be found or two scenes land on one position."""
    try:
        compiled = re.compile(pattern or DEFAULT_SCENE_PATTERN)
    except re.error as exc:
        raise InputError(
            f"naming.scenes is not a valid regular expression ({exc})",
            path=path,
            fix="correct naming.scenes in the pipeline",
        ) from None
    wells, sites = [], []
    for scene in scene_names:
        text = f"{stem}/{scene}"
        # the default takes the last well-like token: the scene's over the file's, C05 over P1
        match = compiled.search(text) if pattern else next(reversed(list(compiled.finditer(text))), None)
        groups = match.groupdict() if match else {}
        try:
            if groups.get("well"):
                row, column = parse_well(groups["well"])
            elif groups.get("row") and groups.get("column"):
                row, column = int(groups["row"]), int(groups["column"])
            else:
                raise ValueError
            if not (1 <= row <= MAX_ROWS and 1 <= column <= MAX_COLUMNS):
                raise ValueError
        except ValueError:
            shown = ", ".join(repr(s) for s in scene_names[:4]) + (" ..." if len(scene_names) > 4 else "")
            raise InputError(
                f"no well found for scene {scene!r} (file {stem!r}; scenes: {shown})",
                path=path,
                fix="give a scene map (--scene-map CSV with columns scene, well[, site]), name the "
                "file or scenes after their wells (e.g. plate1_B03.nd2), or give naming.scenes, a "
                "regular expression with groups well (or row and column) and site matched against "
                "'<file stem>/<scene name>'",
            ) from None
        wells.append(format_well(row, column))
        sites.append(int(groups["site"]) if groups.get("site") else None)
    positions = list(zip(wells, counted_sites(wells, sites)))
    if positions and min(site for _, site in positions) == 0:  # scenes numbered from 0
        positions = [(well, site + 1) for well, site in positions]
    duplicated = {p for p in positions if positions.count(p) > 1}
    if duplicated:
        well, site = sorted(duplicated)[0]
        raise InputError(
            f"two scenes are well {well}, site {site}",
            path=path,
            fix="give naming.scenes a site group that tells the scenes apart",
        )
    return positions


SCENE_MAP_COLUMNS = ("file", "scene", "plate", "well", "site")


@dataclasses.dataclass(frozen=True)
class ScenePosition:
    """Where a scene lies on a plate, as a scene map (``--scene-map``) says."""

    well: str
    site: int | None  # None: counted in scene order, as without a map
    plate: str | None  # None: the container's file stem


def read_scene_map(path: str | Path) -> dict[tuple[str, str], ScenePosition]:
    """A user's CSV placing container scenes on a plate: columns ``scene`` (the scene's name as
    an InputError lists it, or bioio's id such as ``Image:0``) and ``well``, optional ``site``,
    ``plate`` and ``file`` (the container's file name, for folders of several). Keyed by
    (file name or ``""``, scene). InputError naming the line for anything unreadable."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("scene map not found", path=path, fix="check the --scene-map path") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as CSV ({exc})", path=path, fix="save the scene map as CSV") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("scene", "well") if c not in table.columns]
    unknown = [c for c in table.columns if c not in SCENE_MAP_COLUMNS]
    if missing or unknown:
        raise InputError(
            f"has no {missing[0]!r} column" if missing else f"has unknown column(s) {unknown}",
            path=path,
            fix=f"columns are scene, well and optionally site, plate, file ({', '.join(SCENE_MAP_COLUMNS)})",
        )
    mapping = {}
    for line, row in enumerate(table.to_dict("records"), start=2):
        parsed = parse_well(row["well"].strip())
        site = row.get("site", "").strip()
        if parsed is None or (site and not (site.isdigit() and int(site) >= 1)):
            raise InputError(
                f"line {line}: {'well ' + repr(row['well']) if parsed is None else 'site ' + repr(site)} is not valid",
                path=path,
                fix="write wells as A01 and sites as 1, 2, ...",
            )
        key = (row.get("file", "").strip(), row["scene"].strip())
        if key in mapping:
            raise InputError(
                f"line {line}: scene {key[1]!r} is listed twice",
                path=path,
                fix="give each scene one row (add a file column for folders of several files)",
            )
        mapping[key] = ScenePosition(
            well=format_well(*parsed), site=int(site) if site else None, plate=row.get("plate", "").strip() or None
        )
    return mapping


def mapped_positions(path: Path, scenes: list[str], ids: list[str], mapping: dict, *, source) -> list[ScenePosition]:
    """Each scene's position from a scene map, found by (file, name), (file, id), then name
    or id alone; InputError listing the scenes the map lacks."""
    found, unmapped = [], []
    for name, scene_id in zip(scenes, ids):
        keys = [(path.name, name), (path.name, scene_id), ("", name), ("", scene_id)]
        position = next((mapping[k] for k in keys if k in mapping), None)
        (found if position is not None else unmapped).append(position or name)
    if unmapped:
        shown = ", ".join(repr(s) for s in unmapped[:4]) + (" ..." if len(unmapped) > 4 else "")
        raise InputError(
            f"the scene map has no row for {len(unmapped)} scene(s) of {path.name}: {shown}",
            path=source,
            fix="add a row (scene, well, site) for each scene; a scene is named as listed here or "
            "by its id (Image:0, ...)",
        )
    return found


# ---- planes ----------------------------------------------------------------------------------
def match_channel_name(wanted: str, channel_names: list[str]) -> int | None:
    """Index of the channel ``wanted`` names: the same name without regard to case, else the
    one name containing it (``FM 4-64`` for ``FM 4-64/2% CHAPS``); None if neither. The one
    rule for channels chosen by name, in containers and in instrument indexes (io.harmony)."""
    lowered = [c.lower() for c in channel_names]
    wanted = wanted.lower()
    if wanted in lowered:
        return lowered.index(wanted)
    containing = [i for i, c in enumerate(lowered) if wanted in c]
    return containing[0] if len(containing) == 1 else None


def _pick_channel(name: str, spec, channel_names: list[str], *, path, scene: str) -> int:
    listed = ", ".join(repr(c) for c in channel_names)
    if spec.name is not None:
        index = match_channel_name(spec.name, channel_names)
        if index is not None:
            return index
        raise InputError(
            f"scene {scene!r} has no channel named {spec.name!r} for {name} (channels: {listed})",
            path=path,
            fix=f"set channels.{name}.name to one of the file's channel names, or "
            f"channels.{name}.id to its 1-based index",
        )
    try:
        index = int(spec.id) - 1
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(channel_names):
        raise InputError(
            f"channel {name} has id {spec.id!r}, but scene {scene!r} has {len(channel_names)} channel(s): {listed}",
            path=path,
            fix=f"set channels.{name}.id to a 1-based channel index, or channels.{name}.name",
        )
    return index


def describe_plane(image, *, path, scene_index: int, pipeline, label: str | None = None) -> ContainerPlane:
    """The planes a pipeline reads from one scene of an open image, checked from metadata only
    (``label``: the scene's name where it differs from bioio's id)."""
    image.set_scene(image.scenes[scene_index])
    scene = label or str(image.scenes[scene_index])
    dims = image.dims
    names = [str(c) for c in (image.channel_names or [])]
    if len(names) != dims.C:  # bioio-ome-zarr names one channel when the file has no omero metadata
        names = [f"channel {i + 1}" for i in range(dims.C)]
    naming = pipeline.naming
    found = f"dims {dict(zip(dims.order, dims.shape))}, channels {names}"
    if dims.T > 1 and naming.timepoint is None:
        raise InputError(
            f"scene {scene!r} is a time series of {dims.T} time points ({found})",
            path=path,
            fix="set naming.timepoint: all in the pipeline (a timepoint column in every table), "
            "or naming.timepoint: N for one time point",
        )
    timepoint = (
        naming.timepoint - 1 if isinstance(naming.timepoint, int) else 0
    )  # 'all': one field per time point (_fields)
    if timepoint >= dims.T:
        raise InputError(
            f"naming.timepoint is {naming.timepoint}, but scene {scene!r} has {dims.T}",
            path=path,
            fix="choose a time point the file has",
        )
    z_plane = None
    if naming.plane is not None:
        if naming.plane > dims.Z:
            raise InputError(
                f"naming.plane is {naming.plane}, but scene {scene!r} has {dims.Z} Z plane(s)",
                path=path,
                fix="choose a plane the file has, or drop naming.plane to project with naming.z",
            )
        z_plane = naming.plane - 1
    elif dims.Z == 1:
        z_plane = 0
    channels = tuple(
        (name, _pick_channel(name, spec, names, path=path, scene=scene)) for name, spec in pipeline.channels.items()
    )
    for name, spec in pipeline.channels.items():
        if spec.kind == "brightfield" and "S" not in dims.order:
            raise InputError(
                f"channel {name} is brightfield (RGB), but scene {scene!r} holds no RGB samples ({found})",
                path=path,
                fix="declare the channel as kind: fluorescence",
            )
    sizes = image.physical_pixel_sizes
    pixel = float(sizes.X) if sizes.X and np.isfinite(sizes.X) and sizes.X > 0 else None
    if pixel is not None and Path(path).is_dir() and _zarr_x_unit(Path(path)) != "micrometer":
        pixel = None  # an OME-Zarr scale without a unit is in pixels, not um
    return ContainerPlane(
        path=str(path),
        scene=scene_index,
        scene_name=str(scene),
        channels=channels,
        z_plane=z_plane,
        z_rule="plane" if z_plane is not None else naming.z,
        n_z=int(dims.Z),
        timepoint=timepoint,
        n_timepoints=int(dims.T),
        rows=int(dims.Y),
        columns=int(dims.X),
        pixel_size_um=pixel,
    )


def container_fields(
    input_dir: str | Path, pipeline, *, field_type, scene_map: dict[tuple[str, str], ScenePosition] | None = None
) -> tuple[list, int]:
    """Every field of the containers under ``input_dir`` (``field_type``: discover.Field),
    with their planes checked from metadata; returns (fields, number of container files).
    ``scene_map`` (:func:`read_scene_map`) places the scenes instead of their names."""
    fields = []
    containers = list_containers(input_dir)
    for path in containers:
        plate_fields = hcs_plate_fields(path) if container_suffix(path) == ".zarr" else None
        if plate_fields is not None:
            for entry in plate_fields:
                plane = describe_plane(
                    open_image(entry["path"], suffix=".zarr"), path=entry["path"], scene_index=0, pipeline=pipeline
                )
                fields += _fields(field_type, entry["plate"], entry["well"], entry["site"], plane, pipeline)
            continue
        image = open_image(path)
        stem = Path(path).name[: -len(container_suffix(path))]
        scenes = scene_names(image, container_suffix(path))
        for index, (plate, well, site) in enumerate(
            _scene_places(Path(path), stem, image, scenes, pipeline, scene_map, source=input_dir)
        ):
            plane = describe_plane(image, path=path, scene_index=index, pipeline=pipeline, label=scenes[index])
            fields += _fields(field_type, plate, well, site, plane, pipeline)
    keys = [(f.plate, f.well, f.site, f.timepoint) for f in fields]
    if len(set(keys)) != len(keys):
        plate, well, site, _ = next(k for k in keys if keys.count(k) > 1)
        raise InputError(
            f"two scenes are plate {plate}, well {well}, site {site}",
            path=input_dir,
            fix="give each plate's files distinct names, set naming.scenes, or give each scene its own "
            "well and site in the scene map",
        )
    return sorted(fields, key=lambda f: (f.plate, f.row, f.column, f.site, f.timepoint or 0)), len(containers)


def counted_sites(places: list, sites: list[int | None]) -> list[int]:
    """Each scene's site: its own where it has one, else the next of its place (a well, or a
    plate and well) in scene order, from 1: the one numbering rule for scene names and maps."""
    counted, next_site = [], {}
    for place, site in zip(places, sites):
        site = site if site is not None else next_site.get(place, 1)
        next_site[place] = site + 1
        counted.append(site)
    return counted


def _scene_places(
    path: Path, stem: str, image, scenes: list[str], pipeline, scene_map, *, source
) -> list[tuple[str, str, int]]:
    """(plate, well, site) of each scene of one container: from the scene map when given (sites
    the map leaves out counted in scene order), else from the scene names."""
    if scene_map is None:
        return [(stem, well, site) for well, site in scene_positions(stem, scenes, pipeline.naming.scenes, path=path)]
    positions = mapped_positions(path, scenes, [str(s) for s in image.scenes], scene_map, source=source)
    places = [(p.plate or stem, p.well) for p in positions]
    return [(*place, site) for place, site in zip(places, counted_sites(places, [p.site for p in positions]))]


def _fields(field_type, plate: str, well: str, site: int, plane: ContainerPlane, pipeline) -> list:
    """The field of one scene, or, in a run of every time point, one field per time point."""
    row, column = parse_well(well)
    paths = {name: plane.path for name, _ in plane.channels}
    timepoints = range(plane.n_timepoints) if pipeline.naming.every_timepoint else [None]
    return [
        field_type(
            plate=plate,
            well=well,
            row=row,
            column=column,
            site=site,
            paths=paths,
            plane=plane if t is None else dataclasses.replace(plane, timepoint=t),
            timepoint=None if t is None else t + 1,
        )
        for t in timepoints
    ]


def read_planes(plane: ContainerPlane, pipeline) -> dict[str, np.ndarray]:
    """Every pipeline channel of one container field, 2-D (RGB for brightfield), Z resolved."""
    image = open_image(plane.path, suffix=container_suffix(plane.path) or ".zarr")
    image.set_scene(image.scenes[plane.scene])
    stacks = {}
    for name, index in plane.channels:
        kind = pipeline.channels[name].kind
        order = "ZYXS" if kind == "brightfield" else "ZYX"
        stacks[name] = np.asarray(image.get_image_data(order, T=plane.timepoint, C=index))
    if plane.z_plane is not None:
        chosen = {name: stack[plane.z_plane] for name, stack in stacks.items()}
    elif plane.z_rule == "best_focus":
        z = best_focus_plane(stacks[pipeline.segmentation.channel])
        chosen = {name: stack[z] for name, stack in stacks.items()}
    else:
        chosen = {name: stack.max(axis=0) for name, stack in stacks.items()}
    return chosen


def best_focus_plane(stack: np.ndarray) -> int:
    """Index of the plane with the largest variance of the Laplacian (a standard focus measure)."""
    from scipy import ndimage as ndi

    scores = [float(ndi.laplace(np.asarray(plane, dtype=np.float32)).var()) for plane in stack]
    return int(np.argmax(scores))


@functools.lru_cache(maxsize=64)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    from imaging.run.record import content_digest

    return content_digest(path)


def container_digest(plane: ContainerPlane) -> str:
    """Content digest of the container's bytes (of every file under a Zarr field,
    :func:`imaging.run.record.content_digest`), cached per worker:
    the many fields of one file hash it once."""
    stat = os.stat(plane.path)
    return _digest_cached(plane.path, stat.st_size, stat.st_mtime_ns)
