"""How a dock finds the run the reader opened: the reader returns layers only, each naming its
run folder in its metadata (:func:`imaging.io.run_folder.layer_source`); a dock using
:class:`FollowsOpenedRuns` opens that run when it is created after the layers, and again
whenever the reader adds layers of another run of its kind. The dock has ``viewer``,
``status``, ``source_kind`` ("plate" or "tissue") and ``open_folder(folder)``."""

from __future__ import annotations

from pathlib import Path

from imaging.errors import InputError
from imaging.io.run_folder import source_of


class FollowsOpenedRuns:
    opened_folder: Path | None = None

    def follow_opened_runs(self) -> None:
        # a bound method: napari holds it weakly, so a closed dock is not kept alive by the viewer
        self.viewer.layers.events.inserted.connect(self.layers_added)
        self.layers_added()

    def layers_added(self, _event=None) -> None:
        folder = source_of(self.viewer.layers, kind=self.source_kind)
        if folder is None or folder == self.opened_folder:
            return
        self.opened_folder = folder
        try:
            self.open_folder(folder)
        except InputError as exc:
            self.status.setText(str(exc))
