"""napari plugin: manifest, reader, plate browser, tuning, curation, rendering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imaging.config import load_pipeline
from imaging.plate import execute, plan_run
from imaging.plate.review import RunReview, percent_positive
from tests.conftest import copy_sample_wells

WELLS = ["A01", "A04", "C01", "C04"]


@pytest.fixture(scope="module")
def run_folder(samples, pipelines, tmp_path_factory):
    """`imaging run` on four wells of the sample SA-beta-gal plate (labels saved)."""
    root = copy_sample_wells(samples, WELLS, tmp_path_factory.mktemp("napari_run"))
    out = root / "out"
    execute(plan_run(pipelines / "sabgal.yaml", root / "images", platemap=root / "map.csv"), out, save_labels=True)
    return out


@pytest.fixture()
def fresh_run(run_folder, tmp_path):
    """A private copy of the run (tests that curate must not share their decisions)."""
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps(record))
    return copy


def wait_for_field(browser, key=None, timeout=60.0):
    """Run the event loop until the browser shows ``key`` (any field when None): fields load
    in thread workers."""
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QApplication.processEvents()
        if not browser.loading and browser.shown_field is not None and key in (None, browser.shown_field):
            return
        time.sleep(0.01)
    raise AssertionError(f"field {key} was not shown within {timeout} s (shown: {browser.shown_field})")


def show(browser, well, site):
    browser.open_well(well, site)
    wait_for_field(browser, (browser.plate, well, site, browser.timepoint))


def open_browser(viewer, folder):
    """As a user does: open the folder (the reader adds layers only, no dock), then the
    plate browser from the Plugins menu, which finds the run from the layers."""
    docks_before = dict(viewer.window.dock_widgets)
    viewer.open(str(folder), plugin="imaging")
    assert dict(viewer.window.dock_widgets) == docks_before  # the reader has no side effects
    _, browser = viewer.window.add_plugin_dock_widget("imaging", "Plate browser")
    widgets = [w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "PlateBrowser"]
    assert widgets == [browser]  # one browser per viewer
    wait_for_field(browser)
    return browser


def test_manifest_is_valid_and_discovered():
    from npe2 import PluginManager, PluginManifest

    manifest = PluginManifest.from_distribution("imaging")
    assert manifest.name == "imaging"
    assert {c.id for c in manifest.contributions.commands} >= {"imaging.get_reader", "imaging.plate_browser"}
    manager = PluginManager.instance()
    manager.discover()
    assert manager.get_manifest("imaging").name == "imaging"  # found through the napari.manifest entry point


def test_widget_docks(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("imaging", "Plate browser")
    assert type(widget).__name__ == "PlateBrowser" and widget.review is None


def test_sample_data_opens_without_network(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("imaging", "sabgal_field")
    assert [layer.name for layer in viewer.layers] == ["brightfield", "dapi"]
    assert viewer.layers["brightfield"].rgb and viewer.layers["brightfield"].data.shape == (256, 256, 3)


def test_reader_opens_a_run_with_layers_and_features(make_napari_viewer, run_folder):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, run_folder)
    assert [layer.name for layer in viewer.layers] == ["brightfield", "dapi", "nuclei", "cells"]
    assert viewer.layers["brightfield"].rgb
    assert (browser.plate, browser.well, browser.site) == ("SABGAL01", "A01", 1)
    cells_csv = pd.read_csv(run_folder / "SABGAL01" / "cells.csv")
    field = cells_csv[(cells_csv["well"] == "A01") & (cells_csv["site"] == 1)]
    features = viewer.layers["cells"].features
    assert len(features) == len(field)
    np.testing.assert_allclose(features["sabgal_od_mean"], field["sabgal_od_mean"])
    labels = viewer.layers["cells"].data
    assert set(np.unique(labels[labels > 0])) == set(features["index"])
    # cells coloured by their call: positive magenta, negative cyan
    colormap = viewer.layers["cells"].colormap
    positive = int(features.loc[features["sabgal_positive"].astype(bool), "index"].iloc[0])
    negative = int(features.loc[~features["sabgal_positive"].astype(bool), "index"].iloc[0])
    assert tuple(colormap.color_dict[positive]) == pytest.approx((1, 0, 1, 1))
    assert tuple(colormap.color_dict[negative])[:3] == pytest.approx((0, 0.9, 0.9))


def test_plate_grid_click_opens_the_well_and_marks_flags(make_napari_viewer, run_folder):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, run_folder)
    wells = pd.read_csv(run_folder / "SABGAL01" / "wells.csv").set_index("well")
    item = browser.grid.item(2, 3)  # C04
    assert item.data(0x0100) == "C04"
    assert item.text().startswith(f"{wells.loc['C04', 'sabgal_positive_pct']:.3g}")
    browser._grid_clicked(2, 3)
    assert browser.well == "C04"
    wait_for_field(browser, ("SABGAL01", "C04", 1, None))
    assert viewer.layers["cells"].features["index"].size == len(
        RunReview.open_run(run_folder).field_cells("SABGAL01", "C04", 1, None)
    )


def test_threshold_change_updates_calls_and_percent_as_the_library_does(make_napari_viewer, run_folder, qtbot):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, run_folder)
    show(browser, "A04", 1)
    review = RunReview.open_run(run_folder)
    batch_threshold = review.thresholds("SABGAL01")["sabgal_positive"]
    well_cells = review.well_cells("SABGAL01", "A04")
    before = browser.well_percentages()["sabgal_positive"]
    assert before == pytest.approx(
        pd.read_csv(run_folder / "SABGAL01" / "wells.csv").set_index("well").loc["A04", "sabgal_positive_pct"]
    )
    new_threshold = batch_threshold * 3
    browser.threshold_boxes["sabgal_positive"].setValue(new_threshold)
    after = browser.well_percentages()["sabgal_positive"]
    assert after == pytest.approx(percent_positive(well_cells, "sabgal_od_mean", new_threshold))
    assert after < before
    features = viewer.layers["cells"].features
    expected = features["sabgal_od_mean"] > browser.threshold_boxes["sabgal_positive"].value()
    assert (features["sabgal_positive"].astype(bool) == expected).all()
    assert f"{after:.1f}%" in browser.percent_label.text()


def test_tuning_applies_to_the_well_and_saves_a_runnable_pipeline(make_napari_viewer, run_folder, qtbot, tmp_path):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, run_folder)
    show(browser, "A04", 1)
    area_before = viewer.layers["cells"].features["cell_area_px"].mean()
    browser.expansion_box.setValue(2.0)
    worker = browser.apply_tuning()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: browser.tuned is not None, timeout=5000)
    assert viewer.layers["cells"].features["cell_area_px"].mean() > 1.5 * area_before
    review = RunReview.open_run(run_folder)
    pipeline = browser.tuned_pipeline()
    cells = pd.concat([review.measure("SABGAL01", "A04", s, pipeline=pipeline).cells for s in (1, 2)])
    threshold = browser.threshold_boxes["sabgal_positive"].value()
    assert browser.well_percentages()["sabgal_positive"] == pytest.approx(
        percent_positive(cells, "sabgal_od_mean", threshold)
    )
    changes = browser.save_pipeline(tmp_path / "tuned.yaml")
    saved = load_pipeline(tmp_path / "tuned.yaml")
    assert saved.cells.expansion_factor == 2.0
    assert saved.calls[0].threshold == "auto"  # not moved: not frozen into this plate's number
    assert [c.key for c in changes] == ["cells.expansion_factor"] and "cells.expansion_factor" in browser.status.text()
    original = (Path(review.pipeline_path)).read_text().splitlines()
    tuned = (tmp_path / "tuned.yaml").read_text().splitlines()
    assert [(a, b) for a, b in zip(original, tuned) if a != b] == [
        (
            "  expansion_factor: 1.0   # reach beyond the nucleus, in nucleus radii",
            "  expansion_factor: 2.0   # reach beyond the nucleus, in nucleus radii",
        )
    ]  # comments kept
    browser.threshold_boxes["sabgal_positive"].setValue(threshold + 0.05)
    browser.save_pipeline(tmp_path / "tuned.yaml")
    assert load_pipeline(tmp_path / "tuned.yaml").calls[0].threshold == pytest.approx(threshold + 0.05)
    plan = plan_run(tmp_path / "tuned.yaml", run_folder.parent / "images", platemap=run_folder.parent / "map.csv")
    assert len(plan.fields) == 8


def test_gui_and_batch_numbers_agree_when_labels_are_recomputed(run_folder):
    review = RunReview.open_run(run_folder)
    measured = review.measure("SABGAL01", "C01", 2)
    batch = review.field_cells("SABGAL01", "C01", 2)
    np.testing.assert_allclose(measured.cells["sabgal_od_mean"], batch["sabgal_od_mean"], rtol=1e-9)
    saved_nuclei, _ = review.saved_labels("SABGAL01", "C01", 2)
    assert (measured.nuclei == saved_nuclei).all()


def test_curation_round_trips_into_rebuilt_tables(make_napari_viewer, fresh_run, qtbot):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, fresh_run)
    show(browser, "A04", 2)
    browser.user_edit.setText("dana")
    browser.reason_edit.setText("out-of-focus streak")
    browser.exclude_field()
    # correct one negative cell of C01 site 1 to positive
    show(browser, "C01", 1)
    features = viewer.layers["cells"].features
    negative = int(features.loc[~features["sabgal_positive"].astype(bool), "index"].iloc[0])
    viewer.layers["cells"].selected_label = negative
    browser.reason_edit.setText("blue granules visible")
    browser.set_selected_call(True)
    wells_before = pd.read_csv(fresh_run / "SABGAL01" / "wells.csv").set_index("well")
    worker = browser.rebuild()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: "Tables rebuilt" in browser.status.text(), timeout=5000)
    wait_for_field(browser)  # the rebuild shows the field again
    wells = pd.read_csv(fresh_run / "SABGAL01" / "wells.csv").set_index("well")
    assert wells.loc["A04", "n_fields_used"] == 1 and "out-of-focus streak by dana" in wells.loc["A04", "curation"]
    n = wells_before.loc["C01", "n_cells"]
    assert wells.loc["C01", "sabgal_positive_pct"] == pytest.approx(
        wells_before.loc["C01", "sabgal_positive_pct"] + 100 / n
    )
    record = json.loads((fresh_run / "run.json").read_text())
    assert [(d["user"], d["action"]) for d in record["curation"]["decisions"]] == [
        ("dana", "exclude_field"),
        ("dana", "set_call"),
    ]
    assert record["curation"]["n_call_overrides"] == 1
    assert (fresh_run / "report.html").is_file()
    assert browser.grid.item(0, 3).text().endswith("!")  # A04 now has a curated field


def test_layers_render_on_screen(make_napari_viewer, run_folder):
    viewer = make_napari_viewer(show=True)
    browser = open_browser(viewer, run_folder)
    show(browser, "A04", 1)  # 70 % positive: plenty of magenta
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 100
    rgb = shot[..., :3].astype(int)
    magenta = (rgb[..., 0] > 150) & (rgb[..., 2] > 150) & (rgb[..., 1] < 100)
    assert magenta.sum() > 200, "positive cells are drawn in magenta"
    assert rgb.std() > 10, "the field is not blank"


def test_plate_folder_with_a_pipeline_opens_for_tuning(make_napari_viewer, samples, pipelines, tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    for path in (samples / "sabgal_plate" / "images").glob("SABGAL01_A0[14]_*"):
        shutil.copy(path, folder / path.name)
    shutil.copy(pipelines / "sabgal.yaml", folder / "sabgal.yaml")
    viewer = make_napari_viewer()
    browser = open_browser(viewer, folder)
    assert not browser.review.has_results and browser.review.wells("SABGAL01") == ["A01", "A04"]
    assert [layer.name for layer in viewer.layers] == ["brightfield", "dapi", "nuclei", "cells"]
    threshold = browser.threshold_boxes["sabgal_positive"].value()
    features = viewer.layers["cells"].features
    assert threshold > 0 and (features["sabgal_positive"] == (features["sabgal_od_mean"] > threshold)).all()
    browser.reason_edit.setText("try")
    with pytest.raises(Exception, match="curation needs a finished run"):
        browser.review.exclude_field("SABGAL01", "A01", 1, reason="try")


def test_a_tissue_run_opens_as_layers_with_cells_by_class(make_napari_viewer, samples, pipelines, tmp_path):
    """The FHL2 colon image: the section, its nuclei filled in their class colour (a labels
    layer), then its cells as points in their class colour with the cells.csv rows as
    features; on screen the red (3+) and blue (0) cells are visible."""
    from imaging.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(pipelines / "ihc_cytoplasmic.yaml"),
                str(samples / "tissue" / "ihc_cytoplasmic"),
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    viewer = make_napari_viewer(show=True)
    viewer.open(str(out), plugin="imaging")
    assert [layer.name for layer in viewer.layers] == ["skimage_ihc", "skimage_ihc nuclei", "skimage_ihc cells"]
    assert viewer.layers["skimage_ihc nuclei"].data.max() == len(pd.read_csv(out / "cells.csv"))
    assert viewer.layers["skimage_ihc"].rgb
    cells = pd.read_csv(out / "cells.csv")
    points = viewer.layers["skimage_ihc cells"]
    assert len(points.data) == len(cells) and (points.features["dab_class"].to_numpy() == cells["dab_class"]).all()
    assert not [w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "PlateBrowser"]
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    red = (shot[..., 0] > 180) & (shot[..., 1] < 60) & (shot[..., 2] < 60)
    blue = (shot[..., 2] > 200) & (shot[..., 0] < 90)
    assert red.sum() > 100 and blue.sum() > 100


def test_reader_claims_only_folders_and_declines_quietly(tmp_path, run_folder):
    """It once claimed every file ("*"): opening any TIFF asked for it, and then it failed."""
    pytest.importorskip("npe2")
    from npe2 import PluginManifest

    from imaging_napari._reader import get_reader

    (reader,) = PluginManifest.from_distribution("imaging").contributions.readers
    assert reader.filename_patterns == [] and reader.accepts_directories
    image = tmp_path / "field.tif"
    image.write_bytes(b"not even a tiff")
    for declined in (str(image), str(tmp_path), str(tmp_path / "missing"), [str(image), str(image)], "\0bad"):
        assert get_reader(declined) is None
    assert get_reader(str(run_folder)) is not None


def test_each_decision_clears_its_reason_and_an_excluded_well_says_so(make_napari_viewer, fresh_run, qtbot):
    """The reason box once kept the last reason (the next decision silently reused it), and an
    excluded well showed 'nan%'."""
    viewer = make_napari_viewer()
    browser = open_browser(viewer, fresh_run)
    show(browser, "C04", 1)
    browser.reason_edit.setText("contaminated well")
    browser.undo_box.setChecked(False)
    browser.exclude_well()
    assert browser.reason_edit.text() == "" and not browser.undo_box.isChecked()
    assert "Exclusion of well C04 recorded" in browser.status.text()
    browser.exclude_field()  # no reason now: refused, nothing recorded
    assert "Give a reason" in browser.status.text()
    log = pd.read_csv(fresh_run / "curation.csv")
    assert log["action"].tolist() == ["exclude_well"] and log["reason"].tolist() == ["contaminated well"]
    worker = browser.rebuild()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: "Tables rebuilt" in browser.status.text(), timeout=5000)
    wait_for_field(browser)  # the rebuild shows the field again
    show(browser, "C04", 1)
    browser.update_percentages()
    assert "batch: excluded" in browser.percent_label.text() and "nan" not in browser.percent_label.text()


def test_batch_percent_never_shows_nan():
    from imaging.plate.review import batch_percent

    wells = pd.DataFrame(
        {"x_pct": [12.34, np.nan, np.nan], "curation": ["", "well excluded: dust", ""], "n_fields_used": [2, 0, 2]},
        index=["A01", "A02", "A03"],
    )
    assert [batch_percent(wells, w, "x") for w in wells.index] == ["12.3%", "excluded", "n/a"]


class PlateOnly:
    """Just what the plate grid reads of a review: a 384-well plate's wells table."""

    has_results = True

    def __init__(self, n_rows=16, n_columns=24):
        from imaging.io.wells import row_index_to_letters

        self.table = pd.DataFrame(
            [
                {"well": f"{row_index_to_letters(r)}{c:02d}", "row": r, "column": c, "translocated_pct": float(r * c)}
                for r in range(1, n_rows + 1)
                for c in range(1, n_columns + 1)
            ]
        )

    def wells_table(self, plate, timepoint=None):
        return self.table

    def flagged_wells(self, plate, timepoint=None):
        return {"B03"}


@pytest.mark.parametrize("n_rows, n_columns", [(8, 12), (16, 24), (32, 48)])
def test_the_grid_shows_the_whole_plate_in_a_400_px_dock(make_napari_viewer, qtbot, n_rows, n_columns):
    from imaging_napari._widget import PlateBrowser

    viewer = make_napari_viewer(show=True)
    browser = PlateBrowser(viewer)
    viewer.window.add_dock_widget(browser, name="Plate browser", area="right")
    browser.review = PlateOnly(n_rows, n_columns)
    for box, item in ((browser.plate_box, "P1"), (browser.readout_box, "translocated_pct")):
        box.blockSignals(True)  # the grid alone: no field is opened
        box.addItem(item)
        box.blockSignals(False)
    browser.resize(400, 700)
    browser.draw_grid()
    qtbot.waitUntil(lambda: browser.grid.isVisible(), timeout=5000)
    grid = browser.grid
    assert grid.rowCount() == n_rows and grid.columnCount() == n_columns
    assert grid.horizontalHeader().length() <= grid.viewport().width() + 1
    assert grid.verticalHeader().length() <= grid.viewport().height() + 1
    assert not grid.horizontalScrollBar().isVisible() and not grid.verticalScrollBar().isVisible()
    assert grid.item(1, 2).data(0x0100) == "B03" and "!" in grid.item(1, 2).text()
    assert grid.item(0, 0).toolTip().startswith("A01: translocated_pct = 1")
    assert "translocated_pct" in browser.legend.text()


def test_the_dock_fits_a_1366_x_768_screen(make_napari_viewer, run_folder):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, run_folder)
    assert browser.minimumSizeHint().height() <= 600 and browser.sizeHint().height() <= 700
    assert browser.minimumSizeHint().width() <= 420
    assert [browser.tabs.tabText(i) for i in range(browser.tabs.count())] == ["Plate", "Tuning", "Curation"]


def test_opening_a_second_run_reuses_the_viewers_browser(make_napari_viewer, run_folder, fresh_run):
    viewer = make_napari_viewer()
    first = open_browser(viewer, run_folder)
    second = open_browser(viewer, fresh_run)  # asserts there is still exactly one browser
    assert second is first and first.review.out_dir == fresh_run


def test_loading_a_field_leaves_the_event_loop_free_and_caches_the_field(make_napari_viewer, fresh_run):
    """Without saved labels the field is segmented again, in a thread worker: the event loop
    keeps turning meanwhile (each round well under 0.1 s), the field label says why it took
    long, and a field seen before comes back from the cache without a worker."""
    import time

    from qtpy.QtWidgets import QApplication

    shutil.rmtree(fresh_run / "SABGAL01" / "labels")
    viewer = make_napari_viewer()
    browser = open_browser(viewer, fresh_run)
    review = browser.review
    measure_and_show = review.load_field

    def slow_load(*key):  # as slow as a 2048 px field is to read and segment
        time.sleep(1.5)
        return measure_and_show(*key)

    review.load_field = slow_load
    browser.open_well("C04", 1)
    assert browser.loading and browser.shown_field != ("SABGAL01", "C04", 1, None)
    rounds = []  # while the worker runs (the round that draws the loaded field is not counted)
    while browser.loading:
        start = time.perf_counter()
        QApplication.processEvents()
        if browser.shown_field != ("SABGAL01", "C04", 1, None):
            rounds.append(time.perf_counter() - start)
        time.sleep(0.01)
    wait_for_field(browser, ("SABGAL01", "C04", 1, None))
    assert len(rounds) > 20 and max(rounds) < 0.1, max(rounds)
    assert "segmented again" in browser.field_label.text()
    batch = review.field_cells("SABGAL01", "C04", 1, None)
    assert len(viewer.layers["cells"].features) == len(batch)
    browser.open_well("A01", 1)
    wait_for_field(browser, ("SABGAL01", "A01", 1, None))
    assert browser.show_field() is None  # cached: shown at once
    browser.open_well("C04", 1)
    assert browser.shown_field == ("SABGAL01", "C04", 1, None) and not browser.loading


def test_decisions_in_force_are_listed_and_undone_from_the_list(make_napari_viewer, fresh_run):
    viewer = make_napari_viewer()
    browser = open_browser(viewer, fresh_run)
    show(browser, "A04", 2)
    for reason, action in (("debris", browser.exclude_field), ("bubble", browser.exclude_well)):
        browser.reason_edit.setText(reason)
        action()
    listed = [browser.decision_list.item(i).text() for i in range(browser.decision_list.count())]
    assert len(listed) == 2 and listed[0].startswith("well SABGAL01 A04 excluded: bubble")
    assert listed[1].startswith("field SABGAL01 A04 s2 excluded: debris")
    browser.decision_list.setCurrentRow(1)
    browser.undo_selected()  # no reason: refused
    assert "Give a reason" in browser.status.text() and browser.decision_list.count() == 2
    browser.reason_edit.setText("debris was on the lid")
    browser.undo_selected()
    assert [browser.decision_list.item(i).text()[:25] for i in range(browser.decision_list.count())] == [
        "well SABGAL01 A04 exclude"
    ]
    log = pd.read_csv(fresh_run / "curation.csv")
    assert log["action"].tolist() == ["exclude_field", "exclude_well", "include_field"]
    assert log["reason"].iloc[-1] == "debris was on the lid"


def test_a_96_well_plate_on_a_laptop_screen_shows_every_well_in_colour(make_napari_viewer, qtbot):
    """Screenshot of the dock in a 1366 x 768 window: the whole 8 x 12 grid is drawn in the
    readout's colours (viridis ends both present), and every tab's buttons lie on screen."""
    from imaging_napari._widget import PlateBrowser

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    browser = PlateBrowser(viewer)
    viewer.window.add_dock_widget(browser, name="Plate browser", area="right")
    browser.review = PlateOnly(8, 12)
    for box, item in ((browser.plate_box, "P1"), (browser.readout_box, "translocated_pct")):
        box.blockSignals(True)
        box.addItem(item)
        box.blockSignals(False)
    browser.draw_grid()
    qtbot.waitUntil(lambda: browser.grid.isVisible(), timeout=5000)
    qtbot.wait(200)
    image = browser.grid.grab().toImage()
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)}
    assert "#440154" in colours and "#fde725" in colours  # the lowest and the highest well
    window = viewer.window._qt_window
    for button in (browser.rebuild_button, browser.apply_button):
        browser.tabs.setCurrentWidget(
            next(
                browser.tabs.widget(i)
                for i in range(browser.tabs.count())
                if browser.tabs.widget(i).isAncestorOf(button)
            )
        )
        qtbot.wait(50)
        bottom = button.mapTo(window, button.rect().bottomLeft()).y()
        assert 0 < bottom <= window.height() <= 768, (button.text(), bottom, window.height())


def test_a_time_series_run_is_browsed_one_time_point_at_a_time(make_napari_viewer, samples, pipelines, tmp_path):
    """naming.timepoint: all: a time point box appears (absent for other runs); the grid and
    the field shown follow it, and curation names the time point."""
    import tifffile

    root = copy_sample_wells(samples, ["A01", "A04"], tmp_path / "plate")
    for t in (1, 2):  # time point 2 holds the other well's images: A01 then reads as A04 did
        (root / "series" / f"TimePoint_{t}").mkdir(parents=True)
        for path in (root / "images").glob("*.tif"):
            swapped = {"_A01_": "_A04_", "_A04_": "_A01_"}
            name = path.name if t == 1 else next(path.name.replace(a, b) for a, b in swapped.items() if a in path.name)
            tifffile.imwrite(root / "series" / f"TimePoint_{t}" / name, tifffile.imread(path))
    pipeline = tmp_path / "sabgal_series.yaml"
    pipeline.write_text((pipelines / "sabgal.yaml").read_text().replace("naming:\n", "naming:\n  timepoint: all\n"))
    assert "timepoint: all" in pipeline.read_text()
    out = tmp_path / "out"
    execute(plan_run(pipeline, root / "series", platemap=root / "map.csv"), out, save_labels=True)
    viewer = make_napari_viewer()
    browser = open_browser(viewer, out)
    assert browser.timepoint_box.isVisibleTo(browser) and browser.timepoint == 1
    assert [browser.timepoint_box.itemText(i) for i in range(browser.timepoint_box.count())] == ["1", "2"]
    wells = pd.read_csv(out / "SABGAL01" / "wells.csv").set_index(["well", "timepoint"])
    readout = browser.readout_box.currentText()
    assert browser.grid.item(0, 0).text().startswith(f"{wells.loc[('A01', 1), readout]:.3g}")
    browser.timepoint_box.setCurrentText("2")
    wait_for_field(browser, ("SABGAL01", "A01", 1, 2))
    assert browser.grid.item(0, 0).text().startswith(f"{wells.loc[('A01', 2), readout]:.3g}")
    assert wells.loc[("A01", 2), "n_cells"] == wells.loc[("A04", 1), "n_cells"] != wells.loc[("A01", 1), "n_cells"]
    assert "t2" in browser.field_label.text()
    assert (viewer.layers["cells"].features["timepoint"] == 2).all()
    browser.reason_edit.setText("drift")
    browser.exclude_field()
    log = pd.read_csv(out / "curation.csv")
    assert log[["action", "well", "site", "timepoint"]].values.tolist() == [["exclude_field", "A01", 1, 2]]


def test_tissue_curation_dock_excludes_a_section_and_rebuilds(make_napari_viewer, samples, pipelines, tmp_path, qtbot):
    """The two lung sections open as layers; the dock lists them with their lesion counts,
    excludes lung_b with a reason (greyed, in the decisions), and its background rebuild
    leaves lung_b out of sections.csv; selecting a section centres the viewer on it."""
    from imaging.cli import main
    from imaging_napari._tissue_widget import EXCLUDED, TissueCurationDock, camera

    out = tmp_path / "run"
    sections = samples / "tissue"
    command = ["run", str(pipelines / "metastasis.yaml"), str(sections / "sections"), "--out", str(out)]
    assert main([*command, "--samples", str(sections / "sections_samples.csv"), "--workers", "1"]) == 0
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="imaging")
    _, dock = viewer.window.add_plugin_dock_widget("imaging", "Tissue curation")  # finds the run from its layers
    assert isinstance(dock, TissueCurationDock) and dock.curation.out_dir == out
    header = [dock.table.horizontalHeaderItem(c).text() for c in range(dock.table.columnCount())]
    assert [dock.table.item(r, 0).text() for r in range(dock.table.rowCount())] == ["lung_a", "lung_b"]
    lesions = pd.read_csv(out / "sections.csv").set_index("image")["n_lesions"]
    assert dock.table.item(1, header.index("n_lesions")).text() == str(lesions["lung_b"])
    for image in ("lung_a", "lung_b"):
        camera(viewer).center = (0.0, 0.0)  # looking elsewhere: the selection must move the view
        dock.select_image(image)
        low, high = np.asarray(viewer.layers[image].extent.world)
        centre = (low + high)[-2:] / 2
        assert np.abs(centre).max() > 100 and np.allclose(camera(viewer).center[-2:], centre)
    dock.exclude_selected(undo=False)  # no reason: refused
    assert "Give a reason" in dock.status.text() and not (out / "curation.csv").exists()
    dock.reason_edit.setText("folded section")
    dock.exclude_selected(undo=False)
    assert dock.reason_edit.text() == "" and dock.decision_list.count() == 1
    assert dock.table.item(1, 0).foreground().color() == EXCLUDED
    dock.rebuild()
    qtbot.waitUntil(lambda: "rebuilt" in dock.status.text(), timeout=60000)
    assert pd.read_csv(out / "sections.csv")["image"].tolist() == ["lung_a"]
    assert "rebuilt (1 image(s) excluded)" in dock.status.text()
