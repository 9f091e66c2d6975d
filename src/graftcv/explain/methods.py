"""CAM methods by name (pytorch-grad-cam classes, imported when first used): one `register_cam_method` each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graftcv.registry import Registry, lazy


@dataclass(frozen=True)
class CamMethod:
    """A pytorch-grad-cam method under a name.

    `per_channel`: gradient-free, one forward pass per channel of the layer (slow: batched, and not served).
    `probability_target`: explains the class probability instead of its logit (Ablation-CAM divides by the
    original score, which must be positive). `baseline`: a reference for scoring, not offered to users."""

    name: str
    help: str
    cam: Callable[..., object]  # a pytorch-grad-cam BaseCAM class (or a lazy reference to one)
    per_channel: bool = False
    probability_target: bool = False
    baseline: bool = False


CAM_METHODS: Registry[CamMethod] = Registry("CAM method")
register_cam_method = CAM_METHODS.register

for _method in (
    CamMethod("gradcam", "gradient-weighted channels (Grad-CAM)", lazy("pytorch_grad_cam:GradCAM")),
    CamMethod("gradcam++", "Grad-CAM++: second-order channel weights", lazy("pytorch_grad_cam:GradCAMPlusPlus")),
    CamMethod("hirescam", "element-wise gradient × activation", lazy("pytorch_grad_cam:HiResCAM")),
    CamMethod("xgradcam", "XGrad-CAM: normalized gradient weights", lazy("pytorch_grad_cam:XGradCAM")),
    CamMethod("layercam", "LayerCAM: positive gradients per position", lazy("pytorch_grad_cam:LayerCAM")),
    CamMethod("eigencam", "first principal component of the activations", lazy("pytorch_grad_cam:EigenCAM")),
    CamMethod(
        "scorecam",
        "Score-CAM: each channel's mask scored by a forward pass",
        lazy("pytorch_grad_cam:ScoreCAM"),
        per_channel=True,
    ),
    CamMethod(
        "ablationcam",
        "Ablation-CAM: the score drop when each channel is removed",
        lazy("pytorch_grad_cam:AblationCAM"),
        per_channel=True,
        probability_target=True,
    ),
    CamMethod("random", "random channel weights on the same layer", lazy("pytorch_grad_cam:RandomCAM"), baseline=True),
):
    register_cam_method(_method)


def user_methods(fast_only: bool = False) -> list[str]:
    """The methods a user may ask for; `fast_only`: those with one or two passes per image (for serving)."""
    return CAM_METHODS.names(lambda m: not m.baseline and not (fast_only and m.per_channel))
