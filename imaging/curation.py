"""Curation decisions a reviewer makes after looking at a run, kept next to its results.

``OUT/curation.csv`` is a plain, append-only log, one decision per row:

========== ==============================================================
column     meaning
========== ==============================================================
time       when (UTC, ISO 8601)
user       who (optional)
action     ``exclude_field``, ``include_field``, ``exclude_well``,
           ``include_well``, ``set_call``, ``clear_call``; for tissue
           runs ``exclude_image``, ``include_image``
plate      plate
well       well (``A01``; empty for tissue images)
image      tissue image (file name without extension), for image actions
site       field (for field and call actions)
timepoint  time point of the field, in a run of every time point (else empty)
label      cell id in the field (for call actions)
call       call name, e.g. ``sabgal_positive`` (for call actions)
value      ``True`` / ``False`` (for ``set_call``)
reason     why (free text)
========== ==============================================================

For every target (a field, a well, a cell's call) the latest decision wins, so undoing is
appending the opposite decision. The decisions are applied whenever the plate tables are
(re)built (``imaging run``, ``imaging report``, or the napari plugin's rebuild button), and
the run record lists them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd

from imaging.errors import InputError
from imaging.io.wells import format_well, parse_well
from imaging.io.writers import write_csv

CURATION_FILE = "curation.csv"
COLUMNS = ["time", "user", "action", "plate", "well", "image", "site", "timepoint", "label", "call", "value", "reason"]
ACTIONS = (
    "exclude_field",
    "include_field",
    "exclude_well",
    "include_well",
    "set_call",
    "clear_call",
    "exclude_image",
    "include_image",
)
IMAGE_ACTIONS = ("exclude_image", "include_image")  # tissue runs: a section or core left out


@dataclasses.dataclass(frozen=True)
class Curation:
    """The decisions in force: what is excluded and which calls are overridden."""

    # a field is (plate, well, site, timepoint), timepoint None outside a run of every time point
    excluded_fields: dict[tuple[str, str, int, int | None], str]  # field -> note
    excluded_wells: dict[tuple[str, str], str]  # (plate, well) -> note
    calls: dict[tuple[str, str, int, int | None, int, str], bool]  # (*field, label, call) -> value
    log: pd.DataFrame  # every decision, in order
    excluded_images: dict[str, str] = dataclasses.field(default_factory=dict)  # tissue image -> note

    @property
    def empty(self) -> bool:
        return not (self.excluded_fields or self.excluded_wells or self.calls or self.excluded_images)


def read_log(out_dir: str | Path) -> pd.DataFrame:
    """The decisions in ``OUT/curation.csv`` (an empty table when there is none).

    Parameters
    ----------
    out_dir : str or Path
        The run folder.

    Returns
    -------
    pandas.DataFrame
        One row per decision, oldest first.

    Raises
    ------
    InputError
        When the file cannot be read or lacks a column.
    """
    path = Path(out_dir) / CURATION_FILE
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        log = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot be read as CSV ({exc})", path=path, fix="repair the file or remove the damaged lines"
        ) from None
    missing = [c for c in ("action",) if c not in log.columns]
    if missing:
        raise InputError(f"has no {missing[0]!r} column", path=path, fix=f"columns are: {', '.join(COLUMNS)}")
    for line, action in enumerate(log["action"], start=2):
        if action not in ACTIONS:
            raise InputError(
                f"line {line}: unknown action {action!r}", path=path, fix=f"use one of: {', '.join(ACTIONS)}"
            )
    return log.reindex(columns=COLUMNS, fill_value="")


def _note(row) -> str:
    who = f" by {row.user}" if row.user else ""
    return f"{row.reason or 'no reason given'}{who} ({row.time})" if row.time else f"{row.reason}{who}"


def resolve(log: pd.DataFrame, *, source: str | Path = CURATION_FILE) -> Curation:
    """The decisions in force (latest per target wins).

    Parameters
    ----------
    log : pandas.DataFrame
        :func:`read_log`.
    source : str or Path
        The file the log came from, for messages.

    Returns
    -------
    Curation

    Raises
    ------
    InputError
        For a decision that names no target it can apply to.
    """
    fields: dict = {}
    wells: dict = {}
    calls: dict = {}
    images: dict = {}
    for line, row in enumerate(log.itertuples(index=False), start=2):
        if row.action in IMAGE_ACTIONS:
            if not str(row.image).strip():
                raise InputError(
                    f"line {line}: {row.action} needs an image",
                    path=source,
                    fix="name the image (its file name without extension)",
                )
            if row.action == "exclude_image":
                images[str(row.image)] = _note(row)
            else:
                images.pop(str(row.image), None)
            continue
        parsed = parse_well(row.well)
        if parsed is None:
            raise InputError(f"line {line}: {row.well!r} is not a well name", path=source, fix="write wells as A01")
        well = format_well(*parsed)
        try:
            if row.action in ("exclude_field", "include_field"):
                key = (str(row.plate), well, int(row.site), _timepoint(row.timepoint))
                if row.action == "exclude_field":
                    fields[key] = _note(row)
                else:
                    fields.pop(key, None)
            elif row.action in ("exclude_well", "include_well"):
                key = (str(row.plate), well)
                if row.action == "exclude_well":
                    wells[key] = _note(row)
                else:
                    wells.pop(key, None)
            else:
                key = (str(row.plate), well, int(row.site), _timepoint(row.timepoint), int(row.label), str(row.call))
                if row.action == "set_call":
                    if str(row.value).lower() not in ("true", "false", "1", "0"):
                        raise ValueError(f"value {row.value!r} is not True or False")
                    calls[key] = str(row.value).lower() in ("true", "1")
                else:
                    calls.pop(key, None)
        except ValueError as exc:
            raise InputError(
                f"line {line}: {exc}", path=source, fix="fields need a site; calls need a site, a label and a call name"
            ) from None
    return Curation(excluded_fields=fields, excluded_wells=wells, calls=calls, log=log, excluded_images=images)


def _timepoint(text: str) -> int | None:
    return int(text) if str(text).strip() else None


def load(out_dir: str | Path) -> Curation:
    """Read and resolve ``OUT/curation.csv``.

    Parameters
    ----------
    out_dir : str or Path
        The run folder.

    Returns
    -------
    Curation
    """
    return resolve(read_log(out_dir), source=Path(out_dir) / CURATION_FILE)


def record(
    out_dir: str | Path,
    *,
    action: str,
    plate: str = "",
    well: str = "",
    image: str = "",
    site: int | None = None,
    timepoint: int | None = None,
    label: int | None = None,
    call: str | None = None,
    value: bool | None = None,
    reason: str = "",
    user: str = "",
) -> pd.DataFrame:
    """Append one decision to ``OUT/curation.csv`` (rewritten atomically) and return the log.

    Parameters
    ----------
    out_dir : str or Path
        The run folder.
    action : str
        One of :data:`ACTIONS` (exclude / include a field, well or image; set or clear a call).
    plate, well, image : str
        The target: a plate's well (and ``site``), or a tissue run's image.
    site : int, optional
        The field's site, for field and call decisions.
    timepoint : int, optional
        The time point, in a time series.
    label : int, optional
        The cell's label, for a call decision.
    call : str, optional
        The call's name, for a call decision.
    value : bool, optional
        The call set.
    reason : str
        Why (required: the log is what a reader of the results checks).
    user : str
        Who decided.

    Returns
    -------
    pandas.DataFrame
        The whole log, this decision last.

    Raises
    ------
    InputError
        Without a reason, or for a decision that names no target the log can apply.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if not str(reason).strip():  # the one home of this rule: plate review and tissue curation alike
        raise InputError("a curation decision needs a reason", path=out_dir, fix="say why")
    row = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "user": user,
        "action": action,
        "plate": plate,
        "well": well,
        "image": image,
        "site": "" if site is None else str(int(site)),
        "timepoint": "" if timepoint is None else str(int(timepoint)),
        "label": "" if label is None else str(int(label)),
        "call": call or "",
        "value": "" if value is None else str(bool(value)),
        "reason": reason,
    }
    log = pd.concat([read_log(out_dir), pd.DataFrame([row])], ignore_index=True)
    resolve(log)  # refuse a decision that could not be applied
    write_csv(log, Path(out_dir) / CURATION_FILE)
    return log


@dataclasses.dataclass(frozen=True)
class Decision:
    """A decision in force, as a reviewer sees it, and the one that would undo it."""

    text: str
    undo: dict  # keyword arguments of :func:`record` (without reason and user)


def in_force(curation: Curation) -> list[Decision]:
    """The decisions in force, each with its undo (exclusions are included again; a call
    override is cleared, so the cell's measured call applies again).

    Parameters
    ----------
    curation : Curation
        :func:`resolve` of a log.

    Returns
    -------
    list of Decision
    """
    decisions = [
        Decision(f"image {image} excluded: {note}", {"action": "include_image", "image": image})
        for image, note in sorted(curation.excluded_images.items())
    ]
    for (plate, well), note in sorted(curation.excluded_wells.items()):
        decisions.append(
            Decision(f"well {plate} {well} excluded: {note}", {"action": "include_well", "plate": plate, "well": well})
        )
    for (plate, well, site, timepoint), note in sorted(curation.excluded_fields.items()):
        decisions.append(
            Decision(
                f"field {field_name(plate, well, site, timepoint)} excluded: {note}",
                {"action": "include_field", "plate": plate, "well": well, "site": site, "timepoint": timepoint},
            )
        )
    for (plate, well, site, timepoint, label, call), value in sorted(curation.calls.items()):
        decisions.append(
            Decision(
                f"cell {label} of {field_name(plate, well, site, timepoint)}: {call} set "
                f"{'positive' if value else 'negative'}",
                {
                    "action": "clear_call",
                    "plate": plate,
                    "well": well,
                    "site": site,
                    "timepoint": timepoint,
                    "label": label,
                    "call": call,
                },
            )
        )
    return decisions


def field_name(plate: str, well: str, site: int, timepoint: int | None = None) -> str:
    """How a field is named to a reviewer: ``P1 A01 s2`` (``P1 A01 s2 t3`` in a time series).

    Parameters
    ----------
    plate, well : str
        The plate and well.
    site : int
        The site.
    timepoint : int, optional
        The time point, in a time series.

    Returns
    -------
    str
    """
    return f"{plate} {well} s{site}" + ("" if timepoint is None else f" t{timepoint}")
