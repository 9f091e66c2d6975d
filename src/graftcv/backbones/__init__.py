"""Backbones: timm models, where their pretrained weights come from, and their layer groups."""

from graftcv.backbones.factory import DEFAULT_MODEL, Backbone, create_backbone, data_config_for
from graftcv.backbones.groups import classifier_param_names, early_groups, layer_groups

__all__ = [
    "DEFAULT_MODEL",
    "Backbone",
    "classifier_param_names",
    "create_backbone",
    "data_config_for",
    "early_groups",
    "layer_groups",
]
