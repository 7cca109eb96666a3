"""Reviewing a run: the Qt-free model behind the napari plugin (usable from a notebook).

:class:`RunReview` opens a finished run folder (or a plate folder with a pipeline, before
any run) and answers what a reviewer asks: which plates, wells and fields there are; a
field's channel images, labels and per-cell table; the calls and the well's percent
positive under another threshold; a re-measurement with tuned parameters; and it records
curation decisions and rebuilds the tables and report. Every number comes from the same
library functions the batch uses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from imaging import curation
from imaging.config import Pipeline, load_pipeline
from imaging.errors import InputError
from imaging.features.illumination import Flatfield, correct_channels, read_illumination_image
from imaging.features.thresholds import Threshold, apply_call
from imaging.io.discover import Field
from imaging.io.readers import read_raw
from imaging.io.run_folder import field_label_paths
from imaging.io.sources import find_fields
from imaging.io.writers import read_labels_ome_zarr
from imaging.plate.measure import FieldMeasurement, field_pixel_size, load_field_images, measure_field
from imaging.plate.summary import summarize_cells
from imaging.plate.tables import read_cells_table, read_plate_csv
from imaging.run.record import read_record
from imaging.run.workers import default_workers


@dataclasses.dataclass(frozen=True)
class LoadedField:
    """One field ready to show: ``images`` as displayed (illumination-corrected), label images,
    and its cells: the batch's rows for a run, or the fresh measurement before one.
    ``segmented_again`` is True when no saved labels existed and the field was segmented."""

    key: tuple  # (plate, well, site, timepoint)
    images: dict[str, np.ndarray]
    nuclei: np.ndarray
    cells: np.ndarray
    table: pd.DataFrame
    segmented_again: bool


def calls_at(values, threshold: float) -> pd.Series:
    """Per-cell calls at a threshold chosen in review: the batch's rule
    (:func:`imaging.features.thresholds.apply_call`: above it, missing where the value is).

    Parameters
    ----------
    values : array_like of float
        One readout per cell.
    threshold : float
        The threshold tried.

    Returns
    -------
    pandas.Series of boolean dtype
    """
    values = pd.Series(values)
    return apply_call(values, Threshold(float(threshold), "fixed", len(values)))


def percent_positive(cells: pd.DataFrame, column: str, threshold: float) -> float:
    """Percent of ``cells`` whose ``column`` exceeds ``threshold`` (the batch's rule).

    Parameters
    ----------
    cells : pandas.DataFrame
        Cells of a field or well.
    column : str
        The readout called.
    threshold : float
        The threshold tried.

    Returns
    -------
    float
        NaN without cells with a value.
    """
    frame = cells.assign(_call=calls_at(cells[column], threshold))
    return summarize_cells(frame, [], ["_call"])["_call_pct"]


class RunReview:
    """A run folder (or an unprocessed plate folder) opened for review."""

    def __init__(
        self, pipeline: Pipeline, fields: list[Field], *, out_dir: Path | None = None, record: dict | None = None
    ):
        self.pipeline = pipeline
        self.out_dir = out_dir
        self.record = record or {}
        self._fields = {f.position: f for f in fields}  # (plate, well, site, timepoint)
        self._cells: dict[str, pd.DataFrame] = {}
        self._illumination: dict[str, dict[str, Flatfield] | None] = {}
        path = self.record.get("pipeline", {}).get("path")
        self.pipeline_path = Path(path) if path else None  # the YAML the run read (for tuning saves)
        self.pipeline_dir = self.pipeline_path.parent if self.pipeline_path else Path(".")

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open_run(cls, out_dir: str | Path) -> RunReview:
        """Open the output folder of ``imaging run`` (its images must still be where they were).

        Parameters
        ----------
        out_dir : str or Path
            The run's ``--out`` folder.

        Returns
        -------
        RunReview

        Raises
        ------
        InputError
            When the folder holds no plate run, or its images are gone.
        """
        out_dir = Path(out_dir)
        record, pipeline = read_record(out_dir)
        inputs = record["inputs"]
        fields = find_fields(
            inputs["input_dir"],
            pipeline,
            pattern=inputs.get("pattern"),
            scene_map=(inputs.get("scene_map") or {}).get("path"),
        ).fields
        return cls(pipeline, fields, out_dir=out_dir, record=record)

    @classmethod
    def open_plate(cls, pipeline_path: str | Path, input_dir: str | Path) -> RunReview:
        """Open an instrument folder with a pipeline, before any run (tuning only).

        Parameters
        ----------
        pipeline_path : str or Path
            The pipeline YAML.
        input_dir : str or Path
            The folder of images (or containers).

        Returns
        -------
        RunReview
        """
        pipeline = load_pipeline(pipeline_path)
        fields = find_fields(input_dir, pipeline).fields
        return cls(pipeline, fields, record={"pipeline": {"path": str(pipeline_path)}})

    @property
    def has_results(self) -> bool:
        return self.out_dir is not None

    # ---- what there is -------------------------------------------------------------------
    @property
    def plates(self) -> list[str]:
        return sorted({key[0] for key in self._fields})

    def wells(self, plate: str) -> list[str]:
        """The plate's imaged wells, in plate order (row, then column).

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        list of str
        """
        wells = {(f.row, f.column, f.well) for key, f in self._fields.items() if key[0] == plate}
        return [w for _, _, w in sorted(wells)]

    def timepoints(self, plate: str) -> list[int]:
        """The plate's time points in a run of every time point (``naming.timepoint: all``);
        empty otherwise. Field-level calls then take ``timepoint=``.

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        list of int
        """
        return sorted({t for (p, _, _, t) in self._fields if p == plate and t is not None})

    def sites(self, plate: str, well: str, timepoint: int | None = None) -> list[int]:
        """The well's sites (fields), ascending.

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        timepoint : int, optional
            The time point, in a run of every time point; None otherwise.

        Returns
        -------
        list of int
        """
        return sorted(site for (p, w, site, t) in self._fields if (p, w, t) == (plate, well, timepoint))

    def field(self, plate: str, well: str, site: int, timepoint: int | None = None) -> Field:
        """The field's :class:`~imaging.io.discover.Field` (its files or container plane).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        site : int
            The site (field) in the well.
        timepoint : int, optional
            The time point, in a run of every time point (``naming.timepoint: all``).

        Returns
        -------
        Field

        Raises
        ------
        InputError
            When the run has no such field.
        """
        try:
            return self._fields[plate, well, int(site), timepoint]
        except KeyError:
            raise InputError(
                f"no field {curation.field_name(plate, well, site, timepoint)}",
                fix="pick an imaged field (and, in a time series, its time point)",
            ) from None

    def wells_table(self, plate: str, timepoint: int | None = None) -> pd.DataFrame:
        """The plate's wells.csv (in a time series, the rows of ``timepoint``), or the imaged
        wells without readouts before a run.

        Parameters
        ----------
        plate : str
            The plate.
        timepoint : int, optional
            The time point, in a run of every time point; None otherwise.

        Returns
        -------
        pandas.DataFrame
        """
        if self.has_results:
            return _at_timepoint(read_plate_csv(self.out_dir / plate / "wells.csv"), timepoint)
        rows = {(f.well, f.row, f.column) for (p, _, _, _), f in self._fields.items() if p == plate}
        return pd.DataFrame(sorted(rows, key=lambda r: (r[1], r[2])), columns=["well", "row", "column"])

    def fields_table(self, plate: str, timepoint: int | None = None) -> pd.DataFrame:
        """The plate's fields.csv (QC and curation of each field); empty before a run.

        Parameters
        ----------
        plate : str
            The plate.
        timepoint : int, optional
            The time point, in a run of every time point; None otherwise.

        Returns
        -------
        pandas.DataFrame
        """
        if not self.has_results:
            return pd.DataFrame(columns=["plate", "well", "site", "qc_pass", "qc_reasons", "curation"])
        return _at_timepoint(
            read_plate_csv(
                self.out_dir / plate / "fields.csv", keep_default_na=False, text_columns=("qc_reasons", "curation")
            ),
            timepoint,
        )

    def flagged_wells(self, plate: str, timepoint: int | None = None) -> set[str]:
        """Wells with a field that failed QC or was curated.

        Parameters
        ----------
        plate : str
            The plate.
        timepoint : int, optional
            The time point, in a run of every time point; None otherwise.

        Returns
        -------
        set of str
        """
        fields = self.fields_table(plate, timepoint)
        if fields.empty:
            return set()
        curated = fields["curation"].astype(str) != "" if "curation" in fields.columns else False
        flagged = (~fields["qc_pass"].astype(bool)) | curated
        return set(fields.loc[flagged, "well"])

    def plate_cells(self, plate: str) -> pd.DataFrame:
        """The plate's cells table (CSV or Parquet), read once and kept.

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        pandas.DataFrame
        """
        if plate not in self._cells:
            self._cells[plate] = read_cells_table(self.out_dir / plate)
        return self._cells[plate]

    def field_cells(self, plate: str, well: str, site: int, timepoint: int | None = None) -> pd.DataFrame:
        """The batch's per-cell rows of one field (cells.csv).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        site : int
            The site (field) in the well.
        timepoint : int, optional
            The time point, in a run of every time point (``naming.timepoint: all``).

        Returns
        -------
        pandas.DataFrame
        """
        cells = _at_timepoint(self.plate_cells(plate), timepoint)
        return cells[(cells["well"] == well) & (cells["site"] == int(site))].reset_index(drop=True)

    def well_cells(self, plate: str, well: str, timepoint: int | None = None) -> pd.DataFrame:
        """The batch's cells of one well's fields used in the well's aggregates.

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        timepoint : int, optional
            The time point, in a run of every time point; None otherwise.

        Returns
        -------
        pandas.DataFrame
        """
        cells = _at_timepoint(self.plate_cells(plate), timepoint)
        return cells[(cells["well"] == well) & cells["field_used_in_wells"].astype(bool)].reset_index(drop=True)

    def thresholds(self, plate: str) -> dict[str, float]:
        """Each call's threshold as the batch used it on this plate (empty before a run).

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        dict of str to float
        """
        entry = self.record.get("plates", {}).get(plate, {})
        return {name: t["value"] for name, t in entry.get("thresholds", {}).items()}

    def starting_thresholds(self, cells: pd.DataFrame) -> dict[str, float]:
        """Thresholds to start tuning from before any run: the pipeline's fixed value, or
        the ``auto`` rule applied to the given cells.

        Parameters
        ----------
        cells : pandas.DataFrame
            Cells measured so far (a field).

        Returns
        -------
        dict of str to float
        """
        from imaging.features.thresholds import resolve_threshold

        return {call.name: resolve_threshold(cells[call.column], call.threshold).value for call in self.pipeline.calls}

    def xgal_vector(self, plate: str):
        """The X-gal vector the run used on this plate (None before a run, or without SA-beta-gal).

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        list of float or None
        """
        entry = self.record.get("plates", {}).get(plate, {}).get("xgal_vector")
        return entry["vector"] if entry else None

    def illumination(self, plate: str) -> dict[str, Flatfield] | None:
        """The plate's flat-fields: those the run stored (``<plate>/illumination/``), or before a
        run those the pipeline gives (read, or estimated from the plate's fields as a run would).

        Parameters
        ----------
        plate : str
            The plate.

        Returns
        -------
        dict of str to Flatfield, or None
            None when the pipeline corrects no channel.
        """
        if plate not in self._illumination:
            self._illumination[plate] = (
                self._stored_illumination(plate) if self.has_results else self._planned_illumination(plate)
            )
        return self._illumination[plate]

    def _stored_illumination(self, plate: str) -> dict[str, Flatfield] | None:
        entry = self.record.get("plates", {}).get(plate, {}).get("illumination")
        if not entry:
            return None
        flats = {}
        for name, channel in entry["channels"].items():
            dark = channel.get("dark_file")
            flats[name] = Flatfield(
                flat=read_illumination_image(self.out_dir / channel["flat_file"]).astype(np.float32),
                dark=None if dark is None else read_illumination_image(self.out_dir / dark).astype(np.float32),
                source=channel["flat_file"],
            )
        return flats

    def _planned_illumination(self, plate: str) -> dict[str, Flatfield] | None:
        from imaging.plate.calibrate import plate_illumination
        from imaging.plate.plan import illumination_files

        fields = [f for (p, *_), f in self._fields.items() if p == plate]
        flats, _ = plate_illumination(self.pipeline, fields, files=illumination_files(self.pipeline, self.pipeline_dir))
        return flats

    # ---- pixels ----------------------------------------------------------------------------
    def images(self, plate: str, well: str, site: int, timepoint: int | None = None) -> dict[str, np.ndarray]:
        """A field's channels as read (what :meth:`measure` takes).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        site : int
            The site (field) in the well.
        timepoint : int, optional
            The time point, in a run of every time point (``naming.timepoint: all``).

        Returns
        -------
        dict of str to ndarray
        """
        return load_field_images(self.field(plate, well, site, timepoint), self.pipeline)

    def corrected_images(self, plate: str, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``images`` with the plate's illumination correction applied: what segmentation and
        intensities saw, and what the viewer shows.

        Parameters
        ----------
        plate : str
            The plate.
        images : dict of str to ndarray
            A field's channels as read.

        Returns
        -------
        dict of str to ndarray
        """
        return correct_channels(images, self.illumination(plate))

    def saved_labels(
        self, plate: str, well: str, site: int, timepoint: int | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Label images written by ``--save-labels``, if any.

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        site : int
            The site (field) in the well.
        timepoint : int, optional
            The time point, in a run of every time point (``naming.timepoint: all``).

        Returns
        -------
        (nuclei, cells) tuple of ndarray, or None
        """
        if not self.has_results:
            return None
        found = []
        for paths in field_label_paths(
            self.out_dir / plate / "labels", self.field(plate, well, site, timepoint).key, "both"
        ).values():
            path = next((p for p in paths if p.exists()), None)
            if path is None:
                return None
            found.append(
                read_labels_ome_zarr(path) if path.name.endswith(".ome.zarr") else read_raw(path).astype(np.int32)
            )
        return found[0], found[1]

    def measure(
        self,
        plate: str,
        well: str,
        site: int,
        pipeline: Pipeline | None = None,
        images: dict | None = None,
        timepoint: int | None = None,
    ) -> FieldMeasurement:
        """Segment and measure a field exactly as the batch does (optionally with a tuned pipeline).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well.
        site : int
            The site.
        pipeline : Pipeline, optional
            A tuned pipeline (default: the run's).
        images : dict of str to ndarray, optional
            The field's channels if already read.
        timepoint : int, optional
            The time point, in a time series.

        Returns
        -------
        FieldMeasurement
        """
        pipeline = pipeline or self.pipeline
        field = self.field(plate, well, site, timepoint)
        images = images if images is not None else load_field_images(field, pipeline)
        return measure_field(
            images,
            pipeline,
            pixel_size_um=field_pixel_size(field, pipeline),
            xgal_vector=self.xgal_vector(plate),
            illumination=self.illumination(plate),
            threads=default_workers(),  # one field at a time, interactively: every CPU on it
        )

    def load_field(self, plate: str, well: str, site: int, timepoint: int | None = None) -> LoadedField:
        """Everything the viewer shows of one field (slow: reads pixels and, without saved
        labels, segments; the napari plugin calls it in a thread worker).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        site : int
            The site (field) in the well.
        timepoint : int, optional
            The time point, in a run of every time point (``naming.timepoint: all``).

        Returns
        -------
        LoadedField
        """
        images = self.images(plate, well, site, timepoint)
        saved = self.saved_labels(plate, well, site, timepoint) if self.has_results else None
        if saved is not None:
            nuclei, cells = saved
            table = self.field_cells(plate, well, site, timepoint)
        else:
            measured = self.measure(plate, well, site, images=images, timepoint=timepoint)
            nuclei, cells = measured.nuclei, measured.cell_labels
            table = self.field_cells(plate, well, site, timepoint) if self.has_results else measured.cells
        return LoadedField(
            key=(plate, well, int(site), timepoint),
            images=self.corrected_images(plate, images),
            nuclei=nuclei,
            cells=cells,
            table=table,
            segmented_again=saved is None,
        )

    # ---- curation ------------------------------------------------------------------------
    def _require_results(self) -> Path:
        if not self.has_results:
            raise InputError(
                "curation needs a finished run", fix="run `imaging run` first, then open its output folder"
            )
        return self.out_dir

    def exclude_field(
        self, plate, well, site, *, reason: str, user: str = "", undo: bool = False, timepoint: int | None = None
    ) -> None:
        """Record the exclusion of a field (``undo``: its inclusion again) in ``curation.csv``.

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well.
        site : int
            The site.
        reason : str
            Why (required: the log is what a reader of the results checks).
        user : str
            Who decided.
        undo : bool
            Include the field again.
        timepoint : int, optional
            The time point, in a time series.

        Raises
        ------
        InputError
            Before a run, or without a reason.
        """
        curation.record(
            self._require_results(),
            action="include_field" if undo else "exclude_field",
            plate=plate,
            well=well,
            site=int(site),
            timepoint=timepoint,
            reason=reason,
            user=user,
        )

    def exclude_well(self, plate, well, *, reason: str, user: str = "", undo: bool = False) -> None:
        """Record the exclusion of a whole well (``undo``: its inclusion again).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well (``A01``).
        reason : str
            Why (required: the log is what a reader of the results checks).
        user : str
            Who decided.
        undo : bool
            Include the well again.

        Raises
        ------
        InputError
            Before a run, or without a reason.
        """
        curation.record(
            self._require_results(),
            action="include_well" if undo else "exclude_well",
            plate=plate,
            well=well,
            reason=reason,
            user=user,
        )

    def set_call(
        self,
        plate,
        well,
        site,
        label: int,
        call: str,
        value: bool,
        *,
        reason: str,
        user: str = "",
        timepoint: int | None = None,
    ) -> None:
        """Override one cell's call (a reviewer's decision; the measured value stays).

        Parameters
        ----------
        plate : str
            The plate.
        well : str
            The well.
        site : int
            The site.
        label : int
            The cell's label.
        call : str
            The call's name (the pipeline's ``calls``).
        value : bool
            Positive or negative.
        reason : str
            Why (required: the log is what a reader of the results checks).
        user : str
            Who decided.
        timepoint : int, optional
            The time point, in a time series.

        Raises
        ------
        InputError
            Before a run, or without a reason.
        """
        curation.record(
            self._require_results(),
            action="set_call",
            plate=plate,
            well=well,
            site=int(site),
            timepoint=timepoint,
            label=int(label),
            call=call,
            value=bool(value),
            reason=reason,
            user=user,
        )

    def decisions(self) -> list[curation.Decision]:
        """The curation decisions in force (empty before a run)."""
        return curation.in_force(curation.load(self.out_dir)) if self.has_results else []

    def undo(self, decision: curation.Decision, *, reason: str, user: str = "") -> None:
        """Record the decision that reverses ``decision`` (the log keeps both).

        Parameters
        ----------
        decision : Decision
            One of :meth:`decisions`.
        reason : str
            Why (required: the log is what a reader of the results checks).
        user : str
            Who decided.
        """
        curation.record(self._require_results(), **decision.undo, reason=reason, user=user)

    def rebuild(self) -> dict:
        """Rebuild tables (applying curation), comparisons and the report; reload tables."""
        from imaging.plate.tables import rebuild_tables
        from imaging.report import build_report

        out_dir = self._require_results()
        self.record = rebuild_tables(out_dir)
        outputs = build_report([out_dir])
        self._cells.clear()
        return outputs


def _at_timepoint(table: pd.DataFrame, timepoint: int | None) -> pd.DataFrame:
    """The rows of one time point of a time-series table (the table as it is otherwise)."""
    if timepoint is None or "timepoint" not in table.columns:
        return table
    return table[table["timepoint"] == int(timepoint)].reset_index(drop=True)


def batch_percent(wells: pd.DataFrame, well: str, call: str) -> str:
    """The batch's percent positive of ``well`` for display: ``'excluded'`` for a well whose
    fields were all curated or QC'd out (its readouts are empty on purpose), ``'n/a'`` for a
    well without cells, never ``'nan%'``.

    Parameters
    ----------
    wells : pandas.DataFrame
        The plate's wells, indexed by well.
    well : str
        The well.
    call : str
        The call's name.

    Returns
    -------
    str
    """
    value = wells.at[well, f"{call}_pct"]
    if np.isfinite(value):
        return f"{value:.1f}%"
    curation = str(wells.at[well, "curation"]) if "curation" in wells.columns else ""
    no_fields = "n_fields_used" in wells.columns and wells.at[well, "n_fields_used"] == 0
    return "excluded" if "excluded" in curation or no_fields else "n/a"


def pipeline_in_folder(folder: str | Path) -> Path | None:
    """The single pipeline YAML (a mapping with ``schema_version``) at the top of ``folder``;
    None when there is none or more than one (which one to use would be a guess).

    Parameters
    ----------
    folder : str or Path
        A plate folder.

    Returns
    -------
    Path or None
    """
    found = []
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if isinstance(data, dict) and "schema_version" in data:
            found.append(path)
    return found[0] if len(found) == 1 else None


def open_review(folder: str | Path) -> RunReview:
    """A plate run folder (``run.json``) or a plate folder holding one pipeline, for review.

    Parameters
    ----------
    folder : str or Path
        The folder.

    Returns
    -------
    RunReview

    Raises
    ------
    InputError
        When ``folder`` is neither.
    """
    folder = Path(folder)
    if (folder / "run.json").is_file():
        return RunReview.open_run(folder)
    pipeline = pipeline_in_folder(folder)
    if pipeline is None:
        raise InputError(
            "is neither a run folder (run.json) nor a plate folder with one pipeline YAML",
            path=folder,
            fix="open the --out folder of `imaging run`, or put one pipeline YAML beside the images",
        )
    return RunReview.open_plate(pipeline, folder)
