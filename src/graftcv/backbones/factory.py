"""Build a timm classifier for N classes with pretrained weights from the first source that has them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from graftcv.backbones.weights import (
    WeightInfo,
    hub_cached,
    hub_reachable,
    load_backbone_weights,
    no_weights_message,
    package_weights_path,
    read_state_dict,
)
from graftcv.errors import GraftcvError

DEFAULT_MODEL = "tf_efficientnet_lite0"


@dataclass
class Backbone:
    """A timm model with its new classifier, where its weights came from, and its preprocessing."""

    model: nn.Module
    name: str
    weights: WeightInfo
    data_config: dict


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0].replace('-', '_')}*")[:5]
        hint = f" Did you mean {', '.join(close)}?" if close else " See `graftcv models`."
        raise GraftcvError(f"Unknown backbone {name!r}.{hint}")


def _create(name: str, num_classes: int, drop_rate: float, drop_path_rate: float, **kwargs) -> nn.Module:
    try:
        return timm.create_model(
            name, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **kwargs
        )
    except TypeError:  # the architecture has no stochastic depth
        return timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate, **kwargs)


def data_config_for(model: nn.Module, size: int | None = None) -> dict:
    """timm's preprocessing for the model (size, interpolation, mean/std, crop_pct), size overridable."""
    config = dict(resolve_data_config({}, model=model))
    if size:
        config["input_size"] = (3, size, size)
    config["input_size"] = tuple(config["input_size"])
    config["mean"], config["std"] = tuple(config["mean"]), tuple(config["std"])
    return config


def create_backbone(
    name: str = DEFAULT_MODEL,
    num_classes: int = 2,
    pretrained: bool = True,
    weights: str | Path | None = None,
    drop_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    size: int | None = None,
) -> Backbone:
    """A timm model for `num_classes`, with pretrained weights unless `pretrained` is False.

    Sources, in order: `weights` (a file), an installed weights package, timm's hub (its cache, or the
    network when online). None reachable is an error: never a silent random init.
    """
    check_model_name(name)
    if weights is not None:
        model = _create(name, num_classes, drop_rate, drop_path_rate)
        load_backbone_weights(model, read_state_dict(Path(weights).expanduser()), str(weights))
        info = WeightInfo("file", str(Path(weights).expanduser().resolve()))
    elif not pretrained:
        model = _create(name, num_classes, drop_rate, drop_path_rate)
        info = WeightInfo("none", "random init (--no-pretrained)")
    elif (package_file := package_weights_path(name)) is not None:
        model = _create(name, num_classes, drop_rate, drop_path_rate)
        load_backbone_weights(model, read_state_dict(package_file), str(package_file))
        info = WeightInfo("package", str(package_file))
    else:
        if not (hub_cached(name) or hub_reachable()):
            raise GraftcvError(no_weights_message(name))
        try:
            model = _create(name, num_classes, drop_rate, drop_path_rate, pretrained=True)
        except GraftcvError:
            raise
        except Exception as error:  # network, missing file on the hub, no pretrained tag
            raise GraftcvError(f"{no_weights_message(name)} ({str(error).splitlines()[0][:100]})") from None
        info = WeightInfo("hub", str(getattr(model, "pretrained_cfg", {}).get("hf_hub_id") or name))
    if info.source != "none":
        _zero_classifier(model)
    return Backbone(model=model, name=name, weights=info, data_config=data_config_for(model, size))


def _zero_classifier(model: nn.Module) -> None:
    """A new head on pretrained features starts at zero: uniform first predictions, no random logits
    (timm's default init gives a 2-class head losses near 3 before the first step)."""
    with torch.no_grad():
        for param in model.get_classifier().parameters():
            param.zero_()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str) -> nn.Module:
    """The architecture without memory or weights, to count parameters and read its config."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)
