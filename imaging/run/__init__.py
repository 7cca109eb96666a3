"""The run engine shared by every assay (:mod:`~imaging.run.engine`), the workers it runs units
on (:mod:`~imaging.run.workers`) and the run record (:mod:`~imaging.run.record`)."""
