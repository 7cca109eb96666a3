"""A plate run (or a plate folder with a pipeline) as viewer layers (Qt-free; the napari
reader returns these as they are, the plate browser shows every field it opens with them).

A field becomes one image layer per channel (brightfield as RGB, fluorescence channels
additive in their own colour), its nuclei and cells as labels layers, the cells carrying the
field's per-cell table as ``features`` (napari's ``index`` column is the label) and coloured
by the pipeline's first call (or by any feature: :func:`feature_colours`). Every layer's
metadata names where it came from (:func:`imaging.io.run_folder.layer_source`), so a dock
opened later finds the run whose layers are in the viewer.

A layer is napari's ``(data, kwargs, kind)`` tuple.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imaging.io.run_folder import layer_source
from imaging.plate.review import LoadedField, RunReview, open_review

LayerData = tuple  # (data, kwargs, kind)

CHANNEL_COLOURS = ["blue", "green", "magenta", "yellow", "red", "cyan"]
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
POSITIVE = (1.0, 0.0, 1.0, 1.0)  # magenta
NEGATIVE = (0.0, 0.9, 0.9, 0.6)  # cyan
UNDEFINED = (0.6, 0.6, 0.6, 0.6)
IDENTITY_COLUMNS = ("index", "label", "plate", "well", "site", "timepoint")


def call_colours(labels, calls) -> dict:
    """Label colours from a call per label (True / False / missing): positive magenta,
    negative cyan, missing grey; background (0) and unlisted labels transparent.

    Parameters
    ----------
    labels : array_like of int
        Cell labels.
    calls : array_like of bool or NA
        Their calls, in the same order.

    Returns
    -------
    dict
        Label (and None, for any other) to RGBA, as napari's ``DirectLabelColormap`` takes it.
    """
    colours = {None: TRANSPARENT, 0: TRANSPARENT}
    for label, call in zip(labels, calls):
        colours[int(label)] = UNDEFINED if pd.isna(call) else POSITIVE if bool(call) else NEGATIVE
    return colours


def feature_colours(labels, values, cmap: str = "viridis") -> dict:
    """Label colours from a numeric feature per label, scaled over the labels given (a field);
    missing or non-finite values grey, background transparent.

    Parameters
    ----------
    labels : array_like of int
        Cell labels.
    values : array_like
        Their feature values (non-numeric ones count as missing).
    cmap : str
        A matplotlib colormap name.

    Returns
    -------
    dict
        Label (and None, for any other) to RGBA.
    """
    from matplotlib import colormaps

    values = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    mapping = colormaps[cmap]
    colours = {None: TRANSPARENT, 0: TRANSPARENT}
    for label, value in zip(labels, scaled):
        colours[int(label)] = UNDEFINED if not np.isfinite(value) else tuple(mapping(float(value)))
    return colours


def cell_features(table: pd.DataFrame) -> pd.DataFrame:
    """A field's per-cell table as a labels layer's ``features`` (napari's ``index`` = label).

    Parameters
    ----------
    table : pandas.DataFrame
        The field's cells, with ``label``.

    Returns
    -------
    pandas.DataFrame
    """
    features = table.reset_index(drop=True).copy()
    features.insert(0, "index", features["label"].astype(int))
    return features


def colour_choices(review: RunReview, features: pd.DataFrame) -> list[str]:
    """What cells can be coloured by: the pipeline's calls, then every numeric feature.

    Parameters
    ----------
    review : RunReview
        The run (its pipeline's calls).
    features : pandas.DataFrame
        The cells layer's features.

    Returns
    -------
    list of str
    """
    calls = [c.name for c in review.pipeline.calls if c.name in features.columns]
    numeric = [
        c
        for c in features.columns
        if c not in IDENTITY_COLUMNS and c not in calls and pd.api.types.is_numeric_dtype(features[c])
    ]
    return calls + numeric


def field_layers(review: RunReview, loaded: LoadedField, *, source: Path | None = None) -> list[LayerData]:
    """The layers of one loaded field (see module docstring).

    Parameters
    ----------
    review : RunReview
        The run (or plate folder) the field belongs to; its pipeline says each channel's kind.
    loaded : LoadedField
        The field as :meth:`RunReview.load_field` returns it.
    source : Path, optional
        The folder opened, recorded in every layer's metadata (``layer_source``).

    Returns
    -------
    list of (data, kwargs, kind)
        One image layer per channel, then ``nuclei`` and ``cells`` labels layers.
    """
    metadata = layer_source(source, kind="plate", field=list(loaded.key)) if source is not None else {}
    layers: list[LayerData] = []
    colours = iter(CHANNEL_COLOURS)
    for name, image in loaded.images.items():
        if review.pipeline.channels[name].kind == "brightfield":
            kwargs = {"rgb": True}
        else:
            kwargs = {"colormap": next(colours), "blending": "additive"}
        layers.append((image, {"name": name, "metadata": dict(metadata), **kwargs}, "image"))
    layers.append((loaded.nuclei, {"name": "nuclei", "opacity": 0.5, "metadata": dict(metadata)}, "labels"))
    features = cell_features(loaded.table)
    cell_kwargs = {"name": "cells", "opacity": 0.8, "features": features, "metadata": dict(metadata)}
    calls = [c.name for c in review.pipeline.calls if c.name in features.columns]
    if calls:
        cell_kwargs["colormap"] = call_colours(features["label"], features[calls[0]])
    layers.append((loaded.cells, cell_kwargs, "labels"))
    return layers


def first_field(review: RunReview) -> tuple:
    """The field a folder opens on: the first plate's first well, site and time point.

    Parameters
    ----------
    review : RunReview
        The run or plate folder.

    Returns
    -------
    tuple
        (plate, well, site, timepoint), timepoint None outside a time series.
    """
    plate = review.plates[0]
    timepoints = review.timepoints(plate)
    timepoint = timepoints[0] if timepoints else None
    well = review.wells(plate)[0]
    return plate, well, review.sites(plate, well, timepoint)[0], timepoint


def plate_run_layers(folder: str | Path) -> list[LayerData]:
    """The layers of the first field of a plate run folder, or of a plate folder holding one
    pipeline (segmented on opening); the plate browser walks the rest.

    Parameters
    ----------
    folder : str or Path
        A plate run's output folder (``run.json``) or an instrument folder with one pipeline YAML.

    Returns
    -------
    list of (data, kwargs, kind)
        As :func:`field_layers`, with the folder recorded as their source.
    """
    folder = Path(folder)
    review = open_review(folder)
    loaded = review.load_field(*first_field(review))
    return field_layers(review, loaded, source=folder)
