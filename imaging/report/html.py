"""The self-contained HTML report: every table and plot in one file (PNGs embedded).

Rendering only: the numbers come from :mod:`imaging.report.build`. Text is escaped; the
page has no scripts and loads nothing from outside, so it opens the same offline, in a
mail attachment or in an electronic lab notebook.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import math

import numpy as np
import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1.05rem;margin-top:1.4rem}
.muted{color:#666;font-size:.9rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0;width:100%}
th,td{border-bottom:1px solid #e5e5e5;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#f5f5f5;position:sticky;top:0}td.t,th.t{text-align:left}
tr.sig td{background:#fff6d6}.stars{color:#b35900;font-weight:bold}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.figs figure{margin:0;max-width:100%}
.figs img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8rem;color:#555}
.methods{background:#f7f7f7;border-left:4px solid #999;padding:.8rem 1rem;font-size:.92rem}
.warn{color:#a30000}.scroll{overflow-x:auto;max-height:36rem;overflow-y:auto}
"""


def _e(value) -> str:
    return html.escape(str(value))


def fmt(value, digits: int = 3) -> str:
    """Number for display: significant digits, '' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def stars(q) -> str:
    if q is None or not np.isfinite(q):
        return ""
    return "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""


def table_html(frame: pd.DataFrame, *, text_columns=(), row_class=None, max_rows: int = 2000) -> str:
    """An HTML table of ``frame`` (escaped)."""
    if frame.empty:
        return '<p class="muted">none</p>'
    head = "".join(f'<th class="{"t" if c in text_columns else ""}">{_e(c)}</th>' for c in frame.columns)
    body = []
    for _, row in frame.head(max_rows).iterrows():
        css = f' class="{row_class(row)}"' if row_class else ""
        cells = "".join(
            f'<td class="{"t" if c in text_columns else ""}">{row[c] if c == "sig" else _e(fmt(row[c]))}</td>'
            for c in frame.columns
        )
        body.append(f"<tr{css}>{cells}</tr>")
    more = f'<p class="muted">{len(frame) - max_rows} more rows in the CSV</p>' if len(frame) > max_rows else ""
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'
    )


def _interval(low, high) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" if np.isfinite(low) and np.isfinite(high) else ""


def comparisons_html(comparisons: pd.DataFrame, kind: str) -> str:
    rows = comparisons[comparisons["comparison"] == kind]
    if rows.empty:
        return '<p class="muted">none</p>'
    shown = pd.DataFrame(
        {
            **({"time point": rows["timepoint"]} if "timepoint" in rows.columns else {}),
            "readout": rows["readout"],
            "cell line": rows["cell_line"],
            "genotype": rows["genotype"],
            "treatment": rows["treatment"],
            "vs": rows["reference"],
            "unit": rows["unit"],
            "n ref/test": [f"{a}/{b}" for a, b in zip(rows["n_reference"], rows["n_test"])],
            "mean ref": rows["mean_reference"],
            "mean test": rows["mean_test"],
            "difference": rows["difference"],
            "95% CI": [_interval(a, b) for a, b in zip(rows["difference_ci_low"], rows["difference_ci_high"])],
            "ratio": rows["ratio"],
            "ratio 95% CI": [_interval(a, b) for a, b in zip(rows["ratio_ci_low"], rows["ratio_ci_high"])],
            "p": [fmt_p(p) for p in rows["p_value"]],
            "q": [fmt_p(q) for q in rows["q_value"]],
            "sig": [f'<span class="stars">{stars(q)}</span>' for q in rows["q_value"]],
            "note": rows["note"].fillna(""),
        }
    )
    return table_html(
        shown,
        text_columns=(
            "readout",
            "cell line",
            "genotype",
            "treatment",
            "vs",
            "unit",
            "n ref/test",
            "95% CI",
            "ratio 95% CI",
            "note",
        ),
        row_class=lambda r: "sig" if r["sig"].count("*") else "",
    )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What the plate map makes of the experiment: knockouts, drugs, dose series (the report's
    title, sections and findings follow it)."""

    knockouts: bool
    treatments: bool
    doses: bool

    @property
    def title(self) -> str:
        if self.knockouts:
            return "knockout vs control by treatment" if self.treatments else "knockout vs control"
        if self.treatments:
            return "treatments vs vehicle" + (" and dose response" if self.doses else "")
        return "dose response" if self.doses else "plate summary"


def experiment_kind(comparisons: pd.DataFrame, doses: pd.DataFrame) -> Experiment:
    kinds = set(comparisons["comparison"]) if "comparison" in comparisons.columns else set()
    fitted = doses is not None and not doses.empty and (doses["fit_status"] == "fitted").any()
    return Experiment(
        knockouts="genotype_vs_control" in kinds,
        treatments=bool(kinds & {"treatment_vs_vehicle", "interaction"}),
        doses=bool(fitted),
    )


MAX_FINDINGS = 12  # the rest are in comparisons.csv and the tables below
FINDING_ORDER = {"interaction": 0, "genotype_vs_control": 1, "treatment_vs_vehicle": 2}


def _finding(row) -> str:
    ci = _interval(row.difference_ci_low, row.difference_ci_high)
    line = f" ({_e(row.cell_line)})" if isinstance(row.cell_line, str) and row.cell_line not in ("", "all") else ""
    if getattr(row, "timepoint", None) is not None:
        line += f" at time point {int(row.timepoint)}"
    if row.comparison == "interaction":
        direction = "blunts" if (row.difference < 0) == (row.mean_reference > 0) else "enhances"
        return (
            f"<b>{_e(row.genotype)}</b> {direction} the {_e(row.treatment)} response of "
            f"<b>{_e(row.readout)}</b>{line}: response {fmt(row.mean_test)} vs "
            f"{fmt(row.mean_reference)} in the control, interaction {fmt(row.difference)} "
            f"(95% CI {ci}), q = {fmt_p(row.q_value)}"
        )
    if row.comparison == "treatment_vs_vehicle":
        within = f" in {_e(row.genotype)}" if row.genotype != "all" else ""
        return (
            f"<b>{_e(row.treatment)}</b> vs {_e(row.reference)}{within}{line}: <b>{_e(row.readout)}</b> "
            f"{fmt(row.mean_test)} vs {fmt(row.mean_reference)}, difference {fmt(row.difference)} "
            f"(95% CI {ci}), q = {fmt_p(row.q_value)}"
        )
    return (
        f"<b>{_e(row.genotype)}</b> vs {_e(row.reference)} under <b>{_e(row.treatment)}</b>{line}: "
        f"<b>{_e(row.readout)}</b> {fmt(row.mean_test)} vs {fmt(row.mean_reference)}, difference "
        f"{fmt(row.difference)} (95% CI {ci}), q = {fmt_p(row.q_value)}"
    )


def _dose_finding(row) -> str:
    unit = f" {_e(row.dose_unit)}" if isinstance(row.dose_unit, str) and row.dose_unit else ""
    who = "" if row.genotype == "all" else f" in {_e(row.genotype)}"
    if getattr(row, "timepoint", None) is not None:
        who += f" at time point {int(row.timepoint)}"
    return (
        f"<b>{_e(row.compound)}</b>{who}, <b>{_e(row.readout)}</b>: EC50 {fmt(row.ec50)}{unit} "
        f"(95% CI {_interval(row.ec50_ci_low, row.ec50_ci_high)}), Hill slope {fmt(row.hill)}, "
        f"{int(row.n_doses)} doses"
    )


def key_findings(comparisons: pd.DataFrame, doses: pd.DataFrame | None = None) -> str:
    """Significant results of every kind the experiment has (interactions first, then
    knockouts, then treatments, each by q), and each fitted dose-response curve's EC50."""
    significant = comparisons[comparisons["significant"].fillna(False).astype(bool)].copy()
    significant["_order"] = significant["comparison"].map(FINDING_ORDER)
    significant = significant.sort_values(["_order", "q_value"], kind="stable")
    items = [f"<li>{_finding(row)}</li>" for row in significant.head(MAX_FINDINGS).itertuples(index=False)]
    if len(significant) > MAX_FINDINGS:
        items.append(f"<li>... and {len(significant) - MAX_FINDINGS} more with q &lt; 0.05 (comparisons.csv)</li>")
    if doses is not None and not doses.empty:
        items += [
            f"<li>{_dose_finding(row)}</li>" for row in doses[doses["fit_status"] == "fitted"].itertuples(index=False)
        ]
    if not items:
        return "<p>No comparison reached q &lt; 0.05.</p>"
    return f"<ul>{''.join(items)}</ul>"


def knockout_sections(comparisons: pd.DataFrame) -> str:
    return f"""<h2 id="comparisons">Knockout vs control, within each treatment</h2>
{comparisons_html(comparisons, "genotype_vs_control")}
<h2 id="interaction">Does the knockout change the drug response? (genotype × treatment)</h2>
<p class="muted">mean ref / mean test: the drug's effect (drug − vehicle) in the control and in the knockout;
difference: the interaction (negative when the knockout blunts an increase); ratio: ratio of fold changes.</p>
{comparisons_html(comparisons, "interaction")}"""


def doses_html(doses: pd.DataFrame) -> str:
    """The dose-response fits (dose_response.csv) as a table."""
    shown = pd.DataFrame(
        {
            **({"time point": doses["timepoint"]} if "timepoint" in doses.columns else {}),
            "readout": doses["readout"],
            "genotype": doses["genotype"],
            "compound": doses["compound"],
            "EC50": doses["ec50"],
            "95% CI": [_interval(a, b) for a, b in zip(doses["ec50_ci_low"], doses["ec50_ci_high"])],
            "unit": doses["dose_unit"].fillna(""),
            "Hill": doses["hill"],
            "top": doses["top"],
            "bottom": doses["bottom"],
            "doses": doses["n_doses"],
            "fit": doses["fit_status"],
        }
    )
    return '<h2 id="dose-fits">Dose-response fits (dose_response.csv)</h2>' + table_html(
        shown, text_columns=("readout", "genotype", "compound", "95% CI", "unit", "fit")
    )


def figures_html(figures: list[dict], section: str) -> str:
    chosen = [f for f in figures if f["section"] == section]
    if not chosen:
        return '<p class="muted">none</p>'
    parts = []
    for figure in chosen:
        data = base64.b64encode(figure["png"]).decode("ascii")
        parts.append(
            f'<figure><img alt="{_e(figure["title"])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(figure['title'])}</figcaption></figure>"
        )
    return f'<div class="figs">{"".join(parts)}</div>'


def curation_html(records: list[dict]) -> str:
    """Every reviewer decision of the run(s): what, where, who and why."""
    rows = []
    for record in records:
        for decision in record.get("curation", {}).get("decisions", []):
            rows.append(
                {
                    k: decision.get(k, "")
                    for k in ("time", "user", "action", "plate", "well", "site", "label", "call", "value", "reason")
                }
            )
    if not rows:
        return '<p class="muted">No curation decisions (curation.csv next to run.json).</p>'
    return table_html(
        pd.DataFrame(rows),
        text_columns=("time", "user", "action", "plate", "well", "site", "label", "call", "value", "reason"),
    )


def methods_paragraph(records: list[dict], pipeline, unit: str, n_plates: int) -> str:
    """A methods paragraph built from what actually ran."""
    software = records[0]["software"]
    seg = pipeline.segmentation
    sentences = [
        f"Images were analysed with imaging {software.get('imaging')} (Python {software.get('python')}; "
        f"NumPy {software.get('numpy')}, SciPy {software.get('scipy')}, scikit-image "
        f"{software.get('scikit-image')}, pandas {software.get('pandas')}) using the '{pipeline.name}' pipeline."
    ]
    if seg.method == "classical":
        size = (
            "a nucleus diameter of "
            + (f"{seg.nucleus_diameter_px:g} px" if seg.nucleus_diameter_px else f"{seg.nucleus_diameter_um:g} µm")
            if (seg.nucleus_diameter_px or seg.nucleus_diameter_um)
            else "the nucleus size estimated from each image"
        )
        sentences.append(
            f"Nuclei were segmented in the {seg.channel} channel by a scale-adaptive classical method using {size}: "
            "background was removed with a grey opening of four nucleus radii, foreground was taken as pixels above "
            "half the Otsu threshold and above their local mean, touching nuclei were separated by a "
            "distance-transform watershed, and adjacent pieces whose union showed no notch deeper than a quarter "
            "of the nucleus radius were merged back; objects less than twice the pixel noise above background "
            "were discarded."
        )
    else:
        sentences.append(f"Nuclei were segmented in the {seg.channel} channel with Cellpose (model '{seg.model}').")
    cells = pipeline.cells
    if cells.method == "expand":
        reach = (
            f"{cells.max_expansion_px:g} px"
            if cells.max_expansion_px is not None
            else f"{cells.max_expansion_um:g} µm"
            if cells.max_expansion_um is not None
            else f"{cells.expansion_factor:g} nucleus radii"
        )
        sentences.append(f"Cells were defined by growing each nucleus by up to {reach} without overlap.")
    else:
        sentences.append(f"Cells were grown from nuclei by a watershed of the {cells.cytoplasm_channel} stain.")
    for spec in pipeline.measure.intensity:
        background = (
            "a smooth background surface estimated from cell-free pixels"
            if spec.background == "local"
            else "no background"
            if spec.background == "none"
            else f"a constant background of {spec.background}"
        )
        sentences.append(
            f"{spec.column_prefix} intensities were measured in the nucleus, cytoplasm and whole cell "
            f"after subtracting {background}."
        )
    if pipeline.measure.sabgal:
        vectors = {
            str(plate["xgal_vector"]["source"])
            for r in records
            for plate in r["plates"].values()
            if plate.get("xgal_vector")
        }
        sentences.append(
            "SA-β-gal staining was quantified as X-gal optical density (Beer–Lambert, against a white reference "
            "estimated per field from cell-free pixels) after colour deconvolution into X-gal and neutral "
            f"absorbance (X-gal stain vector: {', '.join(sorted(vectors)) or 'default'})."
        )
    for call in pipeline.calls:
        values = [
            plate["thresholds"][call.name]
            for r in records
            for plate in r["plates"].values()
            if call.name in plate.get("thresholds", {})
        ]
        used = ", ".join(fmt(v["value"]) for v in values)
        how = (
            "a threshold fixed in the pipeline"
            if call.threshold != "auto"
            else "a per-plate threshold at the equal-probability boundary of a two-component Gaussian mixture "
            "fitted to the per-cell values"
        )
        sentences.append(f"Cells were called {call.name.replace('_', ' ')} when {call.column} exceeded {how} ({used}).")
    qc = pipeline.qc
    n_failed = sum(plate["qc"]["n_failed"] for r in records for plate in r["plates"].values())
    sentences.append(
        f"Fields were excluded when out of focus (edge blur more than {qc.max_relative_blur:g}-fold the plate median "
        f"and a robust outlier) or saturated (more than {100 * qc.max_saturated_fraction:g}% of pixels at full "
        f"scale); {n_failed} field(s) were excluded."
        if qc.exclude_failed
        else f"Field QC flagged {n_failed} field(s), which were kept."
    )
    decisions = [d for r in records for d in r.get("curation", {}).get("decisions", [])]
    if decisions:
        fields_out = sum(len(r["curation"].get("excluded_fields", [])) for r in records)
        wells_out = sum(len(r["curation"].get("excluded_wells", [])) for r in records)
        calls = sum(r["curation"].get("n_call_overrides", 0) for r in records)
        sentences.append(
            f"After visual review, {wells_out} well(s) and {fields_out} field(s) were excluded and "
            f"{calls} cell call(s) corrected, each with a recorded reason."
        )
    settings = pipeline.comparison
    test = "Welch's t-test" if settings.test == "welch" else "the Mann–Whitney U test (Hodges–Lehmann CI)"
    unit_text = {
        "replicate": "biological replicates (wells of a replicate averaged first)",
        "replicate (plate)": "biological replicates (plates; wells of a plate averaged first)",
        "well": "wells (a single replicate: technical replicates only)",
    }[unit]
    sentences.append(
        f"Per-well values were the mean over cells (medians for ratios, percentages for calls). The statistical "
        f"unit was {unit_text} across {n_plates} plate(s). Each genotype was compared with {settings.control_genotype} "
        f"within each treatment, and each treatment with {settings.vehicle_treatment} within each genotype, by {test} "
        f"with 95% confidence intervals; the genotype × treatment interaction was tested with a two-way linear model. "
        f"P-values were adjusted across all comparisons by the Benjamini–Hochberg method."
    )
    return " ".join(sentences)


def last_timepoint_note(wells: pd.DataFrame) -> str:
    """Headings of the plots a time series shows at its last time point (report.build)."""
    return f" (time point {int(wells['timepoint'].max())})" if "timepoint" in wells.columns else ""


def time_course_html(figures: list[dict], wells: pd.DataFrame) -> str:
    if "timepoint" not in wells.columns:
        return ""
    return (
        f'<h2 id="time">Time course</h2><p class="muted">{wells["timepoint"].nunique()} time points; '
        "comparisons above are made at each time point (time points are never pooled), with q-values "
        "across all of them.</p>" + figures_html(figures, "time")
    )


def render_report(
    *,
    records: list[dict],
    pipeline,
    wells: pd.DataFrame,
    fields: pd.DataFrame,
    comparisons: pd.DataFrame,
    quality: pd.DataFrame,
    readouts: list[str],
    figures: list[dict],
    unit: str,
    doses: pd.DataFrame | None = None,
) -> str:
    """The report page (see module docstring)."""
    experiment = experiment_kind(comparisons, doses)
    plates = sorted(wells["plate"].unique())
    failed = fields[~fields["qc_pass"].astype(bool)]
    n_cells = int(fields["n_cells"].sum())
    cards = [
        ("plates", len(plates)),
        ("wells", len(wells[["plate", "well"]].drop_duplicates())),
        *([("time points", wells["timepoint"].nunique())] if "timepoint" in wells.columns else []),
        ("fields", len(fields)),
        ("fields excluded", len(failed)),
        ("cells", n_cells),
        ("unit of analysis", unit),
    ]
    cards_html = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in cards)
    failed_table = failed[
        [c for c in ("plate", "well", "site", "timepoint", "qc_reasons") if c in failed.columns]
    ].rename(columns={"qc_reasons": "reasons"})
    thresholds = []
    for record in records:
        for plate, info in record["plates"].items():
            for name, threshold in info.get("thresholds", {}).items():
                thresholds.append(
                    {
                        "plate": plate,
                        "call": name,
                        "threshold": threshold["value"],
                        "method": threshold["method"],
                        "cells": threshold["n_values"],
                    }
                )
            if info.get("xgal_vector"):
                vector = info["xgal_vector"]
                thresholds.append(
                    {
                        "plate": plate,
                        "call": "X-gal stain vector",
                        "threshold": ", ".join(f"{v:.3f}" for v in vector["vector"]),
                        "method": vector["source"],
                        "cells": "",
                    }
                )
    quality_table = quality.copy()
    unit_warning = (
        '<p class="warn">Only one biological replicate: wells are the unit, so p-values describe '
        "this plate, not the biology. Repeat the experiment to test the biology.</p>"
        if unit == "well"
        else ""
    )
    summary_columns = [
        c
        for c in [
            "plate",
            "well",
            "timepoint",
            "cell_line",
            "genotype",
            "treatment",
            "replicate",
            "n_fields_used",
            "n_cells",
            *readouts,
        ]
        if c in wells.columns
    ]
    software = records[0]["software"]
    methods = methods_paragraph(records, pipeline, unit, len(plates))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(pipeline.name)} report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>{_e(pipeline.name)}: {_e(experiment.title)}</h1>
<p class="muted">{_e(pipeline.description)}<br>Report generated {now} from {len(records)} run(s);
plates {_e(", ".join(plates))}. Tables: comparisons.csv, plate_qc.csv, well_scores.csv.</p>
<div class="cards">{cards_html}</div>
{unit_warning}
<h2 id="findings">Key findings</h2>{key_findings(comparisons, doses)}
<p class="muted">Stars: Benjamini–Hochberg q &lt; 0.05 (*), 0.01 (**), 0.001 (***); highlighted rows are significant.
Difference = test − reference; ratio = test / reference.</p>
{knockout_sections(comparisons) if experiment.knockouts else ""}
<h2 id="response">{
        "Drug response within each genotype (treatment vs vehicle)" if experiment.knockouts else "Treatment vs vehicle"
    }</h2>
{comparisons_html(comparisons, "treatment_vs_vehicle")}
{doses_html(doses) if experiment.doses else ""}
{time_course_html(figures, wells)}
<h2 id="superplots">SuperPlots{last_timepoint_note(wells)}</h2>{figures_html(figures, "superplots")}
{
        ('<h2 id="dose">Dose response</h2>' + figures_html(figures, "dose"))
        if any(f["section"] == "dose" for f in figures)
        else ""
    }
<h2 id="qc">Quality control</h2>
<h3>Fields excluded ({len(failed)})</h3>{table_html(failed_table, text_columns=("plate", "well", "reasons"))}
<h3>Curation ({sum(len(r.get("curation", {}).get("decisions", [])) for r in records)} decision(s))</h3>
{curation_html(records)}
<h3>Plate quality</h3>
<p class="muted">Z′ from wells marked positive/negative in the plate map's control column (blank without them);
edge effect: outer-ring wells vs inner wells after removing each condition's median (flagged when p &lt; 0.05
and the shift exceeds one robust SD); outliers: wells with |robust z| &gt; 3 within their condition.</p>
{table_html(quality_table, text_columns=("plate", "readout", "plate_format"))}
<h3>Thresholds and stain vectors used</h3>{
        table_html(pd.DataFrame(thresholds), text_columns=("plate", "call", "threshold", "method"))
    }
<h2 id="plates">Plate maps{
        last_timepoint_note(wells)
    }</h2><p class="muted">Red crosses: wells with a field that failed QC.</p>
{figures_html(figures, "plates")}
<h2 id="wells">Per-well summary</h2>{
        table_html(
            wells[summary_columns], text_columns=("plate", "well", "cell_line", "genotype", "treatment", "replicate")
        )
    }
<h2 id="methods">Methods</h2><p class="methods">{_e(methods)}</p>
<h2 id="software">Software and inputs</h2>
<p class="muted">{_e(", ".join(f"{k} {v}" for k, v in software.items()))}<br>
Pipeline {_e(records[0]["pipeline"].get("path"))} (sha256 {_e(records[0]["pipeline"].get("sha256"))});
input {_e(records[0]["inputs"].get("input_dir"))}; plate map {_e(records[0]["inputs"]["platemap"].get("path"))}.</p>
</body></html>
"""
