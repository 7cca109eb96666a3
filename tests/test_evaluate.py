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
        image[r : r + size, c : c + size] = k
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


def test_evaluate_writes_its_scores_beside_the_predictions_not_the_working_directory(folders, tmp_path, monkeypatch):
    pred, truth = folders
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(pred), str(truth)]) == 0
    assert (pred / "evaluation.csv").is_file() and not any(elsewhere.iterdir())
    assert main(["evaluate", str(pred / "a_nuclei.tif"), str(truth / "a.tif")]) == 0
    assert len(pd.read_csv(pred / "evaluation.csv")) == 1 and not any(elsewhere.iterdir())


def test_binary_mask_blobs_are_scored_as_objects(folders, tmp_path):
    pred, truth = folders
    mask = (labels_with([(0, 0, 4), (10, 10, 4)]) > 0).astype(np.uint8) * 255  # Fiji's 0/255 mask
    tifffile.imwrite(truth / "a.tif", mask)
    table = evaluate(pred, truth).set_index("image")
    assert table.loc["a", ["n_true", "tp", "fn"]].tolist() == [2, 1, 1]
    assert table.loc["a", "binary_mask"] == "truth" and table.loc["b", "binary_mask"] == ""
    # one object of label 1 is an instance image, not a mask to split
    tifffile.imwrite(truth / "b.tif", labels_with([(2, 2, 6)]))
    assert evaluate(pred, truth).set_index("image").loc["b", "binary_mask"] == ""


def test_command_notes_masks_and_unscored_predictions(folders, tmp_path, capsys):
    pred, truth = folders
    tifffile.imwrite(pred / "a_nuclei.tif", (labels_with([(0, 0, 4), (12, 0, 4)]) > 0).astype(np.uint8))
    tifffile.imwrite(pred / "extra_nuclei.tif", labels_with([(0, 0, 4)]))
    assert main(["evaluate", str(pred), str(truth), "--csv", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 image(s) read as binary masks" in out and ": a" in out
    assert "1 prediction(s) have no annotated image and were not scored: extra_nuclei.tif" in out
    assert pd.read_csv(tmp_path / "s.csv").fillna("")["binary_mask"].tolist() == ["prediction", ""]
