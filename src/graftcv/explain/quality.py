"""CAM quality: faithfulness by perturbation (pytorch-grad-cam's ROAD and CAM×image), localization against masks."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

# Each percentile costs one sparse linear solve (ROAD's noisy linear imputation) per image and per ranking;
# five percentiles over the same range as the library's nine give the same average for about half the cost.
ROAD_PERCENTILES = (10, 30, 50, 70, 90)
# A CAM pixel belongs to the "object" when it reaches this share of the map's maximum.
IOU_THRESHOLD = 0.2

FAITHFULNESS_KEYS = (
    "road_morf",
    "road_lerf",
    "road_combined",
    "confidence_change",
    "confidence_drop",
    "confidence_increase",
)
LOCALIZATION_KEYS = ("pointing_hit", "energy_inside", "iou")


def faithfulness_scores(
    network: nn.Module,
    batch: torch.Tensor,
    cams: np.ndarray,
    classes: list[int],
    percentiles: tuple[int, ...] = ROAD_PERCENTILES,
) -> dict[str, np.ndarray]:
    """Per-image changes in the target class's probability when the image is perturbed according to its CAM.

    `road_morf`: removing the most relevant pixels first (lower is better); `road_lerf`: removing the least
    relevant first (near 0 is better); `road_combined` = (lerf − morf) / 2 (higher is better), as ROADCombined.
    `confidence_change`: after multiplying the image by its CAM; `confidence_drop` is its negative part
    (lower is better) and `confidence_increase` whether it rose (1/0).
    """
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    device = next(network.parameters()).device
    batch = batch.detach().to(device)
    # MoRF and LeRF separately rather than ROADCombined, which computes both but returns only their difference.
    morf = ROADMostRelevantFirstAverage(list(percentiles))(batch, cams, targets, network)
    lerf = ROADLeastRelevantFirstAverage(list(percentiles))(batch, cams, targets, network)
    change = CamMultImageConfidenceChange()(batch, cams, targets, network)
    change = np.asarray(change, dtype=np.float32).reshape(-1)
    return {
        "road_morf": np.asarray(morf, dtype=np.float32),
        "road_lerf": np.asarray(lerf, dtype=np.float32),
        "road_combined": (np.asarray(lerf) - np.asarray(morf)).astype(np.float32) / 2,
        "confidence_change": change,
        "confidence_drop": np.maximum(-change, 0.0),
        "confidence_increase": (change > 0).astype(np.float32),
    }


def localization_scores(cam: np.ndarray, mask: np.ndarray, threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """How well a CAM (H, W) finds the object in a boolean mask (H, W). Hand-written: no library scores a CAM
    against a mask, and each measure is a line of numpy.

    `pointing_hit`: 1 when the CAM's maximum lies inside the object; `energy_inside`: the share of the CAM's
    total inside it; `iou`: intersection over union of the object and the CAM thresholded at `threshold` × max.
    """
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape:
        raise ValueError(f"CAM {cam.shape} and mask {mask.shape} differ in shape.")
    peak = cam.max(initial=0.0)
    if peak <= 0 or not mask.any():
        return {"pointing_hit": 0.0, "energy_inside": 0.0, "iou": 0.0}
    hit = float(mask[np.unravel_index(np.argmax(cam), cam.shape)])
    energy = float(cam[mask].sum() / cam.sum())
    region = cam >= threshold * peak
    iou = float((region & mask).sum() / (region | mask).sum())
    return {"pointing_hit": hit, "energy_inside": energy, "iou": iou}


def summarize(rows: list[dict], keys: tuple[str, ...], group: str = "target") -> dict:
    """Mean of each key overall and per value of `group` (the class each CAM explains)."""

    def means(selected: list[dict]) -> dict:
        out: dict = {"n": len(selected)}
        for key in keys:
            values = [row[key] for row in selected if row.get(key) is not None]
            out[key] = float(np.mean(values)) if values else None
        return out

    per_class = {name: means([r for r in rows if r[group] == name]) for name in sorted({r[group] for r in rows})}
    return {"overall": means(rows), "per_class": per_class}
