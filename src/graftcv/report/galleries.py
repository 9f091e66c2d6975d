"""Which images the report shows with their CAMs: the most confident mistakes, and the clearest examples per class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graftcv.pages import image_uri

MISTAKES = 6
PER_CLASS = 3
MAX_CLASS_CAMS = 20  # with MISTAKES, at most 26 CAMs: seconds on a laptop CPU


@dataclass
class GalleryItem:
    """One picture pair for the page: the image as the network saw it and its CAM overlay."""

    title: str
    caption: str
    image: str
    overlay: str


def _probability(row: dict, name: str) -> float:
    try:
        return float(row.get(name, "nan"))
    except ValueError:
        return float("nan")


def worst_mistakes(rows: list[dict], limit: int = MISTAKES) -> list[dict]:
    """Wrong predictions, the most confident first."""
    wrong = [r for r in rows if r.get("label") != r.get("predicted")]
    return sorted(wrong, key=lambda r: -_probability(r, "probability"))[:limit]


def class_examples(rows: list[dict], classes: list[str]) -> tuple[dict[str, list[dict]], int]:
    """Per class, the images the model gives the highest probability of their own class; and how many classes
    were left out to keep the page small."""
    per_class = max(1, min(PER_CLASS, MAX_CLASS_CAMS // max(len(classes), 1)))
    shown = classes[: max(1, MAX_CLASS_CAMS // per_class)]
    examples = {}
    for name in shown:
        own = [r for r in rows if r.get("label") == name]
        examples[name] = sorted(own, key=lambda r: -_probability(r, name))[:per_class]
    return examples, len(classes) - len(shown)


def cam_items(model, rows: list[dict], target: str, method: str = "gradcam") -> list[GalleryItem]:
    """CAMs of the predicted ('pred') or true ('true') class for prediction rows whose image still exists."""
    from graftcv.explain.render import caption, overlay

    rows = [r for r in rows if Path(r["path"]).is_file()]
    if not rows:
        return []
    labels = [r["label"] if r["label"] in model.classes else None for r in rows]
    results = model.explain([r["path"] for r in rows], method=method, target=target, labels=labels)
    return [
        GalleryItem(
            title=Path(result.name).name,
            caption=caption(result),
            image=image_uri(result.image),
            overlay=image_uri(overlay(result.image, result.cam)),
        )
        for result in results
    ]
