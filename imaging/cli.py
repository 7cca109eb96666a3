"""The ``imaging`` command: a thin adapter over the library.

Subcommands: ``run``, ``validate``, ``report``, ``segment``, ``evaluate``, ``demo``. Bad input ends with a one-line
``error: ...`` naming the file and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from imaging import __version__
from imaging.errors import InputError

log = logging.getLogger("imaging")

EXIT_INPUT_ERROR = 2


def _progress(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="field", disable=None, file=sys.stderr, dynamic_ncols=True)


# ---- run / validate ------------------------------------------------------------------------
def _calibration_lines(plate_record: dict) -> list[str]:
    """What the run estimated for a plate besides thresholds: flat-fields, the reporter gate."""
    lines = []
    illumination = plate_record.get("illumination")
    if illumination:
        for channel, entry in illumination["channels"].items():
            where = (
                f"estimated from {illumination['n_fields']} fields"
                if illumination["method"] == "estimate"
                else f"from {entry['source']}"
            )
            spread = f", flat {entry['min']:.2f}-{entry['max']:.2f} of the mean" if "min" in entry else ""
            lines.append(f"illumination {channel}: {where}{spread} ({entry.get('flat_file', '')})")
        if illumination.get("warning"):
            lines.append(f"illumination WARNING: {illumination['warning']}")
    gate = plate_record.get("reporter_gate")
    if gate:
        if gate["method"] == "none":
            lines.append(f"reporter gate: no cell gated ({gate['detail'].get('reason', '')})")
        else:
            lines.append(
                f"reporter gate: cells at or below {gate['value']:.4g} left out of readouts ({gate['method']})"
            )
    return lines


def _print_run_summary(result, elapsed: float) -> None:
    record = result.record
    n_fields = record["inputs"]["n_fields"]
    print(
        f"Done in {elapsed:.1f} s: {n_fields} fields ({n_fields / max(elapsed, 1e-9):.2f} fields/s), "
        f"{record['fields_reused_from_previous_run']} reused from a previous run."
    )
    for plate, info in record["plates"].items():
        print(
            f"  plate {plate}: {info['n_wells']} wells"
            + (f" x {info['n_timepoints']} time points" if "n_timepoints" in info else "")
            + f", {info['n_cells']} cells "
            f"({info['n_cells_in_wells']} in well aggregates)"
        )
        for name, threshold in info["thresholds"].items():
            print(
                f"    {name}: threshold {threshold['value']:.4g} ({threshold['method']}, {threshold['n_values']} cells)"
            )
        for line in _calibration_lines(info):
            print(f"    {line}")
        qc = info["qc"]
        if qc["n_failed"]:
            action = "excluded from wells" if qc["failed_fields_excluded_from_wells"] else "kept in wells"
            print(f"    QC: {qc['n_failed']} of {info['n_fields']} fields failed ({action}):")
            for failed in qc["failed_fields"][:10]:
                print(f"      {failed['well']} s{failed['site']}: {failed['reasons']}")
        else:
            print(f"    QC: all {info['n_fields']} fields passed")
    missing = record["platemap_wells_without_images"]
    if missing:
        print(f"  {len(missing)} plate-map well(s) have no images (listed in run.json)")
    from imaging.io.writers import TABLE_FORMATS

    formats = " + ".join(TABLE_FORMATS[result.record["pipeline"]["config"]["output"]["format"]])
    print(
        f"Tables in {result.out_dir}/<plate>/ (cells, fields, wells as {formats}); record in "
        f"{result.out_dir / 'run.json'}"
    )


def run_pipeline(
    pipeline,
    input_dir,
    *,
    platemap,
    out,
    workers,
    save_labels,
    pattern,
    command,
    threads=1,
    scheduler=None,
    table_format=None,
    scene_map=None,
) -> None:
    import dataclasses
    import time

    from imaging.config import Output
    from imaging.plate import execute, plan_run

    plan = plan_run(pipeline, input_dir, platemap=platemap, pattern=pattern, scene_map=scene_map)
    if table_format is not None:  # the flag overrides the pipeline's output.format (recorded in run.json)
        plan = dataclasses.replace(
            plan, pipeline=plan.pipeline.model_copy(update={"output": Output(format=table_format)})
        )
    if platemap is None:
        log.warning("no --platemap: wells will carry no genotype/treatment annotations")
    elif "control" in plan.annotations.columns:
        from imaging.io.platemap import z_prime_readiness

        for problem in z_prime_readiness(plan.annotations):
            log.warning(problem)
    started = time.perf_counter()
    with _progress(len(plan.fields), plan.pipeline.name) as bar:
        result = execute(
            plan,
            out,
            workers=workers,
            threads=threads,
            save_labels=save_labels,
            on_field=lambda summary: bar.update(1),
            command=command,
            scheduler=scheduler,
            report=True,
        )
    _print_run_summary(result, time.perf_counter() - started)
    print(f"Comparisons in {result.out_dir / 'comparisons.csv'}; report in {result.out_dir / 'report.html'}")


def image_summary_line(image: dict) -> str:
    """The line a tissue run prints for one image of its record (``run.json``'s ``images``)."""
    parts = [f"  {image['image']}:"]
    if image.get("tissue_area_mm2"):
        parts.append(f"tissue {image['tissue_area_mm2']:.2f} mm2")
    if "ihc" in image:
        ihc = image["ihc"]
        parts.append(
            f"{ihc['n_cells']} cells, {ihc['percent_positive']:.1f}% positive, H-score {ihc['h_score']:.0f}, "
            f"Allred {ihc['allred_score']}"
            if ihc["n_cells"]
            else "no cells found (check the overlay: a blank or out-of-focus image?)"
        )
        if ihc["n_cells"] and image.get("pixel_size_um") and not image.get("tissue_area_mm2"):
            # the densities' denominator is missing, not zero: say so rather than leave blanks unexplained
            parts.append("(no tissue area: the tissue mask kept no piece, so cells per mm2 are left empty)")
    if "burden" in image:
        burden = image["burden"]
        parts.append(f"{burden['n_lesions']} lesion(s), {burden['lesion_percent_of_tissue']:.2f}% of tissue")
    return " ".join(parts)


def run_tissue(pipeline, input_dir, *, samples, out, workers, command, scheduler=None) -> None:
    import time

    from imaging.tissue.assay import execute_tissue
    from imaging.tissue.plan import plan_tissue

    plan = plan_tissue(pipeline, input_dir, samples=samples)
    started = time.perf_counter()
    with _progress(len(plan.images), plan.pipeline.name) as bar:
        bar.unit = "image"
        record = execute_tissue(
            plan,
            out,
            workers=workers,
            on_image=lambda summary: bar.update(0 if "part" in summary else 1),
            command=command,
            scheduler=scheduler,
        )
    elapsed = time.perf_counter() - started
    print(
        f"Done in {elapsed:.1f} s: {len(record['images'])} image(s), "
        f"{record['images_reused_from_previous_run']} reused from a previous run."
    )
    for image in record["images"]:
        print(image_summary_line(image))
    if record.get("lesion_threshold"):
        threshold = record["lesion_threshold"]
        print(
            f"  lesion threshold {threshold['value']:.4g} ({threshold['method']}"
            + (f"; {threshold['reason']}" if threshold.get("reason") else "")
            + ")"
        )
    from imaging.tissue.tables import tissue_table_names

    tables = ", ".join(tissue_table_names(plan.pipeline))
    print(f"Tables in {out}/ ({tables}); report in {Path(out) / 'report.html'}")


def is_tissue_pipeline(path) -> bool:
    from imaging.config import TissuePipeline, load_pipeline

    return isinstance(load_pipeline(path), TissuePipeline)


# flags of `imaging run` that only plate pipelines use (argparse destination of each)
PLATE_ONLY_FLAGS = {
    "--scene-map": "scene_map",
    "--pattern": "pattern",
    "--save-labels/--no-save-labels": "save_labels",
    "--table-format": "table_format",
    "--threads": "threads",
}


def cmd_run(args: argparse.Namespace) -> None:
    if is_tissue_pipeline(args.pipeline):
        if args.platemap:
            raise InputError("--platemap is for plate pipelines", fix="give tissue runs a sample sheet with --samples")
        given = [flag for flag, value in PLATE_ONLY_FLAGS.items() if getattr(args, value) is not None]
        if given:  # silently ignoring them would let a user believe they took effect
            raise InputError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for plate pipelines",
                path=args.pipeline,
                fix=f"drop {', '.join(given)}: a tissue run does not use {'it' if len(given) == 1 else 'them'}",
            )
        run_tissue(
            args.pipeline,
            args.input_dir,
            samples=args.samples,
            out=args.out,
            workers=args.workers,
            command=sys.argv,
            scheduler=args.scheduler,
        )
        return
    if args.samples:
        raise InputError("--samples is for tissue pipelines", fix="give plate runs a plate map with --platemap")
    run_pipeline(
        args.pipeline,
        args.input_dir,
        platemap=args.platemap,
        out=args.out,
        workers=args.workers,
        threads=1 if args.threads is None else args.threads,
        save_labels=args.save_labels is not False,  # on unless --no-save-labels
        pattern=args.pattern,
        command=sys.argv,
        scheduler=args.scheduler,
        table_format=args.table_format,
        scene_map=args.scene_map,
    )


def _channel_label(spec) -> str:
    return f"w{spec.id}" if spec.name is None else repr(spec.name)


def cmd_validate(args: argparse.Namespace) -> None:
    from imaging.config import load_pipeline
    from imaging.io.platemap import read_platemap
    from imaging.plate import plan_run

    pipeline = load_pipeline(args.pipeline)
    if is_tissue_pipeline(args.pipeline):
        from imaging.tissue.plan import plan_tissue

        print(
            f"pipeline {args.pipeline}: OK ({pipeline.name}, tissue: "
            f"{'IHC cell scoring' if pipeline.cells else ''}{' + ' if pipeline.cells and pipeline.lesions else ''}"
            f"{'lesion burden' if pipeline.lesions else ''})"
        )
        if args.input_dir is not None:
            plan = plan_tissue(pipeline, args.input_dir, samples=args.samples)
            print(f"images {args.input_dir}: OK ({len(plan.images)} image(s))")
        return
    print(
        f"pipeline {args.pipeline}: OK ({pipeline.name}, channels: "
        f"{', '.join(f'{n}={_channel_label(s)} {s.kind}' for n, s in pipeline.channels.items())})"
    )
    if args.input_dir is None:
        if args.platemap:
            table = read_platemap(args.platemap)
            print(f"plate map {args.platemap}: OK ({len(table)} wells)")
        return
    plan = plan_run(pipeline, args.input_dir, platemap=args.platemap, pattern=args.pattern, scene_map=args.scene_map)
    if args.read_pixels:
        from imaging.plate.fields import FieldTask, read_field_pixels
        from imaging.run.workers import run_tasks

        tasks = [FieldTask(field=f, pipeline=plan.pipeline, xgal_vector=None) for f in plan.fields]
        with _progress(len(plan.fields), "reading pixels") as bar:
            run_tasks(read_field_pixels, tasks, workers=args.workers, on_result=lambda _: bar.update(1))
    print(
        f"images {args.input_dir}: OK ({plan.n_files} files{', every pixel read' if args.read_pixels else ''}, naming {plan.naming}, "
        f"{len(plan.fields)} fields in {len(plan.annotations)} wells of plate(s) {', '.join(plan.plates)})"
    )
    if args.platemap:
        print(
            f"plate map {args.platemap}: OK (describes every imaged well; "
            f"{len(plan.unimaged_wells)} described well(s) without images)"
        )
        from imaging.io.platemap import z_prime_readiness

        for problem in z_prime_readiness(plan.annotations):
            print(f"  note: {problem}")


def cmd_report(args: argparse.Namespace) -> None:
    from imaging.plate.tables import rebuild_tables
    from imaging.report import build_report
    from imaging.report.tissue import build_tissue_report
    from imaging.run.record import read_record

    tissue = [d for d in args.run_dirs if read_record(d)[0].get("mode") == "tissue"]
    if tissue:
        if len(tissue) < len(args.run_dirs):
            raise InputError(
                "plate and tissue runs are reported apart", fix="give only plate or only tissue run folders"
            )
        from imaging.tissue.tables import rebuild_tissue_tables

        for run_dir in tissue:
            excluded = rebuild_tissue_tables(run_dir)["curation"]["excluded_images"]  # applies curation.csv
            print(
                f"{run_dir}: tables rebuilt" + (f", {len(excluded)} image(s) excluded by curation" if excluded else "")
            )
        print(f"report in {build_tissue_report(list(args.run_dirs), args.out)}")
        return
    for run_dir in args.run_dirs:
        record = rebuild_tables(run_dir)  # applies curation.csv
        curated = record["curation"]["n_decisions"]
        print(f"{run_dir}: tables rebuilt" + (f" with {curated} curation decision(s)" if curated else ""))
    outputs = build_report(args.run_dirs, args.out)
    print(
        f"Comparisons in {outputs['comparisons']}; plate quality in {outputs['plate_qc']}; "
        f"plots in {outputs['plots']}/; report in {outputs['report']}"
    )


# ---- segment -------------------------------------------------------------------------------
def _segment_inputs(paths: list[str]) -> list[Path]:
    from imaging.io.discover import IMAGE_SUFFIXES

    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError("folder holds no image files", path=path, fix="give image files or folders of them")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError("no such file or folder", path=path, fix="check the path")
    stems = [f.stem for f in files]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise InputError(
            f"two inputs share the name {duplicated[0]!r}; outputs would collide",
            fix="segment them into different --out folders",
        )
    return files


def cmd_segment(args: argparse.Namespace) -> None:
    import time

    from imaging.io.readers import as_grayscale, check_field_image, read_raw
    from imaging.run.workers import collect
    from imaging.segment.files import SegmentTask, segment_file

    files = _segment_inputs(args.paths)
    for path in files:  # refuse bad input before writing anything
        shape, _ = check_field_image(path)
        if len([s for s in shape if s != 1]) != 2:
            as_grayscale(read_raw(path), path=path)
    options = {"method": args.method}
    if args.method == "classical":
        options["radius"] = args.diameter / 2 if args.diameter else None
    else:
        from imaging.segment.cellpose_backend import resolve_model_path

        options |= {"model": str(resolve_model_path(args.model)), "diameter": args.diameter}
    out = Path(args.out)
    tasks = [SegmentTask(path=str(p), out_path=str(out / f"{p.stem}_nuclei.tif"), options=options) for p in files]
    started = time.perf_counter()
    with _progress(len(tasks), "segment") as bar:
        results = collect(segment_file, tasks, workers=args.workers, on_result=lambda r: bar.update(1))
    elapsed = time.perf_counter() - started
    n_objects = sum(r["n_objects"] for r in results)
    print(
        f"Segmented {len(results)} image(s) in {elapsed:.1f} s ({elapsed / max(len(results), 1):.2f} s/image), "
        f"{n_objects} nuclei; labels in {out}/"
    )


def is_tissue_run(path: str | Path) -> bool:
    """A folder written by a tissue run that scored cells (``run.json`` and ``cells.csv``)."""
    path = Path(path)
    return (path / "run.json").is_file() and (path / "cells.csv").is_file()


def evaluation_csv(args: argparse.Namespace) -> Path:
    """Where ``imaging evaluate`` writes its per-image scores: ``--csv``, else
    ``evaluation.csv`` beside the predictions (inside a predictions folder, such as a run's
    ``--out``), never the working directory."""
    if args.csv:
        return Path(args.csv)
    predictions = Path(args.predictions)
    return (predictions if predictions.is_dir() else predictions.parent) / "evaluation.csv"


def cmd_evaluate_points(args: argparse.Namespace) -> None:
    from imaging.evaluate_points import evaluate_points, misregistered_images, summarize_points
    from imaging.io.writers import write_csv

    table = evaluate_points(args.predictions, args.truths, radius=args.radius)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = summarize_points(table)
    print(
        f"\n{summary['images']} image(s), matched within {table['radius_px'].iloc[0]:.1f} px: "
        f"index error mean |{summary['mean_abs_index_error']:.2f}| points (largest {summary['max_abs_index_error']:.2f}); "
        f"class-aware F1 {summary['mean_class_f1']:.3f}; detection F1 {summary['mean_detection_f1']:.3f} "
        f"(recall {summary['mean_detection_recall']:.3f})"
    )
    for row in misregistered_images(table).itertuples():
        print(
            f"Note: the points of {row.image} sit {0.0 - row.offset_row_px:+.1f} rows, {0.0 - row.offset_col_px:+.1f} columns "
            "from its cells (median of the matched pairs): check the annotations' coordinates (a crop origin, "
            "a downsampled export); its scores understate the detections"
        )
    csv = evaluation_csv(args)
    write_csv(table, csv)
    print(f"Per-image scores in {csv}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from imaging.evaluate import evaluate, listed_names, pair_files, summarize, unscored_predictions
    from imaging.io.writers import write_csv

    if is_tissue_run(args.predictions):
        return cmd_evaluate_points(args)
    if args.radius is not None:
        raise InputError(
            "--radius is for point annotations",
            path=args.predictions,
            fix="give the --out folder of an IHC tissue run, or drop --radius",
        )
    table = evaluate(args.predictions, args.truths)
    summary = summarize(table)
    shown = table if table["binary_mask"].any() else table.drop(columns="binary_mask")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(
        f"\n{len(table)} image(s): mean F1 at IoU 0.5 = {summary.loc['mean', 'f1']:.4f}, "
        f"mean AP (IoU 0.5:0.95) = {summary.loc['mean', 'ap']:.4f}"
    )
    masks = table.loc[table["binary_mask"] != "", "image"].tolist()
    if masks:
        print(
            f"Note: {len(masks)} image(s) read as binary masks, each connected blob one object "
            f"(touching nuclei count as one): {listed_names(masks)}"
        )
    unscored = unscored_predictions(args.predictions, pair_files(args.predictions, args.truths))
    if unscored:
        print(
            f"Note: {len(unscored)} prediction(s) have no annotated image and were not scored: {listed_names(unscored)}"
        )
    csv = evaluation_csv(args)
    write_csv(table, csv)
    print(f"Per-image scores in {csv}")


# ---- demo ----------------------------------------------------------------------------------
def cmd_profiles(args: argparse.Namespace) -> None:
    from imaging.plate.profiles import write_profiles

    for path in write_profiles(args.run_dir, table_format=args.format):
        print(f"profiles for pycytominer in {path}")


def cmd_demo(args: argparse.Namespace) -> None:
    from imaging.samples import shipped_folder

    samples = shipped_folder("sample_images")
    pipelines = shipped_folder("pipelines")
    out = Path(args.out)
    for assay in ("sabgal", "pjnk"):
        plate_dir = samples / f"{assay}_plate"
        print(f"== {assay}: pipelines/{assay}.yaml on {plate_dir} ==")
        run_pipeline(
            pipelines / f"{assay}.yaml",
            plate_dir / "images",
            platemap=plate_dir / "platemap.csv",
            out=out / assay,
            workers=args.workers,
            save_labels=True,
            pattern=None,
            command=sys.argv,
        )
    tissue = samples / "tissue"
    print(f"== ihc_hscore: pipelines/ihc_hscore.yaml on {tissue / 'ihc'} ==")
    run_tissue(
        pipelines / "ihc_hscore.yaml",
        tissue / "ihc",
        samples=None,
        out=out / "ihc_hscore",
        workers=args.workers,
        command=sys.argv,
    )
    print(f"== ihc_cytoplasmic: pipelines/ihc_cytoplasmic.yaml on {tissue / 'ihc_cytoplasmic'} ==")
    run_tissue(
        pipelines / "ihc_cytoplasmic.yaml",
        tissue / "ihc_cytoplasmic",
        samples=None,
        out=out / "ihc_cytoplasmic",
        workers=args.workers,
        command=sys.argv,
    )
    print(f"== metastasis: pipelines/metastasis.yaml on {tissue / 'sections'} ==")
    run_tissue(
        pipelines / "metastasis.yaml",
        tissue / "sections",
        samples=tissue / "sections_samples.csv",
        out=out / "metastasis",
        workers=args.workers,
        command=sys.argv,
    )


# ---- entry point ---------------------------------------------------------------------------
def _positive_size(text: str) -> float:
    """A size in px: a finite number above 0 (argparse reports anything else on one line)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a size in px above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    from imaging.run.workers import default_workers

    parser = argparse.ArgumentParser(
        prog="imaging",
        description="Quantitative microscopy readouts: SA-beta-gal, pJNK/c-JUN, IHC and metastatic burden.",
    )
    parser.add_argument("--version", action="version", version=f"imaging {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline on a plate folder (or tissue images) and write tables")
    run.add_argument("pipeline", help="pipeline YAML, e.g. pipelines/sabgal.yaml or pipelines/metastasis.yaml")
    run.add_argument(
        "input_dir",
        help="folder of images exported by the instrument (or of tissue sections); "
        "a local path or an fsspec URL (s3://..., file://...)",
    )
    run.add_argument("--platemap", help="plate-map CSV (well, genotype, treatment, ...) for plate pipelines")
    run.add_argument("--samples", help="sample sheet CSV (image, sample, group, ...) for tissue pipelines")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: all CPUs)")
    run.add_argument(
        "--threads",
        type=int,
        default=None,  # None: not given (1 for plates; tissue runs refuse the flag)
        help="threads per worker for one field's filters, distance transforms and growth (default 1; "
        "the numbers do not depend on it): for few large fields on many cores, e.g. --workers 2 --threads 4",
    )
    run.add_argument(
        "--save-labels",
        action=argparse.BooleanOptionalAction,
        default=None,  # None: not given (on for plates; tissue runs refuse the flag)
        help="write nuclei and cell label images (compressed, about 0.6 MB per 2048 px field), so "
        "review in napari never segments again (default: on; --no-save-labels to skip)",
    )
    run.add_argument(
        "--table-format",
        choices=["csv", "parquet", "both"],
        help="per-plate tables as CSV, Parquet or both (default: the pipeline's output.format, csv)",
    )
    run.add_argument(
        "--scheduler",
        help="Dask: 'local' (a LocalCluster of --workers processes) or the address "
        "of a running scheduler, e.g. tcp://10.0.0.5:8786; default: local processes",
    )
    run.add_argument(
        "--pattern",
        help="regular expression for file names (named groups plate, well or "
        "row+column, site, channel); overrides the pipeline's naming",
    )
    run.add_argument(
        "--scene-map",
        help="CSV placing the scenes of container files (ND2, CZI, LIF, OME-TIFF) on the "
        "plate: columns scene, well, and optionally site, plate, file",
    )
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a pipeline (and plate map, and image folder) without running")
    validate.add_argument("pipeline")
    validate.add_argument("input_dir", nargs="?")
    validate.add_argument("--platemap")
    validate.add_argument("--samples")
    validate.add_argument("--pattern")
    validate.add_argument("--scene-map")
    validate.add_argument(
        "--read-pixels",
        action="store_true",
        help="also decode every image (finds damaged compressed data, which headers do not show)",
    )
    validate.add_argument("--workers", type=int, default=default_workers())
    validate.set_defaults(handler=cmd_validate)

    report = sub.add_parser("report", help="rebuild comparisons, plots and report.html from run folder(s)")
    report.add_argument(
        "run_dirs",
        nargs="+",
        help="output folder(s) of `imaging run`; several are pooled (e.g. independent experiments)",
    )
    report.add_argument("--out", help="where to write (default: the run folder; required for several)")
    report.set_defaults(handler=cmd_report)

    segment = sub.add_parser("segment", help="segment nuclei in 2-D grayscale images; writes <stem>_nuclei.tif")
    segment.add_argument("paths", nargs="+", help="image files or folders of images")
    segment.add_argument("--out", required=True, help="output folder")
    segment.add_argument("--method", choices=["classical", "cellpose"], default="classical")
    segment.add_argument(
        "--model", help="cellpose weights file or model name (with --method cellpose; default cpsam_v2 on cellpose 4)"
    )
    segment.add_argument("--diameter", type=_positive_size, help="typical nucleus diameter in px (default: estimated)")
    segment.add_argument("--workers", type=int, default=default_workers())
    segment.set_defaults(handler=cmd_segment)

    evaluate = sub.add_parser(
        "evaluate",
        help="score predicted label images against annotated ones "
        "(precision, recall, F1 at IoU 0.5, AP 0.5:0.95), or an IHC "
        "tissue run's cells against positive/negative point annotations",
    )
    evaluate.add_argument(
        "predictions",
        help="label image or folder (e.g. the --out of imaging segment), or the --out folder of an IHC tissue run",
    )
    evaluate.add_argument(
        "truths",
        help="annotated label image or folder (matched by file name); for a tissue "
        "run: a points CSV (image, row, col, class), or a folder of per-image "
        "CSV or QuPath GeoJSON files",
    )
    evaluate.add_argument(
        "--radius",
        type=_positive_size,
        help="points: match radius in px (default: the median nucleus radius of the run's cells)",
    )
    evaluate.add_argument(
        "--csv",
        help="per-image scores (default: evaluation.csv in the predictions folder, or beside the prediction file)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    demo = sub.add_parser("demo", help="run the shipped pipelines on sample_images/")
    demo.add_argument("--out", default="demo_results")
    demo.add_argument("--workers", type=int, default=default_workers())
    demo.set_defaults(handler=cmd_demo)

    profiles = sub.add_parser(
        "profiles",
        help="write each plate's cells as pycytominer single-cell profiles "
        "(Metadata_ columns, CellProfiler feature names)",
    )
    profiles.add_argument("run_dir", help="the --out folder of a plate run")
    profiles.add_argument("--format", choices=["csv", "parquet"], help="default: the run's table format")
    profiles.set_defaults(handler=cmd_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "workers", 1) is not None and getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    from imaging.run.workers import keep_freed_memory

    keep_freed_memory()  # this process measures fields itself with --workers 1
    received: list[int] = []  # termination signals that arrived during the run
    previous_handlers = _stop_on_termination(received)
    try:
        args.handler(args)
        if received:
            # The KeyboardInterrupt was lost: a signal handler's exception is printed and dropped
            # when it lands in a finaliser (__del__, a weakref callback). The run went on to the
            # end; a scheduler that stopped it must still not read success.
            raise KeyboardInterrupt(signal.Signals(received[0]).name)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as exc:
        from imaging.io.run_folder import disk_error

        error = disk_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted: completed fields are kept and reused by the next run", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    return 0


def _stop_on_termination(received: list[int]) -> dict:
    """SIGTERM and SIGHUP (what a batch scheduler or a closed terminal sends) stop a run as
    Ctrl-C does: workers ended, completed fields kept. Each signal is also appended to
    ``received``. Returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum, frame) -> None:
        received.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}


if __name__ == "__main__":
    sys.exit(main())
