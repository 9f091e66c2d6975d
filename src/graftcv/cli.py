"""The `graftcv` command line: a thin face over the Python API."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from graftcv.errors import GraftcvError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Transfer learning for image classification.")
out = Console()
err = Console(stderr=True)

Strategy = Annotated[
    str,
    typer.Option(
        help="linear-probe | prototype | head | partial | full | progressive | finetune", rich_help_panel="Strategy"
    ),
]


def _setup_logging() -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("graftcv").setLevel(logging.INFO)


def _print_run(summary: dict, out_dir: Path) -> None:
    table = Table(title=f"{summary['strategy']} · {summary['model']}", show_header=False)
    for key in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_log_loss", "val_ece"):
        table.add_row(key, f"{summary[key]:.4f}")
    if "test_accuracy" in summary:
        table.add_row("test_accuracy", f"{summary['test_accuracy']:.4f}")
    table.add_row("epochs (best)", f"{summary['epochs']} ({summary['best_epoch']})")
    table.add_row("train / wall seconds", f"{summary['train_seconds']:.1f} / {summary['wall_seconds']:.1f}")
    table.add_row("images train / val", f"{summary['n_train']} / {summary['n_val']}")
    table.add_row("train images per class", " · ".join(f"{k} {v}" for k, v in summary["train_counts"].items()))
    table.add_row("skipped files", str(summary["skipped_files"]))
    out.print(table)
    out.print(f"model: [bold]{summary['model_dir']}[/]   run: {out_dir}")


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Argument(help="ROOT/CLASS/*, ROOT/{train,val[,test]}/CLASS/*, or a path,label CSV"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default runs/<data>-<strategy>-<time>)")
    ] = None,
    strategy: Strategy = "finetune",
    model: Annotated[
        str, typer.Option(help="Any timm model name", rich_help_panel="Backbone")
    ] = "tf_efficientnet_lite0",
    weights: Annotated[
        Path | None, typer.Option(help=".pth/.pt/.safetensors weights", rich_help_panel="Backbone")
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="--no-pretrained: random init", rich_help_panel="Backbone")] = True,
    val: Annotated[Path | None, typer.Option(help="Validation folder or CSV", rich_help_panel="Data")] = None,
    test: Annotated[Path | None, typer.Option(help="Test folder or CSV", rich_help_panel="Data")] = None,
    val_fraction: Annotated[float, typer.Option(rich_help_panel="Data")] = 0.2,
    size: Annotated[int | None, typer.Option(help="Input size in pixels", rich_help_panel="Data")] = None,
    augment: Annotated[str, typer.Option(help="none | light | strong", rich_help_panel="Data")] = "light",
    mixup: Annotated[float, typer.Option(help="Mixup alpha", rich_help_panel="Data")] = 0.0,
    cutmix: Annotated[float, typer.Option(help="CutMix alpha", rich_help_panel="Data")] = 0.0,
    balance: Annotated[str, typer.Option(help="none | weights | sampler", rich_help_panel="Data")] = "none",
    batch_size: Annotated[int, typer.Option(rich_help_panel="Data")] = 32,
    micro_batch: Annotated[
        int | None, typer.Option(help="Images per pass; gradients accumulate to the batch", rich_help_panel="Data")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Decoding workers", rich_help_panel="Data")] = None,
    head: Annotated[
        str, typer.Option(help="linear-probe head: logreg|svm|rf|gb|mlp", rich_help_panel="Strategy")
    ] = "logreg",
    pca: Annotated[int | None, typer.Option(help="linear-probe: PCA components", rich_help_panel="Strategy")] = None,
    unfreeze: Annotated[int, typer.Option(help="partial: backbone groups that train", rich_help_panel="Strategy")] = 2,
    unfreeze_every: Annotated[int, typer.Option(help="progressive: epochs per group", rich_help_panel="Strategy")] = 1,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main phase", rich_help_panel="Strategy")] = None,
    head_epochs: Annotated[
        int, typer.Option(help="finetune: head epochs on features", rich_help_panel="Strategy")
    ] = 20,
    lr: Annotated[str | None, typer.Option(help="Learning rate, or 'auto'", rich_help_panel="Optimisation")] = None,
    head_lr: Annotated[float, typer.Option(rich_help_panel="Optimisation")] = 3e-3,
    lr_decay: Annotated[
        float, typer.Option(help="LR factor per group below the head", rich_help_panel="Optimisation")
    ] = 0.7,
    bn: Annotated[
        str, typer.Option(help="train | freeze BatchNorm statistics", rich_help_panel="Optimisation")
    ] = "freeze",
    optimizer: Annotated[str, typer.Option(help="adamw | sgd | rmsprop", rich_help_panel="Optimisation")] = "adamw",
    schedule: Annotated[
        str, typer.Option(help="onecycle|cosine|step|cyclical|constant", rich_help_panel="Optimisation")
    ] = "onecycle",
    weight_decay: Annotated[float, typer.Option(rich_help_panel="Optimisation")] = 0.01,
    label_smoothing: Annotated[float, typer.Option(rich_help_panel="Optimisation")] = 0.1,
    dropout: Annotated[float, typer.Option(help="Head dropout", rich_help_panel="Optimisation")] = 0.2,
    drop_path: Annotated[float, typer.Option(help="Stochastic depth", rich_help_panel="Optimisation")] = 0.1,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs)", rich_help_panel="Optimisation")] = 3,
    max_time: Annotated[
        str | None, typer.Option(help="e.g. 10m: stop and keep the best", rich_help_panel="Optimisation")
    ] = None,
    seed: Annotated[int, typer.Option(rich_help_panel="Execution")] = 0,
    devices: Annotated[str, typer.Option(rich_help_panel="Execution")] = "auto",
    accelerator: Annotated[str, typer.Option(rich_help_panel="Execution")] = "auto",
    precision: Annotated[
        str, typer.Option(help="32-true | 16-mixed | bf16-mixed", rich_help_panel="Execution")
    ] = "32-true",
    cache: Annotated[bool, typer.Option(help="Reuse cached features", rich_help_panel="Execution")] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a finished run in --out", rich_help_panel="Execution")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the unfinished run in this dir, as recorded", rich_help_panel="Execution"),
    ] = None,
) -> None:
    """Train a classifier on a folder of labelled images and save it with its metrics."""
    import graftcv

    settings = dict(
        strategy=strategy,
        model=model,
        weights=str(weights) if weights else None,
        pretrained=pretrained,
        val=str(val) if val else None,
        test=str(test) if test else None,
        val_fraction=val_fraction,
        size=size,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        balance=balance,
        batch_size=batch_size,
        micro_batch=micro_batch,
        num_workers=workers,
        head=head,
        pca=pca,
        unfreeze=unfreeze,
        unfreeze_every=unfreeze_every,
        epochs=epochs,
        head_epochs=head_epochs,
        lr=lr,
        head_lr=head_lr,
        lr_decay=lr_decay,
        bn=bn,
        optimizer=optimizer,
        schedule=schedule,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        dropout=dropout,
        drop_path=drop_path,
        patience=patience,
        max_time=max_time,
        seed=seed,
        devices=_devices(devices),
        accelerator=accelerator,
        precision=precision,
        cache=cache,
    )
    if resume is not None:
        run = graftcv.fit(data, out=resume, resume=True)
    else:
        run = graftcv.fit(data, out=out_dir, overwrite=overwrite, **settings)
    _print_run(run.summary, run.out_dir)
    _write_report(run.out_dir)


def _devices(text: str) -> str | int:
    return int(text) if text.isdigit() else text


@app.command()
def compare(
    data: Annotated[Path, typer.Argument(help="Labelled images; train/val/test folders are pooled")],
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategies, plus 'scratch' (random init, its own recipe)")
    ] = "prototype,linear-probe,finetune,scratch",
    folds: Annotated[int | None, typer.Option(help="Stratified k-fold CV (default 5)")] = None,
    repeats: Annotated[int | None, typer.Option(help="Repeated stratified splits instead of folds")] = None,
    shots: Annotated[str | None, typer.Option(help="Training images per class, e.g. 1,2,4,8,16,all")] = None,
    budget: Annotated[str | None, typer.Option(help="e.g. 30m: launch no run after this")] = None,
    tune: Annotated[str | None, typer.Option(help="Nested-CV choice of lr,epochs,unfreeze")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Default runs/compare-<data>-<time>")] = None,
    model: Annotated[str, typer.Option(help="Any timm model name")] = "tf_efficientnet_lite0",
    weights: Annotated[Path | None, typer.Option(help="Pretrained weights file for the transfer strategies")] = None,
    pretrained: Annotated[bool, typer.Option(help="--no-pretrained: random init everywhere (smoke tests)")] = True,
    size: Annotated[int | None, typer.Option(help="Input size in pixels")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the transfer strategies' main phase")] = None,
    scratch_epochs: Annotated[int, typer.Option(help="Epochs of the from-scratch recipe")] = 30,
    batch_size: Annotated[int, typer.Option()] = 32,
    workers: Annotated[int | None, typer.Option(help="Decoding workers")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share of each training part")] = 0.2,
    test_fraction: Annotated[float, typer.Option(help="--repeats: held-out share")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    keep_models: Annotated[bool, typer.Option(help="Keep every run's model directory")] = False,
    resume: Annotated[bool, typer.Option(help="Reuse the finished runs in --out")] = False,
) -> None:
    """Compare strategies (and training from scratch) under one protocol: CV, shots, 95% CIs, plots."""
    from graftcv.compare import compare as run_compare
    from graftcv.compare import headline
    from graftcv.compare_report import TABLE_METRICS, cell_text, missing_text

    comparison = run_compare(
        data,
        strategies=strategies,
        folds=folds,
        repeats=repeats,
        shots=shots,
        budget=budget,
        tune=tune,
        out=out_dir,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        scratch_epochs=scratch_epochs,
        keep_models=keep_models,
        resume=resume,
        model=model,
        weights=str(weights) if weights else None,
        pretrained=pretrained,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        num_workers=workers,
    )
    table = Table("strategy", "shots", "n", *TABLE_METRICS.values(), title="mean ± std [95% CI] over splits")
    for entry in comparison.table:
        cells = [cell_text(entry, metric) for metric in TABLE_METRICS]
        table.add_row(entry["strategy"], entry["shots"], str(entry["n"]), *cells)
    out.print(table)
    out.print(f"[bold]{headline(comparison.verdicts)}[/]")
    for verdict in comparison.verdicts:
        out.print(("[bold red]" if verdict["kind"] == "negative-transfer" else "") + verdict["sentence"])
    if comparison.missing:
        out.print(f"[yellow]{missing_text(comparison.missing)}[/]")
    out.print(f"wrote {comparison.out_dir}: {', '.join(p.name for p in comparison.files.values())}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory")] = Path("runs/demo"),
    strategy: Strategy = "finetune",
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main phase")] = 3,
) -> None:
    """Train on the bundled ants/bees images with the bundled EfficientNet-Lite0 weights."""
    import graftcv

    data = Path(__file__).parent / "demo_data" / "ants_bees"
    out.print(f"demo data: {data} (ants vs bees, {sum(1 for p in data.rglob('*.jpg'))} images)")
    run = graftcv.fit(data, out=out_dir, overwrite=True, strategy=strategy, epochs=epochs)
    _print_run(run.summary, run.out_dir)
    _write_report(run.out_dir)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders")],
    topk: Annotated[int, typer.Option(help="Classes to show per image")] = 1,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write predictions to this CSV")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    runtime: Annotated[
        str, typer.Option(help="torch | onnx (the exported model.onnx; also chosen by passing MODEL/model.onnx)")
    ] = "torch",
) -> None:
    """Predict the class of each image with a saved model."""
    import graftcv

    model = graftcv.load(model_dir, runtime=runtime)
    results = model.predict([str(p) for p in images], topk=topk, batch_size=batch_size, progress=True)
    table = Table("image", *[f"top{i + 1}" for i in range(min(topk, len(model.classes)))])
    for row in results[:50]:
        table.add_row(row["path"], *[f"{t['class']} {t['probability']:.3f}" for t in row["top"]])
    out.print(table)
    if len(results) > 50:
        out.print(f"… {len(results) - 50} more")
    if csv_path:
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            k = len(results[0]["top"])
            writer.writerow(["path", *[f"{kind}{i + 1}" for i in range(k) for kind in ("class", "prob")]])
            for row in results:
                writer.writerow(
                    [row["path"], *[v for t in row["top"] for v in (t["class"], f"{t['probability']:.6f}")]]
                )
        out.print(f"wrote {csv_path}")


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory")],
    export_format: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's)")] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Real images for the parity check (default: the run's training data)"),
    ] = None,
    max_images: Annotated[int, typer.Option(help="At most this many real images in the parity check")] = 256,
    exporter: Annotated[str, typer.Option(help="auto | dynamo | torchscript")] = "auto",
    tolerance: Annotated[float, typer.Option(help="Largest |Δlogit| accepted against PyTorch")] = 1e-4,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the parity report here")] = None,
) -> None:
    """Export to ONNX (MODEL/model.onnx, dynamic batch size), checked against PyTorch before it is written."""
    from graftcv.export import export_onnx, recorded_images

    if export_format.lower() != "onnx":
        raise GraftcvError(f"Unknown export format {export_format!r}: onnx is the one graftcv writes.")
    sources = [str(p) for p in images] if images else None
    if sources is None and (recorded := recorded_images(model_dir)) is not None:
        sources = [str(recorded)]
    if sources is None:
        logging.getLogger("graftcv").warning("No real images for the parity check (--images): random inputs only.")
    report = export_onnx(
        model_dir, opset=opset, images=sources, exporter=exporter, tolerance=tolerance, max_images=max_images
    )
    table = Table(title=f"ONNX parity · {report.path}", show_header=False)
    table.add_row("exporter / opset", f"{report.exporter} / {report.opset}")
    table.add_row("inputs: random / real images", f"{report.random_inputs} / {report.real_images}")
    table.add_row("max |Δlogit|", f"{report.max_abs_logit_diff:.2e}")
    table.add_row("max |Δprobability|", f"{report.max_abs_prob_diff:.2e}")
    table.add_row("top-1 agreement", f"{report.top1_agreement:.4f} ({report.top1_mismatches_real} real images differ)")
    table.add_row("seconds", f"{report.seconds:.1f}")
    out.print(table)
    if json_path:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
        out.print(f"wrote {json_path}")


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory")],
    host: Annotated[str, typer.Option(help="Interface to bind; the default is reachable from this machine only")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the model")] = 1,
    runtime: Annotated[str, typer.Option(help="auto (onnx once exported) | torch | onnx")] = "auto",
    max_files: Annotated[int, typer.Option(help="Images per request")] = 16,
    max_file_mb: Annotated[float, typer.Option(help="Megabytes per uploaded file")] = 10.0,
    max_pixels: Annotated[int, typer.Option(help="Pixels per image (width × height)")] = 40_000_000,
    max_request_mb: Annotated[float, typer.Option(help="Megabytes per request, all files together")] = 32.0,
) -> None:
    """Serve a model over HTTP: POST /predict, POST /explain, GET /health, GET /metadata, docs at /docs."""
    try:
        from graftcv.serve import Limits, ServeSettings
        from graftcv.serve import serve as run_server
    except ImportError:
        raise GraftcvError("FastAPI and uvicorn are not installed: pip install 'graftcv[serve]'.") from None
    limits = Limits(max_files, int(max_file_mb * 2**20), max_pixels, int(max_request_mb * 2**20))
    run_server(ServeSettings(str(model_dir), runtime, limits), host=host, port=port, workers=workers)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory")],
    data: Annotated[Path, typer.Argument(help="Labelled images: ROOT/CLASS/* or a path,label CSV")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write the JSON and CSV files")] = None,
) -> None:
    """Score a saved model on labelled images: per-class table, confusion matrix, calibration."""
    import graftcv
    from graftcv.evaluation import report_table, summary_line, write_report

    model = graftcv.load(model_dir)
    report = model.evaluate(data, progress=True)
    out.print(report_table(report, title=f"{model_dir} on {data}"))
    out.print(summary_line(report))
    target = out_dir or Path(model_dir) / "evaluation" / Path(data).resolve().name
    paths = write_report(report, target)
    out.print(f"wrote {', '.join(str(p) for p in paths.values())}")


@app.command()
def models() -> None:
    """Known backbones: weights on this machine, parameters, input size, ImageNet top-1."""
    from graftcv.backbones.catalog import describe_models

    table = Table("model", "weights", "params (M)", "input", "ImageNet top-1")
    for row in describe_models():
        table.add_row(
            row["name"], row["weights"], f"{row['params_m']}", str(row["input_size"]), f"{row['imagenet_top1']}"
        )
    out.print(table)
    out.print("Any other timm model name works too: `timm.list_models()`; weights come from --weights FILE offline.")


def _write_report(run_dir: Path) -> None:
    """The run's report.html; a failure is only a warning, since the trained model is already saved."""
    from graftcv.report import build_report

    try:
        out.print(f"report: [bold]{build_report(run_dir)}[/]")
    except Exception as error:  # a drawing problem must never cost the user a finished run
        logging.getLogger("graftcv").warning("No report.html (%s); `graftcv report %s` retries.", error, run_dir)


def _spread(paths: list, limit: int | None) -> list:
    """At most `limit` items, evenly spaced over the list so that every class folder is represented."""
    if not limit or limit >= len(paths):
        return paths
    return [paths[round(i * (len(paths) - 1) / max(limit - 1, 1))] for i in range(limit)]


def _png_name(name: str, used: set[str]) -> str:
    """IMAGE.png, or FOLDER-IMAGE.png when another folder already gave that name."""
    path = Path(name)
    candidates = [f"{path.stem}.png", f"{path.parent.name}-{path.stem}.png"]
    candidates += [f"{path.parent.name}-{path.stem}-{n}.png" for n in range(2, len(used) + 3)]
    chosen = next(c for c in candidates if c not in used)
    used.add(chosen)
    return chosen


def _print_cam_scores(scores: dict) -> None:
    keys = [("road_combined", "ROAD↑"), ("road_morf", "MoRF↓"), ("road_lerf", "LeRF↑")]
    keys += [("confidence_drop", "drop↓"), ("confidence_increase", "incr↑")]
    keys += [("pointing_hit", "point↑"), ("energy_inside", "energy↑"), ("iou", "IoU↑")]
    keys = [(k, label) for k, label in keys if scores["overall"].get(k) is not None]
    title = f"{scores['method']} on {scores['layer']}"
    table = Table("class (CAM of)", "n", *[label for _, label in keys], title=title)
    for name, row in [*scores["per_class"].items(), ("overall", scores["overall"])]:
        style = "bold" if name == "overall" else None
        table.add_row(name, str(row["n"]), *[f"{row[k]:.3f}" for k, _ in keys], style=style)
        table.add_row("  random CAM", "", *[f"{row[f'random_{k}']:.3f}" for k, _ in keys], style="dim")
    out.print(table)
    out.print(
        "ROAD: change in the class probability when the most (MoRF) or least (LeRF) relevant pixels are imputed, "
        "combined = (LeRF − MoRF)/2; drop/incr: after multiplying the image by its CAM; point, energy, IoU: "
        "localization against the annotations. A CAM is informative where it beats the random CAM."
    )


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (CLASS folders give true labels)")],
    method: Annotated[
        str, typer.Option(help="gradcam|gradcam++|hirescam|xgradcam|layercam|eigencam|scorecam|ablationcam")
    ] = "gradcam",
    target: Annotated[str, typer.Option(help="The class the map explains: pred | true | a class name")] = "pred",
    layer: Annotated[str | None, typer.Option(help="Target module name (default: the last feature map)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the PNGs and cam_scores.json go")] = Path("explain"),
    score: Annotated[bool, typer.Option("--score", help="Measure CAM quality against a random CAM")] = False,
    masks: Annotated[Path | None, typer.Option(help="Folder of binary object masks named like the images")] = None,
    boxes: Annotated[Path | None, typer.Option(help="CSV of object boxes: path,x0,y0,x1,y1")] = None,
    limit: Annotated[int | None, typer.Option(help="Explain at most N images, spread over the list")] = None,
) -> None:
    """Class activation maps: one PNG per image (image | heat map | overlay); --score measures their quality."""
    import graftcv
    from graftcv.data.discovery import list_images
    from graftcv.explain.render import render_cam

    if masks is not None and boxes is not None:
        raise GraftcvError("Give object annotations either as --masks or as --boxes, not both.")
    model = graftcv.load(model_dir)
    paths, _ = list_images([str(p) for p in images])
    results = model.explain([str(p) for p in _spread(paths, limit)], method=method, target=target, layer=layer)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, used = Table("image", "predicted", "CAM of", "png"), set()
    for result in results:
        png = render_cam(result, out_dir / _png_name(result.name, used))
        table.add_row(Path(result.name).name, f"{result.predicted} {result.probability:.3f}", result.target, str(png))
    out.print(table if len(results) <= 50 else f"wrote {len(results)} PNGs to {out_dir}")
    if score or masks or boxes:
        scores = model.score_explanations(results, masks=masks, boxes=boxes)
        _print_cam_scores(scores)
        (out_dir / "cam_scores.json").write_text(json.dumps(scores, indent=2))
        out.print(f"wrote {out_dir / 'cam_scores.json'}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by graftcv train")],
    cams: Annotated[bool, typer.Option(help="--no-cams: skip the CAM galleries (no model needed)")] = True,
) -> None:
    """Rebuild RUN_DIR/report.html: summary, learning curves, confusion matrix, per-class metrics, CAM galleries."""
    from graftcv.report import build_report

    out.print(f"report: [bold]{build_report(run_dir, cams=cams)}[/]")


@app.command("lr-find")
def lr_find(
    data: Annotated[Path, typer.Argument(help="Labelled images")],
    strategy: Strategy = "finetune",
    model: Annotated[str, typer.Option()] = "tf_efficientnet_lite0",
    size: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    steps: Annotated[int, typer.Option(help="Batches to try")] = 60,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the curve here")] = None,
) -> None:
    """Learning-rate range test: the loss as the LR grows, and the suggested LR."""
    import graftcv.api

    finding = graftcv.api.find_lr(data, steps=steps, strategy=strategy, model=model, size=size, batch_size=batch_size)
    out.print(f"suggested learning rate: [bold]{finding.suggestion:.2e}[/]  (use --lr {finding.suggestion:.2e})")
    if json_path:
        json_path.write_text(json.dumps(finding.__dict__, indent=2))
        out.print(f"wrote {json_path}")


def main() -> None:
    """Entry point: typer reports usage errors itself (exit 2); bad input found later is one line, exit 2."""
    _setup_logging()
    try:
        app()
    except GraftcvError as error:
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
