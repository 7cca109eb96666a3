"""Cellpose nuclei segmentation (optional: ``pip install .[cellpose]``).

Works with the cellpose 4 API (``CellposeModel.eval`` on a 2-D image, cpsam-family
models) and with cellpose 3 (``channels=[0, 0]``, named models such as ``nuclei``).

Nothing is ever downloaded. A model is a file: either the path given, or a file of that
name in cellpose's model folder (``~/.cellpose/models``, or ``$CELLPOSE_LOCAL_MODELS_PATH``).
A name with no file behind it is an :class:`~imaging.errors.InputError` that says where to
put the weights; cellpose's own loader, which would fetch them, is only ever handed a path.

Scale: cellpose models expect objects of about 30 px; the image is rescaled by
``30 / diameter``. Without a diameter from the pipeline, the nucleus size is estimated
from the image by the same estimator as the classical backend, so both backends agree on
scale without per-plate tuning. The GPU is used when torch sees one (``gpu: auto``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from imaging.errors import InputError

log = logging.getLogger(__name__)

WEIGHTS_URL = "https://huggingface.co/mouseland/cellpose-sam/resolve/main/"
WEIGHTS_URL_V3 = "https://www.cellpose.org/models/"
DEFAULT_MODEL = {4: "cpsam_v2", 3: "nuclei"}
MIN_OBJECT_PX = 15


def _cellpose():
    try:
        import cellpose
        from cellpose import models
    except ImportError:
        raise InputError(
            "segmentation method 'cellpose' needs the cellpose package",
            fix="pip install '.[cellpose]' (CPU: install torch first, see the README)",
        ) from None
    return cellpose, models


def cellpose_major_version() -> int:
    """Major version of the installed cellpose (3 or 4)."""
    cellpose, _ = _cellpose()
    version = getattr(cellpose, "version", None)
    if version is None:
        from importlib.metadata import version as package_version

        version = package_version("cellpose")
    return int(str(version).split(".")[0])


def model_folder() -> Path:
    """Where cellpose keeps its weights (respects ``CELLPOSE_LOCAL_MODELS_PATH``)."""
    _, models = _cellpose()
    return Path(getattr(models, "MODEL_DIR", Path.home() / ".cellpose" / "models"))


def resolve_model_path(model: str | None) -> Path:
    """The weights file for ``model`` (a path or a name in cellpose's model folder).

    Raises
    ------
    InputError
        No such file: says where to put it. Never downloads.
    """
    name = model or DEFAULT_MODEL.get(cellpose_major_version(), "cpsam_v2")
    given = Path(os.path.expanduser(name))
    if given.is_file():
        return given
    if looks_like_path(name):
        raise InputError(
            f"cellpose model file {given} does not exist",
            fix=f"check the path, or give the name of a model in cellpose's model folder {model_folder()}",
        )
    folder = model_folder()
    file_name = weights_file_name(name, cellpose_major_version())
    for candidate in dict.fromkeys((folder / name, folder / file_name)):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"cellpose model {name!r} is neither a file nor in cellpose's model folder {folder}; "
        "imaging never downloads weights",
        fix=f"on a machine with internet, download {weights_url(file_name, cellpose_major_version())} "
        f"(or your own trained model) and copy it to {folder / file_name}, or set segmentation.model "
        "to the file's path",
    )


def looks_like_path(model: str) -> bool:
    """A model given as a path (a folder separator or a file suffix), not a name for cellpose's folder."""
    return os.sep in model or "/" in model or Path(model).suffix != ""


def weights_file_name(name: str, major_version: int) -> str:
    """The file cellpose keeps a named model's weights in: cellpose 3 calls its built-in
    cyto, cyto2 and nuclei models ``<name>torch_0``; every other name is the file name itself."""
    if major_version < 4 and name in ("cyto", "cyto2", "nuclei"):
        return f"{name}torch_0"
    return name


def weights_url(file_name: str, major_version: int) -> str:
    """Where cellpose itself would fetch the file from (shown to the user, never fetched here)."""
    return f"{WEIGHTS_URL_V3 if major_version < 4 else WEIGHTS_URL}{file_name}"


def use_gpu(setting: str | bool) -> bool:
    """``'auto'``: the GPU when torch sees one; ``True`` asks for it (CPU, with a warning,
    when there is none); ``False``: the CPU."""
    import torch

    available = torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if setting is True and not available:
        log.warning("gpu: true, but torch sees no GPU; cellpose runs on the CPU")
    return bool(available) if setting in ("auto", True) else False


@functools.lru_cache(maxsize=2)
def load_model(path: str, gpu: bool):
    """A cellpose model for the weights file at ``path`` (cached per process, since loading
    a model costs seconds and each worker segments many fields)."""
    _, models = _cellpose()
    log.info("loading cellpose model %s (gpu=%s)", path, gpu)
    return models.CellposeModel(gpu=gpu, pretrained_model=str(path))


@functools.lru_cache(maxsize=8)
def model_digest(path: str) -> str:
    """SHA-256 of a model file (recorded in the run record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe_model(model: str | None) -> dict:
    """Path, checksum and cellpose version of the model a pipeline names."""
    path = resolve_model_path(model)
    return {
        "backend": "cellpose",
        "cellpose_version": cellpose_major_version(),
        "model": model,
        "model_path": str(path),
        "model_sha256": model_digest(str(path)),
    }


def estimated_diameter(image: np.ndarray) -> float:
    """Nucleus diameter (px) from the classical backend's scale estimator."""
    from imaging.segment.classical import estimate_nucleus_radius

    return 2.0 * estimate_nucleus_radius(image)


def segment_nuclei_cellpose(
    image: np.ndarray,
    *,
    model: str | None = None,
    diameter: float | None = None,
    flow_threshold: float = 0.4,
    cellprob_threshold: float = 0.0,
    gpu: str | bool = "auto",
) -> tuple[np.ndarray, dict]:
    """Segment nuclei in a 2-D image with cellpose.

    Parameters
    ----------
    image : (M, N) ndarray
        Nuclear stain.
    model : str, optional
        Weights file or model name (default: ``cpsam_v2`` on cellpose 4, ``nuclei`` on 3).
    diameter : float, optional
        Typical nucleus diameter in px; estimated from the image when None.
    flow_threshold, cellprob_threshold : float
        Cellpose's own mask-reconstruction settings.
    gpu : 'auto' or bool

    Returns
    -------
    labels : (M, N) int32 ndarray
    info : dict
        ``radius_px`` (half the diameter used), ``diameter_source``, model path.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"cellpose backend needs a 2-D image, got shape {image.shape}")
    path = resolve_model_path(model)
    source = "pipeline" if diameter else "estimated"
    diameter = float(diameter) if diameter else estimated_diameter(image)
    network = load_model(str(path), use_gpu(gpu))
    if cellpose_major_version() >= 4:
        outputs = network.eval(
            image,
            diameter=diameter,
            flow_threshold=flow_threshold,
            cellprob_threshold=cellprob_threshold,
            min_size=MIN_OBJECT_PX,
        )
    else:  # cellpose 3: grayscale is channels [0, 0]
        outputs = network.eval(
            image,
            channels=[0, 0],
            diameter=diameter,
            flow_threshold=flow_threshold,
            cellprob_threshold=cellprob_threshold,
            min_size=MIN_OBJECT_PX,
        )
    masks = np.asarray(outputs[0])
    if masks.shape != image.shape:
        raise RuntimeError(f"cellpose returned masks of shape {masks.shape} for an image of shape {image.shape}")
    return masks.astype(np.int32), {"radius_px": diameter / 2, "diameter_source": source, "model_path": str(path)}
