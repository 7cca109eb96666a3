"""Positive/negative calls: a threshold fixed in the pipeline, or ``auto`` from the data.

``auto`` fits a two-component Gaussian mixture to the per-cell values of the plate (EM,
started from the Otsu split) and puts the threshold where the two weighted components
are equally likely: the Bayes decision boundary between the negative and positive
populations. Unlike Otsu alone, this follows populations of unequal size and spread. If
the fit is degenerate (a component under 1 % of cells, or no crossing between the two
means), the Otsu threshold is used and the record says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from skimage.filters import threshold_otsu

MIN_COMPONENT_WEIGHT = 0.01
MIN_CELLS_FOR_AUTO = 20


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A threshold and how it was obtained (for the run record)."""

    value: float
    method: str  # 'fixed', 'mixture', 'otsu' or 'undefined'
    n_values: int
    detail: dict = dataclasses.field(default_factory=dict)


def _gaussian(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def fit_two_gaussians(values: np.ndarray, *, start: float, iterations: int = 200) -> dict:
    """EM fit of a two-component 1-D Gaussian mixture, started by splitting at ``start``."""
    low, high = values[values <= start], values[values > start]
    if low.size < 2 or high.size < 2:
        raise ValueError("starting split leaves a component with fewer than 2 values")
    floor = max(1e-9, 1e-3 * np.std(values))
    weights = np.array([low.size, high.size], dtype=float) / values.size
    means = np.array([low.mean(), high.mean()])
    sds = np.maximum([low.std(), high.std()], floor)
    for _ in range(iterations):
        density = np.stack([w * _gaussian(values, m, s) for w, m, s in zip(weights, means, sds)])
        total = density.sum(axis=0)
        total[total == 0] = 1e-300
        resp = density / total
        mass = resp.sum(axis=1)
        if (mass < 2).any():
            raise ValueError("a mixture component collapsed")
        new_means = (resp @ values) / mass
        new_sds = np.maximum(np.sqrt((resp * (values - new_means[:, None]) ** 2).sum(axis=1) / mass), floor)
        new_weights = mass / values.size
        converged = np.allclose(new_means, means, rtol=0, atol=1e-9 * (1 + np.abs(means).max()))
        weights, means, sds = new_weights, new_means, new_sds
        if converged:
            break
    order = np.argsort(means)
    return {"weights": weights[order], "means": means[order], "sds": sds[order]}


def mixture_boundary(fit: dict) -> float | None:
    """Point between the two means where the weighted densities are equal, or None."""
    (w1, w2), (m1, m2), (s1, s2) = fit["weights"], fit["means"], fit["sds"]
    grid = np.linspace(m1, m2, 2001)
    difference = w1 * _gaussian(grid, m1, s1) - w2 * _gaussian(grid, m2, s2)
    crossings = np.flatnonzero(np.sign(difference[:-1]) != np.sign(difference[1:]))
    if crossings.size == 0:
        return None
    i = crossings[0]
    # Linear interpolation between the two grid points that bracket the crossing.
    return float(grid[i] + (grid[i + 1] - grid[i]) * difference[i] / (difference[i] - difference[i + 1]))


def auto_threshold(values) -> Threshold:
    """Threshold separating negative and positive cells (see module docstring)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < MIN_CELLS_FOR_AUTO or np.ptp(values) == 0:
        return Threshold(float("nan"), "undefined", int(values.size),
                         {"reason": f"needs at least {MIN_CELLS_FOR_AUTO} cells with distinct values"})
    otsu = float(threshold_otsu(values))
    try:
        fit = fit_two_gaussians(values, start=otsu)
    except ValueError as exc:
        return Threshold(otsu, "otsu", int(values.size), {"reason": str(exc)})
    boundary = mixture_boundary(fit)
    detail = {k: [float(x) for x in v] for k, v in fit.items()}
    if boundary is None or fit["weights"].min() < MIN_COMPONENT_WEIGHT:
        detail["reason"] = "mixture degenerate; Otsu used"
        return Threshold(otsu, "otsu", int(values.size), detail)
    return Threshold(boundary, "mixture", int(values.size), detail)


def resolve_threshold(values, setting: float | str) -> Threshold:
    """``setting`` is a number (used as is) or ``'auto'``."""
    if setting == "auto":
        return auto_threshold(values)
    return Threshold(float(setting), "fixed", int(np.isfinite(np.asarray(values, float)).sum()))


def apply_call(values, threshold: Threshold) -> pd.Series:
    """Boolean calls ``value > threshold``; missing where the value or threshold is undefined."""
    values = pd.Series(values, dtype="float64")
    calls = pd.Series(values > threshold.value, index=values.index, dtype="boolean")
    calls[values.isna() | (not np.isfinite(threshold.value))] = pd.NA
    return calls
