"""Class activation maps (pytorch-grad-cam) for graftcv classifiers, and measures of how good they are."""

from graftcv.explain.cams import CAM_METHODS, CamExplainer, CamMethod, ScoreNetwork, register_cam_method, user_methods
from graftcv.explain.layers import find_target_layer, resolve_layer
from graftcv.explain.pipeline import CamResult, explain_images, score_results
from graftcv.explain.quality import localization_scores

__all__ = [
    "CAM_METHODS",
    "CamExplainer",
    "CamMethod",
    "CamResult",
    "ScoreNetwork",
    "explain_images",
    "find_target_layer",
    "localization_scores",
    "register_cam_method",
    "resolve_layer",
    "score_results",
    "user_methods",
]
