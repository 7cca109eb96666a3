"""The plate assay: fields of multi-well plates, measured one by one and summarised per well.

``plan_run`` checks a run before anything is written; ``execute`` runs it through the run
engine (:mod:`imaging.run.engine`). The steps: :mod:`~imaging.plate.plan`,
:mod:`~imaging.plate.calibrate`, :mod:`~imaging.plate.fields` (one field as a unit of the
run) and :mod:`~imaging.plate.measure` (one field's measurement, pure), then
:mod:`~imaging.plate.tables` (per-plate tables) with :mod:`~imaging.plate.summary` (the
summary rule of fields and wells), and :mod:`~imaging.plate.assay` (the assay the engine drives).
Around a run: :mod:`~imaging.plate.review` (the Qt-free review model behind the napari plate
browser), :mod:`~imaging.plate.tuning` (tuned settings as a pipeline) and
:mod:`~imaging.plate.profiles` (pycytominer profiles of the cells tables).
"""

from imaging.plate.assay import RunResult, execute
from imaging.plate.plan import RunPlan, plan_run

__all__ = ["RunPlan", "RunResult", "execute", "plan_run"]
