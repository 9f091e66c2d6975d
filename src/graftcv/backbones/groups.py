"""Layer groups of a timm model, from stem to classifier, for freezing and layer-wise learning rates."""

from __future__ import annotations

from timm.models import group_parameters
from torch import nn


def classifier_param_names(model: nn.Module, buffers: bool = False) -> set[str]:
    """Names of the parameters (and buffers) that belong to the model's classifier."""
    classifier = model.get_classifier()
    ids = {id(t) for t in classifier.parameters()}
    names = {name for name, p in model.named_parameters() if id(p) in ids}
    if buffers:
        buffer_ids = {id(b) for b in classifier.buffers()}
        names |= {name for name, b in model.named_buffers() if id(b) in buffer_ids}
    return names


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped stem → stages → head, with the classifier always the last group alone.

    timm's coarse `group_matcher` gives the stages; models whose matcher puts the classifier into the
    last stage get it split off, because the classifier is what every strategy trains.
    """
    head = classifier_param_names(model)
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=True))
        groups = [[n for n in names if n not in head] for _, names in sorted(grouped.items())]
    else:
        groups = [[n for n, _ in model.named_parameters() if n not in head]]
    groups = [g for g in groups if g]
    ordered_head = [n for n, _ in model.named_parameters() if n in head]
    return [*groups, ordered_head]


def early_groups(model: nn.Module, groups: list[list[str]]) -> int:
    """How many groups from the bottom hold the stem and the stages at 1/4 of the input resolution or finer.

    Their generic edge and texture filters transfer almost unchanged (and discriminative learning rates
    barely move them), while back-propagating through these high-resolution layers is the largest part of a
    training step; timm's `feature_info` says where each stage's resolution drops. Always at least the stem
    (group 0), and never the classifier or the group just below it."""
    early_modules = [info["module"] for info in getattr(model, "feature_info", []) if info.get("reduction", 99) <= 4]
    count = 1
    while count < len(groups) and all(
        any(name == m or name.startswith(f"{m}.") for m in early_modules) for name in groups[count]
    ):
        count += 1
    return max(0, min(count, len(groups) - 2))
