"""The commands that train: `train`, `demo`, `compare` and `lr-find`, and `report` on what they wrote."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from graftcv.choices import REGISTRIES
from graftcv.cli.application import out
from graftcv.cli.options import config_option, given, option_help, parsed, with_config_options
from graftcv.cli.tables import compare_table, run_table
from graftcv.config import TrainConfig
from graftcv.errors import GraftcvError

SCRATCH = "scratch"  # compare's reference: the strategy every other one is measured against
Strategy = Annotated[str, typer.Option(help=option_help("strategy"))]
# Settings compare and lr-find hand to `fit` only when given, with help of their own or TrainConfig's
Weights = config_option("weights", "Pretrained weights file for the transfer strategies", panel=False)
Pretrained = config_option("pretrained", "--no-pretrained: random init everywhere (smoke tests)", panel=False)
TransferEpochs = config_option("epochs", "Epochs of the transfer strategies' main phase", panel=False)
ModelName, Size, BatchSize, Workers = (
    config_option(name, panel=False) for name in ("model", "size", "batch_size", "num_workers")
)


@with_config_options
def train(
    data: Annotated[
        str | None,  # not a Path: a shard set may be a URL, whose // a Path would fold
        typer.Argument(help="ROOT/CLASS/*, ROOT/{train,val[,test]}/CLASS/*, a path,label CSV, or shards (DIR, URL)"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default runs/<data>-<strategy>-<time>)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a finished run in --out", rich_help_panel="Execution")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the unfinished run in this dir, as recorded", rich_help_panel="Execution"),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="fast (linear probe, 128 px: ~1 min per 1,000 images) | balanced (fine-tune 160 px in --budget, "
            "default 10m) | best (Lite0/1/2 in thirds of --budget, default 20m, then their ensemble and flip TTA "
            "when validation does not drop)",
            rich_help_panel="Strategy",
        ),
    ] = None,
    bagging: Annotated[
        int | None,
        typer.Option(
            help="Train K members on bootstrap samples of the training split; OUT's model is their average "
            "(each member under OUT/members/I)",
            rich_help_panel="Strategy",
        ),
    ] = None,
    **settings: Any,
) -> None:
    """Train a classifier on a folder of labelled images and save it with its metrics."""
    import graftcv

    chosen = parsed(given(settings))  # only these: a strategy's own defaults apply to the others
    if bagging is not None and (preset is not None or resume is not None):
        raise GraftcvError("--bagging trains its own members afresh: drop --preset and --resume.")
    if bagging is not None:
        from graftcv.cli.combine import ensemble_table

        run = graftcv.bag(data, bagging, out_dir, overwrite=overwrite, **chosen)
        out.print(ensemble_table(run.summary))
        out.print(f"model: [bold]{run.summary['model_dir']}[/]   run: {run.out_dir}")
        write_report(run.out_dir)
        return
    if preset is not None:
        from graftcv.tuning.presets import run_preset

        if resume is not None:
            raise GraftcvError("--preset runs start afresh: drop --resume.")
        budget = chosen.pop("budget", None)
        run = run_preset(data, out_dir, preset, budget, **chosen)
    elif resume is not None:
        run = graftcv.fit(data, out=resume, resume=True, **chosen)
    else:
        run = graftcv.fit(data, out=out_dir, overwrite=overwrite, **chosen)
    if run.rank:  # under DDP, rank 0 reports the run
        return
    print_run(run.summary, run.out_dir)
    write_report(run.out_dir)
    from graftcv.tracking import log_file

    log_file(run.summary, run.out_dir / "report.html")  # --logger mlflow: the report beside the run's files


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory")] = Path("runs/demo"),
    strategy: Strategy = TrainConfig.strategy,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main phase")] = 3,
) -> None:
    """Train on the bundled ants/bees images with the bundled EfficientNet-Lite0 weights."""
    import graftcv

    data = Path(graftcv.__file__).parent / "demo_data" / "ants_bees"
    out.print(f"demo data: {data} (ants vs bees, {sum(1 for p in data.rglob('*.jpg'))} images)")
    run = graftcv.fit(data, out=out_dir, overwrite=True, **given({"strategy": strategy, "epochs": epochs}))
    print_run(run.summary, run.out_dir)
    write_report(run.out_dir)


def compare(
    data: Annotated[str, typer.Argument(help="Labelled images (train/val/test folders are pooled), or shards")],
    strategies: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated, of {REGISTRIES['strategy'].choices_help()}; STRATEGY+l2sp, +bss: with --reg"
        ),
    ] = f"prototype,linear-probe,finetune,{SCRATCH}",
    folds: Annotated[int | None, typer.Option(help="Stratified k-fold CV (default 5)")] = None,
    repeats: Annotated[int | None, typer.Option(help="Repeated stratified splits instead of folds")] = None,
    shots: Annotated[str | None, typer.Option(help="Training images per class, e.g. 1,2,4,8,16,all")] = None,
    budget: Annotated[str | None, typer.Option(help="e.g. 30m: launch no run after this")] = None,
    tune: Annotated[str | None, typer.Option(help="Nested-CV choice of lr,epochs,unfreeze")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Default runs/compare-<data>-<time>")] = None,
    model: Annotated[str, typer.Option(help=option_help("model"))] = TrainConfig.model,
    weights: Weights = None,
    pretrained: Pretrained = None,
    size: Size = None,
    epochs: TransferEpochs = None,
    scratch_epochs: Annotated[int, typer.Option(help="Epochs of the from-scratch recipe")] = REGISTRIES["strategy"][
        SCRATCH
    ].epochs,
    batch_size: Annotated[int, typer.Option(help=option_help("batch_size"))] = TrainConfig.batch_size,
    num_workers: Workers = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share of each training part")] = 0.2,
    test_fraction: Annotated[float, typer.Option(help="--repeats: held-out share")] = 0.2,
    seed: Annotated[int, typer.Option()] = TrainConfig.seed,
    keep_models: Annotated[bool, typer.Option(help="Keep every run's model directory")] = False,
    resume: Annotated[bool, typer.Option(help="Reuse the finished runs in --out")] = False,
    multi_label: Annotated[bool, typer.Option("--multi-label", help=option_help("multi_label"))] = False,
    logger: Annotated[str | None, typer.Option(help=option_help("logger") + "; one run per cell")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=option_help("tracking_uri"))] = None,
    experiment: Annotated[str | None, typer.Option(help=option_help("experiment"))] = None,
) -> None:
    """Compare strategies (and training from scratch) under one protocol: CV, shots, 95% CIs, plots. Multi-label
    and multi-task CSVs are split by iterative stratification and ranked by mAP (or the tasks' mean score)."""
    from graftcv.compare import compare as run_compare
    from graftcv.compare import headline, missing_text

    shared = given(
        {"weights": weights, "pretrained": pretrained, "size": size, "epochs": epochs, "num_workers": num_workers}
    ) | ({"multi_label": True} if multi_label else {})
    shared |= given({"logger": logger, "tracking_uri": tracking_uri, "experiment": experiment})
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
        batch_size=batch_size,
        **shared,
    )
    out.print(compare_table(comparison))
    out.print(f"[bold]{headline(comparison.verdicts)}[/]")
    for verdict in comparison.verdicts:
        out.print(("[bold red]" if verdict["kind"] == "negative-transfer" else "") + verdict["sentence"])
    if comparison.missing:
        out.print(f"[yellow]{missing_text(comparison.missing)}[/]")
    out.print(f"wrote {comparison.out_dir}: {', '.join(p.name for p in comparison.files.values())}")


def lr_find(
    data: Annotated[Path, typer.Argument(help="Labelled images")],
    strategy: Strategy = TrainConfig.strategy,
    model: ModelName = None,
    size: Size = None,
    batch_size: BatchSize = None,
    steps: Annotated[int, typer.Option(help="Batches to try")] = 60,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the curve here")] = None,
) -> None:
    """Learning-rate range test: the loss as the LR grows, and the suggested LR."""
    import graftcv

    settings = given({"strategy": strategy, "model": model, "size": size, "batch_size": batch_size})
    finding = graftcv.find_lr(data, steps=steps, **settings)
    out.print(f"suggested learning rate: [bold]{finding.suggestion:.2e}[/]  (use --lr {finding.suggestion:.2e})")
    if json_path:
        json_path.write_text(json.dumps(finding.__dict__, indent=2))
        out.print(f"wrote {json_path}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by graftcv train")],
    cams: Annotated[bool, typer.Option(help="--no-cams: skip the CAM galleries (no model needed)")] = True,
) -> None:
    """Rebuild RUN_DIR/report.html: summary, learning curves, confusion matrix, per-class metrics, CAM galleries."""
    from graftcv.report import build_report

    out.print(f"report: [bold]{build_report(run_dir, cams=cams)}[/]")


def print_run(summary: dict, out_dir: Path) -> None:
    out.print(run_table(summary))
    out.print(f"model: [bold]{summary['model_dir']}[/]   run: {out_dir}")


def write_report(run_dir: Path) -> None:
    """The run's report.html; a failure is only a warning, since the trained model is already saved."""
    from graftcv.report import build_report

    try:
        out.print(f"report: [bold]{build_report(run_dir)}[/]")
    except Exception as error:  # a drawing problem must never cost the user a finished run
        logging.getLogger("graftcv").warning("No report.html (%s); `graftcv report %s` retries.", error, run_dir)
