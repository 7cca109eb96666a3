"""Tissue curation: a thin dock widget over :class:`imaging.tissue.curation.TissueCuration`.

Lists a tissue run's images with their scores as measured (cells, percent positive, H-score,
lesions), excluded ones marked; records exclusions (and their undo) with a reason in
``curation.csv``; rebuilds the tables and the report in a napari thread worker. Selecting an
image centres the viewer on its section when the run's layers are open (the reader names
them after the image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imaging.tissue.curation import TissueCuration
from imaging_napari._decisions import DecisionControls
from imaging_napari._sources import FollowsOpenedRuns

EXCLUDED = QColor(120, 120, 120)


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def _shown(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:.1f}" if isinstance(value, float) else str(value)


class TissueCurationDock(DecisionControls, FollowsOpenedRuns, QWidget):
    """Images of a tissue run, their exclusion, and the rebuild (see module docstring). Opens
    the tissue run whose layers the reader added (or one chosen with its button)."""

    source_kind = "tissue"

    def __init__(self, napari_viewer, curation: TissueCuration | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.curation = None
        self._worker = None
        layout = QVBoxLayout(self)
        open_button = QPushButton("Open tissue run...")
        open_button.clicked.connect(self._choose_run)
        layout.addWidget(open_button)
        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._image_selected)
        layout.addWidget(self.table)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (required)")
        self.user_edit = QLineEdit()
        self.user_edit.setPlaceholderText("user")
        row = QHBoxLayout()
        row.addWidget(self.reason_edit, 3)
        row.addWidget(self.user_edit, 1)
        layout.addLayout(row)
        buttons = QHBoxLayout()
        self.exclude_button = QPushButton("Exclude image")
        self.exclude_button.clicked.connect(lambda: self.exclude_selected(undo=False))
        self.include_button = QPushButton("Include again")
        self.include_button.clicked.connect(lambda: self.exclude_selected(undo=True))
        buttons.addWidget(self.exclude_button)
        buttons.addWidget(self.include_button)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("Decisions in force"))
        self.decision_list = QListWidget()
        layout.addWidget(self.decision_list)
        undo = QPushButton("Undo selected decision")
        undo.clicked.connect(self.undo_selected)
        layout.addWidget(undo)
        self.rebuild_button = QPushButton("Rebuild tables and report")
        self.rebuild_button.clicked.connect(self.rebuild)
        layout.addWidget(self.rebuild_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        if curation is not None:
            self.opened_folder = Path(curation.out_dir)
            self.set_curation(curation)
        self.follow_opened_runs()

    # ---- the run -------------------------------------------------------------------------
    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Tissue run folder")
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path) -> None:
        """Open a tissue run folder for curation."""
        self.opened_folder = folder
        self.set_curation(TissueCuration.open(folder))

    def set_curation(self, curation: TissueCuration) -> None:
        self.curation = curation
        self.draw_images()
        self.list_decisions()
        self.status.setText(f"{curation.out_dir}: {self.table.rowCount()} image(s)")

    def draw_images(self) -> None:
        images = self.curation.images()
        columns = [c for c in images.columns if c != "note"]
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setRowCount(len(images))
        for r, row in enumerate(images.itertuples(index=False)):
            values = row._asdict()
            for c, column in enumerate(columns):
                item = QTableWidgetItem(_shown(values[column]))
                if values["excluded"]:
                    item.setForeground(QBrush(EXCLUDED))
                    item.setToolTip(values["note"])
                self.table.setItem(r, c, item)

    @property
    def selected_image(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def select_image(self, image: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == image:
                self.table.selectRow(r)
                return
        raise KeyError(image)

    def _image_selected(self) -> None:
        """Centre the viewer on the image's section when its layer is open."""
        image = self.selected_image
        if image is None or image not in self.viewer.layers:
            return
        layer = self.viewer.layers[image]
        low, high = np.asarray(layer.extent.world)
        camera(self.viewer).center = tuple((low + high)[-2:] / 2)

    # ---- decisions -----------------------------------------------------------------------
    @property
    def curation_model(self) -> TissueCuration | None:
        return self.curation

    def exclude_selected(self, *, undo: bool) -> None:
        image = self.selected_image
        if image is None:
            self.status.setText("Select an image in the table.")
            return
        if (reason := self._reason()) is None:
            return
        self.curation.exclude(image, reason=reason, user=self.user_edit.text(), undo=undo)
        self._recorded(f"{'Inclusion' if undo else 'Exclusion'} of {image}")

    def _recorded(self, what: str) -> None:
        self.reason_edit.clear()
        self.draw_images()
        self.list_decisions()
        self.status.setText(f"{what} recorded in curation.csv; rebuild to apply.")

    def rebuild(self):
        """Rebuild the tables (curation applied) and the report in a thread worker."""
        self.rebuild_button.setEnabled(False)
        worker = create_worker(self.curation.rebuild)

        def done(record):
            excluded = record["curation"]["excluded_images"]
            self.draw_images()
            self.status.setText(
                f"Tables and report rebuilt ({len(excluded)} image(s) excluded): {self.curation.out_dir / 'report.html'}"
            )

        worker.returned.connect(done)
        worker.errored.connect(lambda exc: self.status.setText(f"Failed: {exc}"))
        worker.finished.connect(lambda: self.rebuild_button.setEnabled(True))
        self._worker = worker
        worker.start()
        return worker
