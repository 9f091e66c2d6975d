"""`graftcv tune`: hyper-parameter search over `train`'s settings, the best model kept as a normal run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from graftcv.cli.application import out
from graftcv.cli.options import given, parsed, with_config_options
from graftcv.cli.training import print_run, write_report


@with_config_options
def tune(
    data: Annotated[str, typer.Argument(help="ROOT/CLASS/*, ROOT/{train,val[,test]}/CLASS/*, or a path,label CSV")],
    out_dir: Annotated[Path, typer.Option("--out", help="The tune's run: best model, trials, study.db")],
    trials: Annotated[int | None, typer.Option(help="Stop when the study holds this many finished trials")] = None,
    sampler: Annotated[str, typer.Option(help="tpe | random | grid")] = "tpe",
    space: Annotated[str, typer.Option(help="default | a JSON file of {setting: {kind, choices|low,high,...}}")] = (
        "default"
    ),
    storage: Annotated[
        str | None, typer.Option(help="Optuna database URL shared by several tune processes (default OUT/study.db)")
    ] = None,
    study_name: Annotated[str, typer.Option(help="The study's name in --storage")] = "graftcv",
    heartbeat: Annotated[float, typer.Option(help="Seconds between a trial's heartbeats (a killed one is retried)")] = (
        60.0
    ),
    **settings: Any,
) -> None:
    """Search strategy, learning rate, epochs, size, augmentation, label smoothing, mixup and head on validation
    data within --budget (default 30m), pruning bad trials; the best model is scored once on the test split."""
    import graftcv

    chosen = parsed(given(settings))
    budget = chosen.pop("budget", None) or (None if trials else "30m")
    run = graftcv.tune(
        data, out_dir, budget=budget, trials=trials, sampler=sampler, space=space, storage=storage,
        study_name=study_name, heartbeat=heartbeat, **chosen,
    )  # fmt: skip
    found = run.summary["tune"]
    out.print(
        f"{found['trials']} trials ({found['complete']} finished, {found['pruned']} pruned, {found['failed']} failed) "
        f"in {found['seconds']:.0f} s; best: trial {found['best_trial']}"
    )
    print_run(run.summary, run.out_dir)
    write_report(run.out_dir)
