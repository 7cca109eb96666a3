"""Finding, reading and writing: image discovery, plate maps, readers, atomic writers."""

from imaging.io.discover import Field, discover_images, group_fields
from imaging.io.platemap import annotate_wells, read_platemap
from imaging.io.readers import check_image_file, read_channel
from imaging.io.wells import normalize_well
from imaging.io.writers import write_csv, write_json, write_labels

__all__ = [
    "Field",
    "annotate_wells",
    "check_image_file",
    "discover_images",
    "group_fields",
    "normalize_well",
    "read_channel",
    "read_platemap",
    "write_csv",
    "write_json",
    "write_labels",
]
