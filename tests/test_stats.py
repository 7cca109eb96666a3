"""Statistics checked against scipy and statsmodels on known data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from imaging.stats import (
    benjamini_hochberg,
    compare_all,
    edge_effect,
    experimental_units,
    interaction_test,
    mann_whitney_test,
    plate_format,
    plate_quality,
    robust_z,
    welch_test,
    z_prime,
)

A = np.array([12.1, 14.3, 13.8, 15.2, 12.9])
B = np.array([10.2, 9.8, 11.5, 10.9])


def test_welch_matches_scipy_and_statsmodels():
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    result = welch_test(A, B)
    reference = sps.ttest_ind(A, B, equal_var=False)
    assert result["statistic"] == pytest.approx(reference.statistic)
    assert result["p_value"] == pytest.approx(reference.pvalue)
    low, high = CompareMeans(DescrStatsW(A), DescrStatsW(B)).tconfint_diff(usevar="unequal")
    assert (result["difference_ci_low"], result["difference_ci_high"]) == pytest.approx((low, high))
    assert result["difference"] == pytest.approx(A.mean() - B.mean())


def test_welch_needs_two_units_per_group():
    result = welch_test(A, B[:1])
    assert np.isnan(result["p_value"]) and "fewer than 2" in result["note"]


def test_mann_whitney_matches_scipy_and_hodges_lehmann():
    result = mann_whitney_test(A, B)
    reference = sps.mannwhitneyu(A, B, alternative="two-sided")
    assert result["p_value"] == pytest.approx(reference.pvalue)
    assert result["statistic"] == reference.statistic
    assert result["difference"] == pytest.approx(np.median(np.subtract.outer(A, B)))
    # n = 5 vs 4: exact P(U <= 1) = 2/126 <= 0.025 < P(U <= 2) = 4/126, so k = 2 and the
    # CI is the 2nd smallest and 2nd largest pairwise difference.
    differences = np.sort(np.subtract.outer(A, B).ravel())
    assert (result["difference_ci_low"], result["difference_ci_high"]) == (differences[1], differences[-2])


def test_mann_whitney_small_groups_say_the_interval_is_unattainable():
    result = mann_whitney_test(np.array([3.0, 4.0]), np.array([1.0, 2.0]))
    assert np.isnan(result["difference_ci_low"]) and "too small" in result["note"]


def test_benjamini_hochberg_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.005, 0.5])
    expected = multipletests(p[np.isfinite(p)], method="fdr_bh")[1]
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q[np.isfinite(p)], expected)
    assert np.isnan(q[4])


def test_interaction_is_the_difference_of_differences_and_matches_two_way_anova():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(3)
    groups = [rng.normal(m, 2.0, 4) for m in (10, 40, 10, 20)]  # KO halves the drug response
    result = interaction_test(*groups)
    means = [g.mean() for g in groups]
    assert result["difference"] == pytest.approx((means[3] - means[2]) - (means[1] - means[0]))
    frame = pd.DataFrame(
        {"y": np.concatenate(groups), "g": np.repeat(["C", "C", "K", "K"], 4), "t": np.repeat(["V", "D", "V", "D"], 4)}
    )
    table = anova_lm(smf.ols("y ~ C(g) * C(t)", frame).fit(), typ=2)
    assert result["p_value"] == pytest.approx(table.loc["C(g):C(t)", "PR(>F)"])
    assert result["statistic"] ** 2 == pytest.approx(table.loc["C(g):C(t)", "F"])
    assert result["difference_ci_low"] < -20 < result["difference_ci_high"] < 0


def test_z_prime_and_robust_z():
    assert z_prime([100, 102, 98, 100], [10, 12, 8, 10]) == pytest.approx(
        1 - 3 * (2 * np.std([100, 102, 98, 100], ddof=1)) / 90
    )
    np.testing.assert_allclose(robust_z([1, 2, 3, 4, 100]), (np.array([1, 2, 3, 4, 100]) - 3) / 1.4826)
    assert plate_format(4, 4) == (4, 6) and plate_format(8, 9) == (8, 12) and plate_format(9, 4) == (16, 24)


def plate_wells(values_by_replicate: dict, *, replicate_column=True) -> pd.DataFrame:
    rows = []
    for replicate, conditions in values_by_replicate.items():
        for (genotype, treatment), values in conditions.items():
            for i, value in enumerate(values):
                rows.append(
                    {
                        "plate": "P1",
                        "well": f"{genotype[0]}{treatment[0]}{replicate}{i}",
                        "genotype": genotype,
                        "treatment": treatment,
                        "replicate": replicate,
                        "n_cells": 100,
                        "readout": value,
                    }
                )
    table = pd.DataFrame(rows)
    return table if replicate_column else table.drop(columns="replicate")


def test_wells_of_a_replicate_are_averaged_before_testing():
    wells = plate_wells(
        {
            1: {("sgNT", "DMSO"): [10, 12], ("KO", "DMSO"): [20, 22]},
            2: {("sgNT", "DMSO"): [12, 14], ("KO", "DMSO"): [24, 26]},
            3: {("sgNT", "DMSO"): [9, 13], ("KO", "DMSO"): [18, 20]},
        }
    )
    units, unit = experimental_units(wells, "readout")
    assert unit == "replicate" and len(units) == 6 and set(units["n_wells"]) == {2}
    table = compare_all(wells, ["readout"], control_genotype="sgNT", vehicle_treatment="DMSO")
    row = table.iloc[0]
    expected = sps.ttest_ind([21, 25, 19], [11, 13, 11], equal_var=False)
    assert (row["n_test"], row["n_reference"], row["unit"]) == (3, 3, "replicate")
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert row["ratio"] == pytest.approx(65 / 35)


def test_single_replicate_uses_wells_and_says_so():
    wells = plate_wells({1: {("sgNT", "DMSO"): [10, 12, 11], ("KO", "DMSO"): [20, 22, 21]}})
    table = compare_all(wells, ["readout"], control_genotype="sgNT", vehicle_treatment="DMSO")
    assert table["unit"].tolist() == ["well"] and table["n_test"].tolist() == [3]


def test_edge_effect_flags_a_dim_outer_ring():
    rows = []
    for row in range(1, 9):
        for column in range(1, 13):
            edge = row in (1, 8) or column in (1, 12)
            rows.append(
                {
                    "plate": "P",
                    "well": f"{row}-{column}",
                    "row": row,
                    "column": column,
                    "readout": 100.0 + (row * 7 + column * 3) % 5 - (30 if edge else 0),
                }
            )
    wells = pd.DataFrame(rows)
    assert edge_effect(wells, "readout")["edge_flag"]
    wells["readout"] = 100.0 + (wells["row"] * 7 + wells["column"] * 3) % 5
    assert not edge_effect(wells, "readout")["edge_flag"]
    quality = plate_quality(
        wells.assign(
            control=np.where(wells["column"] == 12, "positive", np.where(wells["column"] == 11, "negative", ""))
        ),
        ["readout"],
    )
    assert quality.loc[0, "n_positive_controls"] == 8 and np.isfinite(quality.loc[0, "z_prime"])


def test_confidence_intervals_cover_the_population_truth_95_percent_of_the_time():
    """Calibration: three replicates per group with day-to-day variation and binomial
    counting noise, as in a real experiment; the intervals must cover the planted
    population values in about 95 % of simulated experiments."""
    rng = np.random.default_rng(7)
    fraction = {("C", "V"): 0.05, ("C", "D"): 0.70, ("K", "V"): 0.05, ("K", "D"): 0.35}
    interaction_truth = 100 * ((0.35 - 0.05) - (0.70 - 0.05))
    covered_interaction = covered_difference = 0
    n_experiments = 400
    for _ in range(n_experiments):
        values = {key: [] for key in fraction}
        for _replicate in range(3):
            day = rng.lognormal(0, 0.08)
            for key, p in fraction.items():
                values[key].append(100 * rng.binomial(300, min(1.0, day * p)) / 300)
        result = interaction_test(values["C", "V"], values["C", "D"], values["K", "V"], values["K", "D"])
        covered_interaction += result["difference_ci_low"] <= interaction_truth <= result["difference_ci_high"]
        welch = welch_test(np.array(values["K", "D"]), np.array(values["C", "D"]))
        covered_difference += welch["difference_ci_low"] <= -35.0 <= welch["difference_ci_high"]
    assert 0.92 <= covered_interaction / n_experiments <= 0.995
    assert 0.92 <= covered_difference / n_experiments <= 0.999
