"""Plots from tables only: plate heat maps, SuperPlots, dose-response curves.

Every function takes tables and returns a matplotlib ``Figure`` (no pyplot state), which
:func:`save_png` writes atomically. SuperPlots follow Lord et al., J Cell Biol 219:e202001064
(2020): every well is a small dot coloured by its biological replicate, each replicate's
mean a large marker of the same colour, and the bar the mean of replicate means with its
95 % t confidence interval, so the statistical unit is what the eye compares.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as sps

from imaging.io.wells import row_index_to_letters
from imaging.io.writers import atomic_path
from imaging.stats import (
    experimental_units,
    fit_dose_response,
    four_parameter_logistic,
    per_timepoint,
    plate_format,
    replicate_key,
)

REPLICATE_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def save_png(figure: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG atomically."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def png_bytes(figure: Figure, *, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def plate_heatmap(
    plate_wells: pd.DataFrame, column: str, *, title: str, flagged_wells: set[str] = frozenset(), cmap: str = "viridis"
) -> Figure:
    """Well grid of one plate coloured by ``column``; wells without data are grey,
    ``flagged_wells`` (e.g. with QC failures) are crossed."""
    n_rows, n_columns = plate_format(int(plate_wells["row"].max()), int(plate_wells["column"].max()))
    grid = np.full((n_rows, n_columns), np.nan)
    values = pd.to_numeric(plate_wells[column], errors="coerce")
    for (row, col), value in zip(zip(plate_wells["row"], plate_wells["column"]), values):
        grid[int(row) - 1, int(col) - 1] = value
    width = 1.2 + 0.42 * n_columns
    figure = Figure(figsize=(min(width, 14), 0.8 + 0.38 * n_rows * min(1.0, 14 / width)))
    axes = figure.add_subplot()
    masked = np.ma.masked_invalid(grid)
    colour_map = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
    image = axes.imshow(masked, cmap=colour_map, aspect="equal")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02)
    axes.set_xticks(range(n_columns), [str(c + 1) for c in range(n_columns)], fontsize=7)
    axes.set_yticks(range(n_rows), [row_index_to_letters(r + 1) for r in range(n_rows)], fontsize=7)
    axes.tick_params(length=0)
    for well, row, col in zip(plate_wells["well"], plate_wells["row"], plate_wells["column"]):
        if well in flagged_wells:
            axes.plot(int(col) - 1, int(row) - 1, marker="x", color="red", markersize=9, mew=2)
    axes.set_title(title, fontsize=10)
    return figure


def ci95_half_width(sd, n) -> np.ndarray:
    """Half-width of the 95 % t confidence interval of a mean from ``n`` values with standard
    deviation ``sd`` (0 where fewer than 2 values): the error bars of every plot here."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = sps.t.ppf(0.975, np.maximum(n - 1, 1)) * np.nan_to_num(sd) / np.sqrt(n)
    return np.where(n >= 2, half, 0.0)


def _condition_order(values: pd.Series, first: str | None) -> list[str]:
    unique = list(dict.fromkeys(values.astype(str)))
    return sorted(unique, key=lambda v: (v != first, unique.index(v)))


def superplot(
    wells: pd.DataFrame,
    readout: str,
    *,
    control_genotype: str | None = None,
    vehicle_treatment: str | None = None,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
) -> Figure:
    """SuperPlot of one readout: treatments along x, one panel group per genotype."""
    table = wells[pd.to_numeric(wells[readout], errors="coerce").notna()].copy()
    table["_genotype"] = table[genotype_column].astype(str) if genotype_column in table else "all"
    table["_treatment"] = table[treatment_column].astype(str) if treatment_column in table else "all"
    key, unit = replicate_key(wells)
    table["_replicate"] = table[key].astype(str) if key else "wells"
    genotypes = _condition_order(table["_genotype"], control_genotype)
    treatments = _condition_order(table["_treatment"], vehicle_treatment)
    replicates = sorted(table["_replicate"].unique())
    colours = {r: REPLICATE_COLOURS[i % len(REPLICATE_COLOURS)] for i, r in enumerate(replicates)}
    figure = Figure(figsize=(1.2 + 0.9 * len(genotypes) * len(treatments), 3.6))
    axes = figure.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter: the plot is reproducible
    positions, labels = [], []
    x = 0.0
    for genotype in genotypes:
        for treatment in treatments:
            group = table[(table["_genotype"] == genotype) & (table["_treatment"] == treatment)]
            positions.append(x)
            labels.append(f"{treatment}\n{genotype}")
            replicate_means = []
            for replicate, part in group.groupby("_replicate"):
                values = part[readout].to_numpy(float)
                axes.scatter(
                    x + rng.uniform(-0.22, 0.22, len(values)),
                    values,
                    s=12,
                    alpha=0.55,
                    color=colours[replicate],
                    linewidths=0,
                )
                replicate_means.append(values.mean())
                if key:
                    axes.scatter(
                        [x],
                        [values.mean()],
                        s=70,
                        color=colours[replicate],
                        edgecolors="black",
                        linewidths=0.8,
                        zorder=3,
                    )
            if replicate_means:
                mean = float(np.mean(replicate_means))
                axes.hlines(mean, x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4)
                if len(replicate_means) >= 2 and key:
                    half = float(ci95_half_width(np.std(replicate_means, ddof=1), len(replicate_means)))
                    axes.errorbar([x], [mean], yerr=[[half], [half]], color="black", capsize=4, linewidth=1.2, zorder=4)
            x += 1.0
        x += 0.6
    axes.set_xticks(positions, labels, fontsize=7)
    axes.set_ylabel(readout)
    axes.set_title(
        f"{readout}: wells (dots) and {unit} means, mean and 95% CI of {unit}s"
        if key
        else f"{readout}: wells (single replicate)",
        fontsize=9,
    )
    if key:
        handles = [axes.scatter([], [], color=colours[r], s=40) for r in replicates]
        axes.legend(
            handles,
            [f"{key} {r}" for r in replicates],
            fontsize=7,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def time_course(
    wells: pd.DataFrame,
    readout: str,
    *,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
    control_genotype: str | None = None,
    vehicle_treatment: str | None = None,
) -> Figure:
    """One readout over time (wells of a time series, with a ``timepoint`` column): a line per
    genotype and treatment through the mean of the experimental units (replicates, or wells
    for a single replicate) at each time point, with its 95 % t confidence interval."""
    table = wells.assign(
        _genotype=wells[genotype_column].astype(str) if genotype_column in wells else "all",
        _treatment=wells[treatment_column].astype(str) if treatment_column in wells else "all",
    )
    units = per_timepoint(
        lambda part: experimental_units(part, readout, genotype_column="_genotype", treatment_column="_treatment")[0],
        table,
    )
    _, unit = replicate_key(wells)
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    genotypes = _condition_order(units["genotype"], control_genotype)
    treatments = _condition_order(units["treatment"], vehicle_treatment)
    styles = ["-", "--", ":", "-."]
    for g, genotype in enumerate(genotypes):
        for t, treatment in enumerate(treatments):
            group = units[(units["genotype"] == genotype) & (units["treatment"] == treatment)]
            if group.empty:
                continue
            summary = group.groupby("timepoint")["value"].agg(["mean", "std", "count"]).reset_index()
            half = ci95_half_width(summary["std"], summary["count"])
            label = " ".join(v for v in (genotype, treatment) if v != "all") or readout
            axes.errorbar(
                summary["timepoint"],
                summary["mean"],
                yerr=half,
                capsize=3,
                linewidth=1.4,
                linestyle=styles[g % len(styles)],
                color=REPLICATE_COLOURS[t % len(REPLICATE_COLOURS)],
                label=label,
            )
    axes.set_xlabel("time point")
    axes.set_ylabel(readout)
    axes.set_title(f"{readout} over time: mean and 95% CI of {unit}s", fontsize=9)
    axes.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def dose_response(
    wells: pd.DataFrame,
    readout: str,
    *,
    genotype_column: str = "genotype",
    treatment_column: str = "treatment",
    vehicle_treatment: str | None = None,
) -> Figure | None:
    """Readout against dose, one curve per genotype and compound (means and 95% CI of wells),
    with a 4PL fit and EC50 when at least four positive doses exist; None without a usable
    ``dose`` column. Vehicle wells (dose 0) are not on the log axis."""
    if "dose" not in wells.columns or wells["dose"].dropna().nunique() < 3:
        return None
    table = wells[pd.to_numeric(wells[readout], errors="coerce").notna() & wells["dose"].notna()].copy()
    table["_genotype"] = table[genotype_column].astype(str) if genotype_column in table else "all"
    table["_compound"] = table[treatment_column].astype(str) if treatment_column in table else "dose"
    if vehicle_treatment is not None:
        table = table[table["_compound"] != str(vehicle_treatment)]
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.add_subplot()
    for i, ((genotype, compound), group) in enumerate(table.groupby(["_genotype", "_compound"])):
        colour = REPLICATE_COLOURS[i % len(REPLICATE_COLOURS)]
        label = compound if table["_genotype"].nunique() == 1 else f"{genotype} {compound}"
        summary = group.groupby("dose")[readout].agg(["mean", "std", "count"]).reset_index()
        half = ci95_half_width(summary["std"], summary["count"])
        doses = summary["dose"].to_numpy(float)
        shown = np.where(doses > 0, doses, np.nan)
        if not np.isfinite(shown).any():
            continue
        axes.errorbar(shown, summary["mean"], yerr=half, fmt="o", color=colour, capsize=3, label=label)
        fit = fit_dose_response(group["dose"].to_numpy(float), group[readout].to_numpy(float))
        if fit["status"] == "fitted":
            grid = np.logspace(np.log10(np.nanmin(shown)), np.log10(np.nanmax(shown)), 100)
            axes.plot(
                grid,
                four_parameter_logistic(grid, fit["bottom"], fit["top"], fit["log_ec50"], fit["hill"]),
                color=colour,
                label=f"{label} fit, EC50 {fit['ec50']:.3g}",
            )
    axes.set_xscale("log")
    axes.set_xlabel("dose")
    axes.set_ylabel(readout)
    axes.legend(fontsize=7, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    return figure
