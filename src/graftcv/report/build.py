"""`build_report(run_dir)`: one self-contained report.html from a run directory's files (and its model, for CAMs)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

from graftcv.errors import GraftcvError
from graftcv.model import load
from graftcv.pages import escaped_names, png_uri, render_page
from graftcv.report.combined import ensemble_section, snapshots_section, tune_section
from graftcv.report.figures import confusion_heatmap, learning_curves
from graftcv.report.galleries import cam_items, class_examples, worst_mistakes
from graftcv.report.multi import multi_section
from graftcv.rundir import RunDir, read_json

log = logging.getLogger("graftcv")
CAM_METHOD = "gradcam"
# Settings shown elsewhere on the page, or too long for the settings table.
HIDDEN_SETTINGS = {"data_summary", "phases", "data_config", "weights_source", "data", "out", "progress"}
HEADLINE = [
    ("val_accuracy", "validation accuracy"),
    ("val_balanced_accuracy", "balanced accuracy"),
    ("val_macro_f1", "macro F1"),
    ("val_log_loss", "log loss"),
    ("val_ece", "calibration error (ECE)"),
    ("test_accuracy", "test accuracy"),
]


def _counts_table(data_summary: dict, summary: dict) -> list[dict]:
    classes = data_summary.get("classes") or summary.get("classes") or []
    train = data_summary.get("train_counts") or summary.get("train_counts") or {}
    val = data_summary.get("val_counts") or {}
    test = data_summary.get("test_counts") or {}
    return [{"name": c, "train": train.get(c, 0), "val": val.get(c, 0), "test": test.get(c, 0)} for c in classes]


def _settings(config: dict) -> list[tuple[str, str]]:
    rows = [(k, v) for k, v in config.items() if k not in HIDDEN_SETTINGS and not isinstance(v, dict | list)]
    data_config = config.get("data_config") or {}
    if data_config.get("input_size"):
        rows.append(("input size", "×".join(str(v) for v in data_config["input_size"][1:])))
    return [(k, "—" if v is None else str(v)) for k, v in rows]


def _evaluation(metrics: dict | None, classes: list[str]) -> dict | None:
    if not metrics:
        return None
    matrix = metrics.get("confusion_matrix")
    return {
        "per_class": metrics.get("per_class", []),
        "most_confused": metrics.get("most_confused", [])[:10],
        "heatmap": confusion_heatmap(matrix, classes) if matrix and classes else None,
        "accuracy": metrics.get("accuracy"),
        "n": metrics.get("n"),
    }


def _escape_note(classes: list[str], shown: int = 5) -> list[str]:
    """Which class names the figures write as escapes (no installed font draws some of their characters); the
    page's own text keeps the real names."""
    escaped = escaped_names(classes)
    if not escaped:
        return []
    pairs = "; ".join(f"{name} as {label}" for name, label in list(escaped.items())[:shown])
    more = f" and {len(escaped) - shown} more" if len(escaped) > shown else ""
    return [
        f"No installed font draws some characters of {len(escaped)} class name(s), so the figures write them as "
        f"escapes: {pairs}{more}. Installing a font that has them (Noto Sans CJK, say) makes the figures show them."
    ]


def _galleries(run_dir: RunDir, classes: list[str], notes: list[str]) -> dict:
    """CAM overlays of the worst validation mistakes and of each class's clearest examples (or notes why not)."""
    predictions = run_dir.predictions("val")
    if predictions is None:
        notes.append("No CAM galleries: val_predictions.csv is missing (a run from an older graftcv?).")
        return {}
    try:
        model = load(run_dir.model)
    except GraftcvError as error:
        notes.append(f"No CAM galleries: the model could not be loaded ({error})")
        return {}
    missing = sum(1 for r in predictions if not Path(r["path"]).is_file())
    if missing:
        notes.append(f"{missing} of {len(predictions)} validation images are no longer on disk; they are not shown.")
    examples, left_out = class_examples(predictions, classes)
    if left_out:
        notes.append(f"CAMs are shown for the first {len(examples)} classes only ({left_out} more not shown).")
    try:
        return {
            "mistakes": cam_items(model, worst_mistakes(predictions), "pred", CAM_METHOD),
            "per_class": {name: cam_items(model, rows, "true", CAM_METHOD) for name, rows in examples.items()},
        }
    except GraftcvError as error:
        notes.append(f"No CAM galleries: {error}")
        return {}


def _adaptation(run_dir: RunDir, classes: list[str]) -> dict | None:
    """What `graftcv adapt` adds: the method, the domain shift before and after with the feature plot, and the
    target evaluation when target labels were given."""
    found = read_json(run_dir.path / "adaptation.json")
    if not found:
        return None
    plot = run_dir.path / "domain_features.png"
    return found | {
        "plot": png_uri(plot.read_bytes()) if plot.is_file() else None,
        "evaluation": _evaluation(run_dir.metrics("target"), classes),
    }


def build_report(run_dir: str | Path, cams: bool = True) -> Path:
    """Write RUN_DIR/report.html (images inline, no network access needed to view it) and return its path."""
    started = time.perf_counter()
    run_dir = RunDir(Path(run_dir).expanduser())
    config, summary = run_dir.config(), run_dir.summary()
    if config is None and summary is None:
        raise GraftcvError(f"{run_dir.path} is not a graftcv run directory: config.json and summary.json are missing.")
    config, summary = config or {}, summary or {}
    notes: list[str] = []
    if not summary:
        notes.append("summary.json is missing: the run did not finish; only its settings are shown.")
    data_summary = config.get("data_summary") or {}
    classes = data_summary.get("classes") or summary.get("classes") or []
    history = run_dir.history() or []
    if not history:
        notes.append("No per-epoch history: this strategy fits its head without epochs, or metrics.csv is missing.")
    notes.extend(_escape_note(classes))
    multi = multi_section(run_dir, summary)
    val = _evaluation(run_dir.metrics("val"), classes) if multi is None else None
    if val is None and multi is None:
        notes.append("val_metrics.json is missing: no confusion matrix or per-class metrics.")
    if multi is not None:
        notes.append("CAMs of a model with several labels per image: `graftcv explain MODEL IMAGES --target LABEL`.")
    galleries = _galleries(run_dir, classes, notes) if cams and classes and multi is None else {}
    headline = [(label, summary[key]) for key, label in HEADLINE if isinstance(summary.get(key), int | float)]
    if multi is not None:
        headline = [(k.removeprefix("val_").replace("_", " "), v) for k, v in summary.items()
                    if k.startswith(("val_", "test_")) and isinstance(v, float)]  # fmt: skip
    weights = config.get("weights_source") or {}
    context = {
        "title": run_dir.path.resolve().name,
        "run_dir": str(run_dir.path.resolve()),
        "model": summary.get("model") or config.get("model"),
        "strategy": summary.get("strategy") or config.get("strategy"),
        "weights": weights.get("detail") or weights.get("kind") or summary.get("weights_source"),
        "headline": headline,
        "multi": multi,
        "summary": summary,
        "data": data_summary,
        "counts": _counts_table(data_summary, summary),
        "skipped": (data_summary.get("skipped") or [])[:20],
        "settings": _settings(config),
        "phases": config.get("phases") or [],
        "curves": learning_curves(history) if history else None,
        "val": val,
        "test": _evaluation(run_dir.metrics("test"), classes) if multi is None else None,
        "adaptation": _adaptation(run_dir, classes),
        "tune": tune_section(run_dir),
        "ensemble": ensemble_section(summary),
        "snapshots": snapshots_section(summary),
        "galleries": galleries,
        "cam_method": CAM_METHOD,
        "notes": notes,
        "generated": datetime.now().isoformat(timespec="seconds"),
    }
    path = render_page("report.html.j2", run_dir.report, **context)
    log.debug("report for %s in %.1fs", run_dir.path, time.perf_counter() - started)
    return path
