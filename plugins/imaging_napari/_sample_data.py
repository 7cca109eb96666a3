"""Sample data: one field of each shipped synthetic plate (read from sample_images/, no network)."""

from __future__ import annotations

from imaging.io.readers import read_channel
from imaging.samples import sample_images_dir


def _field(plate_folder: str, stem: str, channels: list[tuple[str, str, str]]):
    folder = sample_images_dir() / plate_folder / "images"
    layers = []
    for suffix, name, kind in channels:
        image = read_channel(folder / f"{stem}_{suffix}.tif", kind=kind)
        if kind == "brightfield":
            layers.append((image, {"name": name, "rgb": True}, "image"))
        else:
            colormap = "blue" if name == "dapi" else "green"
            layers.append((image, {"name": name, "colormap": colormap, "blending": "additive"}, "image"))
    return layers


def sabgal_field():
    return _field(
        "sabgal_plate", "SABGAL01_A04_s1", [("w1", "brightfield", "brightfield"), ("w2", "dapi", "fluorescence")]
    )


def pjnk_field():
    return _field("pjnk_plate", "PJNK01_A04_s1", [("w1", "dapi", "fluorescence"), ("w2", "pjnk", "fluorescence")])
