"""numpydoc on the library a notebook calls: every public function of the analysis modules and
of the review models (plate review, curation, viewer layers) documents each of its parameters,
by the names the signature uses, and what it returns (numpydoc's own validator). Plumbing (CLI,
run engine, assay tables, report) keeps one-line docstrings."""

from __future__ import annotations

import importlib
import inspect

from numpydoc import validate as numpydoc_validate

ANALYSIS_MODULES = [
    "imaging.arrays",
    "imaging.distance",
    "imaging.label_stats",
    "imaging.metrics",
    "imaging.stats",
    "imaging.evaluate_points",
    "imaging.segment",
    "imaging.segment.classical",
    "imaging.segment.cells",
    "imaging.segment.scale",
    "imaging.features.background",
    "imaging.features.illumination",
    "imaging.features.intensity",
    "imaging.features.morphology",
    "imaging.features.qc",
    "imaging.features.sabgal",
    "imaging.features.thresholds",
    "imaging.stains.optical",
    "imaging.stains.vectors",
    "imaging.stains.white",
    "imaging.tissue.mask",
    "imaging.tissue.nuclei",
    "imaging.tissue.ihc",
    "imaging.tissue.burden",
    "imaging.filters",
    "imaging.tiles",
    # the review models behind the napari docks
    "imaging.curation",
    "imaging.plate.review",
    "imaging.plate.layers",
    "imaging.tissue.curation",
    "imaging.tissue.layers",
]
# GL08 no docstring; PR01 a parameter undocumented; PR02 a documented one the signature lacks;
# PR03 out of order; PR06/PR07 a parameter without type or description; RT01 no Returns section
CHECKS = {"GL08", "PR01", "PR02", "PR03", "PR06", "PR07", "RT01"}


def public_callables():
    for module_name in ANALYSIS_MODULES:
        module = importlib.import_module(module_name)
        for name, member in vars(module).items():
            if name.startswith("_") or getattr(member, "__module__", None) != module_name:
                continue
            if inspect.isfunction(member):
                yield f"{module_name}.{name}", member
            elif inspect.isclass(member):
                for method_name, method in vars(member).items():
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        yield f"{module_name}.{name}.{method_name}", method


def takes_arguments(function) -> bool:
    return any(p.name not in ("self", "cls") for p in inspect.signature(function).parameters.values())


def test_every_public_function_of_the_analysis_api_has_numpydoc_parameters_and_returns():
    problems = []
    checked = 0
    for qualified, function in public_callables():
        if not takes_arguments(function):
            continue
        checked += 1
        errors = [f"{code} {message}" for code, message in numpydoc_validate.validate(qualified)["errors"]]
        errors = [e for e in errors if e.split()[0] in CHECKS]
        if errors:
            problems.append(f"{qualified}: {'; '.join(errors)}")
    assert checked > 100
    assert not problems, "\n".join(problems)
