"""Every model directory's README.md: a Hugging Face model card (YAML front matter, then data, training, scores,
intended use, limits and how to load it), generated from graftcv.json and, beside a run, its summary and config."""

from __future__ import annotations

from pathlib import Path

import yaml

from graftcv.atomic import read_json, write_text
from graftcv.catalog import CATALOG
from graftcv.meta import META_FILE

CARD_FILE = "README.md"
SCORES = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"),
          ("map_macro", "mAP (macro)"), ("f1_micro", "micro-F1"), ("mean_task_score", "mean task score"))  # fmt: skip
TRAINING = ("strategy", "model", "size", "epochs", "lr", "lr_decay", "augment", "label_smoothing", "mixup",
            "weight_decay", "optimizer", "schedule", "head", "seed")  # fmt: skip


def write_card(model_dir: str | Path) -> Path | None:
    """(Re)write MODEL/README.md from its graftcv.json and, when MODEL sits in a run directory, that run's
    summary.json and config.json; None when MODEL holds no graftcv.json."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / META_FILE)
    if not isinstance(meta, dict):
        return None
    beside_a_run = model_dir.name == "model"
    summary = read_json(model_dir.parent / "summary.json") if beside_a_run else None
    config = read_json(model_dir.parent / "config.json") if beside_a_run else None
    return write_text(
        model_dir / CARD_FILE,
        card_text(meta, summary if isinstance(summary, dict) else {}, config if isinstance(config, dict) else {}),
    )


def card_text(meta: dict, summary: dict, config: dict) -> str:
    """The card's Markdown: YAML front matter for the Hub (library, tags, base model, metrics), then the text."""
    classes = list(meta.get("classes") or [])
    backbone = str(meta.get("backbone") or (meta.get("members") or [{}])[0].get("backbone", "unknown"))
    known = CATALOG.get(backbone)
    scores = _scores(meta, summary)
    front = {
        "library_name": "graftcv",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "transfer-learning", "graftcv", "timm", meta.get("kind", "classifier")],
        "base_model": known.hf_hub_id if known else backbone,
        "metrics": sorted({name for name, _, _ in scores}),
        "model-index": [{
            "name": _name(summary, backbone),
            "results": [{
                "task": {"type": "image-classification", "name": "Image classification"},
                "dataset": {"name": _data_name(summary, config), "type": "imagefolder"},
                "metrics": [{"type": name, "value": round(value, 4), "name": label} for name, label, value in scores],
            }],
        }],
    }  # fmt: skip
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {_name(summary, backbone)}", ""]
    lines += [_what(meta, backbone, summary), ""]
    lines += ["## Data", "", *_data(classes, summary, config), ""]
    lines += ["## Training", "", *_training(config, summary), ""]
    lines += ["## Evaluation", "", *_evaluation(scores), ""]
    lines += ["## Intended use and limits", "", *_limits(meta, classes), ""]
    lines += ["## How to load", "", *_loading(meta, classes, backbone)]
    return "\n".join(lines) + "\n"


def _name(summary: dict, backbone: str) -> str:
    return f"{backbone} fine-tuned with graftcv" if summary.get("strategy") != "linear-probe" else f"{backbone} probe"


def _data_name(summary: dict, config: dict) -> str:
    data = str(config.get("data") or summary.get("data") or "images")
    if "://" in data:
        return data
    path = Path(data)
    return path.parent.name if path.stem in ("train", "labels", "data") and path.parent.name else path.stem


def _scores(meta: dict, summary: dict) -> list[tuple[str, str, float]]:
    found = []
    for split, where in (("val", "validation"), ("test", "test")):
        for key, label in SCORES:
            value = summary.get(f"{split}_{key}")
            if value is None and split == "val":
                value = (meta.get("metrics") or {}).get(key)
            if isinstance(value, (int, float)):
                found.append((key, f"{where} {label}", float(value)))
    return found


def _what(meta: dict, backbone: str, summary: dict) -> str:
    kind = meta.get("kind", "classifier")
    if kind == "ensemble":
        members = ", ".join(m.get("backbone", "?") for m in meta.get("members", []))
        return f"An ensemble of {len(meta.get('members', []))} models ({members}), probabilities averaged."
    strategy = meta.get("strategy") or summary.get("strategy") or "finetune"
    weights = (meta.get("weights_source") or {}).get("kind", "unknown")
    return (f"An image classifier: `{backbone}` (timm) adapted with graftcv's `{strategy}` strategy from "
            f"{'ImageNet-pretrained' if weights in ('package', 'hub', 'file') else weights} weights.")  # fmt: skip


def _data(classes: list[str], summary: dict, config: dict) -> list[str]:
    lines = [f"- classes ({len(classes)}): {', '.join(classes[:50])}{' …' if len(classes) > 50 else ''}"]
    counts = [f"{summary[k]} {k.removeprefix('n_')}" for k in ("n_train", "n_val", "n_test") if summary.get(k)]
    if counts:
        lines.append(f"- images: {' / '.join(counts)}")
    if summary.get("train_counts"):
        lines.append(
            "- training images per class: " + ", ".join(f"{k} {v}" for k, v in summary["train_counts"].items())
        )
    if config.get("data"):
        lines.append(f"- source: `{config['data']}`")
    return lines


def _training(config: dict, summary: dict) -> list[str]:
    probe = config.get("strategy") == "linear-probe"
    shown = [k for k in TRAINING if config.get(k) is not None and (k != "head" or probe)]
    rows = [f"- {k}: `{config[k]}`" for k in shown]
    if summary.get("train_seconds") is not None:
        rows.append(f"- training time: {summary['train_seconds']:.0f} s, best epoch {summary.get('best_epoch', '–')}")
    return rows or ["- not recorded (the model was saved outside a graftcv run directory)"]


def _evaluation(scores: list[tuple[str, str, float]]) -> list[str]:
    if not scores:
        return ["Not evaluated."]
    return ["| metric | value |", "|---|---:|", *(f"| {label} | {value:.4f} |" for _, label, value in scores)]


def _limits(meta: dict, classes: list[str]) -> list[str]:
    side = (meta.get("data_config") or {}).get("input_size", [3, "?", "?"])[-1]
    return [
        f"- It knows only these {len(classes)} classes: every image gets one of them (or, multi-label, a subset), "
        "however far it is from the training images.",
        f"- Images are resized to {side} px; scores hold for images like the training ones (same sources, "
        "cameras, framing). Measure it on your own held-out images before relying on it.",
        "- Small validation and test sets make the scores above uncertain by several points.",
    ]


def _loading(meta: dict, classes: list[str], backbone: str) -> list[str]:
    lines = ["```python", "import graftcv", "", 'model = graftcv.load("path/to/model")',
             'print(model.predict(["image.jpg"], topk=3))', "```"]  # fmt: skip
    timm_cfg = meta.get("timm")
    if timm_cfg:
        lines += ["", "With timm alone, after `graftcv export path/to/model --format timm` (writes `timm/`):", "",
                  "```python", "import timm", "",
                  f'model = timm.create_model("{backbone}", pretrained=True, num_classes={len(classes)},',
                  f'    pretrained_cfg_overlay={{"file": "path/to/model/timm/model.safetensors", '
                  f'"num_classes": {len(classes)}}})',
                  "```"]  # fmt: skip
    return lines
