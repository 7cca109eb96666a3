import pytest

from imaging.errors import InputError
from imaging.io.wells import format_well, normalize_well, parse_well, row_index_to_letters, row_letters_to_index


@pytest.mark.parametrize("name", ["A1", "A01", "a01", " A001 ", "a1"])
def test_a1_and_a01_are_the_same_well(name):
    assert normalize_well(name) == "A01"


@pytest.mark.parametrize("name,expected", [("P24", (16, 24)), ("AF48", (32, 48)), ("H12", (8, 12))])
def test_parse_well_rows_and_columns(name, expected):
    assert parse_well(name) == expected


@pytest.mark.parametrize("name", ["", "1A", "A0", "A49", "AG01", "Z-1", "A1B", "well3"])
def test_malformed_wells_are_rejected(name):
    assert parse_well(name) is None
    with pytest.raises(InputError, match="not a well name"):
        normalize_well(name, source="map.csv")


def test_row_letters_round_trip():
    for index in range(1, 33):
        assert row_letters_to_index(row_index_to_letters(index)) == index
    assert row_index_to_letters(27) == "AA"
    assert format_well(27, 3) == "AA03"
