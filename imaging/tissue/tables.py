"""A tissue run's tables from its images' stored results.

``cells.csv``, ``regions.csv`` (IHC per image), ``lesions.csv``, ``sections.csv`` (burden
per image), ``samples.csv`` (per animal or patient, from the sample sheet) and
``comparisons.csv`` (groups compared over samples): :func:`assemble_tissue`, after a run and
after curation (:func:`rebuild_tissue_tables`: excluded images left out).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from imaging import curation as curation_log
from imaging.config import TissuePipeline
from imaging.errors import InputError
from imaging.io.platemap import join_annotations
from imaging.io.run_folder import claimed
from imaging.io.writers import StreamedTable, write_csv, write_json
from imaging.run.record import read_record
from imaging.tissue.burden import (
    LESION_COLUMNS,
)
from imaging.tissue.ihc import CELL_COLUMNS
from imaging.tissue.image import WORK_FOLDER


def _annotate(table: pd.DataFrame, sheet: pd.DataFrame) -> pd.DataFrame:
    """Sample-sheet columns right after the image column."""
    columns = [c for c in sheet.columns if c != "image"]
    return join_annotations(table, sheet, key="image", columns=columns, after=["image"])


def _concatenate(parts: list[Path], out_path: Path, columns: list[str]) -> None:
    """Stream per-image tables into one CSV (atomically: :class:`imaging.io.writers.StreamedTable`)."""
    with StreamedTable(out_path.with_suffix(""), table_format="csv", empty=columns) as table:
        for part in parts:
            for chunk in pd.read_csv(part, chunksize=200000):
                table.write(chunk)


def sample_table(
    pipeline: TissuePipeline, sheet: pd.DataFrame, regions: pd.DataFrame, sections: pd.DataFrame
) -> pd.DataFrame:
    """Per animal / patient: sections pooled (lesion areas and tissue summed; IHC classes
    pooled by cell counts). ``sheet``: image + sample-sheet columns (:class:`TissuePlan`)."""
    key = pipeline.comparison.sample_column
    annotations = [c for c in sheet.columns if c not in ("image", key)]
    frames = []
    base = sheet.assign(**{key: sheet[key] if key in sheet else sheet["image"]})
    if not sections.empty:
        joined = sections.merge(base[["image", key]], on="image", suffixes=("", "_sheet"))
        grouped = joined.groupby(key, sort=True)
        frame = grouped.agg(
            n_sections=("image", "size"),
            n_lesions=("n_lesions", "sum"),
            lesion_area_mm2=("lesion_area_mm2", "sum"),
            tissue_area_mm2=("tissue_area_mm2", "sum"),
        )
        frame["lesion_percent_of_tissue"] = 100 * frame["lesion_area_mm2"] / frame["tissue_area_mm2"]
        frames.append(frame)
    if not regions.empty:
        joined = regions.merge(base[["image", key]], on="image", suffixes=("", "_sheet"))
        grouped = joined.groupby(key, sort=True)
        sums = grouped[["n_cells", "n_0", "n_1plus", "n_2plus", "n_3plus", "tissue_area_mm2"]].sum()
        frame = pd.DataFrame(index=sums.index)
        frame["n_regions"] = grouped.size()
        frame["n_cells"] = sums["n_cells"]
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["percent_positive"] = 100 * (sums["n_1plus"] + sums["n_2plus"] + sums["n_3plus"]) / sums["n_cells"]
            frame["h_score"] = 100 * (sums["n_1plus"] + 2 * sums["n_2plus"] + 3 * sums["n_3plus"]) / sums["n_cells"]
            frame["positive_cells_per_mm2"] = (sums["n_1plus"] + sums["n_2plus"] + sums["n_3plus"]) / sums[
                "tissue_area_mm2"
            ].replace(0, np.nan)
        frames.append(frame.rename(columns={"n_cells": "n_cells_scored"}))
    table = pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame(columns=[key])
    sheet_annotations = base.drop_duplicates(key).set_index(key)[annotations] if annotations else None
    if sheet_annotations is not None:
        table = table.merge(sheet_annotations, left_on=key, right_index=True, how="left")
        table = table[[key, *annotations, *[c for c in table.columns if c not in [key, *annotations]]]]
    return table


def compare_samples(pipeline: TissuePipeline, samples: pd.DataFrame) -> pd.DataFrame:
    """Each group against the control group, per readout, with samples as the unit (the
    samples of one run, or of several runs pooled by ``imaging report``)."""
    from imaging.stats import COMPARISON_COLUMNS, compare_groups, with_significance

    settings = pipeline.comparison
    group = settings.group_column
    if settings.control_group is None or group not in samples.columns:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    readouts = [
        c
        for c in (
            "lesion_percent_of_tissue",
            "n_lesions",
            "lesion_area_mm2",
            "h_score",
            "percent_positive",
            "positive_cells_per_mm2",
        )
        if c in samples.columns
    ]
    method = "mann-whitney" if settings.test == "mann-whitney" else "welch"
    rows = []
    for readout in readouts:
        values = samples[[group, readout]].dropna()
        reference = values.loc[values[group] == settings.control_group, readout].to_numpy(float)
        for name in [g for g in dict.fromkeys(values[group]) if g != settings.control_group]:
            test = values.loc[values[group] == name, readout].to_numpy(float)
            rows.append(
                {
                    "comparison": "group_vs_control",
                    "readout": readout,
                    "cell_line": "",
                    "genotype": name,
                    "treatment": "",
                    "reference": settings.control_group,
                    "unit": settings.sample_column,
                }
                | compare_groups(test, reference, method=method)
            )
    return with_significance(pd.DataFrame(rows, columns=COMPARISON_COLUMNS)).reindex(columns=COMPARISON_COLUMNS)


def tissue_table_names(pipeline: TissuePipeline) -> list[str]:
    """The tables :func:`assemble_tissue` writes for ``pipeline`` (cells only when it scores
    cells, lesions only when it measures them).

    Parameters
    ----------
    pipeline : TissuePipeline
        The run's pipeline.

    Returns
    -------
    list of str
        File names in the run folder.
    """
    cells = ["cells.csv", "regions.csv"] if pipeline.cells is not None else []
    lesions = ["lesions.csv", "sections.csv"] if pipeline.lesions is not None else []
    return [*cells, *lesions, "samples.csv", "comparisons.csv"]


def assemble_tissue(
    pipeline: TissuePipeline, sheet: pd.DataFrame, summaries: list[dict], out_dir: Path, curation
) -> None:
    """The run's tables from its per-image results (``summaries``, sorted by image), leaving
    out the images a reviewer excluded (``curation.csv``): cells, regions, lesions, sections,
    samples and comparisons. A run and a rebuild after curation both come here."""
    summaries = [s for s in summaries if s["image"] not in curation.excluded_images]
    sheet = sheet[~sheet["image"].isin(list(curation.excluded_images))]
    work = out_dir / WORK_FOLDER
    regions = pd.DataFrame([{"image": s["image"], **s["ihc"]} for s in summaries if "ihc" in s])
    sections = pd.DataFrame(
        [
            {"image": s["image"], **{k: v for k, v in s["burden"].items() if k != "lesion_threshold"}}
            for s in summaries
            if "burden" in s
        ]
    )
    if pipeline.cells is not None:
        _concatenate(
            [work / f"{s['image']}.cells.csv" for s in summaries], out_dir / "cells.csv", ["image", *CELL_COLUMNS]
        )
        write_csv(_annotate(regions, sheet), out_dir / "regions.csv")
    if pipeline.lesions is not None:
        lesion_parts = []
        for s in summaries:
            part = pd.read_csv(work / f"{s['image']}.lesions.csv")
            part.insert(0, "image", s["image"])
            lesion_parts.append(part)
        lesions = pd.concat(lesion_parts, ignore_index=True) if lesion_parts else pd.DataFrame(columns=LESION_COLUMNS)
        lesions["area_mm2"] = lesions["area_um2"] / 1e6
        write_csv(_annotate(lesions, sheet), out_dir / "lesions.csv")
        write_csv(_annotate(sections, sheet), out_dir / "sections.csv")
    per_sample = sample_table(pipeline, sheet, regions, sections)
    write_csv(per_sample, out_dir / "samples.csv")
    write_csv(compare_samples(pipeline, per_sample), out_dir / "comparisons.csv")


def tissue_curation_record(curation) -> dict:
    """The run record's account of a tissue run's curation: every decision, the images excluded."""
    return {
        "file": curation_log.CURATION_FILE,
        "n_decisions": int(len(curation.log)),
        "decisions": curation.log.to_dict(orient="records"),
        "excluded_images": [{"image": i, "note": n} for i, n in sorted(curation.excluded_images.items())],
    }


def rebuild_tissue_tables(out_dir: str | Path) -> dict:
    """Rebuild a finished tissue run's tables from its per-image results, applying
    ``curation.csv`` (``imaging report``); updates ``run.json``. Returns the record."""
    out_dir = Path(out_dir)
    record, pipeline = read_record(out_dir)
    if record.get("mode") != "tissue":
        raise InputError("is not a tissue run", path=out_dir, fix="give the --out folder of a tissue `imaging run`")
    if "sheet" not in record:  # a run of an earlier version: its tables stand as written
        if curation_log.load(out_dir).excluded_images:
            raise InputError(
                "was run by an earlier version, whose run.json lacks the sample sheet a rebuild needs",
                path=out_dir,
                fix="re-run `imaging run` into this folder (analysed images are reused)",
            )
        record.setdefault("curation", {"excluded_images": []})
        return record
    with claimed(out_dir):
        curation = curation_log.load(out_dir)
        sheet = pd.DataFrame(record["sheet"], dtype=str)
        assemble_tissue(pipeline, sheet, sorted(record["images"], key=lambda s: s["image"]), out_dir, curation)
        record["curation"] = tissue_curation_record(curation)
        record["tables_rebuilt"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_json(record, out_dir / "run.json")
    return record
