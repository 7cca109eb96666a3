"""The tissue assay: brightfield IHC cores and sections, and metastatic burden in sections.

:mod:`~imaging.tissue.plan` (checks) -> :mod:`~imaging.tissue.image` (one image on a worker:
:mod:`~imaging.tissue.slide`, :mod:`~imaging.tissue.mask`, :mod:`~imaging.tissue.ihc` with
:mod:`~imaging.tissue.nuclei`, :mod:`~imaging.tissue.burden`) -> :mod:`~imaging.tissue.tables`
-> :mod:`~imaging.tissue.assay` (the assay the run engine drives).
"""
