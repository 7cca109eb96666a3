"""Single-cell profiles for pycytominer: a plate's cells table in CellProfiler's column names.

pycytominer (``aggregate``, ``normalize``, ``feature_select``) finds its inputs by name:
metadata columns start with ``Metadata_``, features with a compartment (``Nuclei_``,
``Cytoplasm_``, ``Cells_``) followed by CellProfiler's measurement names
(``AreaShape_Area``, ``Intensity_MeanIntensity_<channel>``). :func:`cells_to_profiles`
renames the measured columns accordingly:

==========================  =========================================================
``nucleus_area_px``          ``Nuclei_AreaShape_Area`` (``cell_area_px``: ``Cells_``)
``nucleus_eccentricity``     ``Nuclei_AreaShape_Eccentricity``
``nucleus_major_axis_px``    ``Nuclei_AreaShape_MajorAxisLength`` (minor likewise)
``*_area_um2``               ``Nuclei_/Cells_AreaShape_Area_um2``
``centroid_row/col``         ``Nuclei_Location_Center_Y/X``
``<ch>_nuclear_mean``        ``Nuclei_Intensity_MeanIntensity_<CH>``
``<ch>_nuclear_integrated``  ``Nuclei_Intensity_IntegratedIntensity_<CH>``
``<ch>_cytoplasm_mean``      ``Cytoplasm_Intensity_MeanIntensity_<CH>``
``<ch>_cell_mean``           ``Cells_Intensity_MeanIntensity_<CH>``
``<ch>_nc_ratio``            ``Cells_Intensity_NuclearCytoplasmicRatio_<CH>``
``sabgal_od_mean`` etc.      ``Cells_Intensity_MeanXgalOD``, ``_IntegratedXgalOD``, ``_XgalStainedFraction``
==========================  =========================================================

Everything else becomes metadata: plate, well, site, timepoint (a time series) and the plate
map's columns (``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ``Metadata_Timepoint``,
``Metadata_<Column>``), the cell's
label (``Metadata_ObjectNumber``), border contact, field use, curation and the calls, with
booleans as 0/1 (pycytominer's ``aggregate`` averages what it is given). Intensities are the
background-subtracted values of ``cells.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imaging.errors import InputError
from imaging.io.run_folder import claimed
from imaging.io.writers import StreamedTable
from imaging.plate.tables import cells_table_chunks

MORPHOLOGY_NAMES = {
    "nucleus_area_px": "Nuclei_AreaShape_Area",
    "cell_area_px": "Cells_AreaShape_Area",
    "nucleus_area_um2": "Nuclei_AreaShape_Area_um2",
    "cell_area_um2": "Cells_AreaShape_Area_um2",
    "nucleus_eccentricity": "Nuclei_AreaShape_Eccentricity",
    "nucleus_major_axis_px": "Nuclei_AreaShape_MajorAxisLength",
    "nucleus_minor_axis_px": "Nuclei_AreaShape_MinorAxisLength",
    "centroid_row": "Nuclei_Location_Center_Y",
    "centroid_col": "Nuclei_Location_Center_X",
}
INTENSITY_NAMES = {
    "nuclear_mean": "Nuclei_Intensity_MeanIntensity",
    "nuclear_integrated": "Nuclei_Intensity_IntegratedIntensity",
    "cytoplasm_mean": "Cytoplasm_Intensity_MeanIntensity",
    "cytoplasm_integrated": "Cytoplasm_Intensity_IntegratedIntensity",
    "cell_mean": "Cells_Intensity_MeanIntensity",
    "cell_integrated": "Cells_Intensity_IntegratedIntensity",
    "nc_ratio": "Cells_Intensity_NuclearCytoplasmicRatio",
}
SABGAL_NAMES = {
    "sabgal_od_mean": "Cells_Intensity_MeanXgalOD",
    "sabgal_od_integrated": "Cells_Intensity_IntegratedXgalOD",
    "sabgal_stained_fraction": "Cells_Intensity_XgalStainedFraction",
}
METADATA_NAMES = {
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "site": "Metadata_Site",
    "timepoint": "Metadata_Timepoint",
    "label": "Metadata_ObjectNumber",
    "touches_border": "Metadata_TouchesBorder",
    "field_used_in_wells": "Metadata_FieldUsedInWells",
    "curated": "Metadata_Curated",
}


def profile_name(column: str, *, intensity_prefixes: list[str]) -> str:
    """The pycytominer name of one cells-table column (see module docstring)."""
    for table in (METADATA_NAMES, MORPHOLOGY_NAMES, SABGAL_NAMES):
        if column in table:
            return table[column]
    for prefix in sorted(intensity_prefixes, key=len, reverse=True):
        for suffix, name in INTENSITY_NAMES.items():
            if column == f"{prefix}_{suffix}":
                return f"{name}_{prefix.upper()}"
    return "Metadata_" + "".join(part.capitalize() for part in column.split("_"))


def cells_to_profiles(cells: pd.DataFrame, pipeline) -> pd.DataFrame:
    """A cells table (``cells.csv`` or ``cells.parquet``) as pycytominer single-cell profiles:
    metadata first, then features; booleans as 0/1."""
    prefixes = [spec.column_prefix for spec in pipeline.measure.intensity]
    renamed = cells.rename(columns={c: profile_name(c, intensity_prefixes=prefixes) for c in cells.columns})
    for column in renamed.columns:
        values = renamed[column]
        if pd.api.types.is_bool_dtype(values):
            renamed[column] = values.astype(int)
        elif values.dtype == object and values.notna().any() and set(values.dropna()) <= {True, False}:
            renamed[column] = values.map({True: 1, False: 0})  # a call with missing values
    metadata = [c for c in renamed.columns if c.startswith("Metadata_")]
    return renamed[metadata + [c for c in renamed.columns if c not in metadata]]


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """The profile's feature columns (what pycytominer's ``features='infer'`` also finds)."""
    return [c for c in profiles.columns if c.startswith(("Nuclei_", "Cytoplasm_", "Cells_"))]


def write_profiles(out_dir: str | Path, *, table_format: str | None = None) -> list[Path]:
    """``OUT/<plate>/profiles.csv`` (or ``.parquet``) for every plate of a run; returns the
    files. ``table_format``: ``csv`` or ``parquet`` (default: the run's own format)."""
    from imaging.run.record import read_record

    out_dir = Path(out_dir)
    record, pipeline = read_record(out_dir)
    if record.get("mode") == "tissue":
        raise InputError(
            "is a tissue run: profiles are per-cell tables of plates",
            path=out_dir,
            fix="give the --out folder of a plate run",
        )
    chosen = table_format or ("parquet" if pipeline.output.format == "parquet" else "csv")
    written = []
    with claimed(out_dir):
        for plate in record["plates"]:
            plate_dir = out_dir / plate
            with StreamedTable(plate_dir / "profiles", table_format=chosen) as table:
                for chunk in cells_table_chunks(plate_dir, text_columns=record.get("annotation_columns", [])):
                    table.write(cells_to_profiles(chunk, pipeline))
            written.append(plate_dir / f"profiles.{chosen}")
    return written
