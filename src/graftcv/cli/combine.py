"""`graftcv ensemble`: trained models combined into one artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graftcv.cli.application import out


def ensemble(
    models: Annotated[list[Path], typer.Argument(help="Two or more run (or model) directories trained on one split")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the ensemble run goes (its model in OUT/model)")],
    weights: Annotated[
        str,
        typer.Option(
            help="equal | learned (greedy ensemble selection on validation predictions: for many members and "
            "a large validation set) | soup (greedy soup: one "
            "network, the members' weights averaged while validation accuracy holds; one backbone, fine-tuned)"
        ),
    ] = "equal",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in --out")] = False,
) -> None:
    """Average trained models' probabilities in one artifact that predict, evaluate, export and serve take."""
    import graftcv

    run = graftcv.ensemble([str(m) for m in models], out_dir, weights=weights, overwrite=overwrite)
    out.print(ensemble_table(run.summary))
    out.print(f"wrote {run.out_dir} (model: {run.summary['model_dir']})")


def ensemble_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"ensemble ({summary['weighting']} weights)")
    for column in ("member", "weight", "val acc", "test acc"):
        table.add_column(column, justify="left" if column == "member" else "right")

    def number(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, int | float) else "–"

    for row in summary["members"]:
        name = f"{row.get('model') or '?'} ({row.get('strategy') or '?'})"
        table.add_row(name, f"{row['weight']:.2f}", number(row.get("val_accuracy")), number(row.get("test_accuracy")))
    table.add_row(
        "[bold]ensemble[/]", "1.00", number(summary.get("val_accuracy")), number(summary.get("test_accuracy"))
    )
    return table
