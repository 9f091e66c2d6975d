"""The run directory: every file name and format that fit writes and report, export, compare and evaluate read."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np

from graftcv.atomic import read_json, write_json, write_text
from graftcv.data import ImageSet
from graftcv.data.shards import MANIFEST
from graftcv.errors import GraftcvError
from graftcv.model_card import write_card

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None

CONFIG = "config.json"  # every setting, resolved; written before training starts
METRICS = "metrics.csv"  # one row per epoch
SUMMARY = "summary.json"  # written last: its presence means the run finished
REPORT = "report.html"
MODEL = "model"
CHECKPOINTS = "checkpoints"
EVALUATION = "evaluation"  # MODEL/evaluation/<data name>/ holds `graftcv evaluate` results
HISTORY_COLUMNS = [
    "phase",
    "epoch",
    "train_loss",
    "val_loss",
    "val_acc",
    "lr",
    "trainable_groups",
    "train_px",
    "seconds",
    "align_loss",  # graftcv adapt: the domain-alignment loss, and the discriminator's accuracy (dann) or the
    "domain_acc",  # discrepancy (mmd, coral); empty for other runs
    "discrepancy",
    "reg_loss",  # --reg: the regularizers' penalty (mean over the epoch's steps)
]
PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]


def data_name(data: object) -> str:
    """The data's folder or file name; a shard set's folder for its manifest.json, a URL's included."""
    text = str(data).rstrip("/")
    path = PurePosixPath(urlparse(text).path) if re.match(r"^(https?|file):", text) else Path(text).resolve()
    return (path.parent.name if path.name == MANIFEST else path.name) or "data"


def default_run_dir(*parts: str) -> Path:
    """runs/PART-PART-<time>, e.g. runs/photos-finetune-20261201-101500."""
    return Path("runs") / "-".join([*parts, datetime.now().strftime("%Y%m%d-%H%M%S")])


def read_csv(path: Path) -> list[dict] | None:
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def _csv_text(header: list[str], rows: list[list]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


PER_LABEL_COLUMNS = ["task", "label", "precision", "recall", "f1", "ap", "support", "threshold"]


def _write_outputs_evaluation(report: dict, out: Path, prefix: str) -> dict[str, Path]:
    """PREFIXmetrics.json and PREFIXper_label.csv (one row per label, or class of a single-label task) of a
    multi-label or multi-task report."""
    paths = {"json": out / f"{prefix}metrics.json", "per_label": out / f"{prefix}per_label.csv"}
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    tasks = report.get("tasks", {"labels": report})
    rows = []
    for task, found in tasks.items():
        for row in found.get("per_label") or found["per_class"]:
            entry = {"task": task, "label": row.get("label", row.get("class")), "ap": "", "threshold": ""} | row
            rows.append([entry[k] for k in PER_LABEL_COLUMNS])
    write_text(paths["per_label"], _csv_text(PER_LABEL_COLUMNS, rows))
    return paths


def write_evaluation(report: dict, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """PREFIXmetrics.json, PREFIXper_class.csv and PREFIXconfusion_matrix.csv of a classification report."""
    out = Path(out_dir)
    if report.get("kind") in ("multi-label", "multi-task"):
        return _write_outputs_evaluation(report, out, prefix)
    paths = {
        "json": out / f"{prefix}metrics.json",
        "per_class": out / f"{prefix}per_class.csv",
        "confusion": out / f"{prefix}confusion_matrix.csv",
    }
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    write_text(
        paths["per_class"],
        _csv_text(PER_CLASS_COLUMNS, [[r[k] for k in PER_CLASS_COLUMNS] for r in report["per_class"]]),
    )
    names = [row["class"] for row in report["per_class"]]
    matrix = [[name, *counts] for name, counts in zip(names, report["confusion_matrix"], strict=True)]
    write_text(paths["confusion"], _csv_text(["true\\pred", *names], matrix))
    return paths


def evaluation_dir(model_dir: str | Path, data: str | Path) -> Path:
    return Path(model_dir) / EVALUATION / data_name(data)


@dataclass(frozen=True)
class RunDir:
    """One run's folder; `split` is "val" or "test" (the evaluated sets)."""

    path: Path

    @classmethod
    def around_model(cls, model_dir: str | Path) -> RunDir:
        """The run directory a model directory sits in (RUN/model)."""
        return cls(Path(model_dir).expanduser().resolve().parent)

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def report(self) -> Path:
        return self.path / REPORT

    def finished(self) -> bool:
        return (self.path / SUMMARY).exists()

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    # --- writers ---------------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json(self.path / CONFIG, config)

    def update_config(self, **fields: object) -> None:
        self.write_config((self.config() or {}) | fields)

    def write_history(self, rows: list[dict]) -> None:
        write_text(
            self.path / METRICS, _csv_text(HISTORY_COLUMNS, [[row.get(c, "") for c in HISTORY_COLUMNS] for row in rows])
        )

    def write_evaluation(
        self, split: str, report: dict, images: ImageSet, probs: np.ndarray, classes: list[str], tasks=None
    ) -> None:
        """SPLIT_metrics.json, SPLIT_per_class.csv, SPLIT_confusion_matrix.csv and SPLIT_predictions.csv: one row
        per image with its path, true label, predicted label, its probability, then every class's. With `tasks`
        (a `data.tasks.Layout`) the predicted labels are every output above its threshold, ';'-joined."""
        write_evaluation(report, self.path, prefix=f"{split}_")
        rows = []
        if tasks is not None:
            outputs = np.array(tasks.outputs)
            for image, label, row, chosen in zip(
                images.paths, images.labels, probs, tasks.predicted(probs), strict=True
            ):
                rows.append([str(image), label, ";".join(outputs[chosen]), *(f"{p:.6f}" for p in row)])
            header = ["path", "labels", "predicted", *outputs]
            write_text(self.path / f"{split}_predictions.csv", _csv_text(header, rows))
            return
        for image, label, row in zip(images.paths, images.labels, probs, strict=True):
            best = int(np.argmax(row))
            rows.append([str(image), label, classes[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
        write_text(
            self.path / f"{split}_predictions.csv",
            _csv_text(["path", "label", "predicted", "probability", *classes], rows),
        )

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / SUMMARY, summary)
        write_card(self.path / "model")  # the model card shows the run's data and scores

    # --- readers (None for a missing or broken file) ------------------------------------------------------
    def config(self) -> dict | None:
        return read_json(self.path / CONFIG)

    def summary(self) -> dict | None:
        return read_json(self.path / SUMMARY)

    def history(self) -> list[dict] | None:
        return read_csv(self.path / METRICS)

    def metrics(self, split: str) -> dict | None:
        return read_json(self.path / f"{split}_metrics.json")

    def predictions(self, split: str) -> list[dict] | None:
        return read_csv(self.path / f"{split}_predictions.csv")

    def recorded_data(self) -> Path | None:
        """The training data folder recorded in config.json, when it is still there."""
        data = (self.config() or {}).get("data")
        if not isinstance(data, str):
            return None
        path = Path(data)
        return path if path.is_dir() else None


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Hold the run directory `path` for this process: an exclusive lock on the hidden sibling `.NAME.lock`,
    which records the holder's PID. The operating system releases the lock when the process ends, however it
    ends, so a killed run never leaves `path` locked; a second run on the same directory gets one sentence."""
    lock = path.parent / f".{path.name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
    except OSError as error:  # read-only, no permission, a file in the way
        raise GraftcvError(f"Cannot write the run to {path}: {error.strerror or error}.") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise GraftcvError(
                    f"{path} is in use by another graftcv run (PID {holder}): wait for it to end, or choose "
                    "another --out."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # the file stays: removing it would let two runs lock two different files


def staging_dir(final: Path) -> Path:
    """Where `--overwrite` builds the new run, beside the old one, until it is complete."""
    return final.with_name(f".{final.name}.new")


def swap_in(staged: Path, final: Path) -> None:
    """Replace the run in `final` by the complete one in `staged`: two renames, the old run removed last."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
