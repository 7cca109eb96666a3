"""Cells -> fields -> wells: per-group summaries of the per-cell table.

Rule for every measured per-cell column ``X`` (except identity and position columns):
the field's or well's ``X`` is the mean over its cells, except ratio columns (``*_ratio``),
which take the median because ratios are skewed; their mean, what CellProfiler's per-image
means give, is ``X_mean`` beside it. Every call ``C`` gives ``C_pct``, the
percentage of cells called positive (cells without a call are left out), and
``C_pct_mixture``, the positive share estimated from the plate's mixture fit without the hard
calls' bias (:func:`imaging.features.thresholds.mixture_percent`; NaN when the threshold is
fixed or no mixture was fitted; curated call overrides change ``C_pct`` only). ``n_cells``
counts cells. Wells pool the cells of their fields that passed QC, so every cell weighs
the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from imaging.features.thresholds import Threshold, mixture_percent

NOT_AGGREGATED = {"label", "centroid_row", "centroid_col", "touches_border"}


def aggregated_columns(cell_columns: list[str]) -> list[str]:
    """The per-cell columns that have a per-field / per-well summary."""
    return [c for c in cell_columns if c not in NOT_AGGREGATED]


def summary_columns(cell_columns: list[str], call_names: list[str]) -> list[str]:
    """Column names of :func:`summarize_cells` output, in order."""
    calls = [column for name in call_names for column in (f"{name}_pct", f"{name}_pct_mixture")]
    measured = []
    for column in aggregated_columns(cell_columns):
        measured += [column, f"{column}_mean"] if column.endswith("_ratio") else [column]
    return ["n_cells", "n_cells_in_readouts"] + calls + measured


def summarize_cells(
    cells: pd.DataFrame,
    cell_columns: list[str],
    call_names: list[str],
    *,
    thresholds: Mapping[str, Threshold] | None = None,
    call_columns: Mapping[str, str] | None = None,
    n_cells: int | None = None,
) -> dict:
    """Summary of one group of cells (see module docstring); NaN readouts when empty.

    ``thresholds`` and ``call_columns`` (call name -> its threshold, and the column it is
    made on) give ``<call>_pct_mixture``; without them it is NaN. ``n_cells``: the group's
    count when ``cells`` are only those its readouts use (border cells left out); the
    summary's ``n_cells_in_readouts`` is ``len(cells)``."""
    summary: dict = {"n_cells": int(len(cells) if n_cells is None else n_cells), "n_cells_in_readouts": int(len(cells))}
    for name in call_names:
        calls = cells[name].dropna() if name in cells else pd.Series(dtype=bool)
        summary[f"{name}_pct"] = float(100.0 * calls.astype(bool).mean()) if len(calls) else np.nan
        column = (call_columns or {}).get(name)
        threshold = (thresholds or {}).get(name)
        summary[f"{name}_pct_mixture"] = (
            mixture_percent(cells[column], threshold) if threshold is not None and column in cells else np.nan
        )
    for column in aggregated_columns(cell_columns):
        values = pd.to_numeric(cells[column], errors="coerce").dropna() if column in cells else pd.Series(dtype=float)
        if column.endswith("_ratio"):
            summary[column] = float(values.median()) if len(values) else np.nan
            summary[f"{column}_mean"] = float(values.mean()) if len(values) else np.nan
        else:
            summary[column] = float(values.mean()) if len(values) else np.nan
    return summary
