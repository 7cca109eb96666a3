"""Plots and the HTML report, built from a run's tables only."""

from imaging.report.build import build_report, load_runs

__all__ = ["build_report", "load_runs"]
