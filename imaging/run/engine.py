"""The run engine: one flow for every assay (plates: :mod:`imaging.plate.assay`; tissue:
:mod:`imaging.tissue.assay`).

An assay's planner has already checked everything before the engine starts (a plan writes
nothing). The engine then

1. holds the output folder (:func:`imaging.io.run_folder.claimed`), refusing a folder that
   holds another assay's run (:func:`imaging.io.run_folder.check_same_assay`), and reads the
   reviewer's curation log (a damaged one stops the run before any work);
2. **calibrates**: run-wide quantities every unit needs (a plate's X-gal vector and
   flat-fields, the lesion threshold of a set of sections);
3. **computes units** on workers (:mod:`imaging.run.workers`: this process, local processes or
   a Dask cluster): fields for plates; images, or parts of a large image's tiles, for tissue
   (then a finishing unit per such image assembles its parts). Each unit carries the fingerprint
   of everything its result depends on (:func:`imaging.run.record.content_fingerprint`), so a
   stored result with the same fingerprint is reused and a killed run resumes;
4. **stores** each result in this process as it arrives, so an interruption loses only the
   units in flight;
5. **assembles** the tables from the stored results (curation applied), writes ``run.json``
   (:func:`imaging.run.record.run_record` plus what the assay records), and **finishes**:
   the report (``RunOptions.report``; plates: :func:`imaging.report.build_report`, tissue:
   :func:`imaging.report.tissue.build_tissue_report`), so every assay's report is built at
   the same step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from imaging import curation as curation_log
from imaging.io.run_folder import check_same_assay, claimed
from imaging.io.writers import write_json
from imaging.run.record import run_record
from imaging.run.workers import run_tasks


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is executed (recorded in ``run.json`` under ``options``)."""

    workers: int = 1
    scheduler: str | None = None  # None: local processes; 'local' or an address: Dask
    command: list[str] | None = None
    report: bool = True  # build the report once the tables and run.json are written


@dataclasses.dataclass(frozen=True)
class Assembled:
    """What an assay's assembly produced: its entries of ``run.json`` and its tables."""

    record: dict
    tables: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """A finished run: where it is, its record, and the assay's tables (for the CLI's summary)."""

    out_dir: Path
    record: dict
    tables: dict


class Assay(Protocol):
    """One kind of run, as the engine drives it. ``compute`` must be a picklable top-level
    function (it runs on workers); everything else runs in this process."""

    pipeline: Any  # the validated pipeline model: recorded, and compared with the folder's
    pipeline_path: Path | None
    compute: Callable[[Any], dict]

    def calibrate(self, out_dir: Path, options: RunOptions) -> Any:
        """Run-wide quantities, before any unit (may run tasks of its own on the workers)."""

    def units(self, out_dir: Path, calibration: Any) -> list:
        """The tasks for :attr:`compute`, each with what it needs to know whether its stored
        result is still valid."""

    def finishing_units(self, out_dir: Path, calibration: Any) -> list:
        """Tasks that run after every unit is stored and assemble several units' results (an
        image scored in parts); usually none."""

    def unit_key(self, task) -> str:
        """A unique name of a task (Dask's key)."""

    def store(self, result: dict, out_dir: Path, stored: list[dict], n_units: int) -> dict:
        """Keep one unit's result (``stored``: the summaries kept so far); returns its summary."""

    def assemble(self, summaries: list[dict], out_dir: Path, curation, calibration: Any) -> Assembled:
        """The run's tables from every unit's summary, and the assay's entries of ``run.json``."""

    def options(self, options: RunOptions) -> dict:
        """The ``options`` entry of ``run.json``."""

    def finish(self, out_dir: Path, options: RunOptions) -> None:
        """After ``run.json`` is written: the report, when ``options.report``."""


def run_assay(
    assay: Assay,
    out_dir: str | Path,
    options: RunOptions = RunOptions(),
    *,
    on_unit: Callable[[dict], None] | None = None,
) -> RunOutcome:
    """Run ``assay`` into ``out_dir`` (see module docstring).

    Parameters
    ----------
    assay : Assay
        The plate or tissue assay, holding its checked plan.
    out_dir : str or Path
        The run folder (created; a folder of another assay's run is refused).
    options : RunOptions
        Workers, scheduler and the command line to record.
    on_unit : callable, optional
        Called in this process with each unit's summary as it is stored (progress).

    Returns
    -------
    RunOutcome
        The folder, the record written to ``run.json`` and the assay's tables.
    """
    out_dir = Path(out_dir)
    check_same_assay(out_dir, assay.pipeline.model_dump(mode="json"))
    with claimed(out_dir, command=options.command):
        started = dt.datetime.now(dt.timezone.utc)
        curation = curation_log.load(out_dir)
        calibration = assay.calibrate(out_dir, options)
        tasks = assay.units(out_dir, calibration)
        summaries: list[dict] = []

        def store(result: dict) -> None:  # in this process, as each unit's result arrives
            summary = assay.store(result, out_dir, summaries, len(tasks))
            summaries.append(summary)
            if on_unit is not None:
                on_unit(summary)

        def run(round_tasks: list) -> None:
            run_tasks(
                assay.compute,
                round_tasks,
                workers=options.workers,
                on_result=store,
                scheduler=options.scheduler,
                key=assay.unit_key,
            )

        run(tasks)
        run(assay.finishing_units(out_dir, calibration))  # after every unit is stored: those that assemble them
        assembled = assay.assemble(summaries, out_dir, curation, calibration)
        record = (
            run_record(assay.pipeline, assay.pipeline_path, started=started, command=options.command)
            | assembled.record
            | {"options": assay.options(options)}
        )
        write_json(record, out_dir / "run.json")
        assay.finish(out_dir, options)
    return RunOutcome(out_dir=out_dir, record=record, tables=assembled.tables)
