"""The cellpose adapter, tested honestly without pretrained weights (none can be
downloaded here): the network inside a real ``cellpose.models.CellposeModel`` is replaced
by a small stand-in, and everything around it is cellpose's own code — input conversion,
normalisation, rescaling to 30 px objects, tiling, and the reconstruction of masks from
flows. The stand-in behaves like a network trained at cellpose's scale: it only
recognises objects 20-45 px across in its input, so the test fails if the adapter gets
channels, scale or the returned masks wrong.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import ndimage as ndi

from imaging.errors import InputError
from imaging.metrics import match_scores

if os.environ.get("CI"):
    import cellpose  # noqa: F401  (CI installs the extra: a missing cellpose must fail there)
else:
    pytest.importorskip("cellpose")

import torch  # noqa: E402
from cellpose import dynamics, models  # noqa: E402
from skimage.segmentation import relabel_sequential  # noqa: E402

from imaging.segment import cellpose_backend, segment_nuclei  # noqa: E402

NUCLEUS_RADIUS = 6  # px in the image; cellpose sees 30 px objects only after rescaling by 2.5


def split_round_objects(mask: np.ndarray) -> np.ndarray:
    """Touching round objects apart (distance-transform watershed), as a network would."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    distance = ndi.distance_transform_edt(mask)
    components, _ = ndi.label(mask)
    peaks = peak_local_max(distance, min_distance=8, labels=components, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


class StandInNet(torch.nn.Module):
    """Flows and cell probability of the bright round objects 20-45 px across (touching
    ones split), computed from channel 0 of each tile, in cellpose's output format
    (5 x unit flows, cell-probability logits)."""

    nout = 3  # cellpose 3 reads these from its network
    mkldnn = False

    def __init__(self):
        super().__init__()
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.channels_seen: list[int] = []
        self.signal_outside_channel_0 = 0.0

    def forward(self, tiles):
        self.channels_seen.append(tiles.shape[1])
        images = tiles.detach().cpu().numpy()
        self.signal_outside_channel_0 = max(self.signal_outside_channel_0, float(np.abs(images[:, 1:]).max(initial=0)))
        output = np.zeros((len(images), 3) + images.shape[2:], np.float32)
        for i, tile in enumerate(images):
            labels = split_round_objects(tile[0] > 0.5)
            areas = np.bincount(labels.ravel())
            keep = (areas >= np.pi * 10**2) & (areas <= np.pi * 22.5**2)
            keep[0] = False
            labels, _, _ = relabel_sequential(np.where(keep[labels], labels, 0))  # 1..n, as cellpose needs
            if labels.any():
                flows = dynamics.masks_to_flows_gpu(labels, device=torch.device("cpu"))
                flows = flows[0] if isinstance(flows, tuple) else flows
                output[i, :2] = 5.0 * flows
            output[i, 2] = np.where(labels > 0, 8.0, -8.0)
        return torch.from_numpy(output), torch.zeros((len(images), 256))


CELLPOSE_MAJOR = cellpose_backend.cellpose_major_version()


def stand_in_model() -> models.CellposeModel:
    """A real CellposeModel (its eval, normalisation, rescaling, tiling and mask
    reconstruction) whose weights were never loaded and whose network is the stand-in."""
    model = models.CellposeModel.__new__(models.CellposeModel)  # skips loading weights
    model.device, model.gpu, model.pretrained_model = torch.device("cpu"), False, "stand-in"
    if CELLPOSE_MAJOR >= 4:
        model.backbone = "sam_vitl"
    else:  # what cellpose 3's __init__ would set for a 2-channel grayscale model
        model.backbone, model.mkldnn, model.nchan, model.nclasses = "default", False, 2, 3
        model.diam_mean = model.diam_labels = 30.0
        model.net_ortho, model.net_type = None, "cellpose_default"
    model.net = StandInNet()
    return model


@pytest.fixture()
def field():
    """Nuclei of radius 6 px (some touching pairs) on a dim background, and their truth."""
    rng = np.random.default_rng(0)
    truth = np.zeros((160, 200), np.int32)
    rows, cols = np.mgrid[0:160, 0:200]
    centres = [
        (20, 20),
        (20, 60),
        (20, 71),
        (60, 30),
        (60, 100),
        (100, 150),
        (100, 161),
        (130, 40),
        (130, 90),
        (140, 180),
        (80, 60),
        (40, 140),
    ]
    for k, (r, c) in enumerate(centres, start=1):
        disk = (rows - r) ** 2 + (cols - c) ** 2 <= NUCLEUS_RADIUS**2
        truth[disk & (truth == 0)] = k
    image = 300 + 3000 * ndi.gaussian_filter((truth > 0).astype(float), 0.7) + rng.normal(0, 20, truth.shape)
    return image.astype(np.uint16), truth


@pytest.fixture()
def weights(tmp_path, monkeypatch):
    """A model file on disk and the loader returning the stand-in; downloads forbidden."""
    path = tmp_path / "my_model"
    path.write_bytes(b"stand-in weights")
    model = stand_in_model()
    monkeypatch.setattr(cellpose_backend, "load_model", lambda p, gpu: model)

    def no_download(*args, **kwargs):
        raise AssertionError("cellpose tried to download")

    monkeypatch.setattr(models, "cache_model_path", no_download)
    return path, model


def test_masks_come_back_through_cellpose_reconstruction(field, weights):
    image, truth = field
    path, model = weights
    labels, info = segment_nuclei(image, method="cellpose", model=str(path))
    assert labels.shape == image.shape and labels.dtype == np.int32
    assert info["diameter_source"] == "estimated"
    assert info["radius_px"] == pytest.approx(NUCLEUS_RADIUS, rel=0.3)
    scores = match_scores(truth, labels)
    assert scores.f1 >= 0.95, scores
    # The nuclear stain alone, in channel 0: cellpose 4 gets one channel, cellpose 3 its
    # grayscale pair (stain, empty second channel).
    assert set(model.net.channels_seen) == ({1} if CELLPOSE_MAJOR >= 4 else {2})
    assert model.net.signal_outside_channel_0 == 0.0


def test_wrong_scale_finds_nothing(field, weights):
    image, _ = field
    path, _ = weights
    # Claiming 60 px nuclei shrinks the image 2x instead of enlarging it 2.5x: the network,
    # like a real one, no longer sees nuclei of its size.
    labels, info = segment_nuclei(image, method="cellpose", model=str(path), diameter=60)
    assert info["diameter_source"] == "pipeline" and labels.max() == 0


def test_given_diameter_is_used(field, weights):
    image, truth = field
    path, _ = weights
    labels, info = segment_nuclei(image, method="cellpose", model=str(path), diameter=2 * NUCLEUS_RADIUS)
    assert info["radius_px"] == NUCLEUS_RADIUS
    assert match_scores(truth, labels).f1 >= 0.95


def test_named_model_that_is_not_on_disk_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    monkeypatch.setattr(models, "cache_model_path", lambda *a: pytest.fail("cellpose tried to download"))
    with pytest.raises(InputError) as info:
        cellpose_backend.resolve_model_path("cpsam_v2")
    message = str(info.value)
    assert "never downloads" in message and str(tmp_path / "cpsam_v2") in message
    (tmp_path / "cpsam_v2").write_bytes(b"weights")
    assert cellpose_backend.resolve_model_path("cpsam_v2") == tmp_path / "cpsam_v2"
    if CELLPOSE_MAJOR >= 4:
        assert cellpose_backend.resolve_model_path(None) == tmp_path / "cpsam_v2"  # the cellpose 4 default
    else:  # cellpose 3 names its files <model>torch_0
        (tmp_path / "nucleitorch_0").write_bytes(b"weights")
        assert cellpose_backend.resolve_model_path(None) == tmp_path / "nucleitorch_0"


def test_missing_model_names_the_file_cellpose_would_use(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    with pytest.raises(InputError) as info:
        cellpose_backend.resolve_model_path("nuclei")
    if CELLPOSE_MAJOR >= 4:
        assert str(tmp_path / "nuclei") in str(info.value)
    else:
        assert "https://www.cellpose.org/models/nucleitorch_0" in str(info.value)
        assert str(tmp_path / "nucleitorch_0") in str(info.value)


def test_missing_model_path_is_reported_as_a_path(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    missing = tmp_path / "trained" / "my_nuclei_model.pt"
    with pytest.raises(InputError) as info:
        cellpose_backend.resolve_model_path(str(missing))
    message = str(info.value)
    assert f"file {missing} does not exist" in message and "download" not in message


def test_pipeline_refuses_a_missing_model_before_writing(tmp_path, monkeypatch, samples, pipelines):
    from imaging.config import load_pipeline, parse_pipeline
    from imaging.plate import plan_run

    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "models")
    data = load_pipeline(pipelines / "pjnk.yaml").model_dump(mode="json")
    data["segmentation"] = {"method": "cellpose", "channel": "dapi", "model": "cpsam_v2"}
    with pytest.raises(InputError, match="never downloads"):
        plan_run(parse_pipeline(data), samples / "pjnk_plate" / "images")


def test_real_loader_reads_the_file_it_is_given(tmp_path, monkeypatch):
    """The real loader hands cellpose a path, never a name (a name would be downloaded)."""
    calls = {}

    class Recorder:
        def __init__(self, gpu, pretrained_model):
            calls.update(gpu=gpu, pretrained_model=pretrained_model)

    monkeypatch.setattr(models, "CellposeModel", Recorder)
    cellpose_backend.load_model.cache_clear()
    cellpose_backend.load_model(str(tmp_path / "weights.pt"), False)
    cellpose_backend.load_model.cache_clear()
    assert calls == {"gpu": False, "pretrained_model": str(tmp_path / "weights.pt")}


def test_segment_command_with_cellpose(field, weights, tmp_path, capsys):
    import tifffile

    from imaging.cli import main

    image, truth = field
    path, _ = weights
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    code = main(
        [
            "segment",
            str(tmp_path / "nuclei.tif"),
            "--out",
            str(tmp_path / "out"),
            "--method",
            "cellpose",
            "--model",
            str(path),
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "out" / "nuclei_nuclei.tif")
    assert match_scores(truth, labels).f1 >= 0.95
