import pandas as pd
import pytest

from imaging.errors import InputError
from imaging.io.platemap import annotate_wells, read_platemap


def write(tmp_path, text, name="map.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_annotations_and_normalises_wells(tmp_path):
    path = write(tmp_path, "Well,Genotype,treatment,dose,replicate,notes\nA1,sgNT,DMSO,0,1,x\nA02,MAP2K7,TAM,1.5,1,\n")
    table = read_platemap(path)
    assert table["well"].tolist() == ["A01", "A02"]
    assert table["genotype"].tolist() == ["sgNT", "MAP2K7"]
    assert table["dose"].tolist() == [0.0, 1.5]
    assert pd.isna(table["notes"].iloc[1])


@pytest.mark.parametrize(
    "text,message",
    [
        ("genotype\nsgNT\n", "no 'well' column"),
        ("well,genotype\nA1,sgNT\nA01,MAP2K7\n", "well A01 is described more than once"),
        ("well,genotype\nA1,sgNT\nQ99,x\n", "line 3: 'Q99' is not a well name"),
        ("well,dose\nA1,ten\n", "dose 'ten' is not a number"),
        ("well,n_cells\nA1,3\n", "computed by the pipeline"),
        ("well\n", "has no rows"),
    ],
)
def test_malformed_plate_maps_name_the_problem(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as info:
        read_platemap(write(tmp_path, text))
    assert "map.csv" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="plate map not found"):
        read_platemap(tmp_path / "none.csv")


def test_imaged_wells_not_in_map_are_an_error(tmp_path):
    table = read_platemap(write(tmp_path, "well,genotype\nA1,sgNT\n"))
    imaged = pd.DataFrame({"plate": ["P1", "P1"], "well": ["A01", "B02"]})
    with pytest.raises(InputError, match="does not describe imaged well.*P1/B02"):
        annotate_wells(imaged, table, source="map.csv")


def test_map_wells_without_images_are_listed(tmp_path):
    table = read_platemap(write(tmp_path, "well,genotype\nA1,sgNT\nA2,KO\nA3,KO\n"))
    imaged = pd.DataFrame({"plate": ["P1"], "well": ["A02"]})
    annotated, unimaged = annotate_wells(imaged, table)
    assert annotated[["plate", "well", "genotype"]].values.tolist() == [["P1", "A02", "KO"]]
    assert unimaged == [{"plate": "P1", "well": "A01"}, {"plate": "P1", "well": "A03"}]


def test_plate_column_selects_rows_per_plate(tmp_path):
    table = read_platemap(write(tmp_path, "plate,well,genotype\nP1,A1,sgNT\nP2,A1,KO\n"))
    imaged = pd.DataFrame({"plate": ["P1", "P2"], "well": ["A01", "A01"]})
    annotated, unimaged = annotate_wells(imaged, table)
    assert annotated["genotype"].tolist() == ["sgNT", "KO"] and unimaged == []
    with pytest.raises(InputError, match="does not name the imaged plate"):
        annotate_wells(pd.DataFrame({"plate": ["P3"], "well": ["A01"]}), table)


def test_control_codes_are_read_as_roles_and_unknown_ones_refused(tmp_path):
    """CellProfiler's +1/-1 once gave a blank Z' without a word."""
    from imaging.io.platemap import z_prime_readiness

    text = "well,control\nA1,+1\nA2,-1\nA3,PC\nA4,neg\nA5,\nA6,Positive\n"
    table = read_platemap(write(tmp_path, text))
    assert table["control"].fillna("").tolist() == ["positive", "negative", "positive", "negative", "", "positive"]
    assert z_prime_readiness(table) == []
    assert z_prime_readiness(table[table["well"] != "A04"]) == [
        "3 positive and 1 negative control well(s) imaged; Z' needs at least 2 of each"
    ]
    assert "no 'control' column" in z_prime_readiness(table.drop(columns="control"))[0]
    with pytest.raises(InputError, match=r"line 3: control 'maybe' is not a control code"):
        read_platemap(write(tmp_path, "well,control\nA1,+1\nA2,maybe\n"))


def test_z_prime_is_computed_from_coded_controls():
    import pandas as pd

    from imaging.stats import plate_quality

    wells = pd.DataFrame(
        {
            "plate": "P",
            "well": ["A01", "A02", "A03", "A04"],
            "row": [1, 1, 1, 1],
            "column": [1, 2, 3, 4],
            "control": ["positive", "positive", "negative", "negative"],
            "x": [10.0, 11.0, 1.0, 1.5],
        }
    )
    row = plate_quality(wells, ["x"]).iloc[0]
    expected = 1 - 3 * (wells.x[:2].std() + wells.x[2:].std()) / abs(wells.x[:2].mean() - wells.x[2:].mean())
    assert row["z_prime"] == pytest.approx(expected) and row["n_positive_controls"] == 2


def test_one_annotation_join_for_wells_and_images():
    """Plate-map columns follow the well's position columns, sample-sheet columns the image;
    a row without an annotation keeps it empty; an empty table still gets its columns."""
    import pandas as pd

    from imaging.io.platemap import join_annotations

    wells = pd.DataFrame({"plate": ["P", "P"], "well": ["A01", "B01"], "x_mean": [1.0, 2.0]})
    plate_map = pd.DataFrame({"genotype": ["NT"]}, index=pd.Index(["B01"], name="well"))
    joined = join_annotations(wells, plate_map, key="well", columns=["genotype"], after=["plate", "well"])
    assert joined.columns.tolist() == ["plate", "well", "genotype", "x_mean"]
    assert joined["genotype"].isna().tolist() == [True, False] and joined.loc[1, "genotype"] == "NT"
    sheet = pd.DataFrame({"image": ["b", "a"], "sample": ["m2", "m1"]})
    regions = pd.DataFrame({"image": ["a", "b"], "n_cells": [3, 4]})
    joined = join_annotations(regions, sheet, key="image", columns=["sample"], after=["image"])
    assert joined[["image", "sample", "n_cells"]].values.tolist() == [["a", "m1", 3], ["b", "m2", 4]]
    empty = join_annotations(pd.DataFrame(), sheet, key="image", columns=["sample"], after=["image"])
    assert empty.columns.tolist() == ["image", "sample"] and empty.empty
    assert join_annotations(regions, sheet, key="image", columns=[], after=["image"]) is regions
