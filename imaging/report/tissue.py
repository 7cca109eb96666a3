"""The HTML report of a tissue run (IHC scores and / or metastatic burden)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import urllib.parse
from pathlib import Path

import pandas as pd

from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.io.writers import atomic_path, write_csv
from imaging.report.html import STYLE, _e, comparisons_html, fmt, table_html
from imaging.run.record import read_record
from imaging.stains.vectors import LEAK_TURNED
from imaging.tissue.ihc import detects_with_dab


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters bracketed, so an image called ``a[1]`` matches itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


THUMBNAIL_PX = 360  # the width the report shows an overlay or crop at


def thumbnail_jpeg(path: Path, width: int = THUMBNAIL_PX) -> bytes:
    """The image at ``path`` shrunk to at most ``width`` px wide (area-averaged), as JPEG bytes
    (quality 90: a 360 px thumbnail of a tissue photograph is about a tenth of its PNG)."""
    from PIL import Image  # Pillow: scikit-image's and matplotlib's image library

    with Image.open(path) as image:
        small = image.convert("RGB")
        if small.width > width:
            small = small.resize((width, max(1, round(small.height * width / small.width))), Image.Resampling.BOX)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_figure(path: Path, caption: str, *, report_dir: Path) -> str:
    """One overlay or crop in the report: a thumbnail inside the page, linked to the
    full-resolution PNG (opens in a new tab, zoomable) by a path relative to the report.

    Embedding each full PNG (twice: link and image) made a six-tile run's report 16 MB, and a
    tissue microarray of hundreds of cores would not open; the thumbnails keep it at tens of kB
    per figure, and the relative links hold when the run folder is moved or zipped whole.

    Parameters
    ----------
    path : Path
        The PNG (in a run folder's ``plots/``).
    caption : str
        Its caption (also the image's alt text).
    report_dir : Path
        Where ``report.html`` is written.

    Returns
    -------
    str
        An HTML ``<figure>``.
    """
    data = base64.b64encode(thumbnail_jpeg(path)).decode("ascii")
    link = urllib.parse.quote(Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix())
    return (
        f'<figure><a href="{_e(link)}" target="_blank">'
        f'<img alt="{_e(caption)}" src="data:image/jpeg;base64,{data}" style="max-width:{THUMBNAIL_PX}px"></a>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


VECTOR_KINDS = {
    "default": "Ruifrok & Johnston's defaults",
    "estimated": "vectors estimated per image (Macenko)",
    "pipeline": "the pipeline's own vectors",
}


def vector_sources_summary(sources: list[str]) -> str:
    """How many images were unmixed with each kind of stain vectors, for the methods paragraph.

    Each ``stain_vector_source`` in ``run.json`` starts with its kind (``default``, ``estimated``,
    ``pipeline``) and carries that image's residual and leak; those details stay in the report's
    vector table, so that a run of hundreds of images still reads as one sentence here.
    """
    kinds = pd.Series([s.split(" ")[0].rstrip(";") for s in sources], dtype=object).value_counts()
    parts = [f"{VECTOR_KINDS.get(kind, kind)} for {n} image{'s' * (n != 1)}" for kind, n in kinds.items()]
    turned = sum(LEAK_TURNED in s for s in sources)
    if turned:
        parts.append(f"the haematoxylin turned to the counterstain hue the nuclei showed in {turned} of them")
    return "; ".join(parts)


def tissue_methods(record: dict, pipeline) -> str:
    software = record["software"]
    sentences = [
        f"Sections were analysed with imaging {software.get('imaging')} (Python {software.get('python')}, "
        f"NumPy {software.get('numpy')}, scikit-image {software.get('scikit-image')}, tifffile "
        f"{software.get('tifffile')}) using the '{pipeline.name}' pipeline, reading pyramidal images tile "
        "by tile."
    ]
    sources = [i.get("stain_vector_source", "") for i in record["images"]]
    sentences.append(
        f"Tissue was detected on a {pipeline.tissue.resolution_um:g} µm/pixel overview (largest per-channel "
        "optical density above 0.05 against the glass, gaps narrower than 20 µm between such pixels "
        "closed, holes filled, pieces under "
        f"{pipeline.tissue.min_area_um2:g} µm² removed), and "
        f"{' and '.join(pipeline.stains.names)} were separated by colour deconvolution (stain vectors: "
        f"{vector_sources_summary(sources)}; per image in the report's vector table)."
    )
    if pipeline.cells is not None:
        spec = pipeline.cells
        channel = (
            "haematoxylin plus DAB optical density (capped at 0.3 OD, so pale and dark nuclei are found alike)"
            if detects_with_dab(spec.compartment, spec.detection)
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


def pooled_tissue_tables(run_dirs: list[Path]) -> dict:
    """The tables of several tissue runs of one pipeline, pooled: per-image and per-sample
    tables stacked with a ``run`` column (the run folder's name), the groups compared again
    over every run's samples. A sample in two runs is refused: its sections would be two
    units, or, pooled, one unit split over runs (merge the sample sheets and run once)."""
    from imaging.tissue.tables import compare_samples

    records = [read_record(d)[0] for d in run_dirs]
    pipeline = parse_pipeline(records[0]["pipeline"]["config"])
    for run_dir, record in zip(run_dirs, records):
        if record.get("mode") != "tissue" or record["pipeline"]["config"] != records[0]["pipeline"]["config"]:
            raise InputError(
                "is not a run of the same tissue pipeline as the first run folder",
                path=run_dir,
                fix="pool only runs of one tissue pipeline (plates and tissue are reported apart)",
            )
    names = [d.resolve().name for d in run_dirs]
    if len(set(names)) < len(names):
        raise InputError(f"two run folders are both named {names[0]!r}", fix="give each run folder its own name")
    tables = {}
    for name in ("regions", "sections", "samples"):
        parts = [_read(d / f"{name}.csv").assign(run=run) for d, run in zip(run_dirs, names)]
        parts = [p[["run", *[c for c in p.columns if c != "run"]]] for p in parts if len(p.columns) > 1]
        tables[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    key = pipeline.comparison.sample_column
    samples = tables["samples"]
    if not samples.empty and key in samples.columns:
        shared = samples.groupby(key)["run"].nunique()
        if (shared > 1).any():
            raise InputError(
                f"sample {shared[shared > 1].index[0]!r} is in more than one run",
                path=run_dirs[0],
                fix="merge the runs' sample sheets and run once, or give the samples distinct names",
            )
    tables["comparisons"] = compare_samples(pipeline, samples) if not samples.empty else pd.DataFrame()
    images = [image | {"run": run} for record, run in zip(records, names) for image in record["images"]]
    return tables | {"records": records, "pipeline": pipeline, "images": images}


def excluded_html(excluded: dict) -> str:
    """The images a reviewer excluded (curation.csv), with the reasons."""
    if not excluded:
        return ""
    items = "".join(f"<li>{_e(image)}: {_e(note)}</li>" for (_, image), note in sorted(excluded.items()))
    return f'<p class="warn">Excluded by curation (left out of every table):</p><ul>{items}</ul>'


def build_tissue_report(run_dirs: str | Path | list, out_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` of a tissue run folder, or of several runs of one tissue pipeline
    pooled into ``out_dir`` (with their pooled ``samples.csv`` and ``comparisons.csv``)."""
    run_dirs = [Path(d) for d in (run_dirs if isinstance(run_dirs, list) else [run_dirs])]
    if out_dir is None:
        if len(run_dirs) > 1:
            raise InputError("several runs need an output folder", fix="add --out DIR")
        out_dir = run_dirs[0]
    out_dir = Path(out_dir)
    if len(run_dirs) == 1 and out_dir.resolve() == run_dirs[0].resolve():
        record = json.loads((out_dir / "run.json").read_text())
        pipeline = parse_pipeline(record["pipeline"]["config"])
        regions, sections = _read(out_dir / "regions.csv"), _read(out_dir / "sections.csv")
        samples, comparisons = _read(out_dir / "samples.csv"), _read(out_dir / "comparisons.csv")
        images = [image | {"folder": str(out_dir)} for image in record["images"]]
    else:
        if any(out_dir.resolve() == d.resolve() for d in run_dirs):
            raise InputError(
                "the pooled report would overwrite a run's own tables",
                path=out_dir,
                fix="give --out a folder of its own for the pooled report",
            )
        pooled = pooled_tissue_tables(run_dirs)
        record, pipeline = pooled["records"][0], pooled["pipeline"]
        regions, sections, samples = pooled["regions"], pooled["sections"], pooled["samples"]
        comparisons = pooled["comparisons"]
        for name in ("regions", "sections", "samples", "comparisons"):
            if not pooled[name].empty:
                write_csv(pooled[name], out_dir / f"{name}.csv")
        folders = {d.resolve().name: d for d in run_dirs}
        images = [image | {"folder": str(folders[image["run"]])} for image in pooled["images"]]
    excluded = {
        (run.resolve().name, e["image"]): e["note"]
        for run, r in zip(run_dirs, [record] if len(run_dirs) == 1 else pooled["records"])
        for e in r.get("curation", {}).get("excluded_images", [])
    }
    figures = []
    for image in images:
        name, plots = image["image"], Path(image["folder"]) / "plots"
        note = excluded.get((Path(image["folder"]).resolve().name, name))
        paths = [
            plots / f"{name}_overlay.png",
            *sorted(plots.glob(f"{glob_escape(name)}_cells_*.png")),
        ]
        for index, path in enumerate(p for p in paths if p.is_file()):
            caption = name if index == 0 else f"{name}: full-resolution crop {index}"
            caption += f" (excluded from the tables: {note})" if note else ""
            figures.append(image_figure(path, caption, report_dir=out_dir))
    vectors = pd.DataFrame(
        [
            {
                "image": i["image"],
                "source": i.get("stain_vector_source"),
                **{k: ", ".join(f"{x:.3f}" for x in v) for k, v in i.get("stain_vectors", {}).items()},
            }
            for i in images
        ]
    )
    cards = [("runs", len(run_dirs))] if len(run_dirs) > 1 else []
    cards += [("images", len(images)), ("samples", len(samples))]
    if not regions.empty:
        cards.append(("cells scored", int(regions["n_cells"].sum())))
    if not sections.empty:
        cards.append(("lesions", int(sections["n_lesions"].sum())))
    cards_html = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in cards)
    records = [record] if len(run_dirs) == 1 else pooled["records"]
    threshold_html = "".join(
        f"<p>Lesion threshold{' of run ' + _e(d.resolve().name) if len(run_dirs) > 1 else ''}: "
        f"{_e(fmt(t.get('value')))} ({_e(t.get('method'))}{'; ' + _e(t['reason']) if t.get('reason') else ''}).</p>"
        for d, t in ((d, r.get("lesion_threshold")) for d, r in zip(run_dirs, records))
        if t
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(pipeline.name)} report</title><style>{STYLE}</style></head>
<body><h1>{_e(pipeline.name)}: tissue readouts</h1>
<p class="muted">{_e(pipeline.description)}<br>Report generated {now}. Tables: regions.csv, cells.csv, sections.csv,
lesions.csv, samples.csv, comparisons.csv.</p>
<div class="cards">{cards_html}</div>
{excluded_html(excluded)}
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
