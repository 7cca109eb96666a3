"""Segment image files to label files (the work behind ``imaging segment``)."""

from __future__ import annotations

import dataclasses

from imaging.io.readers import as_grayscale, read_raw
from imaging.io.writers import write_labels
from imaging.segment import segment_nuclei


@dataclasses.dataclass(frozen=True)
class SegmentTask:
    """One image to segment (picklable)."""

    path: str
    out_path: str
    options: dict


def segment_file(task: SegmentTask) -> dict:
    """Segment one 2-D grayscale image file and write its labels atomically."""
    image = as_grayscale(read_raw(task.path), path=task.path)
    labels, info = segment_nuclei(image, **task.options)
    write_labels(labels, task.out_path)
    return {"path": task.path, "out_path": task.out_path, **info}
