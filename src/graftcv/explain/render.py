"""Pictures of CAMs: an overlay array, and the image | heat map | overlay PNG that `graftcv explain` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

from graftcv.explain.pipeline import CamResult
from graftcv.pages import figure_label, new_figure


def overlay(image: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the CAM as a jet heat map blended onto the image."""
    return show_cam_on_image(np.asarray(image, dtype=np.float32) / 255.0, cam, use_rgb=True, image_weight=image_weight)


def caption(result: CamResult) -> str:
    """'predicted bees 93.1% · CAM of bees (true ants)'."""
    text = f"predicted {result.predicted} {result.probability:.1%}"
    if result.target != result.predicted:
        text += f" · CAM of {result.target} ({result.target_probability:.1%})"
    if result.label is not None:
        text += f" · true {result.label}"
    return text


def render_cam(result: CamResult, path: str | Path, dpi: int = 100) -> Path:
    """Write the image, its heat map and their overlay side by side, captioned with class and probability."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = new_figure(10, 3.8)  # fonts that draw class names in any script
    figure.set_dpi(dpi)
    axes = figure.subplots(1, 3)
    heat = axes[1].imshow(result.cam, cmap="jet", vmin=0.0, vmax=1.0)
    figure.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.02)
    axes[0].imshow(result.image)
    axes[2].imshow(overlay(result.image, result.cam))
    titles = [Path(result.name).name, f"{result.method} on {result.layer}", f"evidence for {result.target}"]
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(figure_label(title), fontsize=10)
        axis.set_axis_off()
    figure.suptitle(figure_label(caption(result)), fontsize=12)
    figure.savefig(path, bbox_inches="tight")
    return path
