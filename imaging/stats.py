"""Replicate-aware comparisons: knockout vs control, drug vs vehicle, and their interaction.

The statistical unit is the biological replicate: wells of one replicate (the plate map's
``replicate`` column, or the plate when several plates are pooled without one) are
averaged first, and those replicate means are compared. With a single replicate the wells
become the unit, and every row says so in ``unit`` (wells are technical replicates: such
p-values speak for this plate only). Cells are never the unit.

For every readout and cell line:

``genotype_vs_control``
    each genotype against the control genotype, within each treatment;
``treatment_vs_vehicle``
    each treatment against the vehicle, within each genotype (the fold change is the
    drug response);
``interaction``
    for each knockout genotype G and drug T, the difference of drug responses
    ``(G,T - G,vehicle) - (control,T - control,vehicle)`` from a two-way linear model
    (OLS, ``value ~ genotype * treatment``) on the four groups' units: does the knockout
    blunt (negative) or enhance (positive) the drug's effect?

Pairwise tests are Welch's t-test (default; unequal variances, CI of the difference from
the Welch-Satterthwaite t) or Mann-Whitney (exact for small groups; Hodges-Lehmann shift
with its distribution-free Moses CI). Ratios (test / reference) get a CI by the delta
method on the log scale. Benjamini-Hochberg q-values are computed across all comparisons
of a run.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05
COMPARISON_COLUMNS = [
    "comparison",
    "readout",
    "cell_line",
    "genotype",
    "treatment",
    "reference",
    "unit",
    "n_reference",
    "n_test",
    "mean_reference",
    "mean_test",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "test",
    "statistic",
    "df",
    "p_value",
    "q_value",
    "significant",
    "note",
]


# ---- units ---------------------------------------------------------------------------------
def replicate_key(wells: pd.DataFrame) -> tuple[str | None, str]:
    """Which column identifies biological replicates, and the unit name.

    ``replicate`` when the plate map gives at least two; else ``plate`` when several
    plates are pooled; else None (wells are the unit).

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells of one or more plates with their plate-map columns.

    Returns
    -------
    column : str or None
    unit : str
        ``'replicate'``, ``'replicate (plate)'`` or ``'well'``.
    """
    if "replicate" in wells.columns and wells["replicate"].dropna().nunique() >= 2:
        return "replicate", "replicate"
    if "plate" in wells.columns and wells["plate"].nunique() >= 2:
        return "plate", "replicate (plate)"
    return None, "well"


def experimental_units(
    wells: pd.DataFrame, readout: str, *, genotype_column: str = "genotype", treatment_column: str = "treatment"
) -> tuple[pd.DataFrame, str]:
    """One value per experimental unit and condition.

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells (``wells.csv`` of one or more plates).
    readout : str
        The column compared.
    genotype_column, treatment_column : str
        The plate-map columns that name the genotype and the treatment.

    Returns
    -------
    units : DataFrame
        ``cell_line``, ``genotype``, ``treatment``, ``unit_id``, ``value`` (mean of the
        unit's wells), ``n_wells``.
    unit : str
        ``'replicate'``, ``'replicate (plate)'`` or ``'well'``.
    """
    table = wells.copy()
    table = table[pd.to_numeric(table[readout], errors="coerce").notna()]
    if "n_cells" in table.columns:
        table = table[table["n_cells"] > 0]
    table["cell_line"] = table["cell_line"].astype(str) if "cell_line" in table.columns else "all"
    table["genotype"] = table[genotype_column].astype(str)
    table["treatment"] = table[treatment_column].astype(str)
    key, unit = replicate_key(wells)
    if key is None:
        table["unit_id"] = table["plate"].astype(str) + "/" + table["well"].astype(str)
    else:
        table["unit_id"] = table[key].astype(str)
    grouped = table.groupby(["cell_line", "genotype", "treatment", "unit_id"], sort=False)
    units = grouped[readout].agg(["mean", "size"]).reset_index()
    units = units.rename(columns={"mean": "value", "size": "n_wells"})
    return units, unit


# ---- pairwise tests ------------------------------------------------------------------------
def welch_test(test: np.ndarray, reference: np.ndarray, *, alpha: float = ALPHA) -> dict:
    """Welch's t-test of ``test`` against ``reference`` with the CI of the difference.

    Parameters
    ----------
    test, reference : array_like of float
        One value per experimental unit.
    alpha : float
        1 - the confidence level.

    Returns
    -------
    dict
        ``difference``, ``statistic``, ``df``, ``p_value``, ``difference_ci_low/high``,
        ``se_test``, ``se_reference`` and a ``note`` when no test was possible (fewer than 2
        units in a group, no variation), the numbers then NaN.
    """
    test, reference = np.asarray(test, float), np.asarray(reference, float)
    n1, n2 = len(test), len(reference)
    result = {
        "difference": test.mean() - reference.mean() if n1 and n2 else np.nan,
        "statistic": np.nan,
        "df": np.nan,
        "p_value": np.nan,
        "difference_ci_low": np.nan,
        "difference_ci_high": np.nan,
        "se_test": np.nan,
        "se_reference": np.nan,
        "note": "",
    }
    if n1 < 2 or n2 < 2:
        result["note"] = "fewer than 2 units in a group: no test"
        return result
    v1, v2 = test.var(ddof=1) / n1, reference.var(ddof=1) / n2
    se = math.sqrt(v1 + v2)
    result |= {"se_test": math.sqrt(v1), "se_reference": math.sqrt(v2)}
    if se == 0:
        result["note"] = "no variation within groups: no test"
        return result
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    t = result["difference"] / se
    margin = sps.t.ppf(1 - alpha / 2, df) * se
    result |= {
        "statistic": t,
        "df": df,
        "p_value": 2 * sps.t.sf(abs(t), df),
        "difference_ci_low": result["difference"] - margin,
        "difference_ci_high": result["difference"] + margin,
    }
    return result


@lru_cache(maxsize=256)
def _mann_whitney_null(m: int, n: int) -> np.ndarray:
    """Exact null distribution (probabilities of U = 0..m*n) of the Mann-Whitney U."""
    # counts[i][j] over u, built by the recursion f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u)
    table = [[None] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                table[i][j] = np.array([1.0])
                continue
            counts = np.zeros(i * j + 1)
            left = table[i - 1][j]
            counts[j : j + len(left)] += left
            right = table[i][j - 1]
            counts[: len(right)] += right
            table[i][j] = counts
    counts = table[m][n]
    return counts / counts.sum()


def mann_whitney_test(test: np.ndarray, reference: np.ndarray, *, alpha: float = ALPHA) -> dict:
    """Mann-Whitney U test, Hodges-Lehmann shift and its Moses confidence interval.

    The CI uses the exact U distribution (no ties assumed) up to 30 per group, else the
    normal approximation. With very small groups a 95 % CI may be unattainable; the CI
    is then NaN and the note says so.

    Parameters
    ----------
    test, reference : array_like of float
        One value per experimental unit.
    alpha : float
        1 - the confidence level.

    Returns
    -------
    dict
        The keys of :func:`welch_test` (``difference`` is the Hodges-Lehmann shift).
    """
    test, reference = np.asarray(test, float), np.asarray(reference, float)
    m, n = len(test), len(reference)
    result = {
        "difference": np.nan,
        "statistic": np.nan,
        "df": np.nan,
        "p_value": np.nan,
        "difference_ci_low": np.nan,
        "difference_ci_high": np.nan,
        "note": "",
    }
    if m < 1 or n < 1:
        result["note"] = "an empty group: no test"
        return result
    differences = np.sort(np.subtract.outer(test, reference).ravel())
    result["difference"] = float(np.median(differences))
    if m < 2 or n < 2:
        result["note"] = "fewer than 2 units in a group: no test"
        return result
    outcome = sps.mannwhitneyu(test, reference, alternative="two-sided")
    result |= {"statistic": float(outcome.statistic), "p_value": float(outcome.pvalue)}
    if max(m, n) <= 30:
        cumulative = np.cumsum(_mann_whitney_null(m, n))
        k = int(np.searchsorted(cumulative, alpha / 2, side="right"))  # P(U <= k-1) <= alpha/2
    else:
        k = int(math.floor(m * n / 2 - sps.norm.ppf(1 - alpha / 2) * math.sqrt(m * n * (m + n + 1) / 12)))
    if k < 1:
        result["note"] = f"groups too small for a {100 * (1 - alpha):g}% Moses interval"
    else:
        result |= {"difference_ci_low": differences[k - 1], "difference_ci_high": differences[m * n - k]}
    return result


def ratio_interval(
    mean_test: float, mean_reference: float, se_test: float, se_reference: float, df: float, *, alpha: float = ALPHA
) -> tuple[float, float, float]:
    """Ratio of means and its delta-method CI on the log scale (NaN unless both means > 0).

    Parameters
    ----------
    mean_test, mean_reference : float
        The two means.
    se_test, se_reference : float
        Their standard errors.
    df : float
        Degrees of freedom (Welch's).
    alpha : float
        1 - the confidence level.

    Returns
    -------
    ratio, low, high : float
    """
    if not (mean_test > 0 and mean_reference > 0):
        return np.nan, np.nan, np.nan
    ratio = mean_test / mean_reference
    if not (np.isfinite(se_test) and np.isfinite(se_reference) and np.isfinite(df)):
        return ratio, np.nan, np.nan
    se_log = math.sqrt((se_test / mean_test) ** 2 + (se_reference / mean_reference) ** 2)
    margin = sps.t.ppf(1 - alpha / 2, df) * se_log
    return ratio, ratio * math.exp(-margin), ratio * math.exp(margin)


def compare_groups(test: np.ndarray, reference: np.ndarray, *, method: str = "welch") -> dict:
    """Means, difference (CI), ratio (CI) and test of two groups of unit values.

    Parameters
    ----------
    test, reference : array_like of float
        One value per experimental unit.
    method : {"welch", "mann-whitney"}
        The test (the ratio's CI is Welch's either way).

    Returns
    -------
    dict
        ``n_reference``, ``n_test``, ``mean_reference``, ``mean_test``, ``difference`` (CI),
        ``ratio`` (CI), ``test``, ``statistic``, ``df``, ``p_value``, ``note``.
    """
    test, reference = np.asarray(test, float), np.asarray(reference, float)
    welch = welch_test(test, reference)
    outcome = welch if method == "welch" else mann_whitney_test(test, reference)
    ratio, low, high = ratio_interval(
        test.mean() if len(test) else np.nan,
        reference.mean() if len(reference) else np.nan,
        welch["se_test"],
        welch["se_reference"],
        welch["df"],
    )
    return {
        "n_reference": len(reference),
        "n_test": len(test),
        "mean_reference": reference.mean() if len(reference) else np.nan,
        "mean_test": test.mean() if len(test) else np.nan,
        "difference": outcome["difference"],
        "difference_ci_low": outcome["difference_ci_low"],
        "difference_ci_high": outcome["difference_ci_high"],
        "ratio": ratio,
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "test": "Welch t-test" if method == "welch" else "Mann-Whitney U",
        "statistic": outcome["statistic"],
        "df": outcome["df"],
        "p_value": outcome["p_value"],
        "note": outcome["note"],
    }


# ---- interaction ---------------------------------------------------------------------------
def interaction_test(control_vehicle, control_drug, knockout_vehicle, knockout_drug, *, alpha: float = ALPHA) -> dict:
    """Genotype x treatment interaction of a 2 x 2 design by OLS.

    Fits ``value ~ knockout + drug + knockout:drug`` on the four groups' unit values; the
    interaction coefficient equals ``(KO,drug - KO,vehicle) - (control,drug -
    control,vehicle)`` and its test uses the pooled residual variance (two-way ANOVA).

    Parameters
    ----------
    control_vehicle, control_drug, knockout_vehicle, knockout_drug : array_like of float
        Unit values of the four groups.
    alpha : float
        1 - the confidence level.

    Returns
    -------
    dict
        The keys of :func:`compare_groups`, ``mean_reference`` / ``mean_test`` being the drug
        effect in the control and in the knockout, ``difference`` the interaction.
    """
    import statsmodels.api as sm

    groups = [np.asarray(g, float) for g in (control_vehicle, control_drug, knockout_vehicle, knockout_drug)]
    sizes = [len(g) for g in groups]
    means = [g.mean() if len(g) else np.nan for g in groups]
    control_effect, knockout_effect = means[1] - means[0], means[3] - means[2]
    result = {
        "n_reference": sizes[0] + sizes[1],
        "n_test": sizes[2] + sizes[3],
        "mean_reference": control_effect,
        "mean_test": knockout_effect,
        "difference": knockout_effect - control_effect,
        "difference_ci_low": np.nan,
        "difference_ci_high": np.nan,
        "ratio": np.nan,
        "ratio_ci_low": np.nan,
        "ratio_ci_high": np.nan,
        "test": "two-way OLS interaction",
        "statistic": np.nan,
        "df": np.nan,
        "p_value": np.nan,
        "note": "",
    }
    if all(m > 0 for m in means):
        result["ratio"] = (means[3] / means[2]) / (means[1] / means[0])
    if min(sizes) < 1 or sum(sizes) - 4 < 1:
        result["note"] = "too few units for a two-way model"
        return result
    value = np.concatenate(groups)
    knockout = np.repeat([0, 0, 1, 1], sizes)
    drug = np.repeat([0, 1, 0, 1], sizes)
    design = np.column_stack([np.ones_like(value), knockout, drug, knockout * drug])
    fit = sm.OLS(value, design).fit()
    if not np.isfinite(fit.bse[3]) or fit.bse[3] == 0:
        result["note"] = "no residual variation: no test"
        return result
    low, high = fit.conf_int(alpha)[3]
    result |= {
        "difference": float(fit.params[3]),
        "difference_ci_low": float(low),
        "difference_ci_high": float(high),
        "statistic": float(fit.tvalues[3]),
        "df": float(fit.df_resid),
        "p_value": float(fit.pvalues[3]),
    }
    return result


# ---- the run's comparisons ------------------------------------------------------------------
def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN entries stay NaN.

    Parameters
    ----------
    p_values : array_like of float
        Raw p-values.

    Returns
    -------
    ndarray of float
        q-values in the input's order.
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return q
    order = finite[np.argsort(p[finite])]
    ranked = p[order] * finite.size / np.arange(1, finite.size + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def _reference_first(values: pd.Series, reference: str) -> list[str]:
    """Distinct values in order of first appearance (plate-map order), reference first."""
    order = list(dict.fromkeys(values))
    return sorted(order, key=lambda v: (v != reference, order.index(v)))


def _values(units: pd.DataFrame, cell_line: str, genotype: str, treatment: str) -> np.ndarray:
    mask = (units["cell_line"] == cell_line) & (units["genotype"] == genotype) & (units["treatment"] == treatment)
    return units.loc[mask, "value"].to_numpy()


def compare_readout(
    wells: pd.DataFrame,
    readout: str,
    *,
    control_genotype: str,
    vehicle_treatment: str,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
    method: str = "welch",
) -> pd.DataFrame:
    """All comparisons of one readout (see module docstring), without q-values.

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells with their plate-map columns.
    readout : str
        The column compared.
    control_genotype, vehicle_treatment : str
        The reference genotype and treatment.
    genotype_column, treatment_column : str
        The plate-map columns naming them.
    method : {"welch", "mann-whitney"}
        The test.

    Returns
    -------
    pandas.DataFrame
        One row per comparison (knockout vs control under each treatment, each drug vs
        vehicle, the interaction), per cell line.
    """
    units, unit = experimental_units(wells, readout, genotype_column=genotype_column, treatment_column=treatment_column)
    rows = []
    for cell_line in sorted(units["cell_line"].unique()):
        present = units[units["cell_line"] == cell_line]
        genotypes = _reference_first(present["genotype"], control_genotype)
        treatments = _reference_first(present["treatment"], vehicle_treatment)
        base = {"readout": readout, "cell_line": cell_line, "unit": unit}
        for treatment in treatments:
            reference = _values(units, cell_line, control_genotype, treatment)
            for genotype in genotypes:
                if genotype == control_genotype:
                    continue
                rows.append(
                    base
                    | {
                        "comparison": "genotype_vs_control",
                        "genotype": genotype,
                        "treatment": treatment,
                        "reference": control_genotype,
                    }
                    | compare_groups(_values(units, cell_line, genotype, treatment), reference, method=method)
                )
        for genotype in genotypes:
            reference = _values(units, cell_line, genotype, vehicle_treatment)
            for treatment in treatments:
                if treatment == vehicle_treatment:
                    continue
                rows.append(
                    base
                    | {
                        "comparison": "treatment_vs_vehicle",
                        "genotype": genotype,
                        "treatment": treatment,
                        "reference": vehicle_treatment,
                    }
                    | compare_groups(_values(units, cell_line, genotype, treatment), reference, method=method)
                )
        for genotype in genotypes:
            if genotype == control_genotype:
                continue
            for treatment in treatments:
                if treatment == vehicle_treatment:
                    continue
                rows.append(
                    base
                    | {
                        "comparison": "interaction",
                        "genotype": genotype,
                        "treatment": treatment,
                        "reference": f"{control_genotype} response to {treatment}",
                    }
                    | interaction_test(
                        _values(units, cell_line, control_genotype, vehicle_treatment),
                        _values(units, cell_line, control_genotype, treatment),
                        _values(units, cell_line, genotype, vehicle_treatment),
                        _values(units, cell_line, genotype, treatment),
                    )
                )
    return pd.DataFrame(rows)


def per_timepoint(function, wells: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """``function(wells, ...)``, a table; for the wells of a time series (a ``timepoint``
    column: ``naming.timepoint: all``) applied to each time point's wells, the results stacked
    with a ``timepoint`` column first. Time points are never pooled: a replicate imaged at
    several times is one unit at each time, not several units.

    Parameters
    ----------
    function : callable
        ``function(wells, *args, **kwargs) -> DataFrame``.
    wells : pandas.DataFrame
        Wells, with or without a ``timepoint`` column.
    *args, **kwargs
        Passed on.

    Returns
    -------
    pandas.DataFrame
    """
    if "timepoint" not in wells.columns:
        return function(wells, *args, **kwargs)
    parts = []
    for timepoint, part in wells.groupby("timepoint", sort=True):
        result = function(part.drop(columns="timepoint"), *args, **kwargs)
        result.insert(0, "timepoint", int(timepoint))
        parts.append(result)
    if not parts:
        empty = function(wells.iloc[:0].drop(columns="timepoint"), *args, **kwargs)
        empty.insert(0, "timepoint", pd.Series(dtype="int64"))
        return empty
    return pd.concat(parts, ignore_index=True)


def _readout_comparisons(wells: pd.DataFrame, readouts: list[str], **settings) -> pd.DataFrame:
    parts = [compare_readout(wells, readout, **settings) for readout in readouts if readout in wells.columns]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COMPARISON_COLUMNS)


def compare_all(
    wells: pd.DataFrame,
    readouts: list[str],
    *,
    control_genotype: str,
    vehicle_treatment: str,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
    method: str = "welch",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Every comparison of every readout (in a time series, at every time point: see
    :func:`per_timepoint`), with Benjamini-Hochberg q-values across them all.

    Parameters
    ----------
    wells : DataFrame
        One row per well with the readouts and the annotation columns; wells are pooled to
        biological replicates before any test (cells are never the unit).
    readouts : list of str
        Columns compared.
    control_genotype, vehicle_treatment : str
        The reference line and treatment.
    genotype_column, treatment_column : str
        Annotation columns naming them.
    method : {'welch', 'mann-whitney'}
        Two-group test of replicate means.
    alpha : float
        Significance level of the q-values (one alpha for every comparison table).

    Returns
    -------
    DataFrame
        :data:`COMPARISON_COLUMNS`: one row per comparison (groups, replicate counts, the
        difference and ratio with their 95 % CIs, the test, p, q and ``significant``).
    """
    table = per_timepoint(
        _readout_comparisons,
        wells,
        readouts,
        control_genotype=control_genotype,
        vehicle_treatment=vehicle_treatment,
        genotype_column=genotype_column,
        treatment_column=treatment_column,
        method=method,
    )
    columns = (["timepoint"] if "timepoint" in wells.columns else []) + COMPARISON_COLUMNS
    return with_significance(table, alpha=alpha).reindex(columns=columns)


def with_significance(table: pd.DataFrame, *, alpha: float = ALPHA) -> pd.DataFrame:
    """``table`` (one row per comparison, a ``p_value`` column) with Benjamini-Hochberg
    ``q_value`` across all its rows and ``significant`` (q below ``alpha``): the one rule for
    plate and tissue comparisons.

    Parameters
    ----------
    table : pandas.DataFrame
        Comparisons.
    alpha : float
        The false discovery rate called significant.

    Returns
    -------
    pandas.DataFrame
        A copy with the two columns added.
    """
    table = table.copy()
    table["q_value"] = benjamini_hochberg(table["p_value"]) if len(table) else []
    table["significant"] = table["q_value"] < alpha
    return table


# ---- plate quality ---------------------------------------------------------------------------
def z_prime(positive, negative) -> float:
    """Z'-factor of control wells: ``1 - 3 (sd_pos + sd_neg) / |mean_pos - mean_neg|``.

    Parameters
    ----------
    positive, negative : array_like of float
        The readout of the positive and negative control wells.

    Returns
    -------
    float
        NaN with fewer than 2 wells of either.
    """
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) < 2 or len(negative) < 2:
        return np.nan
    separation = abs(positive.mean() - negative.mean())
    if separation == 0:
        return -np.inf
    return 1 - 3 * (positive.std(ddof=1) + negative.std(ddof=1)) / separation


def robust_z(values) -> np.ndarray:
    """``(x - median) / (1.4826 MAD)``; NaN where the MAD is 0.

    Parameters
    ----------
    values : array_like of float
        NaN ignored in the median and MAD.

    Returns
    -------
    ndarray of float
    """
    values = np.asarray(values, float)
    median = np.nanmedian(values)
    mad = 1.4826 * np.nanmedian(np.abs(values - median))
    return (values - median) / mad if mad > 0 else np.full(values.shape, np.nan)


def plate_format(rows: int, columns: int) -> tuple[int, int]:
    """Smallest standard plate (6 to 1536 wells) holding ``rows`` x ``columns``.

    Parameters
    ----------
    rows, columns : int
        The highest row and column imaged.

    Returns
    -------
    tuple of int
        (rows, columns) of the plate; ``(rows, columns)`` themselves beyond 1536 wells.
    """
    for shape in ((2, 3), (3, 4), (4, 6), (6, 8), (8, 12), (16, 24), (32, 48)):
        if rows <= shape[0] and columns <= shape[1]:
            return shape
    return rows, columns


def condition_residuals(plate_wells: pd.DataFrame, readout: str) -> np.ndarray:
    """Each well's readout minus the median of its condition (cell line, genotype,
    treatment, dose where present) on the plate.

    Parameters
    ----------
    plate_wells : pandas.DataFrame
        One plate's wells.
    readout : str
        The column.

    Returns
    -------
    ndarray of float
    """
    keys = [c for c in ("cell_line", "genotype", "treatment", "dose") if c in plate_wells.columns]
    values = pd.to_numeric(plate_wells[readout], errors="coerce")
    if not keys:
        return (values - values.median()).to_numpy()
    medians = values.groupby([plate_wells[k].astype(str) for k in keys]).transform("median")
    return (values - medians).to_numpy()


def edge_effect(plate_wells: pd.DataFrame, readout: str) -> dict:
    """Do outer-ring wells differ from inner wells beyond their condition?

    Compares condition residuals of edge and interior wells (Mann-Whitney); flagged when
    p < 0.05 and the median difference exceeds one robust SD of the residuals.

    Parameters
    ----------
    plate_wells : pandas.DataFrame
        One plate's wells (``row``, ``column`` and the readout).
    readout : str
        The column.

    Returns
    -------
    dict
        ``plate_format``, the numbers of edge and interior wells, and (with enough of both)
    ``edge_shift``, ``edge_p``, ``edge_flag``.
    """
    n_rows, n_columns = plate_format(int(plate_wells["row"].max()), int(plate_wells["column"].max()))
    edge = (
        (plate_wells["row"] == 1)
        | (plate_wells["row"] == n_rows)
        | (plate_wells["column"] == 1)
        | (plate_wells["column"] == n_columns)
    ).to_numpy()
    residuals = condition_residuals(plate_wells, readout)
    finite = np.isfinite(residuals)
    outer, inner = residuals[edge & finite], residuals[~edge & finite]
    result = {
        "plate_format": f"{n_rows * n_columns}-well",
        "n_edge_wells": len(outer),
        "n_inner_wells": len(inner),
        "edge_shift": np.nan,
        "edge_p": np.nan,
        "edge_flag": False,
    }
    if len(outer) < 3 or len(inner) < 3:
        return result
    shift = float(np.median(outer) - np.median(inner))
    spread = 1.4826 * np.median(np.abs(residuals[finite] - np.median(residuals[finite])))
    p = float(sps.mannwhitneyu(outer, inner, alternative="two-sided").pvalue)
    return result | {
        "edge_shift": shift,
        "edge_p": p,
        "edge_flag": bool(p < 0.05 and spread > 0 and abs(shift) > spread),
    }


def plate_quality(wells: pd.DataFrame, readouts: list[str]) -> pd.DataFrame:
    """Per plate and readout (and time point: :func:`per_timepoint`): Z' (when a ``control``
    column marks positive and negative wells), edge effect, and the number of robust-z outlier
    wells (|z| > 3).

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells of one or more plates.
    readouts : list of str
        The columns assessed.

    Returns
    -------
    pandas.DataFrame
        One row per plate and readout.
    """
    return per_timepoint(_plate_quality, wells, readouts)


def _plate_quality(wells: pd.DataFrame, readouts: list[str]) -> pd.DataFrame:
    rows = []
    for plate, plate_wells in wells.groupby("plate", sort=True):
        for readout in readouts:
            if readout not in plate_wells.columns:
                continue
            values = pd.to_numeric(plate_wells[readout], errors="coerce")
            row = {
                "plate": plate,
                "readout": readout,
                "n_wells": int(values.notna().sum()),
                "z_prime": np.nan,
                "n_positive_controls": 0,
                "n_negative_controls": 0,
            }
            if "control" in plate_wells.columns:
                role = plate_wells["control"].astype(str).str.lower()
                positive, negative = values[role == "positive"].dropna(), values[role == "negative"].dropna()
                row |= {
                    "z_prime": z_prime(positive, negative),
                    "n_positive_controls": len(positive),
                    "n_negative_controls": len(negative),
                }
            z = robust_z(condition_residuals(plate_wells, readout))
            row["n_outlier_wells"] = int(np.sum(np.abs(z) > 3))
            rows.append(row | edge_effect(plate_wells, readout))
    return pd.DataFrame(rows)


def well_scores(wells: pd.DataFrame, readouts: list[str]) -> pd.DataFrame:
    """Long table of each well's readout and its robust z-score within its plate (and time
    point: :func:`per_timepoint`), on the residual from its condition's median, so treatment
    effects are not outliers.

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells of one or more plates.
    readouts : list of str
        The columns scored.

    Returns
    -------
    pandas.DataFrame
    """
    return per_timepoint(_well_scores, wells, readouts)


def _well_scores(wells: pd.DataFrame, readouts: list[str]) -> pd.DataFrame:
    rows = []
    for plate, plate_wells in wells.groupby("plate", sort=True):
        for readout in readouts:
            if readout not in plate_wells.columns:
                continue
            z = robust_z(condition_residuals(plate_wells, readout))
            rows.append(
                pd.DataFrame(
                    {
                        "plate": plate,
                        "well": plate_wells["well"].to_numpy(),
                        "readout": readout,
                        "value": plate_wells[readout].to_numpy(),
                        "robust_z": z,
                    }
                )
            )
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["plate", "well", "readout", "value", "robust_z"])
    )


# ---- dose-response -------------------------------------------------------------------------
MIN_DOSES_FOR_FIT = 4
DOSE_RESPONSE_COLUMNS = [
    "readout",
    "cell_line",
    "genotype",
    "compound",
    "dose_unit",
    "n_doses",
    "n_wells",
    "ec50",
    "ec50_ci_low",
    "ec50_ci_high",
    "hill",
    "top",
    "bottom",
    "fit_status",
]


def four_parameter_logistic(dose, bottom, top, log_ec50, hill):
    """The 4-parameter logistic curve (Hill equation) at ``dose``.

    Parameters
    ----------
    dose : array_like of float
        Doses, above 0.
    bottom, top : float
        The asymptotes.
    log_ec50 : float
        log10 of the dose at half effect.
    hill : float
        The slope (> 0: rising with dose).

    Returns
    -------
    ndarray of float
    """
    return bottom + (top - bottom) / (1 + 10 ** ((log_ec50 - np.log10(dose)) * hill))


def fit_dose_response(doses: np.ndarray, values: np.ndarray, *, alpha: float = ALPHA) -> dict:
    """4-parameter logistic fit on the positive doses (each well one point).

    Parameters
    ----------
    doses, values : array_like of float
        One dose and readout per well.
    alpha : float
        1 - the confidence level of the EC50's interval.

    Returns
    -------
    dict
        ``status`` (``fitted``, ``too few doses``, ``did not converge``) and, when fitted,
        ``bottom`` < ``top``, ``log_ec50``, ``hill`` (> 0: the readout rises with dose; < 0: it
        falls), ``ec50`` and its ``1 - alpha`` confidence interval (``ec50_ci_low/high``, from
        the fit's standard error of log10 EC50 and the t distribution; NaN when the fit gives no
        covariance).
    """
    from scipy import optimize

    doses, values = np.asarray(doses, float), np.asarray(values, float)
    keep = (doses > 0) & np.isfinite(values)
    doses, values = doses[keep], values[keep]
    n_doses = len(np.unique(doses))
    if n_doses < MIN_DOSES_FOR_FIT:
        return {"status": "too few doses", "n_doses": n_doses}
    start = [values.min(), values.max(), np.log10(np.median(doses)), 1.0]
    try:
        params, covariance = optimize.curve_fit(four_parameter_logistic, doses, values, p0=start, maxfev=5000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return {"status": "did not converge", "n_doses": n_doses}
    bottom, top, log_ec50, hill = (float(p) for p in params)
    if bottom > top:  # the same curve: report bottom < top, the sign of hill gives the direction
        bottom, top, hill = top, bottom, -hill
    dof = len(values) - 4
    se = float(np.sqrt(covariance[2, 2])) if np.isfinite(covariance).all() and dof > 0 else float("nan")
    half = float(sps.t.ppf(1 - alpha / 2, dof)) * se if np.isfinite(se) else float("nan")
    return {
        "status": "fitted",
        "n_doses": n_doses,
        "bottom": bottom,
        "top": top,
        "log_ec50": log_ec50,
        "hill": hill,
        "ec50": 10**log_ec50,
        "ec50_ci_low": 10 ** (log_ec50 - half),
        "ec50_ci_high": 10 ** (log_ec50 + half),
    }


def dose_response_table(
    wells: pd.DataFrame,
    readouts: list[str],
    *,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
    vehicle_treatment: str | None = None,
) -> pd.DataFrame:
    """One 4PL fit per readout, cell line, genotype and compound (treatment) (and time point:
    :func:`per_timepoint`), wells as points; the vehicle is not a compound. Empty without a
    ``dose`` column. ``dose_unit`` comes from the plate map's ``dose_unit`` column when it has one.

    Parameters
    ----------
    wells : pandas.DataFrame
        Wells with ``dose`` and the plate-map columns.
    readouts : list of str
        The columns fitted.
    genotype_column, treatment_column : str
        The plate-map columns naming genotype and compound.
    vehicle_treatment : str, optional
        The vehicle, left out of the compounds.

    Returns
    -------
    pandas.DataFrame
        One row per fit (:func:`fit_dose_response`'s keys).
    """
    return per_timepoint(
        _dose_response_table,
        wells,
        readouts,
        genotype_column=genotype_column,
        treatment_column=treatment_column,
        vehicle_treatment=vehicle_treatment,
    )


def _dose_response_table(
    wells: pd.DataFrame,
    readouts: list[str],
    *,
    genotype_column: str,
    treatment_column: str,
    vehicle_treatment: str | None,
) -> pd.DataFrame:
    if "dose" not in wells.columns:
        return pd.DataFrame(columns=DOSE_RESPONSE_COLUMNS)
    table = wells[wells["dose"].notna()].copy()
    table["_cell_line"] = table["cell_line"].astype(str) if "cell_line" in table else "all"
    table["_genotype"] = table[genotype_column].astype(str) if genotype_column in table else "all"
    table["_compound"] = table[treatment_column].astype(str) if treatment_column in table else "dose"
    if vehicle_treatment is not None:
        table = table[table["_compound"] != str(vehicle_treatment)]
    rows = []
    for readout in readouts:
        if readout not in table.columns:
            continue
        for (cell_line, genotype, compound), group in table.groupby(["_cell_line", "_genotype", "_compound"]):
            values = pd.to_numeric(group[readout], errors="coerce")
            fit = fit_dose_response(group["dose"].to_numpy(float), values.to_numpy(float))
            units = group["dose_unit"].dropna().astype(str).unique() if "dose_unit" in group else []
            rows.append(
                {
                    "readout": readout,
                    "cell_line": cell_line,
                    "genotype": genotype,
                    "compound": compound,
                    "dose_unit": "; ".join(units) if len(units) else None,
                    "n_doses": fit["n_doses"],
                    "n_wells": int(values.notna().sum()),
                    **{k: fit.get(k, np.nan) for k in ("ec50", "ec50_ci_low", "ec50_ci_high", "hill", "top", "bottom")},
                    "fit_status": fit["status"],
                }
            )
    return pd.DataFrame(rows, columns=DOSE_RESPONSE_COLUMNS)
