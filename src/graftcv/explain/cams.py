"""CAM methods by name (pytorch-grad-cam) and one object that computes maps for a batch of images."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from graftcv.errors import GraftcvError
from graftcv.explain.layers import resolve_layer
from graftcv.explain.methods import CAM_METHODS, user_methods
from graftcv.heads.ops import TensorHead

# Forward passes per batch for the gradient-free methods, which run one pass per channel of the layer.
PERTURBATION_BATCH = 32


class ScoreNetwork(nn.Module):
    """A graftcv classifier's class scores before softmax: what a CAM should explain.

    `Classifier` returns probabilities, whose gradients vanish when the model is confident. A fine-tuned
    network gives its timm logits; a linear probe gives log-probabilities, which are logits up to a constant.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = classifier.backbone
        self.probe = classifier.probe
        self.classifier = [classifier]  # in a list: not a second registered copy of the backbone
        self.ensemble = hasattr(classifier, "members")  # explained through its averaged probabilities
        ops = classifier.probe.ops if classifier.probe is not None else []
        # a multi-label or multi-task probe ends in per-task activations: the scores before them are its logits
        self.logit_ops = TensorHead(ops[:-1]) if ops and ops[-1]["op"] == "segments" else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.ensemble:
            return self.classifier[0](images).clamp_min(1e-12).log()
        out = self.backbone(images)
        if self.probe is None:
            return out.float()
        if self.logit_ops is not None:
            return self.logit_ops(out)
        return self.probe(out).clamp_min(1e-12).log()


class CamExplainer:
    """One CAM method on one layer of a classifier: `compute(batch, classes)` → (n, H, W) maps in [0, 1]."""

    def __init__(
        self, classifier: nn.Module, input_size: tuple[int, int, int], method: str = "gradcam", layer: str | None = None
    ) -> None:
        if method not in CAM_METHODS:
            raise GraftcvError(f"Unknown CAM method {method!r}: choose one of {', '.join(user_methods())}.")
        self.method = CAM_METHODS[method]
        self.network = ScoreNetwork(classifier).eval()
        self.layer_name, self.layer = resolve_layer(classifier.backbone, layer, tuple(input_size))

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(n, C) class probabilities of the batch."""
        return self.network.classifier[0](batch.to(self.device)).float().cpu()

    def compute(self, batch: torch.Tensor, classes: list[int]) -> np.ndarray:
        """CAMs of `classes[i]` on image i: float32 (n, H, W), each scaled to [0, 1], at the batch's size."""
        cam = self.method.cam(model=self.network, target_layers=[self.layer])
        if self.method.per_channel:
            cam.batch_size = PERTURBATION_BATCH  # both Score-CAM and Ablation-CAM read it per call
        target_type = ClassifierOutputSoftmaxTarget if self.method.probability_target else ClassifierOutputTarget
        targets = [target_type(int(c)) for c in classes]
        # The input requires grad so gradients reach the layer even when every weight is frozen.
        inputs = batch.detach().to(self.device).requires_grad_(True)
        try:
            # Score-CAM and Ablation-CAM draw tqdm bars on stderr for every image; they are noise here.
            with torch.enable_grad(), contextlib.redirect_stderr(io.StringIO()):
                maps = cam(input_tensor=inputs, targets=targets)
        finally:
            cam.activations_and_grads.release()  # not `with cam:`, whose __exit__ swallows IndexError
            self.network.zero_grad(set_to_none=True)
        return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, 1.0)
