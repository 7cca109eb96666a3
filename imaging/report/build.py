"""Rebuild a run's comparisons, plate quality, plots and HTML report from its tables.

Inputs are only what a run wrote (``run.json`` and ``<plate>/wells.csv`` / ``fields.csv``),
so ``imaging report OUT`` reproduces the end of ``imaging run`` and can pool several runs
(independent experiments) into one comparison.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.io.names import file_stem
from imaging.io.writers import atomic_path, write_csv
from imaging.plate.tables import read_plate_csv
from imaging.report.html import render_report
from imaging.report.plots import dose_response, plate_heatmap, png_bytes, superplot, time_course
from imaging.run.record import read_record
from imaging.stats import compare_all, dose_response_table, plate_quality, replicate_key, well_scores

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunTables:
    """The tables of one or more runs, pooled."""

    records: list[dict]
    wells: pd.DataFrame
    fields: pd.DataFrame


def load_runs(run_dirs: list[str | Path]) -> RunTables:
    """Read ``run.json`` and every plate's wells and fields tables of each run folder."""
    records, wells, fields = [], [], []
    for run_dir in map(Path, run_dirs):
        record, _ = read_record(run_dir)
        records.append(record)
        for plate in record.get("plates", {}):
            for name, bucket in (("wells.csv", wells), ("fields.csv", fields)):
                path = run_dir / plate / name
                if not path.is_file():
                    raise InputError(
                        f"missing {name} of plate {plate}", path=run_dir, fix="re-run `imaging run` into this folder"
                    )
                bucket.append(read_plate_csv(path))
    if not wells:
        raise InputError("the run has no plates", path=run_dirs[0], fix="check the run folder")
    return RunTables(
        records=records, wells=pd.concat(wells, ignore_index=True), fields=pd.concat(fields, ignore_index=True)
    )


def default_readouts(pipeline) -> list[str]:
    """Readouts compared when the pipeline lists none: every call's percent, the X-gal OD,
    and the nuclear mean of every measured channel other than the nuclear stain."""
    readouts = [f"{call.name}_pct" for call in pipeline.calls]
    if pipeline.measure.sabgal:
        readouts.append("sabgal_od_mean")
    readouts += [
        f"{spec.column_prefix}_nuclear_mean"
        for spec in pipeline.measure.intensity
        if spec.channel != pipeline.segmentation.channel
    ]
    return readouts


def _figures(tables: RunTables, readouts: list[str], settings) -> list[dict]:
    """Every plot of the report: (section, name, title, figure). A time series gets a time
    course per readout; its SuperPlots, dose responses and plate maps show the last time point."""
    figures = []
    if "timepoint" in tables.wells.columns:
        for readout in readouts:
            figures.append(
                {
                    "section": "time",
                    "name": f"time_{readout}",
                    "title": f"Time course: {readout}",
                    "figure": time_course(
                        tables.wells,
                        readout,
                        genotype_column=settings.genotype_column,
                        treatment_column=settings.treatment_column,
                        control_genotype=settings.control_genotype,
                        vehicle_treatment=settings.vehicle_treatment,
                    ),
                }
            )
        last = tables.wells["timepoint"].max()
        tables = dataclasses.replace(
            tables,
            wells=tables.wells[tables.wells["timepoint"] == last],
            fields=tables.fields[tables.fields["timepoint"] == last],
        )
    for readout in readouts:
        if readout in tables.wells.columns:
            figures.append(
                {
                    "section": "superplots",
                    "name": f"superplot_{readout}",
                    "title": f"SuperPlot: {readout}",
                    "figure": superplot(
                        tables.wells,
                        readout,
                        control_genotype=settings.control_genotype,
                        vehicle_treatment=settings.vehicle_treatment,
                        genotype_column=settings.genotype_column,
                        treatment_column=settings.treatment_column,
                    ),
                }
            )
            curve = dose_response(
                tables.wells,
                readout,
                genotype_column=settings.genotype_column,
                treatment_column=settings.treatment_column,
                vehicle_treatment=settings.vehicle_treatment,
            )
            if curve is not None:
                figures.append(
                    {
                        "section": "dose",
                        "name": f"dose_{readout}",
                        "title": f"Dose response: {readout}",
                        "figure": curve,
                    }
                )
    for plate, plate_wells in tables.wells.groupby("plate", sort=True):
        plate_fields = tables.fields[tables.fields["plate"] == plate]
        failed = set(plate_fields.loc[~plate_fields["qc_pass"].astype(bool), "well"])
        qc = plate_fields.groupby("well").agg(
            worst_focus_blur_px=("focus_blur_px", "max"),
            fields_failed_qc=("qc_pass", lambda s: int((~s.astype(bool)).sum())),
        )
        plate_wells = plate_wells.merge(qc, left_on="well", right_index=True, how="left")
        for column, cmap in [(r, "viridis") for r in readouts if r in plate_wells.columns] + [
            ("n_cells", "cividis"),
            ("worst_focus_blur_px", "magma_r"),
            ("fields_failed_qc", "Reds"),
        ]:
            figures.append(
                {
                    "section": "plates",
                    "name": f"plate_{plate}_{column}",
                    "title": f"{plate}: {column}",
                    "figure": plate_heatmap(
                        plate_wells, column, title=f"{plate}: {column}", flagged_wells=failed, cmap=cmap
                    ),
                }
            )
    return figures


ALL_GENOTYPES = "all"


def comparison_design(wells: pd.DataFrame, settings) -> tuple[pd.DataFrame | None, str, str | None]:
    """The wells to compare, the genotype column and the control genotype.

    Knockout x treatment needs both columns and both references. A compound experiment
    without genotypes (no genotype column, or no ``control_genotype``) is compared treatment
    against vehicle alone, all wells as one genotype ``all``. None when nothing can be compared.
    """
    if not settings.vehicle_treatment or settings.treatment_column not in wells.columns:
        return None, settings.genotype_column, None
    if settings.control_genotype and settings.genotype_column in wells.columns:
        return wells, settings.genotype_column, settings.control_genotype
    return wells.assign(_all_genotypes=ALL_GENOTYPES), "_all_genotypes", ALL_GENOTYPES


def build_report(run_dirs: list[str | Path], out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``comparisons.csv``, ``plate_qc.csv``, ``well_scores.csv``, ``plots/*.png``
    and ``report.html`` for the given run folder(s).

    Parameters
    ----------
    run_dirs : list of str or Path
        Plate run folders of one pipeline (several: pooled, each run a replicate source).
    out_dir : str or Path, optional
        Where to write; the only run folder when None (several runs need one).

    Returns
    -------
    dict of str to Path
        The files written (``report``, ``comparisons``, ...).
    """
    run_dirs = [Path(d) for d in run_dirs]
    if out_dir is None:
        if len(run_dirs) > 1:
            raise InputError("several runs need an output folder", fix="add --out DIR")
        out_dir = run_dirs[0]
    out_dir = Path(out_dir)
    tables = load_runs(run_dirs)
    pipeline = parse_pipeline(tables.records[0]["pipeline"]["config"], source=run_dirs[0] / "run.json")
    settings = pipeline.comparison
    readouts = [r for r in (settings.readouts or default_readouts(pipeline)) if r in tables.wells.columns]
    compared, genotype_column, control_genotype = comparison_design(tables.wells, settings)
    if compared is not None:
        comparisons = compare_all(
            compared,
            readouts,
            control_genotype=control_genotype,
            vehicle_treatment=settings.vehicle_treatment,
            genotype_column=genotype_column,
            treatment_column=settings.treatment_column,
            method="welch" if settings.test == "welch" else "mann-whitney",
        )
    else:
        comparisons = compare_all(tables.wells.iloc[:0], [], control_genotype="", vehicle_treatment="")
        log.warning(
            "no comparisons: they need comparison.vehicle_treatment in the pipeline and a %r column "
            "in the plate map (and, for knockouts, comparison.control_genotype and a %r column)",
            settings.treatment_column,
            settings.genotype_column,
        )
    quality = plate_quality(tables.wells, readouts)
    scores = well_scores(tables.wells, readouts)
    figures = _figures(tables, readouts, settings)
    images = {}
    for item in figures:
        images[item["name"]] = png_bytes(item["figure"])
        path = out_dir / "plots" / f"{file_stem(item['name'])}.png"
        with atomic_path(path) as temporary:
            temporary.write_bytes(images[item["name"]])
    doses = dose_response_table(
        tables.wells,
        readouts,
        genotype_column=settings.genotype_column,
        treatment_column=settings.treatment_column,
        vehicle_treatment=settings.vehicle_treatment,
    )
    outputs = {
        "comparisons": write_csv(comparisons, out_dir / "comparisons.csv"),
        "plate_qc": write_csv(quality, out_dir / "plate_qc.csv"),
        "well_scores": write_csv(scores, out_dir / "well_scores.csv"),
        "dose_response": write_csv(doses, out_dir / "dose_response.csv"),
    }
    html = render_report(
        records=tables.records,
        pipeline=pipeline,
        wells=tables.wells,
        fields=tables.fields,
        comparisons=comparisons,
        quality=quality,
        readouts=readouts,
        figures=[{k: v for k, v in f.items() if k != "figure"} | {"png": images[f["name"]]} for f in figures],
        unit=replicate_key(tables.wells)[1],
        doses=doses,
    )
    with atomic_path(out_dir / "report.html") as temporary:
        temporary.write_text(html, encoding="utf-8")
    outputs["report"] = out_dir / "report.html"
    outputs["plots"] = out_dir / "plots"
    return outputs
