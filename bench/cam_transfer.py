"""Issue-4 figures: one architecture fine-tuned from pretrained weights and trained from scratch, accuracy and CAMs.

Both runs see the same data and the same validation split (same seed); the scratch run uses `graftcv compare`'s
from-scratch recipe (strategy full, random init, higher LR, strong augmentation, BatchNorm trains). The CAMs of
the true class are then scored on the same validation images for both models: ROAD and confidence drop/increase,
each against a random CAM on the same layer, and localization when --masks or --boxes are given. Each run also
gets its report.html and a few CAM PNGs. Run by hand, on a quiet machine (a few minutes per dataset):

    .venv/bin/python bench/cam_transfer.py --datasets ants_bees flowers5 --size 128 --epochs 3 --scratch-epochs 15 \
        --budget 2m --cam-images 16

Writes OUT/cam_transfer.json and OUT/cam_transfer.md (OUT defaults to bench/out/cam_transfer).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import graftcv
from graftcv.explain.render import render_cam
from graftcv.report import build_report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SCORES = ["road_combined", "confidence_drop", "confidence_increase", "pointing_hit", "energy_inside", "iou"]
LABELS = {"road_combined": "ROAD↑", "confidence_drop": "drop↓", "confidence_increase": "incr↑",
          "pointing_hit": "point↑", "energy_inside": "energy↑", "iou": "IoU↑"}  # fmt: skip
PNGS_PER_RUN = 6

log = logging.getLogger("graftcv")


def dataset_path(name: str) -> Path:
    """A dataset under ../shared/datasets by name, or any path."""
    path = Path(name)
    return path if path.exists() else SHARED / name


def spread(rows: list[dict], limit: int) -> list[dict]:
    """At most `limit` rows evenly spaced over the (class-sorted) list, so every class is represented."""
    rows = sorted(rows, key=lambda r: (r["label"], r["path"]))
    if limit >= len(rows):
        return rows
    return [rows[round(i * (len(rows) - 1) / max(limit - 1, 1))] for i in range(limit)]


def train(data: Path, out: Path, init: str, args: argparse.Namespace) -> graftcv.api.Run:
    common = {
        "model": args.model,
        "size": args.size,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "seed": args.seed,
        "max_time": args.budget,
        "progress": False,
    }
    if init == "pretrained":
        settings = common | {"strategy": "finetune", "epochs": args.epochs, "pretrained": not args.no_pretrained}
        if args.weights:
            settings["weights"] = str(args.weights)
    else:
        settings = common | {"strategy": "scratch", "epochs": args.scratch_epochs}  # its recipe: graftcv.strategies
    run = graftcv.fit(data, out=out, overwrite=True, **settings)
    try:
        build_report(run.out_dir)
    except Exception as error:  # the figures matter more than the page
        log.warning("No report.html for %s (%s).", run.out_dir, error)
    return run


def cam_scores(run: graftcv.api.Run, rows: list[dict], args: argparse.Namespace) -> dict:
    """CAMs of the true class on the chosen validation images, a few as PNGs, and their scores."""
    started = time.perf_counter()
    paths, labels = [r["path"] for r in rows], [r["label"] for r in rows]
    results = run.model.explain(paths, method=args.method, target="true", labels=labels)
    for result in results[:: max(1, len(results) // PNGS_PER_RUN)][:PNGS_PER_RUN]:
        render_cam(result, run.out_dir / "cams" / f"{Path(result.name).parent.name}-{Path(result.name).stem}.png")
    scores = run.model.score_explanations(results, masks=args.masks, boxes=args.boxes)
    scores["seconds"] = round(time.perf_counter() - started, 1)
    (run.out_dir / "cam_scores.json").write_text(json.dumps(scores, indent=2))
    return scores


def compare_dataset(name: str, args: argparse.Namespace) -> list[dict]:
    data = dataset_path(name)
    label = data.name
    runs = {init: train(data, args.out / f"{label}-{init}", init, args) for init in ("pretrained", "scratch")}
    with (runs["pretrained"].out_dir / "val_predictions.csv").open(newline="") as handle:
        chosen = spread(list(csv.DictReader(handle)), args.cam_images)
    rows = []
    for init, run in runs.items():
        scores = cam_scores(run, chosen, args)
        overall = scores["overall"]
        row = {
            "dataset": label,
            "init": init,
            "model": args.model,
            "size": run.config["data_config"]["input_size"][-1],
            "val_accuracy": round(run.summary["val_accuracy"], 4),
            "val_macro_f1": round(run.summary["val_macro_f1"], 4),
            "epochs": run.summary["epochs"],
            "train_s": run.summary["train_seconds"],
            "cam_method": scores["method"],
            "cam_layer": scores["layer"],
            "cam_images": scores["n"],
            "cam_s": scores["seconds"],
            "run": str(run.out_dir),
        }
        for key in SCORES:
            if overall.get(key) is not None:
                row[key] = round(overall[key], 4)
                row[f"random_{key}"] = round(overall[f"random_{key}"], 4)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """One line per dataset and initialisation; each CAM score as 'CAM (random CAM)'."""
    keys = [k for k in SCORES if any(k in row for row in rows)]
    head = ["dataset", "init", "val acc", "macro F1", "epochs", "train s", *[LABELS[k] for k in keys], "CAM imgs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['dataset']} | {row['init']} | failed: {row['error']} |")
            continue
        cells = [row["dataset"], row["init"], f"{row['val_accuracy']:.3f}", f"{row['val_macro_f1']:.3f}",
                 str(row["epochs"]), f"{row['train_s']:.0f}"]  # fmt: skip
        cells += [f"{row[k]:.3f} ({row[f'random_{k}']:.3f})" if k in row else "—" for k in keys]
        lines.append("| " + " | ".join([*cells, str(row["cam_images"])]) + " |")
    method = next((f"{r['cam_method']} on {r['cam_layer']}" for r in rows if "cam_method" in r), "")
    lines.append("")
    lines.append(
        f"CAM of the true class ({method}), the same validation images for both models; in brackets a random CAM "
        "on the same layer. ROAD↑ = (LeRF − MoRF)/2 averaged over percentiles 10–90; drop↓/incr↑: confidence after "
        "multiplying the image by its CAM."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ants_bees"], help="names under ../shared/datasets, or paths")
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="any timm CNN with local pretrained weights")
    parser.add_argument("--weights", type=Path, help="pretrained weights file for the transfer run")
    parser.add_argument("--size", type=int, default=128, help="input size in pixels (small is fast)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (after the head epochs)")
    parser.add_argument("--scratch-epochs", type=int, default=15, help="from-scratch epochs")
    parser.add_argument("--budget", default="2m", help="max training time per run, e.g. 90s, 3m (best weights kept)")
    parser.add_argument("--method", default="gradcam", help="CAM method to score")
    parser.add_argument("--cam-images", type=int, default=16, help="validation images whose CAMs are scored")
    parser.add_argument("--masks", type=Path, help="one dataset only: folder of binary object masks")
    parser.add_argument("--boxes", type=Path, help="one dataset only: CSV path,x0,y0,x1,y1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pretrained", action="store_true", help="smoke test: random init in both runs")
    parser.add_argument("--out", type=Path, default=Path("bench/out/cam_transfer"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if (args.masks or args.boxes) and len(args.datasets) > 1:
        parser.error("--masks and --boxes annotate one dataset: give a single --datasets entry")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in args.datasets:
        try:
            rows += compare_dataset(name, args)
        except graftcv.GraftcvError as error:
            rows.append({"dataset": name, "init": "both", "error": str(error)})
    (args.out / "cam_transfer.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    (args.out / "cam_transfer.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {args.out / 'cam_transfer.json'} and {args.out / 'cam_transfer.md'}")


if __name__ == "__main__":
    main()
