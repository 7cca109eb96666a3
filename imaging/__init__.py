"""imaging: quantitative microscopy readouts for senescence, JNK signalling and metastasis.

The library is pure functions from arrays and tables to arrays and tables; the CLI
(:mod:`imaging.cli`), the batch runner and the napari plugin are thin adapters over it.
"""

__version__ = "0.2.0"
