"""Tuning saved as a pipeline: only what the reviewer changed, in the original YAML.

The napari plugin's tuning controls start at the pipeline's values (thresholds at the value
the batch used, or the ``auto`` rule's value before a run). Saving writes a pipeline in which
only the controls the reviewer moved differ from the original: an ``auto`` threshold left
alone stays ``auto`` (not frozen into one plate's number), and the original file's comments,
key order and layout are kept (ruamel.yaml's round trip; PyYAML drops comments).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import yaml

from imaging.config import Pipeline, parse_pipeline

TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class TuningChange:
    """One control the reviewer moved: the pipeline key it sets, before and after."""

    key: str
    before: object
    after: object

    def describe(self) -> str:
        return f"{self.key}: {self.before} -> {self.after}"


def _moved(initial: float, current: float) -> bool:
    return abs(float(current) - float(initial)) > TOLERANCE * max(1.0, abs(float(initial)))


def tuning_changes(pipeline: Pipeline, initial: dict[str, float], current: dict[str, float]) -> list[TuningChange]:
    """The changes between the controls as first shown (``initial``) and now (``current``).

    Keys: ``nucleus_diameter_px`` (0 = estimate from each image), ``min_distance_fraction``,
    ``expansion_factor`` and ``threshold:<call name>``."""
    seg, changes = pipeline.segmentation, []
    if _moved(initial["nucleus_diameter_px"], current["nucleus_diameter_px"]):
        before = seg.nucleus_diameter_px or (f"{seg.nucleus_diameter_um} um" if seg.nucleus_diameter_um else "estimate")
        after = float(current["nucleus_diameter_px"]) or "estimate"
        changes.append(TuningChange("segmentation.nucleus_diameter_px", before, after))
    if seg.method == "classical" and _moved(initial["min_distance_fraction"], current["min_distance_fraction"]):
        changes.append(
            TuningChange(
                "segmentation.min_distance_fraction", seg.min_distance_fraction, float(current["min_distance_fraction"])
            )
        )
    if _moved(initial["expansion_factor"], current["expansion_factor"]):
        changes.append(
            TuningChange("cells.expansion_factor", pipeline.cells.expansion_factor, float(current["expansion_factor"]))
        )
    for call in pipeline.calls:
        key = f"threshold:{call.name}"
        if key in current and _moved(initial[key], current[key]):
            changes.append(TuningChange(f"calls[{call.name}].threshold", call.threshold, float(current[key])))
    return changes


def _round_trip():
    from ruamel.yaml import YAML

    handler = YAML()  # round-trip mode: comments, order and flow style survive
    handler.preserve_quotes = True
    handler.width = 100
    return handler


def _section(data, name: str):
    from ruamel.yaml.comments import CommentedMap

    if name not in data or data[name] is None:
        data[name] = CommentedMap()
    return data[name]


def _apply(data, change: TuningChange) -> None:
    if change.key == "segmentation.nucleus_diameter_px":
        seg = _section(data, "segmentation")
        seg.pop("nucleus_diameter_um", None)
        if change.after == "estimate":
            seg.pop("nucleus_diameter_px", None)
        else:
            seg["nucleus_diameter_px"] = change.after
    elif change.key == "segmentation.min_distance_fraction":
        _section(data, "segmentation")["min_distance_fraction"] = change.after
    elif change.key == "cells.expansion_factor":
        cells = _section(data, "cells")
        cells.pop("max_expansion_px", None)
        cells.pop("max_expansion_um", None)
        cells["expansion_factor"] = change.after
    else:  # calls[<name>].threshold
        name = change.key[len("calls[") : -len("].threshold")]
        entry = next(c for c in data["calls"] if c["name"] == name)
        entry["threshold"] = change.after


def tuned_pipeline(pipeline: Pipeline, changes: list[TuningChange]) -> Pipeline:
    """``pipeline`` with ``changes`` applied, validated: what the plugin's Apply measures with,
    by the rule :func:`tuned_pipeline_text` saves (the controls not moved stay as they are)."""
    data = pipeline.model_dump(mode="json")
    for change in changes:
        _apply(data, change)
    return parse_pipeline(data, source="tuned pipeline")


def tuned_pipeline_text(pipeline: Pipeline, changes: list[TuningChange], *, original: str | Path | None = None) -> str:
    """The pipeline YAML with ``changes`` applied: the ``original`` file's text (comments and
    order kept) when there is one, else the pipeline written out. The result is validated."""
    from ruamel.yaml.util import load_yaml_guess_indent

    text = (
        Path(original).read_text(encoding="utf-8")
        if original is not None and Path(original).is_file()
        else pipeline.to_yaml()
    )
    # keep the file's own indentation: ruamel guesses a sequence item's indent and its dash's offset
    _, sequence, offset = load_yaml_guess_indent(text)
    sequence, offset = sequence or 2, offset or 0
    handler = _round_trip()
    handler.indent(mapping=sequence - offset if sequence > offset else sequence, sequence=sequence, offset=offset)
    data = handler.load(text)
    for change in changes:
        _apply(data, change)
    stream = io.StringIO()
    handler.dump(data, stream)
    text = stream.getvalue()
    parse_pipeline(yaml.safe_load(text), source="tuned pipeline")  # what imaging run will read
    return text
