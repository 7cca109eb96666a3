"""Tissue readouts: slides read by level and tile, IHC scores and lesion burden against
synthetic truth, tiled = in-memory, bounded memory, and the tissue run end to end."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage import io

from imaging.cli import main
from imaging.config import parse_pipeline
from imaging.errors import InputError
from imaging.stains.optical import STAIN_VECTORS, angle_between
from imaging.stains.vectors import default_vectors, estimate_vectors
from imaging.stains.white import white_point
from imaging.tissue.assay import execute_tissue, lesion_threshold
from imaging.tissue.ihc import allred_proportion, intensity_class, score_cells, summarize_scores
from imaging.tissue.image import ImageTask, analyse_image
from imaging.tissue.plan import plan_tissue
from imaging.tissue.slide import Slide
from imaging.tissue.synthetic import make_ihc_image, random_section, write_section

HDAB = default_vectors(("hematoxylin", "dab"))


def tissue_pipeline(**changes):
    data = {"schema_version": 1, "mode": "tissue", "name": "t", "stains": {"preset": "hdab"}}
    data.update(changes)
    return parse_pipeline(data)


# ---- slides --------------------------------------------------------------------------------------
def test_pyramid_levels_regions_and_overview(tmp_path):
    section = random_section((1500, 2100), pixel_size_um=2.0, n_lesions=2, seed=3)
    path = write_section(section, tmp_path / "s.ome.tif", tile=256, levels=3)
    full = tifffile.imread(path)  # level 0, whole
    with Slide(path) as slide:
        assert slide.shape == (1500, 2100) and len(slide.shapes) == 3 and slide.pixel_size_um == 2.0
        np.testing.assert_array_equal(slide.read_region(300, 700, 100, 150), full[300:400, 700:850])
        assert slide.level_for(8.0) == 2 and slide.level_for(6.0) == 1
        overview, size = slide.overview(16.0)  # level 2 (8 um) averaged 2 x 2
        assert size == 16.0 and overview.shape == (187, 262, 3)
        level2 = slide.read_region(0, 0, *slide.shapes[2], level=2).astype(np.float32)
        np.testing.assert_allclose(overview, level2[:374, :524].reshape(187, 2, 262, 2, 3).mean(axis=(1, 3)))
        tiles = list(slide.tiles(512, margin=32))
        assert len(tiles) == 3 * 5 and sum(t.height * t.width for t in tiles) == 1500 * 2100


def test_a_section_whose_lesions_cannot_fit_is_refused_not_retried_for_ever(monkeypatch):
    """Lesions are placed by rejection: 12 of up to 600 um fit a 10 mm section, not a 2 mm one
    (which looped for ever and hung benchmarks/tissue_memory.py --size 8000)."""
    from imaging.tissue import synthetic

    monkeypatch.setattr(synthetic, "MAX_PLACEMENT_TRIES", 2000)
    fits = random_section((40000, 40000), pixel_size_um=0.25, n_lesions=12, seed=1, lesion_radius_um=(100.0, 600.0))
    assert len(fits.lesions) == 12
    with pytest.raises(ValueError, match="placed [0-9]+ of 12 lesions .* 2000 x 2000 um section"):
        random_section((8000, 8000), pixel_size_um=0.25, n_lesions=12, seed=1, lesion_radius_um=(100.0, 600.0))


def test_truncated_slide_is_refused(tmp_path):
    path = write_section(
        random_section((800, 800), pixel_size_um=2.0, n_lesions=1, seed=1), tmp_path / "s.ome.tif", tile=256, levels=1
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        Slide(path)


# ---- stains and IHC ------------------------------------------------------------------------------
def test_stain_vectors_estimated_from_an_hdab_image():
    """Pure haematoxylin, pure DAB and mixed pixels, as in tissue with cytoplasmic DAB."""
    rng = np.random.default_rng(4)
    amounts = rng.gamma(2.0, 0.15, size=(200, 200, 2)) * (rng.random((200, 200, 2)) < 0.6)
    od = amounts[..., :1] * HDAB["hematoxylin"] + amounts[..., 1:] * HDAB["dab"]
    rgb = np.clip(np.array([242.0, 240.0, 238.0]) * 10 ** (-od) + rng.normal(0, 1, od.shape), 0, 255)
    vectors, source = estimate_vectors(
        rgb, np.ones(rgb.shape[:2], bool), ("hematoxylin", "dab"), white=np.array([242.0, 240.0, 238.0])
    )
    assert source == "estimated"
    assert angle_between(vectors["dab"], STAIN_VECTORS["dab"]) < 3
    assert angle_between(vectors["hematoxylin"], STAIN_VECTORS["hematoxylin"]) < 3


@pytest.mark.parametrize(
    "seed,fractions", [(0, (0.5, 0.2, 0.15, 0.15)), (1, (0.8, 0.1, 0.05, 0.05)), (2, (0.2, 0.2, 0.3, 0.3))]
)
def test_percent_positive_and_h_score_match_the_truth(seed, fractions):
    rgb, truth = make_ihc_image(seed=seed, class_fractions=fractions)
    cells, _, _, _ = score_cells(rgb, vectors=HDAB, white=white_point(rgb), thresholds=(0.2, 0.4, 0.6))
    measured, expected = summarize_scores(cells["dab_class"], None), summarize_scores(truth["dab_class"], None)
    assert measured["n_cells"] == expected["n_cells"]
    assert measured["percent_positive"] == pytest.approx(expected["percent_positive"], abs=2.0)
    assert measured["h_score"] == pytest.approx(expected["h_score"], abs=6.0)


def test_score_definitions_on_hand_made_classes():
    assert intensity_class([0.1, 0.2, 0.39, 0.4, 0.61, 2.0], (0.2, 0.4, 0.6)).tolist() == [0, 1, 1, 2, 3, 3]
    summary = summarize_scores([0] * 50 + [1] * 20 + [2] * 20 + [3] * 10, 2.0)
    assert summary["percent_positive"] == 50 and summary["h_score"] == 20 + 40 + 30
    assert summary["allred_proportion"] == 4 and summary["allred_intensity"] == 2 and summary["allred_score"] == 6
    assert summary["positive_cells_per_mm2"] == 25 and summary["cells_per_mm2"] == 50
    assert [allred_proportion(p) for p in (0, 0.5, 5, 20, 50, 90)] == [0, 1, 2, 3, 4, 5]
    assert summarize_scores([0, 0], None)["allred_score"] == 0


def test_tiled_scoring_equals_in_memory_scoring(tmp_path):
    rgb, _ = make_ihc_image(size=1200, n_nuclei=900, seed=6)
    io.imsave(tmp_path / "core.png", rgb, check_contrast=False)
    tifffile.imwrite(tmp_path / "core_tiled.ome.tif", rgb, tile=(256, 256), photometric="rgb", metadata={"axes": "YXS"})
    pipeline = tissue_pipeline(cells={"nucleus_diameter_um": 12.0, "tile_px": 400}, pixel_size_um=1.0)
    whole = tissue_pipeline(cells={"nucleus_diameter_um": 12.0, "tile_px": 4096}, pixel_size_um=1.0)
    tiled = analyse_image(ImageTask(str(tmp_path / "core_tiled.ome.tif"), pipeline, str(tmp_path / "a")))["ihc"]
    memory = analyse_image(ImageTask(str(tmp_path / "core.png"), whole, str(tmp_path / "b")))["ihc"]
    assert abs(tiled["n_cells"] - memory["n_cells"]) <= 0.01 * memory["n_cells"]
    assert tiled["h_score"] == pytest.approx(memory["h_score"], abs=1.5)
    assert tiled["percent_positive"] == pytest.approx(memory["percent_positive"], abs=1.0)


# ---- lesions ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sections(tmp_path_factory):
    """Four sections (2 um/px): two animals with 6 lesions, two with 1."""
    root = tmp_path_factory.mktemp("sections")
    (root / "images").mkdir()
    truth, rows = {}, []
    for seed, (n, group) in enumerate([(6, "sgNT"), (6, "sgNT"), (1, "MAP2K7"), (1, "MAP2K7")]):
        section = random_section(
            (1600, 2200), pixel_size_um=2.0, n_lesions=n, seed=20 + seed, lesion_radius_um=(70.0, 200.0)
        )
        write_section(section, root / "images" / f"lung{seed}.ome.tif", tile=256)
        truth[f"lung{seed}"] = {
            "n": n,
            "area_mm2": section.lesion_areas_um2.sum() / 1e6,
            "tissue_mm2": section.tissue_area_um2 / 1e6,
        }
        rows.append({"image": f"lung{seed}.ome.tif", "sample": f"mouse{seed}", "group": group})
    pd.DataFrame(rows).to_csv(root / "sheet.csv", index=False)
    return root, truth


def test_metastasis_run_counts_and_measures_lesions(sections, pipelines, tmp_path, capsys):
    root, truth = sections
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(pipelines / "metastasis.yaml"),
            str(root / "images"),
            "--samples",
            str(root / "sheet.csv"),
            "--out",
            str(out),
            "--workers",
            "1",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # the closing line names the tables this run wrote, and only those (no cells in a burden run)
    written = sorted(p.name for p in out.glob("*.csv"))
    assert written == ["comparisons.csv", "lesions.csv", "samples.csv", "sections.csv"]
    assert "(lesions.csv, sections.csv, samples.csv, comparisons.csv)" in printed.out
    table = pd.read_csv(out / "sections.csv").set_index("image")
    for image, expected in truth.items():
        row = table.loc[image]
        assert row["n_lesions"] == expected["n"]
        assert row["lesion_area_mm2"] == pytest.approx(expected["area_mm2"], rel=0.05)
        assert row["tissue_area_mm2"] == pytest.approx(expected["tissue_mm2"], rel=0.05)
    lesions = pd.read_csv(out / "lesions.csv")
    assert len(lesions) == 14 and set(lesions["group"]) == {"sgNT", "MAP2K7"}
    samples = pd.read_csv(out / "samples.csv").set_index("sample")
    assert samples.loc["mouse2", "n_lesions"] == 1 and samples.loc["mouse0", "group"] == "sgNT"
    comparisons = pd.read_csv(out / "comparisons.csv")
    burden = comparisons[comparisons["readout"] == "lesion_percent_of_tissue"].iloc[0]
    assert burden["genotype"] == "MAP2K7" and burden["mean_test"] < burden["mean_reference"]
    assert burden["test"] == "Mann-Whitney U" and burden["p_value"] == pytest.approx(1 / 3)  # exact, n = 2 vs 2
    record = json.loads((out / "run.json").read_text())
    assert record["lesion_threshold"]["method"] == "mixture midpoint"
    assert record["pipeline"]["sha256"] == hashlib.sha256(Path(record["pipeline"]["path"]).read_bytes()).hexdigest()
    assert len(record["inputs"]["samples_sha256"]) == 64  # the sample sheet's, as the plate map's is
    assert (burden["q_value"], bool(burden["significant"])) == (pytest.approx(1 / 3), False)  # stats' one rule
    assert (out / "plots" / "lung0_overlay.png").is_file() and "lung0" in (out / "report.html").read_text()


def test_lesion_free_run_finds_no_lesions():
    rng = np.random.default_rng(0)
    normal = [rng.normal(0.1, 0.02, 5000) for _ in range(3)]
    assert lesion_threshold(normal)["value"] == float("inf")
    with_lesions = normal + [np.concatenate([rng.normal(0.1, 0.02, 4000), rng.normal(0.6, 0.05, 1000)])]
    found = lesion_threshold(with_lesions)
    assert 0.3 < found["value"] < 0.4 and found["ashman_d"] > 2


def test_tissue_input_errors(sections, pipelines, tmp_path, capsys):
    root, _ = sections
    sheet = pd.read_csv(root / "sheet.csv").iloc[:3]
    sheet.to_csv(tmp_path / "short.csv", index=False)
    code = main(
        [
            "run",
            str(pipelines / "metastasis.yaml"),
            str(root / "images"),
            "--samples",
            str(tmp_path / "short.csv"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "does not list image(s) lung3" in capsys.readouterr().err
    io.imsave(tmp_path / "nopx.png", np.full((64, 64, 3), 200, np.uint8), check_contrast=False)
    code = main(["run", str(pipelines / "metastasis.yaml"), str(tmp_path / "nopx.png"), "--out", str(tmp_path / "o2")])
    assert code == 2 and "pixel size is unknown" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()


def test_ihc_run_on_the_real_sample_image(samples, pipelines, tmp_path, capsys):
    """FHL2 in colon: DAB fills the glands' cytoplasm; the stroma between them is blue."""
    code = main(
        [
            "run",
            str(pipelines / "ihc_cytoplasmic.yaml"),
            str(samples / "tissue" / "ihc_cytoplasmic" / "skimage_ihc.png"),
            "--out",
            str(tmp_path),
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    region = pd.read_csv(tmp_path / "regions.csv").iloc[0]
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert region["n_cells"] == len(cells) > 300
    counts = np.bincount(cells["dab_class"], minlength=4)
    assert region["h_score"] == pytest.approx(100 * (counts[1] + 2 * counts[2] + 3 * counts[3]) / len(cells))
    assert np.isnan(region["positive_cells_per_mm2"])  # the PNG records no pixel size
    # hand-drawn regions of the image: stroma right of the glands, the lower-left gland
    stroma = cells[(cells["centroid_col"] > 465) & (cells["centroid_row"] < 300)]
    gland = cells[(cells["centroid_col"] < 130) & (cells["centroid_row"] > 200)]
    assert len(stroma) > 10 and (~stroma["positive"]).mean() > 0.9
    assert len(gland) > 20 and gland["positive"].mean() > 0.8
    # every cell as a QuPath detection, and full-resolution crops for the report
    features = json.loads((tmp_path / "detections" / "skimage_ihc.geojson").read_text())["features"]
    assert len(features) == len(cells)
    assert {f["properties"]["classification"]["name"] for f in features} <= {"Negative", "1+", "2+", "3+"}
    assert (tmp_path / "plots" / "skimage_ihc_cells_1.png").is_file()
    # the report shows thumbnails linked to those files (embedding them made reports of many MB)
    links = report_links(tmp_path / "report.html")
    assert links == ["plots/skimage_ihc_overlay.png", "plots/skimage_ihc_cells_1.png"]
    assert (tmp_path / "report.html").stat().st_size < 0.5 * sum((tmp_path / link).stat().st_size for link in links)


def report_links(report: Path) -> list[str]:
    """The figures' links of a report.html, each checked to open an existing file."""
    import re
    import urllib.parse

    links = [urllib.parse.unquote(h) for h in re.findall(r'<figure><a href="([^"]+)"', report.read_text())]
    assert all((report.parent / link).is_file() for link in links), links
    return links


# ---- memory ------------------------------------------------------------------------------------------
def python_peak(function) -> int:
    """Peak of Python-tracked memory (numpy arrays included) while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_on_a_large_pyramidal_section(tmp_path):
    """Peak memory follows the overview and the tile, not the image: the same 4 x 4 mm
    section at 1.0 and at 0.5 um/pixel (4x the pixels: 50 and 201 MB) peaks alike for
    lesions, and IHC scoring on 4x the pixels peaks alike too."""
    burden = tissue_pipeline(stains={"preset": "he"}, lesions={"resolution_um": 4.0, "smoothing_um": 12.0})
    peaks = {}
    for pixel_size in (1.0, 0.5):
        size = int(4096 / pixel_size)
        section = random_section(
            (size, size), pixel_size_um=pixel_size, n_lesions=4, seed=9, lesion_radius_um=(80.0, 200.0)
        )
        path = write_section(section, tmp_path / f"section_{size}.ome.tif", tile=512)
        results = {}
        task = ImageTask(str(path), burden, str(tmp_path), lesion_threshold=0.3)
        peaks[size] = python_peak(lambda task=task, results=results: results.update(analyse_image(task)))
        assert results["burden"]["n_lesions"] == 4
    assert peaks[8192] < 1.3 * peaks[4096], peaks
    assert peaks[8192] < 8192 * 8192 * 3 / 2, peaks

    ihc = tissue_pipeline(cells={"tile_px": 512, "nucleus_diameter_um": 6.0})
    peaks = {}
    for size in (1024, 2048):
        small = random_section((size, size), pixel_size_um=0.5, n_lesions=1, seed=size, lesion_radius_um=(40.0, 60.0))
        image = write_section(small, tmp_path / f"ihc{size}.ome.tif", tile=256)
        task = ImageTask(str(image), ihc, str(tmp_path / str(size)))
        peaks[size] = python_peak(lambda task=task: analyse_image(task))
    assert peaks[2048] < 1.3 * peaks[1024], peaks


def test_shipped_tissue_samples_against_their_truth(samples, pipelines, tmp_path, capsys):
    tissue = samples / "tissue"
    code = main(
        [
            "run",
            str(pipelines / "metastasis.yaml"),
            str(tissue / "sections"),
            "--samples",
            str(tissue / "sections_samples.csv"),
            "--out",
            str(tmp_path / "burden"),
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    measured = pd.read_csv(tmp_path / "burden" / "sections.csv").set_index("image")
    for row in pd.read_csv(tissue / "sections_truth.csv").itertuples():
        assert measured.loc[row.image, "n_lesions"] == row.n_lesions
        assert measured.loc[row.image, "lesion_area_mm2"] == pytest.approx(row.lesion_area_mm2, rel=0.05)
    code = main(
        [
            "run",
            str(pipelines / "ihc_hscore.yaml"),
            str(tissue / "ihc" / "core_synthetic.tif"),
            "--out",
            str(tmp_path / "ihc"),
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    region = pd.read_csv(tmp_path / "ihc" / "regions.csv").iloc[0]
    truth = summarize_scores(pd.read_csv(tissue / "ihc_core_truth.csv")["dab_class"], None)
    assert region["percent_positive"] == pytest.approx(truth["percent_positive"], abs=2)
    assert region["h_score"] == pytest.approx(truth["h_score"], abs=6)


def test_svs_style_pixel_size_is_read_from_the_description(tmp_path):
    path = tmp_path / "slide.tif"
    tifffile.imwrite(
        path,
        np.full((64, 64, 3), 230, np.uint8),
        photometric="rgb",
        description="Aperio Image Library v12.0.15\r\n46000x32914 [0,100 46000x32914] (256x256) JPEG/RGB "
        "Q=70|AppMag = 40|MPP = 0.2520|Filename = x",
    )
    with Slide(path) as slide:
        assert slide.pixel_size_um == pytest.approx(0.252)


def test_the_pipeline_pixel_size_serves_an_image_that_records_none(tmp_path):
    """A PNG tile records no pixel size: the pipeline's is used for the plan's checks and the
    densities (it used to be refused at planning as unknown)."""
    rgb, _ = make_ihc_image(size=400, n_nuclei=120, seed=2)
    (tmp_path / "images").mkdir()
    io.imsave(tmp_path / "images" / "tile.png", rgb, check_contrast=False)
    (tmp_path / "p.yaml").write_text(
        "schema_version: 1\nmode: tissue\nname: p\npixel_size_um: 0.5\nstains: {preset: hdab}\ncells: {}\n"
    )
    record = execute_tissue(plan_tissue(tmp_path / "p.yaml", tmp_path / "images"), tmp_path / "out")
    ihc = record["images"][0]["ihc"]
    assert record["images"][0]["pixel_size_um"] == 0.5
    area_mm2 = ihc["tissue_area_mm2"]
    assert 0 < area_mm2 <= 400 * 400 * 0.25 / 1e6
    assert ihc["cells_per_mm2"] == pytest.approx(ihc["n_cells"] / area_mm2)
