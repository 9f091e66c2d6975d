"""The run report: one self-contained HTML page per run (summary, curves, confusion matrix, CAM galleries)."""

from graftcv.report.build import build_report

__all__ = ["build_report"]
