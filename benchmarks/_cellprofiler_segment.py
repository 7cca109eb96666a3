"""Run CellProfiler's IdentifyPrimaryObjects on images (executed by benchmarks/segmentation.py
inside a separate environment with ``cellprofiler-library-nightly``; its pins clash with ours).

Settings are those of CellProfiler's ExampleHuman pipeline for nuclei: typical diameter
8-80 px, global minimum cross-entropy threshold with smoothing 1.3488, declumping and
dividing lines by intensity with automatic smoothing and suppression, holes filled, objects
outside the diameter range and touching the border discarded.

Usage: python _cellprofiler_segment.py OUT_DIR IMAGE...   (prints seconds per image as JSON)
"""

import json
import sys
import time
from pathlib import Path

import cellprofiler_library.opts.threshold as ThresholdOpts
import numpy as np
import tifffile
from cellprofiler_library.modules import identifyprimaryobjects
from cellprofiler_library.opts.identifyprimaryobjects import FillHolesMethod, UnclumpMethod, WatershedMethod


def as_unit_float(image: np.ndarray) -> np.ndarray:
    """CellProfiler's scaling of integer images to [0, 1]."""
    if image.dtype.kind in "ui":
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name in sys.argv[2:]:
        path = Path(name)
        image = as_unit_float(np.squeeze(tifffile.imread(path)))
        start = time.perf_counter()
        labels = identifyprimaryobjects(
            image,
            threshold_method=ThresholdOpts.Method.MINIMUM_CROSS_ENTROPY,
            threshold_scope=ThresholdOpts.Scope.GLOBAL,
            threshold_smoothing=1.3488,
            min_size=8,
            max_size=80,
            exclude_size=True,
            exclude_border_objects=True,
            unclump_method=UnclumpMethod.INTENSITY,
            watershed_method=WatershedMethod.INTENSITY,
            fill_holes_method=FillHolesMethod.THRESHOLDING,
            automatic_suppression=True,
            low_res_maxima=True,
        )
        seconds[path.stem] = time.perf_counter() - start
        tifffile.imwrite(out / f"{path.stem}.tif", np.asarray(labels, dtype=np.int32))
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
