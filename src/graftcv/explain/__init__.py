"""Class activation maps (pytorch-grad-cam) for graftcv classifiers, and measures of how good they are."""

from graftcv.explain.cams import BASELINES, METHODS, CamExplainer, ScoreNetwork
from graftcv.explain.layers import find_target_layer, resolve_layer
from graftcv.explain.pipeline import CamResult, explain_images, score_results
from graftcv.explain.quality import localization_scores

__all__ = [
    "BASELINES",
    "METHODS",
    "CamExplainer",
    "CamResult",
    "ScoreNetwork",
    "explain_images",
    "find_target_layer",
    "localization_scores",
    "resolve_layer",
    "score_results",
]
