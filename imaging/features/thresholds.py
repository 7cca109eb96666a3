"""Positive/negative calls: a threshold fixed in the pipeline, or ``auto`` from the data.

``auto`` fits a two-component Gaussian mixture to the per-cell values of the plate (EM,
started from the Otsu split; on the log scale when that explains positive values better)
and puts the threshold where the two weighted components are equally likely: the Bayes
decision boundary between the negative and positive populations. :func:`mixture_percent`
gives a group's positive share from the same fit without the hard calls' bias. Unlike Otsu alone, this follows populations of unequal size and spread. If
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
    """EM fit of a two-component 1-D Gaussian mixture, started by splitting at ``start``.

    Parameters
    ----------
    values : (K,) ndarray of float
        Finite values.
    start : float
        The first split: values at or below it start the low component.
    iterations : int
        Most EM iterations.

    Returns
    -------
    dict
        ``weights``, ``means``, ``sds``: arrays of 2, the low component first.

    Raises
    ------
    ValueError
        When the split leaves a component with fewer than 2 values.
    """
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
    """Point between the two means where the weighted densities are equal, or None.

    Parameters
    ----------
    fit : dict
        A :func:`fit_two_gaussians` result.

    Returns
    -------
    float or None
        None when the densities do not cross between the means.
    """
    (w1, w2), (m1, m2), (s1, s2) = fit["weights"], fit["means"], fit["sds"]
    grid = np.linspace(m1, m2, 2001)
    difference = w1 * _gaussian(grid, m1, s1) - w2 * _gaussian(grid, m2, s2)
    crossings = np.flatnonzero(np.sign(difference[:-1]) != np.sign(difference[1:]))
    if crossings.size == 0:
        return None
    i = crossings[0]
    # Linear interpolation between the two grid points that bracket the crossing.
    return float(grid[i] + (grid[i + 1] - grid[i]) * difference[i] / (difference[i] - difference[i + 1]))


def mixture_log_likelihood(values: np.ndarray, fit: dict) -> float:
    """Log-likelihood of ``values`` under a fitted two-Gaussian mixture.

    Parameters
    ----------
    values : ndarray of float
        The values (on the scale the mixture was fitted on).
    fit : dict
        A :func:`fit_two_gaussians` result.

    Returns
    -------
    float
    """
    density = sum(w * _gaussian(values, m, s) for w, m, s in zip(fit["weights"], fit["means"], fit["sds"]))
    return float(np.log(np.maximum(density, 1e-300)).sum())


def _to_scale(values: np.ndarray, scale: str) -> np.ndarray:
    """Values on the scale a mixture was fitted on (``log``: positive values only)."""
    return np.log(values[values > 0]) if scale == "log" else values


def _fit_on_scale(values: np.ndarray, scale: str) -> tuple[dict, float, float] | None:
    """Mixture fit on the linear or log scale: (fit, boundary on that scale, log-likelihood of
    the values on the linear scale), or None if the fit is degenerate."""
    transformed = _to_scale(values, scale)
    try:
        fit = fit_two_gaussians(transformed, start=float(threshold_otsu(transformed)))
    except ValueError:
        return None
    boundary = mixture_boundary(fit)
    if boundary is None or fit["weights"].min() < MIN_COMPONENT_WEIGHT:
        return None
    likelihood = mixture_log_likelihood(transformed, fit)
    if scale == "log":  # the Jacobian of x -> log x, so both scales score the same values
        likelihood -= float(np.log(values).sum())
    return fit, boundary, likelihood


def miscalled_fraction(fit: dict, boundary: float) -> float:
    """Share of cells a hard call at ``boundary`` gets wrong if the fit is right: negatives
    above it plus positives below it (how much the populations overlap).

    Parameters
    ----------
    fit : dict
        A :func:`fit_two_gaussians` result.
    boundary : float
        The call's threshold, on the fit's scale.

    Returns
    -------
    float
        In [0, 1].
    """
    from scipy.stats import norm

    (w_neg, w_pos), (m_neg, m_pos), (s_neg, s_pos) = fit["weights"], fit["means"], fit["sds"]
    return float(w_neg * norm.sf(boundary, m_neg, s_neg) + w_pos * norm.cdf(boundary, m_pos, s_pos))


def auto_threshold(values) -> Threshold:
    """Threshold separating negative and positive cells (see module docstring).

    Stain amounts (optical densities, intensities) are often skewed: when every value is
    positive, the mixture is fitted both to the values and to their logarithms (log-normal
    populations), and the fit that explains the values better (higher likelihood, on the
    same scale) is kept; ``detail['scale']`` records which.

    Parameters
    ----------
    values : array_like of float
        One readout of every cell of a plate (non-finite values ignored).

    Returns
    -------
    Threshold
        Method ``'mixture'`` with the fit in ``detail``; ``'otsu'`` (with the reason) when the
        mixture is degenerate; ``'undefined'`` (NaN) with too few cells or a single value.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < MIN_CELLS_FOR_AUTO or np.ptp(values) == 0:
        return Threshold(
            float("nan"),
            "undefined",
            int(values.size),
            {"reason": f"needs at least {MIN_CELLS_FOR_AUTO} cells with distinct values"},
        )
    scales = ("linear", "log") if values.min() > 0 else ("linear",)
    fits = {scale: fitted for scale in scales if (fitted := _fit_on_scale(values, scale)) is not None}
    if not fits:
        return Threshold(
            float(threshold_otsu(values)), "otsu", int(values.size), {"reason": "mixture degenerate; Otsu used"}
        )
    scale = max(fits, key=lambda s: fits[s][2])
    fit, boundary, likelihood = fits[scale]
    detail = {k: [float(x) for x in v] for k, v in fit.items()} | {
        "scale": scale,
        "log_likelihood": likelihood,
        "expected_miscalled_fraction": miscalled_fraction(fit, boundary),
    }
    return Threshold(float(np.exp(boundary)) if scale == "log" else boundary, "mixture", int(values.size), detail)


def mixture_percent(values, threshold: Threshold, *, iterations: int = 500) -> float:
    """Percent positive of one group of cells (a well) without the hard-call bias.

    With the plate's two fitted populations held fixed, the group's share of the positive
    one is estimated by maximum likelihood (EM over the mixing weight alone). Hard calls
    count every negative cell above the threshold as positive and every positive below it
    as negative; when the populations overlap the two errors do not cancel, and the count
    drifts towards the threshold's side of the larger population.

    Parameters
    ----------
    values : array_like of float
        The group's cells.
    threshold : Threshold
        The plate's :func:`auto_threshold`.
    iterations : int
        Most EM iterations.

    Returns
    -------
    float
        Percent (0-100); NaN when the threshold is not a mixture fit or the group has no values.
    """
    if threshold.method != "mixture":
        return float("nan")
    values = np.asarray(values, dtype=float)
    values = _to_scale(values[np.isfinite(values)], threshold.detail.get("scale", "linear"))
    if values.size == 0:
        return float("nan")
    (_, w_pos), means, sds = threshold.detail["weights"], threshold.detail["means"], threshold.detail["sds"]
    negative, positive = _gaussian(values, means[0], sds[0]), _gaussian(values, means[1], sds[1])
    share = float(w_pos)
    for _ in range(iterations):
        total = np.maximum(share * positive + (1 - share) * negative, 1e-300)
        updated = float(np.mean(share * positive / total))
        if abs(updated - share) < 1e-10:
            share = updated
            break
        share = updated
    return 100.0 * share


def resolve_threshold(values, setting: float | str) -> Threshold:
    """The threshold a pipeline setting asks for.

    Parameters
    ----------
    values : array_like of float
        The readout of every cell the threshold serves.
    setting : float or "auto"
        A number (used as is) or ``'auto'`` (:func:`auto_threshold`).

    Returns
    -------
    Threshold
    """
    if setting == "auto":
        return auto_threshold(values)
    return Threshold(float(setting), "fixed", int(np.isfinite(np.asarray(values, float)).sum()))


def apply_call(values, threshold: Threshold) -> pd.Series:
    """Boolean calls ``value > threshold``; missing where the value or threshold is undefined.

    Parameters
    ----------
    values : array_like of float
        One readout per cell.
    threshold : Threshold
        The call's threshold.

    Returns
    -------
    pandas.Series of boolean dtype
        True, False or ``<NA>`` per cell, on ``values``'s index.
    """
    values = pd.Series(values, dtype="float64")
    calls = pd.Series(values > threshold.value, index=values.index, dtype="boolean")
    calls[values.isna() | (not np.isfinite(threshold.value))] = pd.NA
    return calls


# A non-expressing population sits near the background: on a background-subtracted level its
# mean is a small fraction of the expressing cells'. Two expressing populations (a drug that
# raises the reporter 3-fold in some wells) are further apart than that, and must not be gated.
GATE_MAX_LOW_TO_HIGH = 0.25
GATE_MAX_MISCALLED = 0.05


def reporter_gate_threshold(values, setting: float | str, *, background: float = 0.0) -> Threshold:
    """The level at or below which a cell does not express the reporter.

    A number is used as it is. ``'auto'`` takes the mixture boundary of :func:`auto_threshold`
    only when the data hold a separate low population: the two fitted populations overlap
    little (at most 5 % of cells miscalled), the low one is the minority, and its mean is at
    most a quarter of the high one's above ``background`` (the level a cell without signal
    reads at in these values: 0 after local background subtraction, the cell-free level
    without).

    Parameters
    ----------
    values : array_like of float
        The reporter readout of every cell of a plate.
    setting : float or "auto"
        The pipeline's gate.
    background : float
        The level of a cell without signal.

    Returns
    -------
    Threshold
        With no separate low population no cell is gated: ``value`` is -inf, method ``'none'``
        and ``detail['reason']`` says why.
    """
    if setting != "auto":
        return resolve_threshold(values, setting)
    fitted = auto_threshold(values)
    if fitted.method != "mixture":
        return Threshold(
            float("-inf"),
            "none",
            fitted.n_values,
            {"reason": "no separate non-expressing population: no two-population fit"},
        )
    (w_low, _), means = fitted.detail["weights"], fitted.detail["means"]
    if fitted.detail.get("scale") == "log":
        means = np.exp(means)
    reasons = []
    if fitted.detail["expected_miscalled_fraction"] > GATE_MAX_MISCALLED:
        reasons.append(
            f"the populations overlap ({100 * fitted.detail['expected_miscalled_fraction']:.0f} % miscalled)"
        )
    if w_low > 0.5:
        reasons.append(f"the low population is the majority ({100 * w_low:.0f} %)")
    background = float(background) if np.isfinite(background) else 0.0
    if not means[0] - background <= GATE_MAX_LOW_TO_HIGH * (means[1] - background):
        reasons.append(
            f"the low population is not near background (mean {means[0]:.3g} vs {means[1]:.3g}, "
            f"background {background:.3g})"
        )
    if reasons:
        return Threshold(
            float("-inf"),
            "none",
            fitted.n_values,
            fitted.detail | {"reason": "no separate non-expressing population: " + "; ".join(reasons)},
        )
    return fitted


def reporter_expressed(values, threshold: Threshold) -> pd.Series:
    """True where a cell expresses the reporter (``value > threshold``; every cell when no
    gate was found); missing where the value is missing.

    Parameters
    ----------
    values : array_like of float
        The reporter readout per cell.
    threshold : Threshold
        :func:`reporter_gate_threshold`.

    Returns
    -------
    pandas.Series of boolean dtype
    """
    if np.isfinite(threshold.value):
        return apply_call(values, threshold)
    values = pd.Series(values, dtype="float64")  # no gate: apply_call would leave every cell uncalled
    return pd.Series(True, index=values.index, dtype="boolean").mask(values.isna())
