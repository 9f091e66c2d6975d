"""graftcv beside three standard transfer-learning recipes: same data, split, backbone, size and seed.

    python bench/run.py --data DIR [--val DIR] [--test DIR] [--size 224] [--budget 10m] [--out DIR] [--resume]

Runs graftcv's `finetune` (the default), `head` and `linear-probe` (each a fresh `graftcv train` process
with an empty feature cache, then `linear-probe` once more on the warm cache) and the reference recipes of
bench/references.py, each in its own process, one after the other. Without --test, half of the validation
set (stratified, by seed) becomes the test set; without --val, graftcv's stratified 20% split is drawn
first. Prints one markdown table and writes the same rows as JSON. Run by hand on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.model_selection import train_test_split

from graftcv.config import parse_duration
from graftcv.data import discover

HERE = Path(__file__).resolve().parent
GRAFTCV = Path(sys.executable).with_name("graftcv")
GRAFTCV_METHODS = ("finetune", "head", "linear-probe")
REFERENCES = ("tutorial", "keras", "sklearn")
LABELS = {
    "tutorial": "ref 1: PyTorch tutorial (full FT, SGD, StepLR)",
    "keras": "ref 2: Keras guide (frozen base, dense head)",
    "sklearn": "ref 3: sklearn LogisticRegression on features",
    "forward": "backbone forward only, pre-decoded tensors",
}


def write_split(args: argparse.Namespace, split: Path) -> dict:
    """The one split every method uses, as path,label CSVs."""
    splits = discover(args.data, val=args.val, test=args.test, seed=args.seed)
    val = list(zip(splits.val.paths, splits.val.labels, strict=True))
    if splits.test is not None:
        test = list(zip(splits.test.paths, splits.test.labels, strict=True))
    else:
        val, test = train_test_split(val, test_size=0.5, random_state=args.seed, stratify=[lab for _, lab in val])
    sets = {"train": list(zip(splits.train.paths, splits.train.labels, strict=True)), "val": val, "test": test}
    split.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        with open(split / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((str(Path(p).resolve()), label) for p, label in rows)
    (split / "classes.json").write_text(json.dumps(splits.classes))
    return {name: len(rows) for name, rows in sets.items()}


def run_graftcv(strategy: str, args: argparse.Namespace, split: Path, out: Path, cache: Path, tag: str) -> dict:
    run_dir = out / tag
    command = [
        str(GRAFTCV), "train", str(split / "train.csv"), "--val", str(split / "val.csv"),
        "--test", str(split / "test.csv"), "--strategy", strategy, "--size", str(args.size),
        "--seed", str(args.seed), "--max-time", args.budget, "--out", str(run_dir), "--overwrite",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "GRAFTCV_CACHE": str(cache)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"method": tag, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    summary = json.loads((run_dir / "summary.json").read_text())
    # epoch times count from training start; add what came before it: process start, set-up, feature pass
    before = wall - summary["wall_seconds"] + summary.get("feature_seconds", 0.0)
    with open(run_dir / "metrics.csv") as f:
        trace = [{"seconds": before + float(r["seconds"]), "val_acc": float(r["val_acc"])} for r in csv.DictReader(f)]
    if not trace:  # linear-probe: one fit, no epochs
        trace = [{"seconds": wall, "val_acc": summary["val_accuracy"]}]
    return {
        "method": tag,
        "val_accuracy": summary["val_accuracy"],
        "test_accuracy": summary.get("test_accuracy"),
        "wall_seconds": wall,
        "feature_images_per_second": summary.get("feature_images_per_second") or None,
        "features_cached": summary.get("features_cached"),
        "feature_stage_seconds": summary.get("feature_stage_seconds"),
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "trace": trace,
        "command": " ".join(["graftcv", *command[1:]]),
    }


def run_reference(recipe: str, args: argparse.Namespace, split: Path, out: Path) -> dict:
    target = out / f"{recipe}.json"
    budget = parse_duration(args.budget).total_seconds()
    command = [sys.executable, str(HERE / "references.py"), recipe, "--split", str(split), "--size", str(args.size)]
    command += ["--budget", str(budget), "--seed", str(args.seed), "--json", str(target)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"method": LABELS[recipe], "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(target.read_text())
    return {**result, "method": LABELS[recipe], "wall_seconds": wall, "command": " ".join(command[1:])}


def seconds_to(trace: list[dict], accuracy: float) -> float | None:
    return next((row["seconds"] for row in trace if row["val_acc"] >= accuracy - 1e-9), None)


def table(rows: list[dict], target: float) -> str:
    head = "| method | val acc | test acc | wall s | s to 95% of best ref | feature img/s | peak RSS MB |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | error: {r['error']} | | | | | |")
            continue

        def fmt(value, spec):
            return "—" if value is None else format(value, spec)

        lines.append(
            f"| {r['method']} | {fmt(r.get('val_accuracy'), '.4f')} | {fmt(r.get('test_accuracy'), '.4f')} "
            f"| {fmt(r.get('wall_seconds'), '.1f')} | {fmt(r.get('seconds_to_target'), '.1f')} "
            f"| {fmt(r.get('feature_images_per_second'), '.1f')} | {fmt(r.get('peak_rss_mb'), '.0f')} |"
        )
    return "\n".join(lines) + f"\n\n95% of the best reference's best validation accuracy: {target:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--val")
    parser.add_argument("--test")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--budget", default="10m", help="per method, e.g. 10m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=[*GRAFTCV_METHODS, "linear-probe-cached", *REFERENCES])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--resume", action="store_true", help="keep rows already finished in --out (same split)")
    args = parser.parse_args()
    out = args.out or HERE / "out" / f"run-{Path(args.data).name}-{args.size}"
    out.mkdir(parents=True, exist_ok=True)
    finished = out / "rows"
    if args.resume and (out / "split" / "train.csv").exists():
        counts = {n: len((out / "split" / f"{n}.csv").read_text().splitlines()) - 1 for n in ("train", "val", "test")}
    else:
        counts = write_split(args, out / "split")
        shutil.rmtree(finished, ignore_errors=True)
    finished.mkdir(exist_ok=True)
    print(f"split {counts}, size {args.size}, budget {args.budget}, seed {args.seed}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache_root:
        for method in args.methods:
            saved = finished / f"{method}.json"
            if saved.exists():
                rows.append(json.loads(saved.read_text()))
                continue
            if method in REFERENCES or method == "forward":
                row = run_reference(method, args, out / "split", out)
            else:
                strategy = method.removesuffix("-cached")
                cache = Path(cache_root) / ("shared" if strategy == "linear-probe" else method)
                row = run_graftcv(strategy, args, out / "split", out, cache, f"graftcv {method}")
            print({k: v for k, v in row.items() if k not in ("trace", "command")}, flush=True)
            rows.append(row)
            if "error" not in row:
                saved.write_text(json.dumps(row, default=str))
    if "forward" not in args.methods:
        saved = finished / "forward.json"
        row = json.loads(saved.read_text()) if saved.exists() else run_reference("forward", args, out / "split", out)
        saved.write_text(json.dumps(row, default=str))
        rows.append(row)
    best_reference = max(
        (
            max(t["val_acc"] for t in r.get("trace", []))
            for r in rows
            if r["method"].startswith("ref") and r.get("trace")
        ),
        default=0.0,
    )
    target = 0.95 * best_reference
    for row in rows:
        row["seconds_to_target"] = seconds_to(row.get("trace", []), target) if row.get("trace") else None
        row["best_reference_val_accuracy"] = best_reference
    text = table(rows, target)
    references = [r for r in rows if r["method"].startswith("ref") and r.get("trace")]
    default = next((r for r in rows if r["method"] == "graftcv finetune" and r.get("trace")), None)
    if references and default:  # target: the default reaches the best recipe's best accuracy in a third of its time
        best = max(references, key=lambda r: max(t["val_acc"] for t in r["trace"]))
        reached = seconds_to(default["trace"], best_reference)
        text += (
            f"\ngraftcv finetune reaches {best['method']}'s best val acc {best_reference:.4f} after "
            + ("never" if reached is None else f"{reached:.1f} s")
            + f"; that recipe ran {best['wall_seconds']:.1f} s (ratio "
            + ("—" if reached is None else f"{reached / best['wall_seconds']:.2f}")
            + ")"
        )
    cold, warm = (
        next((r for r in rows if r["method"] == m and r.get("feature_stage_seconds")), None)
        for m in ("graftcv linear-probe", "graftcv linear-probe-cached")
    )
    if cold and warm:  # target 2: the cache's gain on the feature stage, and on the whole process
        stage_cold, stage_warm = cold["feature_stage_seconds"], warm["feature_stage_seconds"]
        text += (
            f"\nfeature cache: feature stage {stage_cold:.2f} s cold, "
            f"{stage_warm:.3f} s cached ({stage_cold / stage_warm:.0f}×); "
            f"whole process {cold['wall_seconds']:.1f} s vs {warm['wall_seconds']:.1f} s "
            f"({cold['wall_seconds'] / warm['wall_seconds']:.1f}×)"
        )
    record = {"split": counts, "args": vars(args) | {"out": str(out)}, "rows": rows}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
