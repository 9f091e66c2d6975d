"""Evaluation: classification metrics, calibration, tables and report files from labels and scores."""

from graftcv.evaluation.metrics import (
    classification_report,
    expected_calibration_error,
    report_table,
    summary_line,
    write_report,
)

__all__ = [
    "classification_report",
    "expected_calibration_error",
    "report_table",
    "summary_line",
    "write_report",
]
