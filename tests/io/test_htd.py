"""MetaXpress .HTD: channels by name and the wells the instrument acquired (real file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.io.htd import read_htd
from imaging.io.sources import find_fields

HTD = Path(__file__).resolve().parents[1] / "data" / "formats" / "metaxpress" / "9987_Plate_3435" / "9987.HTD"


def test_the_real_htd_lists_wells_sites_and_wavelength_names():
    plate = read_htd(HTD)
    assert plate.wells == ("B02", "B03") and plate.n_sites == 2 and plate.n_timepoints == 6
    assert plate.wave_names == {"1": "DAPI", "2": "FITC", "3": "Texas Red", "4": "Cy5"}


def export(folder: Path, wells=("B02", "B03")) -> Path:
    """A MetaXpress export: the .HTD and 9987_<well>_s<site>_w<n>.TIF stand-ins."""
    folder.mkdir(parents=True)
    shutil.copy(HTD, folder / "9987.HTD")
    for well in wells:
        for site in (1, 2):
            for wave in (1, 2):
                tifffile.imwrite(folder / f"9987_{well}_s{site}_w{wave}.TIF", np.full((64, 64), 10 * wave, np.uint16))
    return folder


def pipeline(**channels):
    return parse_pipeline(
        {
            "schema_version": 1,
            "name": "mx",
            "channels": channels,
            "segmentation": {"method": "classical", "channel": "nuclei"},
        }
    )


def test_channels_are_chosen_by_their_metaxpress_names(tmp_path):
    folder = export(tmp_path / "plate")
    found = find_fields(folder, pipeline(nuclei={"name": "DAPI"}, signal={"name": "fitc"}))
    assert sorted((f.well, f.site) for f in found.fields) == [("B02", 1), ("B02", 2), ("B03", 1), ("B03", 2)]
    field = found.fields[0]
    assert field.paths["nuclei"].endswith("_w1.TIF") and field.paths["signal"].endswith("_w2.TIF")
    assert found.acquired_without_images == ()


def test_an_unknown_name_says_which_names_the_htd_has(tmp_path):
    folder = export(tmp_path / "plate")
    with pytest.raises(InputError, match=r"9987.HTD names \['Cy5', 'DAPI', 'FITC', 'Texas Red'\]"):
        find_fields(folder, pipeline(nuclei={"name": "Hoechst"}))


def test_acquired_wells_without_files_are_reported_and_recorded(tmp_path, caplog):
    from imaging.plate import execute, plan_run

    folder = export(tmp_path / "plate", wells=("B02",))  # B03 was not copied
    found = find_fields(folder, pipeline(nuclei={"name": "DAPI"}))
    assert found.acquired_without_images == ("B03",)
    assert "lists 1 acquired well(s) without image files here: B03" in caplog.text
    plan = plan_run(pipeline(nuclei={"name": "DAPI"}), folder)
    assert plan.acquired_without_images == ("B03",)
    result = execute(plan, tmp_path / "out")
    assert result.record["acquired_wells_without_images"] == ["B03"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'"Description", "no header"\n', "not a MetaXpress .HTD"),
        (b'"HTSInfoFile", Version 1.0\n"YWells", eight\n', "not a readable MetaXpress .HTD"),
    ],
)
def test_a_damaged_htd_is_refused_naming_it(tmp_path, content, message):
    folder = export(tmp_path / "plate")
    (folder / "9987.HTD").write_bytes(content)
    with pytest.raises(InputError, match=message) as error:
        find_fields(folder, pipeline(nuclei={"id": "1"}))
    assert str(error.value.path).endswith("9987.HTD")


def test_an_oversized_htd_is_refused_before_it_is_read(tmp_path):
    folder = export(tmp_path / "plate")
    with open(folder / "9987.HTD", "r+b") as handle:
        handle.truncate(2 << 20)  # sparse: no memory or disk used
    with pytest.raises(InputError, match="not a MetaXpress plate description"):
        find_fields(folder, pipeline(nuclei={"id": "1"}))


def test_the_real_time_lapse_export_runs_every_time_point_with_its_metadata(tmp_path):
    """The real MetaXpress export (TimePoint_1/, TimePoint_2/): channels by the .HTD's names,
    the pixel size from the MetaSeries XML, each time point a field; a numeric plate name
    (9987) stays text through the tables and the report."""
    import pandas as pd

    from imaging.cli import main

    pipeline_path = tmp_path / "mx.yaml"
    pipeline_path.write_text(
        "schema_version: 1\nname: mx\nchannels:\n  nuclei: {name: DAPI}\n  signal: {name: FITC}\n"
        "naming: {timepoint: all}\nsegmentation: {method: classical, channel: nuclei}\n"
        "measure:\n  intensity:\n    - channel: signal\n"
    )
    assert main(["run", str(pipeline_path), str(HTD.parent), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    fields = pd.read_csv(tmp_path / "out" / "9987" / "fields.csv", dtype={"plate": str})
    assert sorted(zip(fields["well"], fields["site"], fields["timepoint"])) == [
        (w, s, t) for w in ("B02", "B03") for s in (1, 2) for t in (1, 2)
    ]
    assert np.allclose(fields["pixel_size_um"], 1.3672) and (fields["n_cells"] > 0).all()
    wells = pd.read_csv(tmp_path / "out" / "9987" / "wells.csv")
    assert len(wells) == 4 and (wells["n_fields"] == 2).all()
    assert "9987" in (tmp_path / "out" / "report.html").read_text()
