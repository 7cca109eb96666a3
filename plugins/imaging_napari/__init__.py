"""napari plugin for imaging: review a run's plate, tune a pipeline on real fields, curate.

Thin widgets over :mod:`imaging.plate.review`; no algorithm lives here.
"""

__all__ = ["PlateBrowser"]


def __getattr__(name):
    if name == "PlateBrowser":  # Qt is imported only when the widget is asked for
        from imaging_napari._widget import PlateBrowser

        return PlateBrowser
    raise AttributeError(name)
