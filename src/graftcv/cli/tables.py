"""Every rich table the commands print: runs, evaluations, predictions, CAM scores, comparisons, exports, models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from graftcv.compare import Comparison
    from graftcv.export import ExportReport

CAM_SCORE_COLUMNS = [
    ("road_combined", "ROAD↑"),
    ("road_morf", "MoRF↓"),
    ("road_lerf", "LeRF↑"),
    ("confidence_drop", "drop↓"),
    ("confidence_increase", "incr↑"),
    ("pointing_hit", "point↑"),
    ("energy_inside", "energy↑"),
    ("iou", "IoU↑"),
]
CAM_SCORES_NOTE = (
    "ROAD: change in the class probability when the most (MoRF) or least (LeRF) relevant pixels are imputed, "
    "combined = (LeRF − MoRF)/2; drop/incr: after multiplying the image by its CAM; point, energy, IoU: "
    "localization against the annotations. A CAM is informative where it beats the random CAM."
)
SHOWN_ROWS = 50  # longer lists are summarised in one line


def run_table(summary: dict) -> Table:
    """A finished training run: validation (and test) metrics, epochs, time, image counts."""
    table = Table(title=f"{summary['strategy']} · {summary['model']}", show_header=False)
    if "kind" in summary:  # several labels per image: the report's own headline numbers
        shown = [k for k in summary if k.startswith(("val_", "test_")) and isinstance(summary[k], float)]
    else:
        shown = ["val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_log_loss", "val_ece"]
        shown += ["test_accuracy"] if "test_accuracy" in summary else []
    for key in shown:
        table.add_row(key, f"{summary[key]:.4f}")
    # an ensemble's summary (train --preset best may choose one) has no epochs or training images of its own
    if "epochs" in summary:
        table.add_row("epochs (best)", f"{summary['epochs']} ({summary['best_epoch']})")
    if "train_seconds" in summary:
        table.add_row("train / wall seconds", f"{summary['train_seconds']:.1f} / {summary['wall_seconds']:.1f}")
    elif "wall_seconds" in summary:
        table.add_row("wall seconds", f"{summary['wall_seconds']:.1f}")
    if "n_train" in summary:
        table.add_row("images train / val", f"{summary['n_train']} / {summary['n_val']}")
    if "train_counts" in summary:
        table.add_row("train images per class", " · ".join(f"{k} {v}" for k, v in summary["train_counts"].items()))
    if "skipped_files" in summary:
        table.add_row("skipped files", str(summary["skipped_files"]))
    if "preset" in summary:
        choice = f": {summary['preset_choice']}" if summary.get("preset_choice") else ""
        table.add_row("preset", f"{summary['preset']} ({summary.get('preset_budget')}){choice}")
    if summary.get("tta"):
        table.add_row("test-time augmentation", str(summary["tta"]))
    for name, row in summary.get("snapshots", {}).items():  # --snapshots: the best epoch against its variants
        scores = " · ".join(
            f"{split} {row[f'{split}_accuracy']:.4f}" for split in ("val", "test") if f"{split}_accuracy" in row
        )
        where = "model/" if name == "best_epoch" else f"snapshots/{name}/"
        table.add_row(f"{name.replace('_', ' ')} accuracy", f"{scores}  ({where})")
    return table


def report_table(report: dict, title: str = "Evaluation") -> Table:
    """Per-class precision/recall/F1/support of a classification report, then its macro and weighted averages."""
    table = Table(title=title)
    table.add_column("class", style="bold")
    for name in ("precision", "recall", "f1", "support"):
        table.add_column(name, justify="right")
    rows = report["per_class"]
    for i, row in enumerate(rows):
        table.add_row(
            str(row["class"]),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
            end_section=i == len(rows) - 1,
        )
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        table.add_row(
            label,
            f"{report[f'{key}_precision']:.3f}",
            f"{report[f'{key}_recall']:.3f}",
            f"{report[f'{key}_f1']:.3f}",
            str(report["n"]),
            style="italic",
        )
    return table


def summary_line(report: dict) -> str:
    """The headline metrics of a classification report in one line."""
    return (
        f"accuracy {report['accuracy']:.3f} · balanced {report['balanced_accuracy']:.3f} · "
        f"macro-F1 {report['macro_f1']:.3f} · log-loss {report['log_loss']:.3f} · "
        f"ECE {report['ece']:.3f} (n={report['n']})"
    )


def _labels_text(found) -> str:
    if isinstance(found, dict):
        return f"{found['class']} {found['probability']:.3f}"
    return ", ".join(f"{item['label']} {item['probability']:.3f}" for item in found) or "(none)"


def multi_predictions_table(results: list[dict]) -> Table:
    """One row per image: its labels above their thresholds (multi-label), or one column per task."""
    tasks = list(results[0]["tasks"]) if "tasks" in results[0] else ["labels"]
    table = Table("image", *tasks)
    for row in results[:SHOWN_ROWS]:
        found = row["tasks"] if "tasks" in row else {"labels": row["labels"]}
        table.add_row(row["path"], *[_labels_text(found[t]) for t in tasks])
    return table


def outputs_table(report: dict, title: str = "Evaluation") -> Table:
    """Per label (and per class of a single-label task): precision, recall, F1, AP, support, threshold."""
    table = Table("task", "label", "precision", "recall", "f1", "AP", "support", "threshold", title=title)
    tasks = report.get("tasks", {"labels": report})
    for task, found in tasks.items():
        rows = found.get("per_label") or found["per_class"]
        for i, row in enumerate(rows):
            ap, cut = row.get("ap"), row.get("threshold")
            table.add_row(
                task, str(row.get("label", row.get("class"))), f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                f"{row['f1']:.3f}", "" if ap is None else f"{ap:.3f}", str(row["support"]),
                "" if cut is None else f"{cut:.2f}", end_section=i == len(rows) - 1,
            )  # fmt: skip
    return table


def outputs_line(report: dict) -> str:
    """The headline numbers of a multi-label or multi-task report in one line."""
    return " · ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report["headline"].items()) + f" (n={report['n']})"


def predictions_table(results: list[dict], topk: int, n_classes: int) -> Table:
    if results and "top" not in results[0]:
        return multi_predictions_table(results)
    table = Table("image", *[f"top{i + 1}" for i in range(min(topk, n_classes))])
    for row in results[:SHOWN_ROWS]:
        table.add_row(row["path"], *[f"{t['class']} {t['probability']:.3f}" for t in row["top"]])
    return table


def explanations_table(rows: list[tuple[str, str, str, str]]) -> Table:
    """One row per explained image: its name, the prediction, the class the CAM is of, the PNG written."""
    table = Table("image", "predicted", "CAM of", "png")
    for row in rows:
        table.add_row(*row)
    return table


def cam_scores_table(scores: dict) -> Table:
    """CAM quality per class and overall, each beside the same scores of a random CAM."""
    keys = [(k, label) for k, label in CAM_SCORE_COLUMNS if scores["overall"].get(k) is not None]
    title = f"{scores['method']} on {scores['layer']}"
    table = Table("class (CAM of)", "n", *[label for _, label in keys], title=title)
    for name, row in [*scores["per_class"].items(), ("overall", scores["overall"])]:
        style = "bold" if name == "overall" else None
        table.add_row(name, str(row["n"]), *[f"{row[k]:.3f}" for k, _ in keys], style=style)
        table.add_row("  random CAM", "", *[f"{row[f'random_{k}']:.3f}" for k, _ in keys], style="dim")
    return table


def compare_table(comparison: Comparison) -> Table:
    """A comparison's table: one row per strategy and shot count, each metric's mean ± std [95% CI]."""
    from graftcv.compare import cell_text, table_metrics

    metrics = table_metrics(comparison.scores)
    table = Table("strategy", "shots", "n", *metrics.values(), title="mean ± std [95% CI] over splits")
    for entry in comparison.table:
        cells = [cell_text(entry, metric) for metric in metrics]
        table.add_row(entry["strategy"], entry["shots"], str(entry["n"]), *cells)
    return table


def parity_table(report: ExportReport) -> Table:
    """An ONNX export's parity check against PyTorch."""
    table = Table(title=f"ONNX parity · {report.path}", show_header=False)
    table.add_row("exporter / opset", f"{report.exporter} / {report.opset}")
    table.add_row("inputs: random / real images", f"{report.random_inputs} / {report.real_images}")
    table.add_row("max |Δlogit|", f"{report.max_abs_logit_diff:.2e}")
    table.add_row("max |Δprobability|", f"{report.max_abs_prob_diff:.2e}")
    table.add_row("top-1 agreement", f"{report.top1_agreement:.4f} ({report.top1_mismatches_real} real images differ)")
    table.add_row("seconds", f"{report.seconds:.1f}")
    return table


def models_table(rows: list[dict]) -> Table:
    table = Table("model", "weights", "params (M)", "input", "ImageNet top-1")
    for row in rows:
        table.add_row(
            row["name"], row["weights"], f"{row['params_m']}", str(row["input_size"]), f"{row['imagenet_top1']}"
        )
    return table
