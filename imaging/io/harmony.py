"""Harmony (Operetta / Opera Phenix) ``Index.idx.xml``: what the instrument says about its TIFFs.

The TIFFs of a Harmony export carry a resolution tag that is not the pixel size (6.45 um on an
Operetta CLS field whose pixels are 1.196 um: the camera pixel, not the sample's). The index
next to them has the truth per image (``ImageResolutionX`` in metres), and the channel names
(``ChannelName`` for each ``ChannelID``), so a pipeline may choose Operetta channels by name.

The index of a large screen runs to tens of MB: it is parsed incrementally (``iterparse``),
one ``Image`` element at a time. Python's ElementTree does not expand external entities, and
the file comes from the user's own instrument.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from imaging.errors import InputError

INDEX_NAMES = ("Index.idx.xml", "Index.xml")
METRES_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0}


@dataclasses.dataclass(frozen=True)
class HarmonyImage:
    file_name: str
    channel_id: str
    channel_name: str | None
    pixel_size_um: float | None


@dataclasses.dataclass(frozen=True)
class HarmonyIndex:
    path: Path
    images: dict[str, HarmonyImage]  # by file name (the index's URL)

    def channel_ids_by_name(self) -> dict[str, str]:
        return {i.channel_name: i.channel_id for i in self.images.values() if i.channel_name}


def find_index(input_dir: str | Path) -> Path | None:
    """The Harmony index of an export: in the folder, or in its ``Images`` subfolder."""
    root = Path(input_dir)
    for folder in (root, root / "Images"):
        for name in INDEX_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _pixel_size(element) -> float | None:
    if element is None or not (element.text or "").strip():
        return None
    scale = METRES_TO_UM.get(element.get("Unit", "m"))
    try:
        value = float(element.text) * scale if scale else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def read_index(path: str | Path) -> HarmonyIndex:
    """Every image entry of a Harmony index; InputError when the file is not one."""
    path = Path(path)
    images: dict[str, HarmonyImage] = {}
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if _local(element.tag) != "Image" or not len(element):
                continue
            fields = {_local(child.tag): child for child in element}
            url = fields.get("URL")
            if url is not None and url.text:
                name = url.text.strip().rsplit("/", 1)[-1]
                channel = fields.get("ChannelName")
                images[name] = HarmonyImage(
                    file_name=name,
                    channel_id=str(int(fields["ChannelID"].text)) if "ChannelID" in fields else "",
                    channel_name=channel.text.strip() if channel is not None and channel.text else None,
                    pixel_size_um=_pixel_size(fields.get("ImageResolutionX")),
                )
            element.clear()
    except (ElementTree.ParseError, ValueError) as exc:
        raise InputError(
            f"is not a readable Harmony index ({exc})",
            path=path,
            fix="export the measurement again from Harmony, or remove the index to use file names only",
        ) from None
    return HarmonyIndex(path=path, images=images)
