"""The plate browser: a thin dock widget over :class:`imaging.plate.review.RunReview`.

Walk a plate (well grid coloured by a readout, QC-flagged wells marked), open a field
(channels as image layers, nuclei and cells as labels layers with the per-cell table as
``features``, cells coloured by their call or any feature), tune segmentation and
thresholds and see calls and the well's percent positive follow, save the tuned pipeline
for ``imaging run``, and record curation decisions that the rebuilt tables honour.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from imaging.curation import field_name
from imaging.io.wells import row_index_to_letters
from imaging.plate.layers import call_colours, colour_choices, feature_colours, field_layers
from imaging.plate.review import LoadedField, RunReview, batch_percent, calls_at, open_review, percent_positive
from imaging.plate.tuning import tuned_pipeline, tuned_pipeline_text, tuning_changes
from imaging.stats import plate_format
from imaging_napari._decisions import DecisionControls
from imaging_napari._sources import FollowsOpenedRuns

SEGMENTED_AGAIN = (
    " (segmented again for display: this run saved no label images; runs save them unless "
    "given --no-save-labels, and review is then instant)"
)
FIELD_CACHE_SIZE = 4  # fields kept loaded (a 2048 px field: three float32 channels and two label images, 80 MB)
MAX_COLUMNS_WITH_NUMBERS = 12  # a 96-well plate's cells hold a number in a 400 px dock; denser plates colour only


def plate_grid_widget() -> QTableWidget:
    """A well grid whose cells shrink to fit the dock (96 to 1536 wells, no scroll bars)."""
    grid = QTableWidget()
    grid.setMinimumHeight(120)
    grid.setEditTriggers(QTableWidget.NoEditTriggers)
    grid.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    grid.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    for header in (grid.horizontalHeader(), grid.verticalHeader()):
        header.setMinimumSectionSize(4)
        header.setSectionResizeMode(QHeaderView.Stretch)
        font = header.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        header.setFont(font)
    return grid


def _top_aligned(widget: QWidget) -> QWidget:
    """A tab page holding ``widget`` at its natural height (spare room below, not between rows)."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget)
    layout.addStretch()
    return page


def grid_legend(readout: str, low: float, high: float, with_numbers: bool) -> str:
    """The grid's colour key (viridis, low to high), marks, and where the numbers are."""
    numbers = "" if with_numbers else " Hover a well for its value."
    return (
        f"{readout}: {low:.3g} <span style='background:#440154'>&nbsp;&nbsp;</span>"
        f"<span style='background:#21918c'>&nbsp;&nbsp;</span><span style='background:#fde725'>&nbsp;&nbsp;</span>"
        f" {high:.3g}. <b style='color:red'>!</b> a field failed QC or was curated; blank: no value "
        f"(excluded or no cells).{numbers}"
    )


def call_colormap(labels, calls) -> DirectLabelColormap:
    """Label colours from a call per label (True / False / missing)."""
    return DirectLabelColormap(color_dict=call_colours(labels, calls))


def feature_colormap(labels, values, cmap: str = "viridis") -> DirectLabelColormap:
    """Label colours from a numeric feature per label (scaled over this field)."""
    return DirectLabelColormap(color_dict=feature_colours(labels, values, cmap))


class PlateBrowser(DecisionControls, FollowsOpenedRuns, QWidget):
    """Dock widget: plate grid, field browser, tuning and curation. Opens the plate run whose
    layers the reader added (or one chosen with its button)."""

    source_kind = "plate"

    def __init__(self, napari_viewer, review: RunReview | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.review: RunReview | None = None
        self.field_table = pd.DataFrame()  # per-cell table of the field shown
        self.tuned: dict | None = None  # {"pipeline", "cells" (well), "measurement" (field)} after Apply
        self._thresholds_set = False
        self._worker = None
        self._field_workers: list = []
        self._field_cache: OrderedDict = OrderedDict()  # (plate, well, site, timepoint) -> review.LoadedField
        self.shown_field: tuple | None = None
        self._initial_controls: dict[str, float] = {}  # the tuning controls as first shown
        self._build()
        if review is not None:
            self.opened_folder = review.out_dir
            self.set_review(review)
        self.follow_opened_runs()

    # ---- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.source_label = QLabel("Open a run folder (File > Open Folder, or drop it on the viewer).")
        self.source_label.setWordWrap(True)
        layout.addWidget(self.source_label)
        open_button = QPushButton("Open run folder...")
        open_button.clicked.connect(self._choose_run)
        layout.addWidget(open_button)

        # Three tabs keep the dock short enough for a 1366 x 768 screen
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)
        plate_tab = QWidget()
        plate_layout = QVBoxLayout(plate_tab)
        pick = QFormLayout()
        self.plate_box, self.well_box, self.site_box = QComboBox(), QComboBox(), QComboBox()
        self.timepoint_box = QComboBox()  # shown only for a run of every time point
        self.readout_box, self.colour_box = QComboBox(), QComboBox()
        pick.addRow("plate", self.plate_box)
        pick.addRow("time point", self.timepoint_box)
        pick.addRow("well", self.well_box)
        pick.addRow("site", self.site_box)
        self._pick_form = pick
        self.timepoint_box.setVisible(False)
        pick.labelForField(self.timepoint_box).setVisible(False)
        pick.addRow("grid colour", self.readout_box)
        pick.addRow("cell colour", self.colour_box)
        plate_layout.addLayout(pick)
        self.plate_box.currentTextChanged.connect(self._plate_changed)
        self.well_box.currentTextChanged.connect(self._well_changed)
        self.site_box.currentTextChanged.connect(lambda _: self.show_field())
        self.timepoint_box.currentTextChanged.connect(self._timepoint_changed)
        self.readout_box.currentTextChanged.connect(lambda _: self.draw_grid())
        self.colour_box.currentTextChanged.connect(lambda _: self.recolour())

        self.grid = plate_grid_widget()
        self.grid.cellClicked.connect(self._grid_clicked)
        plate_layout.addWidget(self.grid, stretch=1)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        plate_layout.addWidget(self.legend)
        self.field_label = QLabel("")
        self.field_label.setWordWrap(True)
        plate_layout.addWidget(self.field_label)
        self.tabs.addTab(plate_tab, "Plate")

        tuning = QGroupBox("Tuning (this field and well)")
        form = QFormLayout(tuning)
        self.diameter_box = QDoubleSpinBox(minimum=0, maximum=500, decimals=1, singleStep=1.0)
        self.diameter_box.setSpecialValueText("auto")
        self.distance_box = QDoubleSpinBox(minimum=0.05, maximum=2.0, decimals=2, singleStep=0.05)
        self.expansion_box = QDoubleSpinBox(minimum=0.0, maximum=10.0, decimals=2, singleStep=0.1)
        form.addRow("nucleus diameter (px)", self.diameter_box)
        form.addRow("min centre distance (radii)", self.distance_box)
        form.addRow("cell reach (radii)", self.expansion_box)
        self.threshold_boxes: dict[str, QDoubleSpinBox] = {}
        self.threshold_form = QFormLayout()  # one row per call, rebuilt for each run
        form.addRow(self.threshold_form)
        self.percent_label = QLabel("")
        form.addRow(self.percent_label)
        buttons = QHBoxLayout()
        self.apply_button = QPushButton("Apply to well")
        self.apply_button.clicked.connect(self.apply_tuning)
        save_button = QPushButton("Save pipeline...")
        save_button.clicked.connect(self._choose_save)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(save_button)
        form.addRow(buttons)
        self.tabs.addTab(_top_aligned(tuning), "Tuning")

        curation = QGroupBox("Curation")
        form = QFormLayout(curation)
        self.user_edit, self.reason_edit = QLineEdit(), QLineEdit()
        self.user_edit.setPlaceholderText("your name (optional)")
        self.reason_edit.setPlaceholderText("why (required)")
        form.addRow("user", self.user_edit)
        form.addRow("reason", self.reason_edit)
        self.undo_box = QCheckBox("undo (include again / clear)")
        form.addRow(self.undo_box)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        for text, slot, row in (
            ("Exclude field", self.exclude_field, row1),
            ("Exclude well", self.exclude_well, row1),
            ("Selected cell +", lambda: self.set_selected_call(True), row2),
            ("Selected cell -", lambda: self.set_selected_call(False), row2),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        form.addRow(row1)
        form.addRow(row2)
        self.decision_list = QListWidget()  # the decisions in force, each undoable
        self.decision_list.setMaximumHeight(110)
        form.addRow(QLabel("decisions in force (curation.csv)"))
        form.addRow(self.decision_list)
        undo_button = QPushButton("Undo selected decision")
        undo_button.clicked.connect(self.undo_selected)
        form.addRow(undo_button)
        self.rebuild_button = QPushButton("Rebuild tables and report")
        self.rebuild_button.clicked.connect(self.rebuild)
        form.addRow(self.rebuild_button)
        self.tabs.addTab(_top_aligned(curation), "Curation")

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.field_progress = QProgressBar()  # busy while a field loads
        self.field_progress.setRange(0, 0)
        self.field_progress.setVisible(False)
        layout.addWidget(self.field_progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    # ---- opening -------------------------------------------------------------------------
    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an imaging run folder")
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path) -> None:
        """Open a plate run folder, or a plate folder holding one pipeline."""
        self.opened_folder = folder
        self.set_review(open_review(folder))

    def set_review(self, review: RunReview) -> None:
        """Show a run (or plate folder) in the browser and open its first field."""
        self.review = review
        self.forget_fields()
        self.shown_field = None
        source = review.out_dir if review.has_results else "plate folder (no results yet)"
        self.source_label.setText(f"{review.pipeline.name}: {source}")
        seg = review.pipeline.segmentation
        self.diameter_box.setValue(seg.nucleus_diameter_px or 0)
        self.distance_box.setValue(getattr(seg, "min_distance_fraction", 0.4))
        self.expansion_box.setValue(review.pipeline.cells.expansion_factor)
        while self.threshold_form.rowCount():
            self.threshold_form.removeRow(0)
        self.threshold_boxes.clear()
        for call in review.pipeline.calls:
            box = QDoubleSpinBox(minimum=-1e9, maximum=1e9, decimals=4)
            box.valueChanged.connect(lambda _value, name=call.name: self.threshold_changed(name))
            self.threshold_boxes[call.name] = box
            self.threshold_form.addRow(f"{call.name} threshold", box)
        self._initial_controls = self.controls()  # thresholds updated as the run's values arrive
        self.list_decisions()
        self.plate_box.blockSignals(True)
        self.plate_box.clear()
        self.plate_box.addItems(review.plates)
        self.plate_box.blockSignals(False)
        self._plate_changed(self.plate_box.currentText())

    # ---- selection -----------------------------------------------------------------------
    @property
    def plate(self) -> str:
        return self.plate_box.currentText()

    @property
    def well(self) -> str:
        return self.well_box.currentText()

    @property
    def site(self) -> int:
        return int(self.site_box.currentText()) if self.site_box.currentText() else 1

    @property
    def timepoint(self) -> int | None:
        """The time point shown (None outside a run of every time point)."""
        return int(self.timepoint_box.currentText()) if self.timepoint_box.currentText() else None

    def _timepoint_changed(self, _text: str) -> None:
        if self.review is None or not self.plate:
            return
        self.draw_grid()
        self._well_changed(self.well)

    def _plate_changed(self, plate: str) -> None:
        if not plate or self.review is None:
            return
        timepoints = self.review.timepoints(plate)
        self.timepoint_box.blockSignals(True)
        self.timepoint_box.clear()
        self.timepoint_box.addItems([str(t) for t in timepoints])
        self.timepoint_box.blockSignals(False)
        self.timepoint_box.setVisible(bool(timepoints))  # (QFormLayout.setRowVisible needs Qt 6.4)
        self._pick_form.labelForField(self.timepoint_box).setVisible(bool(timepoints))
        thresholds = self.review.thresholds(plate)
        self._thresholds_set = bool(thresholds)  # before a run, the first field shown sets them
        self._set_thresholds(thresholds)
        wells = self.review.wells_table(plate, self.timepoint)
        readouts = [
            c
            for c in wells.columns
            if c not in ("plate", "well", "row", "column", "timepoint", "curation")
            and pd.api.types.is_numeric_dtype(wells[c])
        ]
        preferred = [f"{c.name}_pct" for c in self.review.pipeline.calls if f"{c.name}_pct" in readouts]
        self.readout_box.blockSignals(True)
        self.readout_box.clear()
        self.readout_box.addItems(preferred + [r for r in readouts if r not in preferred] or ["(none)"])
        self.readout_box.blockSignals(False)
        self.well_box.blockSignals(True)
        self.well_box.clear()
        self.well_box.addItems(self.review.wells(plate))
        self.well_box.blockSignals(False)
        self.draw_grid()
        self._well_changed(self.well)

    def _set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Put thresholds into the boxes as their starting values (not the reviewer's changes)."""
        for name, box in self.threshold_boxes.items():
            value = thresholds.get(name, np.nan)
            box.blockSignals(True)
            box.setValue(value if np.isfinite(value) else 0.0)
            box.blockSignals(False)
            self._initial_controls[f"threshold:{name}"] = box.value()
        if thresholds:
            self._thresholds_set = True

    def _well_changed(self, well: str) -> None:
        if not well or self.review is None:
            return
        self.tuned = None
        self.site_box.blockSignals(True)
        self.site_box.clear()
        self.site_box.addItems([str(s) for s in self.review.sites(self.plate, well, self.timepoint)])
        self.site_box.blockSignals(False)
        self.show_field()

    def open_well(self, well: str, site: int | None = None) -> None:
        """Select a well (and site) of the current plate and show it."""
        self.well_box.setCurrentText(well)
        if site is not None:
            self.site_box.setCurrentText(str(site))

    def _grid_clicked(self, row: int, column: int) -> None:
        item = self.grid.item(row, column)
        if item is not None and item.data(Qt.UserRole):
            self.open_well(item.data(Qt.UserRole))

    # ---- plate grid ----------------------------------------------------------------------
    def draw_grid(self) -> None:
        """Well grid coloured by the chosen readout; wells with a failed or curated field
        are marked with '!'."""
        if self.review is None or not self.plate:
            return
        wells = self.review.wells_table(self.plate, self.timepoint)
        n_rows, n_columns = plate_format(int(wells["row"].max()), int(wells["column"].max()))
        self.grid.clear()
        self.grid.setRowCount(n_rows)
        self.grid.setColumnCount(n_columns)
        self.grid.setVerticalHeaderLabels([row_index_to_letters(r + 1) for r in range(n_rows)])
        self.grid.setHorizontalHeaderLabels([str(c + 1) for c in range(n_columns)])
        readout = self.readout_box.currentText()
        values = (
            pd.to_numeric(wells[readout], errors="coerce")
            if readout in wells.columns
            else pd.Series(np.nan, index=wells.index)
        )
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        flagged = self.review.flagged_wells(self.plate, self.timepoint)
        mapping = colormaps["viridis"]
        with_numbers = n_columns <= MAX_COLUMNS_WITH_NUMBERS
        for (_, row), value in zip(wells.iterrows(), values):
            text = "" if not np.isfinite(value) else f"{value:.3g}"
            shown = text if with_numbers else ""
            item = QTableWidgetItem(shown + ("!" if not shown else " !") * (row["well"] in flagged))
            item.setTextAlignment(Qt.AlignCenter)
            item.setData(Qt.UserRole, row["well"])
            item.setToolTip(
                f"{row['well']}: {readout} = {text or 'n/a'}"
                + (" (a field failed QC or was curated)" if row["well"] in flagged else "")
            )
            if np.isfinite(value):
                r, g, b, _ = mapping(float((value - low) / (high - low)) if high > low else 0.5)
                item.setBackground(QBrush(QColor.fromRgbF(r, g, b)))
                item.setForeground(QBrush(QColor("white" if (r + g + b) < 1.5 else "black")))
            if row["well"] in flagged:
                item.setForeground(QBrush(QColor("red")))
            self.grid.setItem(int(row["row"]) - 1, int(row["column"]) - 1, item)
        self.legend.setText(grid_legend(readout, low, high, with_numbers))

    # ---- field display -------------------------------------------------------------------
    @property
    def selected_field(self) -> tuple:
        return self.plate, self.well, self.site, self.timepoint

    def show_field(self):
        """Show the selected field: at once when it is cached, else loaded in a thread worker
        (reading pixels, and segmenting when the run saved no labels, takes seconds at
        2048 px) while napari stays responsive. Returns the worker, or None."""
        if self.review is None or not self.well:
            return None
        key = self.selected_field
        if key in self._field_cache:
            self._field_cache.move_to_end(key)
            self._display_field(self._field_cache[key])
            return None
        self.field_progress.setVisible(True)
        self.field_label.setText(f"Loading {field_name(*key)}...")
        worker = create_worker(self.review.load_field, *key)
        # bound methods, not lambdas: Qt drops these connections if the dock is closed mid-load
        worker.returned.connect(self._field_loaded)
        worker.errored.connect(self._field_failed)
        worker.finished.connect(self._field_worker_done)
        self._field_workers.append(worker)
        worker.start()
        return worker

    def _field_failed(self, exc) -> None:
        self.field_label.setText(f"Could not load the field: {exc}")

    def _field_worker_done(self) -> None:
        self._field_workers = [w for w in self._field_workers if w.is_running]
        self.field_progress.setVisible(bool(self._field_workers))

    @property
    def loading(self) -> bool:
        """True while a field is being loaded."""
        return bool(self._field_workers)

    def _field_loaded(self, loaded) -> None:
        self._field_cache[loaded.key] = loaded
        while len(self._field_cache) > FIELD_CACHE_SIZE:
            self._field_cache.popitem(last=False)
        if loaded.key == self.selected_field:  # the user may have moved on meanwhile
            self._display_field(loaded)

    def _display_field(self, loaded) -> None:
        table = loaded.table
        if not self.review.has_results:
            if not self._thresholds_set:
                self._set_thresholds(self.review.starting_thresholds(table))
            table = self._with_calls(table)
        self._show_layers(dataclasses.replace(loaded, table=table))
        self.shown_field = loaded.key
        self._describe_field()
        if loaded.segmented_again and self.review.has_results:
            self.field_label.setText(self.field_label.text() + SEGMENTED_AGAIN)

    def forget_fields(self) -> None:
        """Drop cached fields (their tables changed: after a rebuild, or another run)."""
        self._field_cache.clear()

    def _with_calls(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Cells with calls at the thresholds in the tuning boxes."""
        cells = cells.copy()
        for call in self.review.pipeline.calls:
            value = self.threshold_boxes[call.name].value()
            cells[call.name] = calls_at(pd.to_numeric(cells[call.column]), value)
        return cells

    def _show_layers(self, loaded) -> None:
        """The field's layers (``imaging.plate.layers``, as the reader makes them), updating
        layers of the same name in place."""
        for data, kwargs, kind in field_layers(self.review, loaded):
            name = kwargs.pop("name")
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                if "features" in kwargs:
                    layer.features = kwargs["features"]
            else:
                layer = getattr(self.viewer, f"add_{kind}")(data, name=name, **kwargs)
            if kind == "labels":
                layer.contour = 2 if name == "cells" else 1
        self.field_table = loaded.table.reset_index(drop=True)
        options = colour_choices(self.review, self.viewer.layers["cells"].features)
        current = self.colour_box.currentText()
        self.colour_box.blockSignals(True)
        self.colour_box.clear()
        self.colour_box.addItems(options)
        if current in options:
            self.colour_box.setCurrentText(current)
        self.colour_box.blockSignals(False)
        self.recolour()

    def recolour(self) -> None:
        """Colour cells by the chosen call (magenta positive, cyan negative) or feature."""
        if "cells" not in self.viewer.layers or self.field_table.empty:
            return
        choice = self.colour_box.currentText()
        labels = self.field_table["label"]
        if choice in self.field_table.columns and choice in [c.name for c in self.review.pipeline.calls]:
            colormap = call_colormap(labels, self.field_table[choice])
        elif choice in self.field_table.columns:
            colormap = feature_colormap(labels, self.field_table[choice])
        else:
            return
        self.viewer.layers["cells"].colormap = colormap

    def _describe_field(self) -> None:
        text = f"{field_name(*self.selected_field)}: {len(self.field_table)} cells"
        if self.review.has_results:
            fields = self.review.fields_table(self.plate, self.timepoint)
            row = fields[(fields["well"] == self.well) & (fields["site"] == self.site)]
            if not row.empty:
                row = row.iloc[0]
                text += "; QC passed" if bool(row["qc_pass"]) else f"; QC FAILED: {row['qc_reasons']}"
                if str(row.get("curation", "")):
                    text += f"; curated: {row['curation']}"
        self.field_label.setText(text)
        self.update_percentages()

    # ---- tuning --------------------------------------------------------------------------
    def threshold_changed(self, name: str) -> None:
        """A threshold box changed: re-call this field's cells and update the percentages."""
        if self.field_table.empty:
            return
        call = next(c for c in self.review.pipeline.calls if c.name == name)
        value = self.threshold_boxes[name].value()
        self.field_table[name] = calls_at(pd.to_numeric(self.field_table[call.column]), value)
        if "cells" in self.viewer.layers:
            features = self.viewer.layers["cells"].features
            features[name] = self.field_table[name].to_numpy()
            self.viewer.layers["cells"].features = features
        self.recolour()
        self.update_percentages()

    def well_percentages(self) -> dict[str, float]:
        """Each call's percent positive in the current well at the boxes' thresholds: over
        the tuned well's cells after Apply, else over the batch's cells of the well."""
        if self.tuned is not None:
            cells = self.tuned["cells"]
        elif self.review.has_results:
            cells = self.review.well_cells(self.plate, self.well, self.timepoint)
        else:
            cells = self.field_table
        return {
            c.name: percent_positive(cells, c.column, self.threshold_boxes[c.name].value())
            for c in self.review.pipeline.calls
        }

    def update_percentages(self) -> None:
        if self.review is None or not self.review.pipeline.calls:
            self.percent_label.setText("")
            return
        parts = []
        batch = (
            self.review.wells_table(self.plate, self.timepoint).set_index("well") if self.review.has_results else None
        )
        for name, value in self.well_percentages().items():
            shown = f"{value:.1f}%" if np.isfinite(value) else "no cells used"
            text = (
                f"{name}: {shown} of cells in {self.well}" if np.isfinite(value) else f"{name}: {shown} in {self.well}"
            )
            if batch is not None and f"{name}_pct" in batch.columns:
                text += f" (batch: {batch_percent(batch, self.well, name)})"
            parts.append(text)
        self.percent_label.setText("\n".join(parts))

    def tuning_changes(self) -> list:
        """The controls the reviewer moved since they were first shown (:mod:`imaging.plate.tuning`)."""
        return tuning_changes(self.review.pipeline, self._initial_controls, self.controls())

    def tuned_pipeline(self):
        """The pipeline with the moved controls applied (validated): what Apply measures with
        and Save writes."""
        return tuned_pipeline(self.review.pipeline, self.tuning_changes())

    def apply_tuning(self):
        """Re-measure every field of the current well with the tuned settings, in a
        background thread; shows the current field and the well's percentages when done."""
        pipeline = self.tuned_pipeline()
        plate, well, site, timepoint = self.selected_field
        sites = self.review.sites(plate, well, timepoint)

        def work():
            cells, shown = [], None
            for i, each in enumerate(sites):
                images = self.review.images(plate, well, each, timepoint)
                measured = self.review.measure(plate, well, each, pipeline=pipeline, images=images, timepoint=timepoint)
                cells.append(measured.cells)
                if each == site:
                    shown = (self.review.corrected_images(plate, images), measured)
                yield i + 1
            return {"pipeline": pipeline, "cells": pd.concat(cells, ignore_index=True), "shown": shown}

        def done(result):
            self.tuned = result
            images, measured = result["shown"]
            tuned_field = LoadedField(
                key=(plate, well, site, timepoint),
                images=images,
                nuclei=measured.nuclei,
                cells=measured.cell_labels,
                table=self._with_calls(measured.cells),
                segmented_again=True,
            )
            self._show_layers(tuned_field)
            self.field_label.setText(
                f"{field_name(plate, well, site, timepoint)}: {len(measured.cells)} cells (tuned settings)"
            )
            self.update_percentages()
            self.status.setText("Tuned settings applied to this well. Save the pipeline to use them in a run.")

        return self._run_in_background(work, len(sites), done)

    def controls(self) -> dict[str, float]:
        """The tuning controls' values (the keys of :func:`imaging.plate.tuning.tuning_changes`)."""
        return {
            "nucleus_diameter_px": self.diameter_box.value(),
            "min_distance_fraction": self.distance_box.value(),
            "expansion_factor": self.expansion_box.value(),
            **{f"threshold:{name}": box.value() for name, box in self.threshold_boxes.items()},
        }

    def save_pipeline(self, path) -> list:
        """Write the pipeline with the controls the reviewer moved (and only those) into the
        original YAML, comments kept (:mod:`imaging.plate.tuning`); says what changed."""
        from imaging.io.writers import atomic_path

        changes = self.tuning_changes()
        text = tuned_pipeline_text(self.review.pipeline, changes, original=self.review.pipeline_path)
        with atomic_path(path) as temporary:
            Path(temporary).write_text(text, encoding="utf-8")
        listed = "; ".join(c.describe() for c in changes) or "no setting changed"
        self.status.setText(f"Pipeline saved to {path} ({listed})")
        return changes

    def _choose_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save pipeline", "tuned_pipeline.yaml", "YAML (*.yaml)")
        if path:
            self.save_pipeline(path)

    # ---- curation ------------------------------------------------------------------------
    @property
    def curation_model(self) -> RunReview | None:
        return self.review

    def _recorded(self, what: str) -> None:
        """After each decision: the reason and the undo box are cleared, so the next decision
        cannot silently reuse them; the list of decisions in force is refreshed."""
        self.reason_edit.clear()
        self.undo_box.setChecked(False)
        self.list_decisions()
        self.status.setText(f"{what} recorded in curation.csv; rebuild to apply.")

    def exclude_field(self) -> None:
        if (reason := self._reason()) is not None:
            undo = self.undo_box.isChecked()
            self.review.exclude_field(
                self.plate,
                self.well,
                self.site,
                reason=reason,
                user=self.user_edit.text(),
                undo=undo,
                timepoint=self.timepoint,
            )
            self._recorded(
                f"{'Undo of the exclusion of' if undo else 'Exclusion of'} {field_name(*self.selected_field)}"
            )

    def exclude_well(self) -> None:
        if (reason := self._reason()) is not None:
            undo = self.undo_box.isChecked()
            self.review.exclude_well(self.plate, self.well, reason=reason, user=self.user_edit.text(), undo=undo)
            self._recorded(f"{'Undo of the exclusion of' if undo else 'Exclusion of'} well {self.well}")

    def set_selected_call(self, value: bool) -> None:
        """Correct the call of the cell selected in the cells layer (the first call)."""
        if (reason := self._reason()) is None or not self.review.pipeline.calls:
            return
        label = int(self.viewer.layers["cells"].selected_label)
        if label not in set(self.field_table["label"].astype(int)):
            self.status.setText(f"Label {label} is not a cell of this field; pick one with the labels layer.")
            return
        call = self.review.pipeline.calls[0].name
        self.review.set_call(
            self.plate,
            self.well,
            self.site,
            label,
            call,
            value,
            reason=reason,
            user=self.user_edit.text(),
            timepoint=self.timepoint,
        )
        self.field_table.loc[self.field_table["label"] == label, call] = value
        self.recolour()
        self._recorded(f"Cell {label} set {'positive' if value else 'negative'}:")

    def rebuild(self):
        """Rebuild tables (with curation), comparisons and report in the background."""

        def work():
            yield 0
            return self.review.rebuild()

        def done(outputs):
            self.tuned = None
            self.forget_fields()
            self.draw_grid()
            self.show_field()
            self.status.setText(f"Tables rebuilt; report at {outputs['report']}")

        return self._run_in_background(work, 1, done)

    # ---- background work -----------------------------------------------------------------
    def _run_in_background(self, work, total: int, done):
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.apply_button.setEnabled(False)
        self.rebuild_button.setEnabled(False)
        worker = create_worker(work)
        worker.yielded.connect(self.progress.setValue)
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: self.status.setText(f"Failed: {exc}"))

        def finish():
            self.progress.setVisible(False)
            self.apply_button.setEnabled(True)
            self.rebuild_button.setEnabled(True)

        worker.finished.connect(finish)
        self._worker = worker
        worker.start()
        return worker
