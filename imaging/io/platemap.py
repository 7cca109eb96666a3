"""Plate maps: which well holds which cell line, genotype, treatment, dose and replicate.

A plate map is a CSV with a ``well`` column, optionally ``plate`` (when one map describes
several plates), and any annotation columns. Known annotations: ``cell_line``,
``genotype``, ``treatment``, ``dose`` (numeric), ``replicate`` (biological replicate) and
``control`` (``positive`` / ``negative``, or +1/-1, pos/neg, PC/NC, for plate-quality
statistics; read as ``positive``/``negative``). Other columns are
carried through to the output tables unchanged.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from imaging.errors import InputError
from imaging.io.wells import format_well, parse_well

KNOWN_ANNOTATIONS = ("cell_line", "genotype", "treatment", "dose", "replicate", "control")
# Columns every pipeline's tables carry: a plate map may not define them (the measured columns
# a given pipeline adds are checked at planning: tables.clashing_output_column)
RESERVED_COLUMNS = (
    "row",
    "column",
    "site",
    "timepoint",
    "label",
    "n_cells",
    "n_cells_in_readouts",
    "nucleus_radius_px",
    "focus_blur_px",
    "pixel_size_um",
    "qc_pass",
    "qc_reasons",
    "curation",
    "used_in_wells",
    "field_used_in_wells",
    "curated",
    "n_fields",
    "n_fields_used",
    "n_fields_failed_qc",
)


def _clean_header(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def read_platemap(path: str | Path) -> pd.DataFrame:
    """Read and validate a plate-map CSV.

    Returns a table with ``well`` in canonical form (``A01``), ``plate`` when the map has
    one, and the annotation columns (strings, except ``dose`` which is numeric). Header
    names are lower-cased with spaces turned into underscores.

    Raises
    ------
    InputError
        Missing file or ``well`` column, malformed or duplicated wells, non-numeric dose,
        or a column name the outputs reserve.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("plate map not found", path=path, fix="check the --platemap argument")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
        # Excel in many European locales saves "CSV" with semicolons; tab-separated text too
        if len(table.columns) == 1:
            separator = next((s for s in (";", "\t") if s in str(table.columns[0])), None)
            if separator:
                table = pd.read_csv(
                    path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig", sep=separator
                )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(
            f"cannot be read as CSV ({str(exc).splitlines()[0]})",
            path=path,
            fix="save the plate map as comma-separated UTF-8 text with a header row",
        ) from None
    table.columns = [_clean_header(c) for c in table.columns]
    if "well" not in table.columns:
        raise InputError(
            f"has no 'well' column (columns: {', '.join(table.columns)})",
            path=path,
            fix="add a header row with a column named 'well' (A01, A02, ...)",
        )
    duplicated_columns = table.columns[table.columns.duplicated()].tolist()
    if duplicated_columns:
        raise InputError(
            f"has the column {duplicated_columns[0]!r} twice", path=path, fix="give every column a distinct name"
        )
    reserved = [c for c in table.columns if c in RESERVED_COLUMNS]
    if reserved:
        raise InputError(
            f"column {reserved[0]!r} is computed by the pipeline",
            path=path,
            fix=f"rename or remove the column {reserved[0]!r}",
        )
    table = table.apply(lambda col: col.str.strip())
    table = table[~(table == "").all(axis=1)].reset_index(drop=True)
    if table.empty:
        raise InputError("has no rows", path=path, fix="add one row per well")

    wells = []
    for line, name in enumerate(table["well"], start=2):  # line 1 is the header
        parsed = parse_well(name)
        if parsed is None:
            raise InputError(
                f"line {line}: {name!r} is not a well name",
                path=path,
                fix="write wells as a row letter and a column number, e.g. A1 or A01",
            )
        wells.append(format_well(*parsed))
    table["well"] = wells

    keys = ["plate", "well"] if "plate" in table.columns else ["well"]
    duplicated = table[table.duplicated(keys, keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        where = f"plate {first['plate']}, " if "plate" in keys else ""
        lines = ", ".join(str(i + 2) for i in duplicated.index[:4])
        raise InputError(
            f"{where}well {first['well']} is described more than once (lines {lines})",
            path=path,
            fix="keep one row per well (per plate)",
        )

    if "dose" in table.columns:
        numeric = pd.to_numeric(table["dose"].replace("", None), errors="coerce")
        bad = table["dose"][(table["dose"] != "") & numeric.isna()]
        if not bad.empty:
            raise InputError(
                f"line {bad.index[0] + 2}: dose {bad.iloc[0]!r} is not a number",
                path=path,
                fix="write doses as plain numbers (units in the column name or a separate column)",
            )
        table["dose"] = numeric
    if "control" in table.columns:
        table["control"] = _control_roles(table["control"], path)
    table = table.replace("", pd.NA)
    return table


# Codes for control wells seen in plate maps (CellProfiler's +1/-1, Harmony's PC/NC, ...);
# anything else in a control column is refused rather than silently treated as a sample.
POSITIVE_CODES = ("positive", "pos", "+", "+1", "pc", "p", "ctrl+", "positive_control")
NEGATIVE_CODES = ("negative", "neg", "-", "-1", "nc", "n", "ctrl-", "negative_control")
SAMPLE_CODES = ("", "sample", "none", "no", "0", "test", "treatment")


def control_role(code: str) -> str | None:
    """'positive', 'negative', '' (a sample well) or None (not a known code)."""
    lowered = str(code).strip().lower().replace(" ", "_")
    if lowered in POSITIVE_CODES:
        return "positive"
    if lowered in NEGATIVE_CODES:
        return "negative"
    return "" if lowered in SAMPLE_CODES else None


def _control_roles(codes: pd.Series, path: Path) -> pd.Series:
    roles = codes.map(control_role)
    unknown = roles.isna()
    if unknown.any():
        line = int(unknown.to_numpy().nonzero()[0][0]) + 2
        raise InputError(
            f"line {line}: control {codes[unknown].iloc[0]!r} is not a control code",
            path=path,
            fix="mark control wells positive or negative (also +1/-1, pos/neg, PC/NC) and leave sample wells empty",
        )
    return roles


def z_prime_readiness(annotations: pd.DataFrame) -> list[str]:
    """Why Z' cannot be computed for some plates (empty when every plate has at least two
    positive and two negative control wells)."""
    if "control" not in annotations.columns:
        return ["the plate map has no 'control' column (positive / negative wells): Z' stays blank"]
    problems = []
    for plate, wells in annotations.groupby("plate") if "plate" in annotations.columns else [("", annotations)]:
        counts = wells["control"].value_counts()
        n_positive, n_negative = int(counts.get("positive", 0)), int(counts.get("negative", 0))
        if n_positive < 2 or n_negative < 2:
            where = f"plate {plate}: " if plate else ""
            problems.append(
                f"{where}{n_positive} positive and {n_negative} negative control well(s) imaged; "
                "Z' needs at least 2 of each"
            )
    return problems


def join_annotations(
    table: pd.DataFrame, annotations: pd.DataFrame, *, key: str, columns: list[str], after: list[str]
) -> pd.DataFrame:
    """``table`` with the annotation ``columns`` joined on ``key`` and placed right after the
    ``after`` columns: the one annotation join of plate tables (plate-map columns per well)
    and tissue tables (sample-sheet columns per image).

    Parameters
    ----------
    table : DataFrame
        Rows to annotate (fields, wells; regions, sections, lesions).
    annotations : DataFrame
        One row per ``key`` value, with ``key`` as a column or as the index.
    key : str
        ``'well'`` or ``'image'``.
    columns : list of str
        The annotation columns to join (none: ``table`` as it is).
    after : list of str
        The identifying columns the annotations follow.

    Returns
    -------
    DataFrame
        A left join: rows without an annotation keep theirs empty; an empty table gets the
        columns it would have.
    """
    order = [*after, *columns, *[c for c in table.columns if c not in after]]
    if table.empty:
        return table.reindex(columns=order)
    if not columns:
        return table
    right = annotations.set_index(key)[columns] if key in annotations.columns else annotations[columns]
    return table.merge(right, left_on=key, right_index=True, how="left")[order]


def annotate_wells(
    imaged: pd.DataFrame, platemap: pd.DataFrame, *, source: str | Path | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """Attach plate-map annotations to the imaged wells.

    Parameters
    ----------
    imaged : DataFrame
        Columns ``plate`` and ``well``, one row per imaged well.
    platemap : DataFrame
        Output of :func:`read_platemap`.

    Returns
    -------
    annotated : DataFrame
        ``imaged`` with the plate map's annotation columns joined on.
    unimaged : list of dict
        Wells the map describes that have no images (``{'plate': ..., 'well': ...}``).

    Raises
    ------
    InputError
        An imaged well (or plate) the plate map does not describe.
    """
    imaged = imaged[["plate", "well"]].drop_duplicates()
    if "plate" in platemap.columns:
        mapped_plates = set(platemap["plate"].dropna())
        unknown_plates = sorted(set(imaged["plate"]) - mapped_plates)
        if unknown_plates:
            raise InputError(
                f"the plate map's 'plate' column does not name the imaged plate(s) "
                f"{', '.join(unknown_plates)} (it names {', '.join(sorted(mapped_plates)) or 'none'})",
                path=source,
                fix="add rows for these plates, or drop the plate column to use one map for every plate",
            )
        annotated = imaged.merge(platemap, on=["plate", "well"], how="left", indicator=True)
        described = platemap[["plate", "well"]]
    else:
        annotated = imaged.merge(platemap, on="well", how="left", indicator=True)
        described = platemap[["well"]].merge(imaged[["plate"]].drop_duplicates(), how="cross")
    missing = annotated[annotated["_merge"] == "left_only"]
    if not missing.empty:
        listed = ", ".join(f"{p}/{w}" for p, w in zip(missing["plate"][:10], missing["well"][:10]))
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputError(
            f"the plate map does not describe imaged well(s) {listed}{more}",
            path=source,
            fix="add a row for every imaged well (or remove those images)",
        )
    annotated = annotated.drop(columns="_merge").reset_index(drop=True)
    imaged_keys = set(zip(imaged["plate"], imaged["well"]))
    unimaged = [
        {"plate": str(p), "well": str(w)}
        for p, w in zip(described["plate"], described["well"])
        if (p, w) not in imaged_keys
    ]
    return annotated, unimaged
