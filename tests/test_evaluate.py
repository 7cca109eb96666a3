import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging.cli import main
from imaging.errors import InputError
from imaging.evaluate import evaluate, pair_files, summarize


def labels_with(squares):
    image = np.zeros((20, 20), np.uint16)
    for k, (r, c, size) in enumerate(squares, start=1):
        image[r:r + size, c:c + size] = k
    return image


@pytest.fixture()
def folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    tifffile.imwrite(truth / "a.tif", labels_with([(0, 0, 4), (10, 10, 4)]))
    tifffile.imwrite(pred / "a_nuclei.tif", labels_with([(0, 0, 4)]))  # one of two found
    tifffile.imwrite(truth / "b.tif", labels_with([(2, 2, 6)]))
    tifffile.imwrite(pred / "b.tif", labels_with([(2, 2, 6), (15, 15, 3)]))  # found + one false positive
    return pred, truth


def test_scores_per_image_and_summary(folders):
    table = evaluate(*folders)
    assert table["image"].tolist() == ["a", "b"]
    assert table[["tp", "fp", "fn"]].values.tolist() == [[1, 0, 1], [1, 1, 0]]
    assert table["f1"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert table["recall"].tolist() == pytest.approx([0.5, 1.0])
    summary = summarize(table)
    assert summary.loc["mean", "precision"] == pytest.approx(0.75)
    assert summary.loc["median", "f1"] == pytest.approx(2 / 3)


def test_missing_prediction_and_shape_mismatch(folders, tmp_path):
    pred, truth = folders
    (pred / "b.tif").unlink()
    with pytest.raises(InputError, match="no prediction for 1 annotated image"):
        pair_files(pred, truth)
    tifffile.imwrite(pred / "b.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(InputError, match="differs from its truth"):
        evaluate(pred, truth)


def test_evaluate_command_prints_and_writes_csv(folders, tmp_path, capsys):
    code = main(["evaluate", str(folders[0]), str(folders[1]), "--csv", str(tmp_path / "scores.csv")])
    out = capsys.readouterr().out
    assert code == 0 and "mean F1 at IoU 0.5 = 0.6667" in out
    assert pd.read_csv(tmp_path / "scores.csv")["f1"].round(4).tolist() == [0.6667, 0.6667]
    assert main(["evaluate", str(tmp_path / "nope"), str(folders[1])]) == 2
