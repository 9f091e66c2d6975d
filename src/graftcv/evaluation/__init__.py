"""Evaluation: classification metrics and calibration from labels and scores."""

from graftcv.evaluation.metrics import classification_report, expected_calibration_error

__all__ = ["classification_report", "expected_calibration_error"]
