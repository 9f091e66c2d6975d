"""Speed on a laptop CPU: the feature pass on PyTorch vs onnxruntime, and the CLI's start-up; a Markdown table.

.venv/bin/python bench/speed.py --data ../shared/datasets/flowers5 --size 224 --limit 1000
.venv/bin/python bench/speed.py --cli-only --exported-model MODEL --image one.jpg   # the CLI rows alone
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _wall(command: list[str], repeats: int) -> float:
    """Median wall seconds of a command, process start included."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def feature_rows(args: argparse.Namespace, cache: Path) -> tuple[list[dict], dict]:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import graftcv.feature_onnx as feature_onnx
    from graftcv.backbones import classifier_param_names, create_backbone
    from graftcv.data import build_transform, decode_size, evenly_spaced, load_rgb, read_labelled
    from graftcv.features import FeatureStats, extract_features, model_fingerprint

    images, _ = read_labelled(args.data)
    order = evenly_spaced(list(range(len(images))), args.limit)
    images = images.subset(order)
    backbone = create_backbone(args.model, len(images.counts()), size=args.size)
    model = backbone.model
    model_id = {"name": args.model, "weights": model_fingerprint(model, classifier_param_names(model, True))}

    def run(onnx: bool, workers: int | None = None) -> tuple[np.ndarray, FeatureStats, float]:
        stats, started = FeatureStats(), time.perf_counter()
        features = extract_features(
            model, images.paths, backbone.data_config, model_id, batch_size=64, use_cache=False,
            progress=False, stats=stats, onnx=onnx, cache_dir=cache, num_workers=workers,
        )  # fmt: skip
        return np.asarray(features), stats, time.perf_counter() - started

    on_torch, torch_stats, torch_wall = run(onnx=False)
    cold, cold_stats, cold_wall = run(onnx=True)  # exports, checks, computes
    warm, warm_stats, warm_wall = run(onnx=True)  # the cached export
    # decoding in one worker process beside onnxruntime's two threads, instead of inline between batches
    worker, worker_stats, worker_wall = run(onnx=True, workers=1)
    # what the machine can do: onnxruntime's forward alone on ready tensors
    transform, side = build_transform(backbone.data_config), decode_size(backbone.data_config)
    batch = torch.stack([transform(load_rgb(p, draft_size=side)) for p in images.paths[:64]]).numpy()
    runner = feature_onnx.open_or_export(model, tuple(backbone.data_config["input_size"]), _space(cache), 10**9)
    runner(batch)
    started = time.perf_counter()
    for _ in range(3):
        runner(batch)
    ready = 3 * len(batch) / (time.perf_counter() - started)

    y = np.array(images.targets(sorted(images.counts())))
    split = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)

    def probe(features: np.ndarray) -> float:
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
        head.fit(features[split[0]], y[split[0]])
        return float(head.score(features[split[1]], y[split[1]]))

    passes = [
        ("PyTorch (channels-last, inference_mode)", torch_stats, torch_wall, on_torch),
        ("onnxruntime, first use (export + check)", cold_stats, cold_wall, cold),
        ("onnxruntime, cached export", warm_stats, warm_wall, warm),
        ("onnxruntime, cached export, decoding in 1 worker process", worker_stats, worker_wall, worker),
    ]
    rows = [{"pass": name, "stats": stats, "wall": wall, "acc": probe(x)} for name, stats, wall, x in passes]
    facts = {
        "images": len(images),
        "max_abs_diff": float(np.abs(warm - on_torch).max()),
        "ready_tensor_images_per_second": ready,
        "runtimes": [r["stats"].runtime for r in rows],
    }
    return rows, facts


def _space(cache: Path) -> Path:
    (space,) = [p for p in cache.iterdir() if p.is_dir()]
    return space


def cli_rows(args: argparse.Namespace, graftcv: str) -> tuple[dict[str, float], list[str]]:
    """Median wall seconds of each CLI command, and notes on the rows left out."""
    cli = {
        "graftcv --help": _wall([graftcv, "--help"], args.repeats),
        "graftcv train --help": _wall([graftcv, "train", "--help"], args.repeats),
        "graftcv train --bogus (usage error)": _wall([graftcv, "train", "--bogus"], args.repeats),
        "graftcv models": _wall([graftcv, "models"], args.repeats),
    }
    notes = []
    image = args.image or (_first_image(Path(args.data)) if args.data else None)
    if args.exported_model is None or image is None:
        notes.append("`graftcv predict (exported model, one image)`: skipped, pass --exported-model MODEL and --image")
    else:
        command = [graftcv, "predict", str(args.exported_model), str(image)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
        cli["graftcv predict (exported model, one image)"] = _wall(command, args.repeats)
    return cli, notes


def _first_image(data: Path) -> Path | None:
    suffixes = {".jpg", ".jpeg", ".png"}
    return next((p for p in sorted(data.rglob("*")) if p.suffix.lower() in suffixes), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="labelled images for the feature pass (required unless --cli-only)")
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="backbone of the feature pass")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=1000, help="images of the data, evenly spread")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each CLI command (median)")
    parser.add_argument("--exported-model", type=Path, help="a model directory with model.onnx, for the predict row")
    parser.add_argument("--image", type=Path, help="the image the predict row classifies (default: one of --data)")
    parser.add_argument("--cli-only", action="store_true", help="time the CLI only, not the feature pass")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.cli_only or args.data):
        parser.error("--data is required for the feature pass (or pass --cli-only)")
    graftcv = str(Path(sys.executable).with_name("graftcv"))
    if args.cli_only:
        cli, notes = cli_rows(args, graftcv)
        _print_cli(cli, notes, args.repeats)
        if args.json:
            args.json.write_text(json.dumps({"cli": cli, "notes": notes}, indent=2))
        return
    with tempfile.TemporaryDirectory() as cache:
        rows, facts = feature_rows(args, Path(cache))
    torch_rate = rows[0]["stats"].images_per_second
    print(
        f"Feature pass, {args.model} at {args.size} px, {facts['images']} images of {Path(args.data).name}, 2 threads"
    )
    print("| pass | runtime | images/s | × PyTorch | wall s | linear-probe acc |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        rate = row["stats"].images_per_second
        print(
            f"| {row['pass']} | {row['stats'].runtime} | {rate:.1f} | {rate / torch_rate:.2f} | {row['wall']:.1f} "
            f"| {row['acc']:.4f} |"
        )
    ready = facts["ready_tensor_images_per_second"]
    print(
        f"\nonnxruntime forward on ready tensors (batch 64): {ready:.1f} images/s; the cached-export pass is "
        f"{rows[2]['stats'].images_per_second / ready:.0%} of it; "
        f"max |Δ feature| vs PyTorch {facts['max_abs_diff']:.2e}"
    )
    cli, notes = cli_rows(args, graftcv)
    _print_cli(cli, notes, args.repeats)
    if args.json:
        facts |= {
            "rows": [{**r, "stats": r["stats"].__dict__} for r in rows],
            "cli": cli,
            "notes": notes,
        }
        args.json.write_text(json.dumps(facts, indent=2, default=str))


def _print_cli(cli: dict[str, float], notes: list[str], repeats: int) -> None:
    print(f"\nCLI start-up, median of {repeats} (process start included)")
    print("| command | seconds |\n|---|---|")
    for command, seconds in cli.items():
        print(f"| `{command}` | {seconds:.2f} |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
