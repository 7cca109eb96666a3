"""Plan a tissue run: every check before anything is written.

:func:`plan_tissue` checks the pipeline, the image files (headers and truncation), the pixel
size where areas are needed (and that it agrees with the file's), and the sample sheet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from imaging.config import TissuePipeline, load_pipeline
from imaging.errors import InputError
from imaging.io.readers import check_image_file
from imaging.tissue.image import image_stem, overview_and_tissue, working_scale
from imaging.tissue.slide import Slide

TISSUE_SUFFIXES = (".tif", ".tiff", ".svs", ".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class TissuePlan:
    pipeline: TissuePipeline
    pipeline_path: Path | None
    input_dir: Path
    images: tuple[Path, ...]
    sheet: pd.DataFrame  # image (stem) + sample-sheet columns, one row per image
    sheet_path: Path | None
    unmatched_sheet_rows: tuple[str, ...]

    @property
    def annotation_columns(self) -> list[str]:
        return [c for c in self.sheet.columns if c != "image"]


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Sample sheet: an ``image`` column (file name or stem) and annotations (``sample``,
    ``group``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("sample sheet not found", path=path, fix="check the --samples argument")
    try:
        sheet = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as CSV ({exc})", path=path, fix="save it as comma-separated UTF-8") from None
    sheet.columns = [str(c).strip().lower().replace(" ", "_") for c in sheet.columns]
    if "image" not in sheet.columns:
        raise InputError(
            f"has no 'image' column (columns: {', '.join(sheet.columns)})",
            path=path,
            fix="add a column 'image' with each file's name",
        )
    sheet["image"] = [
        Path(v.strip()).stem if Path(v.strip()).suffix.lower() in TISSUE_SUFFIXES + (".ome",) else v.strip()
        for v in sheet["image"]
    ]
    sheet["image"] = [v[:-4] if v.endswith(".ome") else v for v in sheet["image"]]
    duplicated = sheet["image"][sheet["image"].duplicated()]
    if not duplicated.empty:
        raise InputError(f"image {duplicated.iloc[0]!r} is listed twice", path=path, fix="keep one row per image")
    return sheet


def plan_tissue(
    pipeline: TissuePipeline | str | Path, input_dir: str | Path, *, samples: str | Path | None = None
) -> TissuePlan:
    """Check a tissue run's inputs (see module docstring); writes nothing.

    Parameters
    ----------
    pipeline : TissuePipeline, str or Path
        The validated tissue pipeline (``mode: tissue``), or its YAML file.
    input_dir : str or Path
        A folder of images (searched recursively) or one image.
    samples : str or Path, optional
        Sample sheet CSV (``image`` plus sample and group columns).

    Returns
    -------
    TissuePlan

    Raises
    ------
    InputError
        For anything a user can fix, naming the file and the fix.
    """
    pipeline_path = None
    if not isinstance(pipeline, TissuePipeline):
        pipeline_path = Path(pipeline)
        pipeline = load_pipeline(pipeline_path)
        if not isinstance(pipeline, TissuePipeline):
            raise InputError("is a plate pipeline", path=pipeline_path, fix="give a pipeline with mode: tissue")
    input_dir = Path(input_dir)
    if input_dir.is_file():
        images = [input_dir]
    elif input_dir.is_dir():
        images = sorted(
            p
            for p in input_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in TISSUE_SUFFIXES and not p.name.startswith(".")
        )
    else:
        raise InputError("no such file or folder", path=input_dir, fix="check the INPUT argument")
    if not images:
        raise InputError(
            "no tissue images (.tif, .tiff, .svs, .png, .jpg) found",
            path=input_dir,
            fix="point INPUT at the folder of sections or cores",
        )
    stems = [image_stem(p) for p in images]
    if len(set(stems)) != len(stems):
        raise InputError("two images share a name", path=input_dir, fix="give every image a distinct file name")
    for path in images:
        check_image_file(path)
        check_tissue_image(path, pipeline)
    if samples is not None:
        sheet = read_sample_sheet(samples)
        missing = sorted(set(stems) - set(sheet["image"]))
        if missing:
            raise InputError(
                f"the sample sheet does not list image(s) {', '.join(missing[:10])}",
                path=samples,
                fix="add a row for every image",
            )
        unmatched = tuple(sorted(set(sheet["image"]) - set(stems)))
        sheet = sheet[sheet["image"].isin(stems)]
        sheet = sheet.set_index("image").loc[stems].reset_index()
    else:
        sheet, unmatched = pd.DataFrame({"image": stems}), ()
    settings = pipeline.comparison
    if settings.control_group is not None and samples is not None:
        if settings.group_column not in sheet.columns:
            raise InputError(
                f"has no {settings.group_column!r} column for comparison.control_group",
                path=samples,
                fix="add the column or change comparison.group_column",
            )
        if settings.control_group not in set(sheet[settings.group_column]):
            raise InputError(
                f"no image has {settings.group_column} {settings.control_group!r}",
                path=samples,
                fix="correct comparison.control_group in the pipeline or the sheet",
            )
    return TissuePlan(
        pipeline=pipeline,
        pipeline_path=pipeline_path,
        input_dir=input_dir,
        images=tuple(images),
        sheet=sheet,
        sheet_path=Path(samples) if samples else None,
        unmatched_sheet_rows=unmatched,
    )


PIXEL_SIZE_TOLERANCE = 0.05  # relative disagreement between the pipeline's and the file's pixel size


def check_tissue_image(path: Path, pipeline: TissuePipeline) -> None:
    """What can be known about one image before any work: RGB where cells are scored, no NaN
    or infinite pixels, a pixel size where lesion areas or a nucleus diameter in um need one
    and that agrees with the file's, tissue present."""
    with Slide(path) as slide:
        recorded = slide.pixel_size_um
        if pipeline.cells is not None and not slide.is_rgb:
            raise InputError(
                f"IHC cell scoring needs an RGB brightfield image; this one has shape "
                f"{slide.shapes[0]} without 3 colour channels",
                path=path,
                fix="export the section as RGB, or remove 'cells' from the pipeline",
            )
        bad = slide.non_finite_pixels()  # reads a floating-point image once; others are skipped
        if bad:
            raise InputError(
                f"has {bad} NaN or infinite pixel(s)",
                path=path,
                fix="export the image again as the scanner wrote it (8-bit RGB), without NaN",
            )
        given = pipeline.pixel_size_um
        if given and recorded and abs(recorded - given) > PIXEL_SIZE_TOLERANCE * recorded:
            raise InputError(
                f"the pipeline's pixel_size_um {given:g} contradicts the file's {recorded:g} um/pixel",
                path=path,
                fix="remove pixel_size_um from the pipeline (the file's value is used) or correct it",
            )
        if pipeline.lesions is not None and not (given or recorded):
            raise InputError(
                "the pixel size is unknown and lesion areas need it", path=path, fix="set pixel_size_um in the pipeline"
            )
        if pipeline.cells is not None and pipeline.cells.nucleus_diameter_um is not None and not (given or recorded):
            # without a pixel size lengths would be read as pixels: 8 um as 8 px, every nucleus cut up
            raise InputError(
                f"cells.nucleus_diameter_um ({pipeline.cells.nucleus_diameter_um:g}) needs the pixel size, "
                "and the file records none",
                path=path,
                fix="set pixel_size_um in the pipeline, or nucleus_diameter_um: null to estimate it per tile",
            )
        # the overview is read again by the analysis; from a pyramid level that costs little, and
        # a blank image must be refused before anything is written
        # no minimum piece size here: a field of pale stroma with scattered nuclei is not blank
        _, _, stained = overview_and_tissue(slide, pipeline, working_scale(slide, pipeline).overview_um, physical=False)
        if not stained.any():
            raise InputError(
                "no tissue found (the image is blank glass or too faint to tell from it)",
                path=path,
                fix="remove the image from the input folder, or check it is the stained section",
            )
