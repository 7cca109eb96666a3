import pytest
import yaml
from pydantic import ValidationError

from imaging.config import load_pipeline, parse_pipeline
from imaging.errors import InputError

MINIMAL = {
    "schema_version": 1,
    "name": "t",
    "channels": {"dapi": {"id": 1}, "pjnk": {"id": "2"}},
    "segmentation": {"method": "classical", "channel": "dapi"},
}


def with_changes(**changes):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data.update(changes)
    return data


def test_shipped_pipelines_load(pipelines):
    sabgal = load_pipeline(pipelines / "sabgal.yaml")
    assert sabgal.channels["brightfield"].kind == "brightfield"
    assert sabgal.channels["brightfield"].id == "1" and sabgal.channels["dapi"].id == "2"
    assert sabgal.comparison.control_genotype == "sgNT" and sabgal.comparison.vehicle_treatment == "DMSO"
    assert [c.name for c in sabgal.calls] == ["sabgal_positive"]
    pjnk = load_pipeline(pipelines / "pjnk.yaml")
    assert pjnk.channels["dapi"].id == "1" and pjnk.channels["pjnk"].id == "2"
    assert "pjnk_nuclear_mean" in pjnk.cell_columns() and "pjnk_nc_ratio" in pjnk.cell_columns()


def test_pipelines_are_frozen():
    pipeline = parse_pipeline(MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        pipeline.name = "other"


def test_round_trip_through_yaml(pipelines, tmp_path):
    pipeline = load_pipeline(pipelines / "sabgal.yaml")
    path = tmp_path / "copy.yaml"
    path.write_text(pipeline.to_yaml())
    assert load_pipeline(path) == pipeline


def test_unknown_key_names_the_key_and_what_is_allowed():
    data = with_changes(segmentation={"method": "classical", "channel": "dapi", "diameter": 9})
    with pytest.raises(InputError) as info:
        parse_pipeline(data, source="p.yaml")
    message = str(info.value)
    assert "unknown key 'segmentation.diameter'" in message
    assert "nucleus_diameter_px" in message and "p.yaml" in message


def test_unknown_top_level_key():
    with pytest.raises(InputError, match="unknown key 'colour'.*allowed here: schema_version, name"):
        parse_pipeline(with_changes(colour="blue"))


def test_bad_value_names_the_allowed_values():
    data = with_changes(cells={"method": "grow"})
    with pytest.raises(InputError, match=r"'cells.method': Input should be 'expand' or 'watershed' \(got 'grow'\)"):
        parse_pipeline(data)


def test_unknown_segmentation_method():
    data = with_changes(segmentation={"method": "magic", "channel": "dapi"})
    with pytest.raises(InputError, match="'classical', 'cellpose'"):
        parse_pipeline(data)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"segmentation": {"method": "classical", "channel": "gfp"}}, "names channel 'gfp'"),
        ({"calls": [{"name": "hot", "column": "pjnk_nuclear_mean"}]}, "does not measure"),
        ({"measure": {"sabgal": {"channel": "dapi"}}}, "needs a brightfield channel"),
        ({"cells": {"method": "watershed"}}, "needs cells.cytoplasm_channel"),
        ({"channels": {"DAPI": {"id": 1}}}, "lower-case letters"),
        ({"channels": {"a": {"id": 1}, "b": {"id": 1}}}, "share an id"),
        ({"naming": {"preset": "regex"}}, "needs naming.pattern"),
        ({"qc": {"max_relative_blur": 0.5}}, "greater than 1"),
    ],
)
def test_cross_checks(changes, message):
    with pytest.raises(InputError, match=message):
        parse_pipeline(with_changes(**changes))


def test_schema_version_missing_or_unsupported():
    data = with_changes()
    del data["schema_version"]
    with pytest.raises(InputError, match="add 'schema_version: 1'"):
        parse_pipeline(data)
    with pytest.raises(InputError, match="schema_version 2 is not supported"):
        parse_pipeline(with_changes(schema_version=2))


def test_yaml_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schema_version: 1\nname: x\nchannels:\n  dapi: {id: 1\n")
    with pytest.raises(InputError, match=r"bad.yaml: is not valid YAML \(line 5"):
        load_pipeline(path)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("schema_version: 1\nname: a\nname: b\n")
    with pytest.raises(InputError, match="duplicate key 'name'"):
        load_pipeline(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(InputError, match="empty"):
        load_pipeline(tmp_path / "empty.yaml")
    with pytest.raises(InputError, match="not found"):
        load_pipeline(tmp_path / "missing.yaml")


@pytest.mark.parametrize("value", [0, -1, "first", 2.5, True])
def test_naming_timepoint_is_a_1_based_time_point_or_all(value):
    data = {
        "schema_version": 1,
        "name": "t",
        "channels": {"dapi": {"id": 1}},
        "naming": {"timepoint": value},
        "segmentation": {"method": "classical", "channel": "dapi"},
    }
    with pytest.raises(InputError, match=r"'naming.timepoint': .*1-based time point .* or 'all' \(got "):
        parse_pipeline(data)
    assert parse_pipeline(data | {"naming": {"timepoint": "all"}}).naming.every_timepoint
    assert parse_pipeline(data | {"naming": {"timepoint": 3}}).naming.timepoint == 3
