"""The HTML report of a tissue run (IHC scores and / or metastatic burden)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pandas as pd

from imaging.config import parse_pipeline
from imaging.io.writers import atomic_path
from imaging.report.html import STYLE, _e, comparisons_html, fmt, table_html


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters bracketed, so an image called ``a[1]`` matches itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def tissue_methods(record: dict, pipeline) -> str:
    software = record["software"]
    sentences = [
        f"Sections were analysed with imaging {software.get('imaging')} (Python {software.get('python')}, "
        f"NumPy {software.get('numpy')}, scikit-image {software.get('scikit-image')}, tifffile "
        f"{software.get('tifffile')}) using the '{pipeline.name}' pipeline, reading pyramidal images tile "
        "by tile."
    ]
    sources = sorted({i.get("stain_vector_source", "") for i in record["images"]})
    sentences.append(
        f"Tissue was detected on a {pipeline.tissue.resolution_um:g} µm/pixel overview (largest per-channel "
        "optical density above 0.05 against the glass, holes filled, pieces under "
        f"{pipeline.tissue.min_area_um2:g} µm² removed), and "
        f"{' and '.join(pipeline.stains.names)} were separated by colour deconvolution (stain vectors: "
        f"{', '.join(sources)})."
    )
    if pipeline.cells is not None:
        spec = pipeline.cells
        channel = (
            "haematoxylin plus DAB optical density (capped at 0.3 OD, so pale and dark nuclei are found alike)"
            if spec.detection == "nuclear_od" or (spec.detection == "auto" and spec.compartment == "nucleus")
            else "haematoxylin optical density"
        )
        scale = (
            f"a nucleus diameter of {spec.nucleus_diameter_um:g} µm"
            if spec.nucleus_diameter_um
            else "a nucleus scale estimated from each tile"
        )
        sentences.append(
            f"Nuclei were detected on the {channel} at {scale} (local-contrast foreground, touching nuclei split "
            "by distance-transform watershed and merged back where no notch supports a split), cells defined as nuclei grown by "
            f"{spec.cell_expansion_um:g} µm, and each cell classed 0/1+/2+/3+ by its mean DAB optical density in the "
            f"{spec.compartment} at thresholds {', '.join(f'{t:g}' for t in spec.thresholds)}; H-score = "
            "1×%1+ + 2×%2+ + 3×%3+, Allred = proportion score + intensity score, and positive cells were counted "
            "per mm² of tissue."
        )
    if pipeline.lesions is not None:
        rule = pipeline.lesions
        threshold = record.get("lesion_threshold") or {}
        how = (
            "a threshold fixed in the pipeline"
            if threshold.get("method") == "fixed"
            else "one run-wide threshold midway between the means of a two-component Gaussian mixture fitted to "
            "tissue pixels of all sections"
        )
        sentences.append(
            f"Lesions were {rule.source} signal (smoothed {rule.smoothing_um:g} µm) above {how} "
            f"({fmt(threshold.get('value'))}) on a {rule.resolution_um:g} µm/pixel overview, holes filled, lesions under "
            f"{rule.min_area_um2:g} µm² discarded; burden = lesion area / tissue area per animal."
        )
    settings = pipeline.comparison
    if settings.control_group:
        test = "the exact Mann–Whitney U test" if settings.test == "mann-whitney" else "Welch's t-test"
        sentences.append(
            f"Each group was compared with {settings.control_group} with samples ({settings.sample_column}) "
            f"as the unit by {test}, with Benjamini–Hochberg adjustment."
        )
    return " ".join(sentences)


def build_tissue_report(out_dir: str | Path) -> Path:
    """Write ``report.html`` of a tissue run folder."""
    out_dir = Path(out_dir)
    record = json.loads((out_dir / "run.json").read_text())
    pipeline = parse_pipeline(record["pipeline"]["config"])
    regions, sections = _read(out_dir / "regions.csv"), _read(out_dir / "sections.csv")
    samples, comparisons = _read(out_dir / "samples.csv"), _read(out_dir / "comparisons.csv")
    figures = []
    for image in record["images"]:
        name = image["image"]
        paths = [
            out_dir / "plots" / f"{name}_overlay.png",
            *sorted((out_dir / "plots").glob(f"{glob_escape(name)}_cells_*.png")),
        ]
        for index, path in enumerate(p for p in paths if p.is_file()):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            caption = name if index == 0 else f"{name}: full-resolution crop {index}"
            # crops open at full size in a new tab (zoomable); the thumbnail fits the page
            figures.append(
                f'<figure><a href="data:image/png;base64,{data}" target="_blank">'
                f'<img alt="{_e(caption)}" src="data:image/png;base64,{data}" style="max-width:360px"></a>'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
    vectors = pd.DataFrame(
        [
            {
                "image": i["image"],
                "source": i.get("stain_vector_source"),
                **{k: ", ".join(f"{x:.3f}" for x in v) for k, v in i.get("stain_vectors", {}).items()},
            }
            for i in record["images"]
        ]
    )
    cards = [("images", len(record["images"])), ("samples", len(samples))]
    if not regions.empty:
        cards.append(("cells scored", int(regions["n_cells"].sum())))
    if not sections.empty:
        cards.append(("lesions", int(sections["n_lesions"].sum())))
    cards_html = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in cards)
    threshold = record.get("lesion_threshold")
    threshold_html = (
        ""
        if not threshold
        else f"<p>Lesion threshold: {_e(fmt(threshold.get('value')))} "
        f"({_e(threshold.get('method'))}{'; ' + _e(threshold['reason']) if threshold.get('reason') else ''}).</p>"
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(pipeline.name)} report</title><style>{STYLE}</style></head>
<body><h1>{_e(pipeline.name)}: tissue readouts</h1>
<p class="muted">{_e(pipeline.description)}<br>Report generated {now}. Tables: regions.csv, cells.csv, sections.csv,
lesions.csv, samples.csv, comparisons.csv.</p>
<div class="cards">{cards_html}</div>
<h2 id="comparisons">Groups vs control ({_e(pipeline.comparison.control_group or "none set")})</h2>
{comparisons_html(comparisons, "group_vs_control") if not comparisons.empty else '<p class="muted">none</p>'}
<h2 id="samples">Per sample</h2>{table_html(samples, text_columns=tuple(c for c in samples.columns if samples[c].dtype == object))}
{('<h2 id="regions">IHC per image</h2>' + table_html(regions, text_columns=("image",))) if not regions.empty else ""}
{('<h2 id="sections">Burden per section</h2>' + threshold_html + table_html(sections, text_columns=("image",))) if not sections.empty else ""}
<h2 id="overlays">Overlays</h2><p class="muted">Green: tissue outline; yellow lines: lesions. Cells (dots on the
overview, nucleus outlines on the full-resolution crops) by class: <span style="color:#286eff">blue 0</span>,
<span style="color:#c8a800">yellow 1+</span>, <span style="color:#ff8c00">orange 2+</span>,
<span style="color:#e60000">red 3+</span>. Every cell is in detections/&lt;image&gt;.geojson for review in QuPath
(File &gt; Import objects).</p>
<div class="figs">{"".join(figures)}</div>
<h2 id="stains">Stain vectors</h2>{table_html(vectors, text_columns=tuple(vectors.columns))}
<h2 id="methods">Methods</h2><p class="methods">{_e(tissue_methods(record, pipeline))}</p>
</body></html>
"""
    with atomic_path(out_dir / "report.html") as temporary:
        temporary.write_text(html, encoding="utf-8")
    return out_dir / "report.html"
