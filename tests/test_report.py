"""Comparisons, plots and the HTML report: planted effects on a multi-plate synthetic
experiment, and the report as a browser renders it."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from imaging.cli import main
from imaging.plate import execute, plan_run
from imaging.report import build_report
from imaging.synthetic import SABGAL_TRUE_FRACTION, make_plate


@pytest.fixture(scope="session")
def experiment(pipelines, tmp_path_factory):
    """Three plates = three biological replicates (independent 'days' with their own
    level), each with 2 technical wells per condition; analysed as one run."""
    root = tmp_path_factory.mktemp("experiment")
    maps, truths = [], []
    for replicate in (1, 2, 3):
        paths = make_plate(
            root / f"rep{replicate}",
            assay="sabgal",
            plate=f"EXP{replicate}",
            size=256,
            sites=2,
            replicate=replicate,
            biological_cv=0.08,
            defocus=None,
            seed=10 + replicate,
        )
        shutil.copytree(paths["images"], root / "images" / f"EXP{replicate}")
        maps.append(pd.read_csv(paths["platemap"]).assign(plate=f"EXP{replicate}"))
        truths.append(pd.read_csv(paths["truth_wells"]))
    pd.concat(maps).to_csv(root / "platemap.csv", index=False)
    pd.concat(truths).to_csv(root / "truth_wells.csv", index=False)
    plan = plan_run(pipelines / "sabgal.yaml", root / "images", platemap=root / "platemap.csv")
    out = root / "out"
    execute(plan, out, workers=2)
    build_report([out])
    return out


@pytest.fixture(scope="session")
def realised_truth(experiment):
    """The same comparisons computed from the true percentages of the cells actually
    rendered: what the measured CIs must cover, free of the luck of sampling cells and days."""
    from imaging.stats import compare_all

    wells = pd.concat([pd.read_csv(p) for p in experiment.glob("EXP*/wells.csv")])
    truth = wells.merge(pd.read_csv(experiment.parent / "truth_wells.csv"), on=["plate", "well"])
    return compare_all(truth, ["true_sabgal_positive_pct"], control_genotype="sgNT", vehicle_treatment="DMSO")


def row(table, comparison, readout, genotype, treatment):
    selected = table[
        (table["comparison"] == comparison)
        & (table["readout"] == readout)
        & (table["genotype"] == genotype)
        & (table["treatment"] == treatment)
    ]
    assert len(selected) == 1
    return selected.iloc[0]


def planted(genotype, treatment):
    return 100 * SABGAL_TRUE_FRACTION[genotype][treatment]


def test_planted_knockout_effect_is_found_with_a_ci_covering_the_truth(experiment, realised_truth):
    table = pd.read_csv(experiment / "comparisons.csv")
    effect = row(table, "genotype_vs_control", "sabgal_positive_pct", "MAP2K7", "TAM+PALBO")
    truth = row(realised_truth, "genotype_vs_control", "true_sabgal_positive_pct", "MAP2K7", "TAM+PALBO")
    assert effect["unit"] == "replicate" and (effect["n_reference"], effect["n_test"]) == (3, 3)
    assert effect["difference"] < 0 and effect["q_value"] < 0.05 and effect["significant"]
    assert effect["difference_ci_low"] <= truth["difference"] <= effect["difference_ci_high"]
    assert effect["difference"] == pytest.approx(truth["difference"], abs=2.0)
    assert effect["difference"] == pytest.approx(planted("MAP2K7", "TAM+PALBO") - planted("sgNT", "TAM+PALBO"), abs=10)


def test_planted_interaction_knockout_blunts_the_combination(experiment, realised_truth):
    table = pd.read_csv(experiment / "comparisons.csv")
    interaction = row(table, "interaction", "sabgal_positive_pct", "MAP2K7", "TAM+PALBO")
    truth = row(realised_truth, "interaction", "true_sabgal_positive_pct", "MAP2K7", "TAM+PALBO")
    assert interaction["difference"] < 0 and interaction["q_value"] < 0.05
    assert interaction["difference_ci_low"] <= truth["difference"] <= interaction["difference_ci_high"]
    assert interaction["difference"] == pytest.approx(truth["difference"], abs=2.0)
    population = (planted("MAP2K7", "TAM+PALBO") - planted("MAP2K7", "DMSO")) - (
        planted("sgNT", "TAM+PALBO") - planted("sgNT", "DMSO")
    )
    assert interaction["difference"] == pytest.approx(population, abs=12)


def test_null_comparison_is_not_significant(experiment):
    table = pd.read_csv(experiment / "comparisons.csv")
    null = row(table, "genotype_vs_control", "sabgal_positive_pct", "MAP2K7", "DMSO")
    assert not null["significant"] and null["p_value"] > 0.05
    assert null["difference_ci_low"] <= 0 <= null["difference_ci_high"]


def test_drug_response_fold_change(experiment, realised_truth):
    table = pd.read_csv(experiment / "comparisons.csv")
    response = row(table, "treatment_vs_vehicle", "sabgal_positive_pct", "sgNT", "TAM+PALBO")
    truth = row(realised_truth, "treatment_vs_vehicle", "true_sabgal_positive_pct", "sgNT", "TAM+PALBO")
    assert response["ratio"] > 5 and response["significant"]
    assert response["ratio_ci_low"] <= truth["ratio"] <= response["ratio_ci_high"]


def test_outputs_and_plots_exist(experiment):
    quality = pd.read_csv(experiment / "plate_qc.csv")
    assert set(quality["plate"]) == {"EXP1", "EXP2", "EXP3"}
    plots = {p.name for p in (experiment / "plots").iterdir()}
    assert "superplot_sabgal_positive_pct.png" in plots and "plate_EXP2_n_cells.png" in plots
    html = (experiment / "report.html").read_text()
    assert "unit was biological replicates" in html and "Benjamini" in html


def test_report_command_rebuilds_and_pools_runs(experiment, tmp_path, capsys):
    (experiment / "report.html").unlink()
    assert main(["report", str(experiment)]) == 0
    assert (experiment / "report.html").is_file()
    code = main(["report", str(experiment), str(experiment), "--out", str(tmp_path)])
    assert code == 0 and (tmp_path / "comparisons.csv").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "has no run.json" in capsys.readouterr().err


def chrome_driver():
    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium and chromium-driver (see .ci/run)")
        pytest.skip("chromium / chromedriver not installed")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_report_renders_in_a_browser_with_its_images(experiment, tmp_path):
    from selenium.webdriver.common.by import By

    driver = chrome_driver()
    try:
        driver.get((experiment / "report.html").resolve().as_uri())
        assert driver.title == "sabgal report"
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 10
        sizes = [
            driver.execute_script(
                "return [arguments[0].complete, arguments[0].naturalWidth, arguments[0].getBoundingClientRect().width]",
                image,
            )
            for image in images
        ]
        assert all(complete and natural > 100 and shown > 50 for complete, natural, shown in sizes), sizes
        findings = driver.find_element(By.ID, "findings").find_element(By.XPATH, "following-sibling::*[1]").text
        assert "MAP2K7 blunts the TAM+PALBO response of sabgal_positive_pct" in findings
        highlighted = driver.find_elements(By.CSS_SELECTOR, "tr.sig")
        assert highlighted
        assert driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 20000
    finally:
        driver.quit()


def test_a_compound_experiment_without_genotypes_is_compared_against_vehicle(samples, pipelines, tmp_path):
    """Comparisons once silently needed a genotype column."""
    from imaging.cli import main
    from tests.conftest import copy_sample_wells

    root = copy_sample_wells(samples, ["A01", "A02", "A03", "A04", "B01", "B02", "B03", "B04"], tmp_path, assay="pjnk")
    table = pd.read_csv(root / "map.csv").drop(columns=["genotype"])
    table.to_csv(root / "map.csv", index=False)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text((pipelines / "pjnk.yaml").read_text().replace("  control_genotype: sgNT\n", ""))
    assert (
        main(
            [
                "run",
                str(pipeline),
                str(root / "images"),
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "1",
                "--platemap",
                str(root / "map.csv"),
            ]
        )
        == 0
    )
    comparisons = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert len(comparisons) > 0
    assert set(comparisons["comparison"]) == {"treatment_vs_vehicle"}
    assert set(comparisons["genotype"]) == {"all"}
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h1>pjnk: treatments vs vehicle</h1>" in page  # the report once spoke of knockouts
    assert "Knockout vs control" not in page and "knockout" not in page.split('id="findings"')[1].split("<h2")[0]


def test_key_findings_list_drug_effects_and_ec50s_of_a_compound_screen():
    """A p = 1e-8 drug effect was once left out of the key findings, which listed knockouts only."""
    from imaging.report.html import experiment_kind, key_findings
    from imaging.stats import DOSE_RESPONSE_COLUMNS

    base = {
        "cell_line": "all",
        "genotype": "all",
        "reference": "DMSO",
        "unit": "well",
        "n_reference": 4,
        "n_test": 4,
        "ratio": 2.0,
        "ratio_ci_low": 1.5,
        "ratio_ci_high": 2.5,
        "note": "",
    }
    comparisons = pd.DataFrame(
        [
            base
            | {
                "comparison": "treatment_vs_vehicle",
                "readout": "nfkb_nc_ratio",
                "treatment": "TNF",
                "mean_reference": 1.1,
                "mean_test": 2.2,
                "difference": 1.1,
                "difference_ci_low": 1.0,
                "difference_ci_high": 1.2,
                "p_value": 1e-8,
                "q_value": 2e-8,
                "significant": True,
            },
            base
            | {
                "comparison": "treatment_vs_vehicle",
                "readout": "nfkb_nc_ratio",
                "treatment": "IL1",
                "mean_reference": 1.1,
                "mean_test": 1.15,
                "difference": 0.05,
                "difference_ci_low": -0.1,
                "difference_ci_high": 0.2,
                "p_value": 0.4,
                "q_value": 0.4,
                "significant": False,
            },
        ]
    )
    doses = pd.DataFrame(
        [
            {
                "readout": "nfkb_nc_ratio",
                "cell_line": "all",
                "genotype": "all",
                "compound": "TNF",
                "dose_unit": "ng/ml",
                "n_doses": 8,
                "n_wells": 24,
                "ec50": 3.1,
                "ec50_ci_low": 2.4,
                "ec50_ci_high": 4.0,
                "hill": 1.2,
                "top": 2.3,
                "bottom": 1.1,
                "fit_status": "fitted",
            }
        ],
        columns=DOSE_RESPONSE_COLUMNS,
    )
    findings = key_findings(comparisons, doses)
    assert "<b>TNF</b> vs DMSO: <b>nfkb_nc_ratio</b> 2.2 vs 1.1" in findings and "IL1" not in findings
    assert "<b>TNF</b>, <b>nfkb_nc_ratio</b>: EC50 3.1 ng/ml" in findings and "8 doses" in findings
    assert experiment_kind(comparisons, doses).title == "treatments vs vehicle and dose response"
    assert key_findings(comparisons.iloc[1:]) == "<p>No comparison reached q &lt; 0.05.</p>"
