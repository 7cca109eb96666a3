"""Turn an instrument's export folder into a table of fields.

A *field* is one imaged position: (plate, well, site). Each field has one image file per
channel. :func:`discover_images` lists every image file with the metadata parsed from its
name; :func:`group_fields` turns that table into one :class:`Field` per position, checking
that each has exactly one file for every channel the pipeline needs.

Naming presets (detected automatically, or chosen by name):

``imagexpress``
    MetaXpress / ImageXpress: ``<plate>_<well>_s<site>_w<channel><optional GUID>.tif``.
    ``_s<site>`` and ``_w<channel>`` may be absent (single site / single channel).
    ``*_thumb*`` files are skipped. The plate comes from the file name.
``operetta``
    Operetta / Opera Phenix Harmony export: ``rNNcNNfNNpNN-chN...tiff``. The plate is the
    folder name (the folder above ``Images/`` when the files sit in an ``Images`` folder).

The input folder may be a local path or an fsspec URL (see :mod:`imaging.io.files`).

Any other naming: a regular expression with named groups ``plate`` (optional; else the
folder name), ``well`` or ``row`` + ``column``, ``site`` (optional; else 1), ``channel``
(optional when the pipeline has one channel) and ``plane`` (optional). It is matched
against the file name, or against the path relative to the input folder when it
contains ``/``.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from imaging.errors import InputError
from imaging.io import files
from imaging.io.wells import MAX_COLUMNS, MAX_ROWS, format_well, parse_well, row_letters_to_index

if TYPE_CHECKING:
    from imaging.io.containers import ContainerPlane

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")  # BMP: BBBC013 and older instruments

PRESETS: dict[str, str] = {
    "imagexpress": (
        r"(?P<plate>.+?)_(?P<well>[A-Za-z]{1,2}\d{1,2})(?:_s(?P<site>\d+))?"
        r"(?:_w(?P<channel>\d+))?(?:_?[{]?[0-9A-Fa-f]{8}(?:-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}[}]?)?"
        r"\.tiff?"
    ),
    "operetta": (
        r"r(?P<row>\d{1,2})c(?P<column>\d{1,2})f(?P<site>\d+)p(?P<plane>\d+)"
        r"-ch(?P<channel>\d+)(?:sk(?P<timepoint>\d+))?(?:[a-z]+\d+)*\.tiff?"  # sk: time point
    ),
}

FIELD_TABLE_COLUMNS = ["plate", "well", "row", "column", "site", "timepoint", "channel", "plane", "path"]
# a MetaXpress time-lapse export keeps each time point's files in TimePoint_<n>/ (same file names)
TIMEPOINT_FOLDER = re.compile(r"(?:^|/)TimePoint_(\d+)/", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Field:
    """One imaged position and its image file per channel (keyed by pipeline channel name)."""

    plate: str
    well: str
    row: int
    column: int
    site: int
    paths: dict[str, str]
    plane: ContainerPlane | None = None  # set for fields inside a container file (io.containers)
    pixel_size_um: float | None = None  # from the instrument's metadata beside the files (io.harmony)
    timepoint: int | None = None  # 1-based; set only in a run of every time point (naming.timepoint: all)

    @property
    def key(self) -> str:
        """File-name-safe identifier (see :func:`field_key`)."""
        return field_key(self.plate, self.well, self.site, self.timepoint)

    @property
    def position(self) -> tuple:
        """(plate, well, site, timepoint): the field's identity in tables, curation and review."""
        return self.plate, self.well, self.site, self.timepoint


def field_key(plate: str, well: str, site: int, timepoint: int | None = None) -> str:
    """The one rule for a field's file-name-safe identifier: ``<plate>_<well>_s<site>``, and
    ``_t<timepoint>`` in a run of every time point."""
    key = f"{plate}_{well}_s{int(site)}"
    return key if timepoint is None else f"{key}_t{int(timepoint)}"


def _is_skipped(name: str) -> bool:
    lowered = name.lower()
    return "_thumb" in lowered or name.startswith(".")


def _check_encodable(relative: str, root) -> None:
    """A file name that is not valid UTF-8 (Python keeps its bytes as surrogates) cannot be
    written into a table or run.json: refuse it at discovery, not after every field ran."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        shown = relative.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise InputError(
            f"the file name {shown!r} is not valid UTF-8",
            path=root,
            fix="rename the file (or convert the folder's names with `convmv -f latin1 -t utf8`)",
        ) from None


def list_image_files(input_dir: str | Path) -> list[tuple[str, str]]:
    """Image files under ``input_dir`` (a folder or fsspec URL, recursively), sorted, as
    (path, path relative to the folder); InputError if there are none."""
    if not files.exists(input_dir):
        raise InputError("folder does not exist", path=input_dir, fix="check the INPUT_DIR argument")
    if not files.is_dir(input_dir):
        raise InputError("is not a folder", path=input_dir, fix="give the folder the instrument exported")
    found = [
        (path, relative)
        for path, relative in files.list_files(input_dir)
        if posixpath.splitext(relative)[1].lower() in IMAGE_SUFFIXES and not _is_skipped(posixpath.basename(relative))
    ]
    for _, relative in found:
        _check_encodable(relative, input_dir)
    if not found:
        raise InputError(
            "no image files (.tif, .tiff, .png, .jpg, .bmp) found",
            path=input_dir,
            fix="point INPUT_DIR at the folder that holds the plate's images",
        )
    return found


def compile_pattern(pattern: str, *, source: str = "naming pattern") -> re.Pattern:
    """Compile a user pattern and check its named groups; InputError naming the problem."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InputError(
            f"{source} is not a valid regular expression ({exc})", fix="check brackets and escapes in the pattern"
        ) from None
    groups = set(compiled.groupindex)
    if "well" not in groups and not {"row", "column"} <= groups:
        raise InputError(
            f"{source} {pattern!r} needs a named group 'well', or both 'row' and 'column'",
            fix="write groups like (?P<well>[A-P]\\d+) or (?P<row>[A-P])(?P<column>\\d+)",
        )
    unknown = groups - {"plate", "well", "row", "column", "site", "timepoint", "channel", "plane"}
    if unknown:
        raise InputError(
            f"{source} has unknown named groups {sorted(unknown)}",
            fix="allowed groups: plate, well, row, column, site, timepoint, channel, plane "
            "(use unnamed groups (...) for anything else)",
        )
    return compiled


def _plate_from_folder(relative: str, root: str | Path) -> str:
    """The folder holding the file (the one above ``Images/`` in a Harmony export)."""
    # a local root is resolved first: INPUT_DIR "." or ".." names its real folder
    root_name = files.name(root) if files.is_url(root) else Path(root).resolve().name
    parts = [root_name] + relative.split("/")[:-1]
    folders = [p for p in parts if p]
    if folders and folders[-1].lower() == "images" and len(folders) > 1:
        folders = folders[:-1]
    return folders[-1] if folders else ""


def _normalize_channel(token: str | None) -> str:
    if token is None or token == "":
        return "1"
    token = str(token)
    return str(int(token)) if token.isdigit() else token


def _row_from_token(token: str) -> int:
    return int(token) if token.isdigit() else row_letters_to_index(token)


def parse_file_name(path: str, relative: str, root: str | Path, pattern: re.Pattern) -> dict | None:
    """Metadata of one file under ``pattern`` (a dict of field-table columns), or None."""
    subject = relative if "/" in pattern.pattern else posixpath.basename(relative)
    match = pattern.fullmatch(subject) if "/" not in pattern.pattern else pattern.search(subject)
    if match is None:
        return None
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    if "well" in groups:
        parsed = parse_well(groups["well"])
        if parsed is None:
            return None
        row, column = parsed
    else:
        row, column = _row_from_token(groups["row"]), int(groups["column"])
        if not (1 <= row <= MAX_ROWS and 1 <= column <= MAX_COLUMNS):
            return None
    plate = groups.get("plate") or _plate_from_folder(relative, root)
    return {
        "plate": plate,
        "well": format_well(row, column),
        "row": row,
        "column": column,
        "site": int(groups.get("site", 1)),
        "timepoint": _timepoint_of(groups, relative),
        "channel": _normalize_channel(groups.get("channel")),
        "plane": int(groups["plane"]) if "plane" in groups else 1,
        "path": str(path),
    }


def _timepoint_of(groups: dict, relative: str) -> int:
    """1-based time point: the pattern's ``timepoint`` group, else a ``TimePoint_<n>/`` folder, else 1."""
    if "timepoint" in groups:
        return int(groups["timepoint"])
    match = TIMEPOINT_FOLDER.search(relative.replace("\\", "/"))
    return int(match.group(1)) if match else 1


def _table(found: list[tuple[str, str]], root, pattern: re.Pattern) -> pd.DataFrame:
    rows = [r for r in (parse_file_name(p, rel, root, pattern) for p, rel in found) if r is not None]
    return pd.DataFrame(rows, columns=FIELD_TABLE_COLUMNS)


def discover_images(
    input_dir: str | Path, *, preset: str = "auto", pattern: str | None = None
) -> tuple[pd.DataFrame, str]:
    """List the images of a plate folder with their plate, well, site and channel.

    Parameters
    ----------
    input_dir : path
        Folder exported by the instrument (searched recursively).
    preset : {'auto', 'imagexpress', 'operetta', 'regex'}
        Naming convention. ``auto`` picks the preset that matches the most files.
    pattern : str, optional
        Regular expression with named groups; required when ``preset='regex'`` and
        overrides the preset when given.

    Returns
    -------
    table : DataFrame
        One row per image file: plate, well (canonical ``A01``), row, column, site,
        timepoint (1-based; 1 without a time axis), channel (string, numeric ids without leading zeros), plane, path.
    naming : str
        The preset used, or ``'regex'``.
    """
    root = str(input_dir)
    found = list_image_files(root)
    if pattern is not None:
        compiled = compile_pattern(pattern)
        table, naming = _table(found, root, compiled), "regex"
    elif preset == "regex":
        raise InputError(
            "naming preset 'regex' needs a pattern", fix="set naming.pattern in the pipeline or pass --pattern"
        )
    elif preset == "auto":
        candidates = {name: _table(found, root, re.compile(p, re.IGNORECASE)) for name, p in PRESETS.items()}
        naming = max(candidates, key=lambda name: len(candidates[name]))
        table = candidates[naming]
    elif preset in PRESETS:
        table, naming = _table(found, root, re.compile(PRESETS[preset], re.IGNORECASE)), preset
    else:
        raise InputError(f"unknown naming preset {preset!r}", fix=f"use one of: auto, {', '.join(PRESETS)}, regex")
    if table.empty:
        examples = ", ".join(posixpath.basename(rel) for _, rel in found[:3])
        raise InputError(
            f"none of the {len(found)} image files matches the {naming} naming (e.g. {examples})",
            path=root,
            fix="give a regular expression with named groups (plate, well or row+column, site, "
            "channel) as naming.pattern in the pipeline or --pattern on the command line",
        )
    unmatched = len(found) - len(table)
    if unmatched:
        log.warning(
            "%d of %d image files in %s do not match the %s naming and are ignored", unmatched, len(found), root, naming
        )
    table = table.sort_values(
        ["plate", "row", "column", "site", "timepoint", "channel", "plane"], kind="stable"
    ).reset_index(drop=True)
    return table, naming


def group_fields(
    table: pd.DataFrame,
    channels: dict[str, str],
    *,
    plane: int | None = None,
    source: str | None = None,
    every_timepoint: bool = False,
) -> list[Field]:
    """One :class:`Field` per (plate, well, site, timepoint) with a file for each pipeline channel.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`discover_images`.
    channels : dict
        Pipeline channel name -> channel id in the file names (``{'dapi': '1'}``).
    plane : int, optional
        Keep only this z-plane (Operetta ``pNN``) when fields have several.
    every_timepoint : bool
        A run of every time point: each field carries its ``timepoint``. Otherwise the table
        holds one time point (``io.sources`` chose it) and fields carry none.

    Raises
    ------
    InputError
        A field lacks a channel, or has several files for one channel.
    """
    wanted = {_normalize_channel(cid): name for name, cid in channels.items()}
    if plane is not None:
        table = table[table["plane"] == plane]
        if table.empty:
            raise InputError(f"no images of plane {plane}", path=source, fix="check naming.plane in the pipeline")
    table = table[table["channel"].isin(list(wanted))]
    if table.empty:
        raise InputError(
            f"no images of the pipeline's channels {sorted(wanted)}",
            path=source,
            fix="check the channel ids under 'channels' in the pipeline against the file names",
        )
    fields: list[Field] = []
    for (plate, row, column, site, timepoint), group in table.groupby(
        ["plate", "row", "column", "site", "timepoint"], sort=True
    ):
        well = format_well(row, column)
        name = f"plate {plate}, well {well}, site {site}" + (f", time point {timepoint}" if every_timepoint else "")
        duplicated = group["channel"][group["channel"].duplicated()]
        if not duplicated.empty:
            raise InputError(
                f"{name} has several images of channel {duplicated.iloc[0]} "
                f"(e.g. {files.name(group['path'].iloc[0])}, {files.name(group['path'].iloc[1])})",
                path=source,
                fix="keep one plane per field with naming.plane, or move the extra files elsewhere",
            )
        present = set(group["channel"])
        missing = [wanted[c] + f" (id {c})" for c in wanted if c not in present]
        if missing:
            raise InputError(
                f"{name} has no image for channel {', '.join(missing)}; found "
                f"{', '.join(files.name(p) for p in group['path'])}",
                path=source,
                fix="add the missing file, remove the incomplete field, or fix the channel ids in the pipeline",
            )
        paths = {wanted[c]: p for c, p in zip(group["channel"], group["path"])}
        fields.append(
            Field(
                plate=str(plate),
                well=well,
                row=int(row),
                column=int(column),
                site=int(site),
                paths=paths,
                timepoint=int(timepoint) if every_timepoint else None,
            )
        )
    return fields
