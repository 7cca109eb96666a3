"""Pipeline configuration: YAML validated once into frozen, typed objects.

A pipeline file names the channels, how files are named, how nuclei and cells are
segmented, what is measured, how cells are called positive, the field QC rules and the
comparison settings. Unknown keys and bad values are errors that name the key and say
what is allowed. See ``pipelines/*.yaml`` and the README for complete examples.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imaging.errors import InputError

SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class _Frozen(BaseModel):
    # .nan and .inf are valid YAML floats but never a valid setting (a .nan threshold once wrote
    # tables with every call empty)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must be lower-case letters, digits and underscores, "
            "starting with a letter (it becomes a column prefix)"
        )
    return value


class ChannelSpec(_Frozen):
    """One channel: its id in the file names (or index in a container), or its name in a
    container's metadata, and what kind of image it is."""

    id: str | None = Field(
        default=None,
        description="channel id as written in the file names (w1 -> '1', "
        "ch2 -> '2'); in a container file (ND2, CZI, LIF, OME) its 1-based index",
    )
    name: str | None = Field(default=None, description="channel name in a container's metadata (DAPI)")
    kind: Literal["fluorescence", "brightfield"] = "fluorescence"

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> str | None:
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _id_or_name(self) -> ChannelSpec:
        if self.id is None and self.name is None:
            raise ValueError("give the channel an id (w1 -> 1) or, for container files, a name (DAPI)")
        return self


class Naming(_Frozen):
    """How image files are named."""

    preset: Literal["auto", "imagexpress", "operetta", "regex"] = "auto"
    pattern: str | None = None
    plane: int | None = Field(default=None, ge=1, description="Z plane to use (1-based)")
    # container files (ND2, CZI, LIF, OME-TIFF, OME-Zarr): see imaging.io.containers
    scenes: str | None = Field(
        default=None,
        description="regex with groups well (or row, column) and site, searched in '<file stem>/<scene name>'",
    )
    z: Literal["max", "best_focus"] = Field(default="max", description="Z stacks without naming.plane")
    timepoint: int | Literal["all"] | None = Field(
        default=None,
        description="time series: one time point (1-based), or 'all' (every time point a field, "
        "a timepoint column in every table, comparisons per time point)",
    )

    @field_validator("timepoint", mode="before")
    @classmethod
    def _one_or_all_timepoints(cls, value):
        if value is None or value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("naming.timepoint is a 1-based time point (1 is the first) or 'all'")

    @property
    def every_timepoint(self) -> bool:
        return self.timepoint == "all"


class ClassicalSegmentation(_Frozen):
    """Classical nuclei segmentation (scale estimated from the image when no diameter is given)."""

    method: Literal["classical"] = "classical"
    channel: str
    nucleus_diameter_um: float | None = Field(default=None, gt=0)
    nucleus_diameter_px: float | None = Field(default=None, gt=0)
    flatten_background: bool = True
    min_distance_fraction: float = Field(default=0.4, gt=0, le=2)
    min_area_fraction: float = Field(default=0.1, ge=0, le=1)


class CellposeSegmentation(_Frozen):
    """Cellpose nuclei segmentation (optional extra: ``pip install .[cellpose]``)."""

    method: Literal["cellpose"]
    channel: str
    model: str | None = Field(
        default=None,
        description="weights file, or a model name in cellpose's "
        "model folder (default: cpsam_v2 on cellpose 4, nuclei on cellpose 3)",
    )
    nucleus_diameter_um: float | None = Field(default=None, gt=0)
    nucleus_diameter_px: float | None = Field(default=None, gt=0)
    flow_threshold: float = Field(default=0.4, ge=0)
    cellprob_threshold: float = 0.0
    gpu: Literal["auto"] | bool = "auto"


Segmentation = Annotated[ClassicalSegmentation | CellposeSegmentation, Field(discriminator="method")]


class Cells(_Frozen):
    """Whole cells from nuclei."""

    method: Literal["expand", "watershed"] = "expand"
    expansion_factor: float = Field(
        default=1.0,
        ge=0,
        description="reach beyond the nucleus, in typical nucleus radii (when no absolute reach is given)",
    )
    max_expansion_um: float | None = Field(default=None, ge=0)
    max_expansion_px: float | None = Field(default=None, ge=0)
    cytoplasm_channel: str | None = None


class IntensityMeasure(_Frozen):
    """Compartment intensities of one fluorescence channel."""

    channel: str
    prefix: str | None = None
    background: Literal["local", "none"] | float = "local"

    @property
    def column_prefix(self) -> str:
        return self.prefix or self.channel


class SabgalMeasure(_Frozen):
    """SA-beta-gal (X-gal) optical density from a brightfield channel."""

    channel: str
    stain_vector: Literal["default", "estimate"] | tuple[float, float, float] = "default"
    stained_pixel_od: Literal["auto"] | float = "auto"

    @field_validator("stain_vector")
    @classmethod
    def _positive_vector(cls, value):
        if isinstance(value, tuple) and (min(value) < 0 or max(value) <= 0):
            raise ValueError("a stain vector needs non-negative R, G, B optical densities, not all 0")
        return value


class Measure(_Frozen):
    """What to measure per cell (morphology is always measured)."""

    intensity: list[IntensityMeasure] = []
    sabgal: SabgalMeasure | None = None


class Call(_Frozen):
    """A per-cell positive/negative call on one measured column."""

    name: str
    column: str
    threshold: Literal["auto"] | float = "auto"

    @field_validator("name")
    @classmethod
    def _snake(cls, value: str) -> str:
        return _check_name(value, "call name")


class IlluminationFiles(_Frozen):
    """A channel's flat-field file (and optional dark-field): TIFF/PNG, or CellProfiler's
    illumination function as ``.npy`` or ``.mat``; paths relative to the pipeline file."""

    flat: str
    dark: str | None = None


class Illumination(_Frozen):
    """Flat-field correction of fluorescence channels (:mod:`imaging.features.illumination`)."""

    method: Literal["none", "files", "estimate"] = "none"
    channels: list[str] | None = Field(
        default=None, description="estimate: the channels to correct (default: every fluorescence channel)"
    )
    files: dict[str, IlluminationFiles] = Field(
        default={}, description="files: channel -> flat-field file, or {flat: file, dark: file}"
    )

    @field_validator("files", mode="before")
    @classmethod
    def _path_alone(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"flat": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _method_needs(self) -> Illumination:
        if self.method == "files" and not self.files:
            raise ValueError("illumination.method 'files' needs illumination.files (channel: flat-field file)")
        if self.method != "files" and self.files:
            raise ValueError(f"illumination.files is only read with method 'files' (method is {self.method!r})")
        if self.method == "none" and self.channels is not None:
            raise ValueError("illumination.channels needs method 'estimate'")
        return self

    def corrected_channels(self, channels: dict[str, ChannelSpec]) -> list[str]:
        """The channels this setting corrects."""
        if self.method == "files":
            return list(self.files)
        if self.method == "estimate":
            return (
                self.channels
                if self.channels is not None
                else [name for name, spec in channels.items() if spec.kind == "fluorescence"]
            )
        return []


class ReporterGate(_Frozen):
    """Cells whose reporter level (``column``) is at or below ``threshold`` do not express the
    reporter: they stay in cells.csv with ``reporter_expressed`` False and are left out of
    field and well readouts (their ratios are noise around 1)."""

    column: str
    threshold: Literal["auto"] | float = "auto"


class QC(_Frozen):
    """Field quality control."""

    channel: str | None = Field(
        default=None, description="channel whose focus is measured (default: the segmentation channel)"
    )
    max_relative_blur: float = Field(default=1.3, gt=1)
    max_saturated_fraction: float = Field(default=0.01, ge=0, le=1)
    max_saturated_fraction_brightfield: float = Field(default=0.5, ge=0, le=1)
    min_cells: int = Field(default=0, ge=0)
    exclude_failed: bool = True
    # on by default, as CellProfiler discards border objects by default: their areas and
    # intensities are cut. The cost is precision (25 % of the cells of the 256 px sample
    # fields, 5-10 % of a 2048 px field's)
    exclude_border_cells: bool = Field(
        default=True,
        description="leave cells touching the image edge out of "
        "field and well readouts (they stay in cells.csv, touches_border True)",
    )
    reporter_gate: ReporterGate | None = None


class Comparison(_Frozen):
    """Genotype-vs-control and drug-vs-vehicle comparison settings."""

    control_genotype: str | None = None
    vehicle_treatment: str | None = None
    genotype_column: str = "genotype"
    treatment_column: str = "treatment"
    test: Literal["welch", "mann-whitney"] = "welch"
    readouts: list[str] = []


class Output(_Frozen):
    """How the per-plate tables are written."""

    format: Literal["csv", "parquet", "both"] = Field(
        default="csv",
        description="cells, fields and wells tables as CSV, Parquet (pyarrow) or both; "
        "fields.csv and wells.csv are always written too (small, read back by reports and review)",
    )
    labels: Literal["tiff", "ome-zarr", "both"] = Field(
        default="tiff",
        description="label images (unless --no-save-labels) as zlib TIFFs, OME-Zarr label "
        "images (NGFF 0.4) or both, in <plate>/labels/",
    )


class Pipeline(_Frozen):
    """A whole assay pipeline (see module docstring)."""

    schema_version: Literal[1]
    name: str
    description: str = ""
    channels: dict[str, ChannelSpec]
    naming: Naming = Naming()
    pixel_size_um: float | None = Field(default=None, gt=0)
    # largest field accepted (pixels per channel): a header claiming more is refused at planning,
    # so a corrupt or hostile file cannot make a worker allocate gigabytes (default 16384 x 8192)
    max_field_pixels: int = Field(default=2**27, ge=1, le=2**31)
    segmentation: Segmentation
    illumination: Illumination = Illumination()
    cells: Cells = Cells()
    measure: Measure = Measure()
    calls: list[Call] = []
    qc: QC = QC()
    comparison: Comparison = Comparison()
    output: Output = Output()

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, ChannelSpec]) -> dict[str, ChannelSpec]:
        if not value:
            raise ValueError("name at least one channel")
        for name in value:
            _check_name(name, "channel name")
        for what in ("id", "name"):
            chosen = [getattr(spec, what) for spec in value.values() if getattr(spec, what) is not None]
            if len(set(chosen)) != len(chosen):
                raise ValueError(f"two channels share a{'n' if what == 'id' else ''} {what} ({chosen})")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Pipeline:
        def need(channel: str | None, where: str, kind: str | None = None) -> None:
            if channel is None:
                return
            if channel not in self.channels:
                raise ValueError(
                    f"{where} names channel {channel!r}, which is not under 'channels' "
                    f"(channels: {', '.join(self.channels)})"
                )
            if kind and self.channels[channel].kind != kind:
                raise ValueError(f"{where} needs a {kind} channel, but {channel!r} is {self.channels[channel].kind}")

        need(self.segmentation.channel, "segmentation.channel", "fluorescence")
        need(self.cells.cytoplasm_channel, "cells.cytoplasm_channel", "fluorescence")
        if self.cells.method == "watershed" and self.cells.cytoplasm_channel is None:
            raise ValueError("cells.method 'watershed' needs cells.cytoplasm_channel")
        for i, spec in enumerate(self.measure.intensity):
            need(spec.channel, f"measure.intensity[{i}].channel", "fluorescence")
            _check_name(spec.column_prefix, f"measure.intensity[{i}] prefix")
        if self.measure.sabgal:
            need(self.measure.sabgal.channel, "measure.sabgal.channel", "brightfield")
        need(self.qc.channel, "qc.channel")
        for channel in self.illumination.corrected_channels(self.channels):
            need(channel, "illumination", "fluorescence")
        if self.naming.preset == "regex" and not self.naming.pattern:
            raise ValueError("naming.preset 'regex' needs naming.pattern")
        produced = set(self.cell_columns())
        names = [call.name for call in self.calls]
        if len(set(names)) != len(names):
            raise ValueError(f"two calls share a name ({names})")
        for call in self.calls:
            if call.column not in produced:
                raise ValueError(
                    f"call {call.name!r} uses column {call.column!r}, which this "
                    f"pipeline does not measure (measured: {', '.join(sorted(produced))})"
                )
        gate = self.qc.reporter_gate
        if gate is not None and gate.column not in produced:
            raise ValueError(
                f"qc.reporter_gate uses column {gate.column!r}, which this pipeline does not "
                f"measure (measured: {', '.join(sorted(produced))})"
            )
        return self

    # ---- derived facts, used by the pipeline and the docs --------------------------------
    @property
    def focus_channel(self) -> str:
        return self.qc.channel or self.segmentation.channel

    def cell_columns(self) -> list[str]:
        """Measured per-cell columns (before calls), in output order."""
        from imaging.features.intensity import COMPARTMENT_SUFFIXES
        from imaging.features.morphology import MORPHOLOGY_COLUMNS
        from imaging.features.sabgal import SABGAL_COLUMNS

        columns = list(MORPHOLOGY_COLUMNS)
        if self.pixel_size_um:
            columns += ["nucleus_area_um2", "cell_area_um2"]
        for spec in self.measure.intensity:
            columns += [f"{spec.column_prefix}_{suffix}" for suffix in COMPARTMENT_SUFFIXES]
        if self.measure.sabgal:
            columns += SABGAL_COLUMNS[1:]
        return columns

    def to_yaml(self) -> str:
        """YAML text that :func:`load_pipeline` reads back into an equal pipeline."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)


# ---- tissue pipelines -------------------------------------------------------------------------
Vector3 = tuple[float, float, float]


UNIT_TOLERANCE = 0.02  # a stain vector's length may differ from 1 by this much (rounded values)


class Stains(_Frozen):
    """Brightfield stains for colour deconvolution."""

    preset: Literal["hdab", "he"] = "hdab"
    # default: Ruifrok & Johnston; estimate: Macenko per image; auto: the defaults unless they
    # fit the image badly (imaging.stains.vectors.choose_vectors); or unit vectors per stain
    vectors: Literal["default", "estimate", "auto"] | dict[str, Vector3] = "auto"

    @property
    def names(self) -> tuple[str, str]:
        return ("hematoxylin", "dab") if self.preset == "hdab" else ("hematoxylin", "eosin")

    @field_validator("vectors")
    @classmethod
    def _known_stains(cls, value):
        if isinstance(value, dict):
            unknown = set(value) - {"hematoxylin", "dab", "eosin"}
            if unknown:
                raise ValueError(f"unknown stain(s) {sorted(unknown)}; stains are hematoxylin, dab, eosin")
            for name, vector in value.items():
                vector = np.asarray(vector, dtype=float)
                if not np.all(np.isfinite(vector)) or np.any(vector < 0):
                    raise ValueError(
                        f"{name} vector {[float(x) for x in vector]} must be three finite, non-negative OD values"
                    )
                norm = float(np.linalg.norm(vector))
                if abs(norm - 1.0) > UNIT_TOLERANCE:
                    raise ValueError(
                        f"{name} vector {[float(x) for x in vector]} has length {norm:.3f}; give a unit vector "
                        f"(divide each value by {norm:.3f})"
                    )
        return value


class TissueMask(_Frozen):
    """Where the tissue is, found on a low-resolution overview."""

    resolution_um: float = Field(default=8.0, gt=0, description="pixel size of the overview")
    min_area_um2: float = Field(default=20000.0, ge=0, description="smallest tissue piece kept")


class CellScoring(_Frozen):
    """IHC positive-cell detection (QuPath-style): nuclei from haematoxylin, DAB per cell."""

    nucleus_diameter_um: float | None = Field(default=None, gt=0, le=100, description="null: estimated per tile")
    cell_expansion_um: float = Field(default=3.0, ge=0, le=50)
    # where each cell's DAB is measured: nucleus (Ki67, nuclear pJNK), cytoplasm, membrane
    # (MHCII, HER2: the cell's outer band) or the whole cell
    compartment: Literal["nucleus", "cytoplasm", "cell", "membrane"] = "nucleus"
    # channel nuclei are found on: auto = haematoxylin + DAB for the nucleus compartment,
    # haematoxylin alone for the others (DAB there outlines cells, not nuclei)
    detection: Literal["auto", "nuclear_od", "hematoxylin"] = "auto"
    thresholds: tuple[float, float, float] = (0.2, 0.4, 0.6)
    tile_px: int = Field(default=2048, ge=256, le=16384)
    # spindle-shaped nuclei (fibroblasts, endothelium) are not tumour cells: with a limit, nuclei
    # more elongated than it (major / minor axis) stay in cells.csv (counted false) and are left
    # out of percent positive, H-score, Allred and densities
    max_nucleus_elongation: float | None = Field(default=None, ge=1)

    @field_validator("thresholds")
    @classmethod
    def _increasing(cls, value):
        if not all(np.isfinite(value)):
            raise ValueError("thresholds must be finite numbers (OD units)")
        if not value[0] < value[1] < value[2]:
            raise ValueError("thresholds for 1+, 2+, 3+ must increase")
        return value


class LesionRule(_Frozen):
    """Metastatic lesions: a stain's optical density or a channel's intensity, thresholded."""

    source: Literal["hematoxylin", "dab", "eosin", "intensity", "red", "green", "blue"] = "hematoxylin"
    resolution_um: float = Field(default=4.0, gt=0)
    threshold: Literal["auto"] | float = "auto"
    smoothing_um: float = Field(default=8.0, ge=0)
    min_area_um2: float = Field(default=5000.0, ge=0)
    fill_holes: bool = True


class TissueComparison(_Frozen):
    """Group comparison of animals or patients (small n: exact rank test by default)."""

    control_group: str | None = None
    group_column: str = "group"
    sample_column: str = "sample"
    test: Literal["mann-whitney", "welch"] = "mann-whitney"


class TissuePipeline(_Frozen):
    """A tissue pipeline: IHC cell scoring and/or metastatic burden on sections or cores."""

    schema_version: Literal[1]
    mode: Literal["tissue"]
    name: str
    description: str = ""
    pixel_size_um: float | None = Field(default=None, gt=0, description="else read from the file")
    stains: Stains = Stains()
    tissue: TissueMask = TissueMask()
    cells: CellScoring | None = None
    lesions: LesionRule | None = None
    comparison: TissueComparison = TissueComparison()

    @model_validator(mode="after")
    def _something_to_do(self) -> TissuePipeline:
        if self.cells is None and self.lesions is None:
            raise ValueError("a tissue pipeline needs 'cells' (IHC scoring), 'lesions' (burden) or both")
        if self.cells is not None and self.stains.preset != "hdab":
            raise ValueError("'cells' (IHC scoring) needs stains.preset: hdab (haematoxylin + DAB)")
        if self.lesions and self.lesions.source in ("dab", "eosin") and self.lesions.source not in self.stains.names:
            raise ValueError(
                f"lesions.source {self.lesions.source!r} is not a stain of stains.preset "
                f"{self.stains.preset!r} ({', '.join(self.stains.names)})"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


# ---- loading -------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would silently keep the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _model_at(path: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model class found by following a validation error's location."""
    current: Any = root
    for part in path:
        origin = typing.get_origin(current)
        if origin is Annotated:
            current = typing.get_args(current)[0]
            origin = typing.get_origin(current)
        if origin in (Union, types.UnionType):  # Union[A, B] and A | B
            options = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            match = [
                a
                for a in options
                if a.model_fields.get("method") is not None
                and typing.get_args(a.model_fields["method"].annotation) == (part,)
            ]
            if match:
                current = match[0]
                continue
            current = options[0] if len(options) == 1 else None
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return current
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _shown_location(location: tuple) -> str:
    """Dotted key path as the user wrote it (drops pydantic's union tag after 'segmentation')."""
    parts = list(location)
    if len(parts) > 1 and parts[0] == "segmentation" and parts[1] in ("classical", "cellpose"):
        del parts[1]
    return ".".join(str(p) for p in parts) or "(top level)"


def _format_error(error: dict, root: type[BaseModel]) -> str:
    location = tuple(error["loc"])
    shown = _shown_location(location)
    if error["type"] == "extra_forbidden":
        parent = _model_at(location[:-1], root)
        allowed = ", ".join(parent.model_fields) if parent else "see the README"
        return f"unknown key '{shown}'; allowed here: {allowed}"
    if error["type"] == "missing":
        return f"missing key '{shown}'"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if value is None or isinstance(value, (dict, list)):
        return f"'{shown}': {message}"
    return f"'{shown}': {message} (got {value!r})"


def parse_pipeline(data: Any, *, source: str | Path = "<pipeline>") -> Pipeline | TissuePipeline:
    """Validate a mapping (parsed YAML) into a :class:`Pipeline` (plates) or, with
    ``mode: tissue``, a :class:`TissuePipeline`; InputError on problems."""
    if not isinstance(data, dict):
        raise InputError(
            "a pipeline must be a YAML mapping of keys to values",
            path=source,
            fix="start from one of the files in pipelines/",
        )
    if "schema_version" not in data:
        raise InputError(
            "missing key 'schema_version'", path=source, fix=f"add 'schema_version: {SCHEMA_VERSION}' at the top"
        )
    if data["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"schema_version {data['schema_version']!r} is not supported",
            path=source,
            fix=f"this version of imaging reads schema_version {SCHEMA_VERSION}",
        )
    model = TissuePipeline if data.get("mode") == "tissue" else Pipeline
    if data.get("mode") not in (None, "plate", "tissue"):
        raise InputError(
            f"'mode': {data.get('mode')!r} is not a mode",
            path=source,
            fix="use mode: plate (the default) or mode: tissue",
        )
    if model is Pipeline:
        data = {k: v for k, v in data.items() if k != "mode"}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_format_error(e, model) for e in exc.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(
            "; ".join(problems[:3]) + more,
            path=source,
            fix="correct the key(s) named; see the README's pipeline reference",
        ) from None


def load_pipeline(path: str | Path) -> Pipeline | TissuePipeline:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "pipeline file not found", path=path, fix="give a path to a .yaml file, e.g. pipelines/sabgal.yaml"
        )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(
            f"is not valid YAML ({where}{problem})", path=path, fix="check indentation and colons at that line"
        ) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=path, fix="save the pipeline as UTF-8 text") from None
    if data is None:
        raise InputError("pipeline file is empty", path=path, fix="start from one of the files in pipelines/")
    return parse_pipeline(data, source=path)
