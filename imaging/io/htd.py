"""MetaXpress / ImageXpress ``.HTD``: what the instrument says it acquired.

The plate's ``<name>.HTD`` (a small text file of quoted, comma-separated key/value lines) lists
the wells acquired (``WellsSelection<row>``: one TRUE/FALSE per column), the sites
(``SiteSelection<row>``), the wavelengths with their names (``WaveName<n>``: ``w<n>`` in the
file names) and the time points. Discovery uses it to choose channels by name
(``dapi: {name: DAPI}``) and to say which acquired wells have no image files (a partial copy).

No maintained reader parses it (bioio-imagexpress reads ImageXpress Pico ``.jdce`` files, not
``.HTD``), hence this one. A real ``.HTD`` is a few kB: a larger one is refused before it is read.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from imaging.errors import InputError
from imaging.io.wells import format_well

MAX_HTD_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class HtdPlate:
    path: Path
    wells: tuple[str, ...]  # acquired wells, A01 order
    n_sites: int
    wave_names: dict[str, str]  # wavelength id in the file names ('1' for w1) -> its name
    n_timepoints: int

    def channel_ids_by_name(self) -> dict[str, str]:
        return {name: wave for wave, name in self.wave_names.items()}


def find_htd(input_dir: str | Path) -> Path | None:
    """The ``.HTD`` of a MetaXpress export: at the top of the folder, or in ``TimePoint_1``."""
    root = Path(input_dir)
    for folder in (root, root / "TimePoint_1"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".htd" and p.is_file())
            if found:
                return found[0]
    return None


def _flags(values: list[str]) -> list[bool]:
    return [v.strip().upper() == "TRUE" for v in values]


def read_htd(path: str | Path) -> HtdPlate:
    """Parse an ``.HTD``; InputError naming the file when it is not one."""
    path = Path(path)
    if path.stat().st_size > MAX_HTD_BYTES:
        raise InputError(
            f"is {path.stat().st_size} bytes, not a MetaXpress plate description (a few kB)",
            path=path,
            fix="remove the file, or replace it with the instrument's .HTD",
        )
    text = path.read_bytes().decode("latin-1")  # MetaXpress writes the description in the system code page
    entries: dict[str, list[str]] = {}
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if row:
            entries[row[0].strip()] = row[1:]
    if "HTSInfoFile" not in entries:
        raise InputError(
            'is not a MetaXpress .HTD file (no "HTSInfoFile" line)',
            path=path,
            fix="remove the file, or replace it with the instrument's .HTD",
        )
    try:
        wells = tuple(
            format_well(r, c + 1)
            for r in range(1, int(entries.get("YWells", ["0"])[0]) + 1)
            for c, on in enumerate(_flags(entries.get(f"WellsSelection{r}", [])))
            if on
        )
        sites = sum(sum(_flags(values)) for key, values in entries.items() if key.startswith("SiteSelection"))
        n_waves = int(entries.get("NWavelengths", ["1"])[0])
        names = {str(k): entries.get(f"WaveName{k}", [""])[0].strip() for k in range(1, n_waves + 1)}
        timepoints = int(entries.get("TimePoints", ["1"])[0])
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"is not a readable MetaXpress .HTD file ({exc})", path=path, fix="copy the file again from the instrument"
        ) from None
    use_sites = entries.get("Sites", ["FALSE"])[0].strip().upper() == "TRUE"
    return HtdPlate(
        path=path,
        wells=wells,
        n_sites=max(sites, 1) if use_sites else 1,
        wave_names={k: v for k, v in names.items() if v},
        n_timepoints=max(timepoints, 1),
    )
